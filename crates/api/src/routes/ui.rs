//! The console (`/ui/`, issue 8): the files of the repository's `ui/` folder, embedded
//! in the binary at compile time, so the api serves them with nothing else installed
//! and nothing fetched from elsewhere (no CDN: the console works offline). They are
//! plain HTML, CSS and JavaScript modules, without a build step.
//!
//! The files are public (the auth middleware leaves `/ui` open): they hold no data.
//! The console asks for an API key and sends it with each API call.

use crate::error::ApiError;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use std::sync::OnceLock;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// `"file" => "content type",` for each file of `ui/` (a flat folder); adding a file
/// to the console means adding its line here.
macro_rules! assets {
    ($($name:literal => $content_type:literal,)*) => {
        const ASSETS: &[Asset] = &[$(Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../ui/", $name)),
        },)*];
    };
}

assets! {
    "index.html" => "text/html; charset=utf-8",
    "style.css" => "text/css; charset=utf-8",
    "app.js" => "text/javascript; charset=utf-8",
    "api.js" => "text/javascript; charset=utf-8",
    "dom.js" => "text/javascript; charset=utf-8",
    "person.js" => "text/javascript; charset=utf-8",
    "ops.js" => "text/javascript; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
}

/// Only this origin's own files and API; no inline script, no framing.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
    script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'self'";

/// A strong validator per file, so browsers revalidate cheaply (`no-cache` + 304)
/// and always see the files of the running binary after an upgrade.
fn etag(index: usize) -> &'static str {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    let etags = ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{:016x}\"", fnv1a(a.body)))
            .collect()
    });
    etags.get(index).map(String::as_str).unwrap_or("\"0\"")
}

/// FNV-1a: stable across processes and builds, so every api behind a load balancer
/// gives a file the same ETag.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn serve(req: &HttpRequest, name: &str) -> Result<HttpResponse, ApiError> {
    let (index, asset) = ASSETS
        .iter()
        .enumerate()
        .find(|(_, a)| a.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no console file {name:?}")))?;
    let tag = etag(index);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut resp = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    resp.insert_header((header::ETAG, tag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP));
    if fresh {
        return Ok(resp.finish());
    }
    Ok(resp.content_type(asset.content_type).body(asset.body))
}

/// The console's address without its slash: redirects to `/ui/`.
#[utoipa::path(get, path = "/ui", tag = "console", security(()),
    responses((status = 308, description = "to /ui/")))]
pub async fn redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/ui/"))
        .finish()
}

/// The web console: a person's inbox and audit trail, live, and the operations page.
#[utoipa::path(get, path = "/ui/", tag = "console", security(()),
    responses((status = 200, description = "the console's page", content_type = "text/html", body = String)))]
pub async fn index(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    serve(&req, "index.html")
}

/// One of the console's files (scripts, style sheet, icon).
#[utoipa::path(get, path = "/ui/{file}", tag = "console", security(()),
    params(("file" = String, Path, description = "e.g. app.js")),
    responses(
        (status = 200, description = "the file", body = String),
        (status = 304, description = "unchanged since the ETag sent"),
        (status = 404, description = "no such file", body = crate::error::ErrorBody),
    ))]
pub async fn asset(req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    serve(&req, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_embedded_with_a_distinct_etag() {
        let mut tags: Vec<&str> = (0..ASSETS.len()).map(etag).collect();
        assert!(ASSETS.iter().all(|a| !a.body.is_empty()));
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len());
    }
}
