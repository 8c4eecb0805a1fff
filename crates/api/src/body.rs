//! Reading JSON bodies with Herald's limits: over 1 MiB is a 413 (checked against
//! `Content-Length` before reading, and while reading for chunked bodies), malformed
//! JSON or invalid UTF-8 a 400. serde_json's recursion limit turns absurdly deep
//! nesting into a 400 as well, never a stack overflow.

use crate::error::ApiError;
use actix_web::web;
use actix_web::web::Bytes;
use actix_web::HttpRequest;
use futures::{Stream, StreamExt};
use herald_core::fields::check_known_fields;
use serde_json::Value;

pub const MAX_BODY_BYTES: usize = 1 << 20;

pub async fn read_json(req: &HttpRequest, payload: web::Payload) -> Result<Value, ApiError> {
    check_content_type(req)?;
    let body = read_limited(req, payload).await?;
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "the body is empty; expected JSON".into(),
        ));
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
}

/// The body's bytes, at most [`MAX_BODY_BYTES`] (413 beyond, judged by
/// `Content-Length` before reading and by the bytes while reading chunked bodies).
pub async fn read_limited<S, E>(req: &HttpRequest, mut payload: S) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let too_large =
        || ApiError::TooLarge(format!("the body exceeds {MAX_BODY_BYTES} bytes (1 MiB)"));
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(MAX_BODY_BYTES));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A body must be JSON: no `Content-Type` (curl without `-H`, many scripts) or
/// `application/json` or any `+json` type is read; anything else (`text/plain`, a
/// form) is a 415, so a client that sends the wrong thing learns it at once.
fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(raw) = req.headers().get("content-type") else {
        return Ok(());
    };
    let essence = raw
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if is_json_media_type(&essence) {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType(format!(
        "the body must be JSON: send Content-Type: application/json (got {:?})",
        essence.chars().take(100).collect::<String>()
    )))
}

fn is_json_media_type(essence: &str) -> bool {
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// Parses a JSON value into `T`, turning serde's message (which names the field) into
/// a 422. A field `T` does not have is refused the way every body refuses it
/// (`unknown field "leve"; did you mean "level"?`), with `T`'s field names read off
/// its `Deserialize` implementation.
pub fn parse_body<T: for<'de> serde::Deserialize<'de>>(body: Value) -> Result<T, ApiError> {
    if let Value::Object(obj) = &body {
        let known = serde_aux::serde_introspection::serde_introspect::<T>();
        check_known_fields(obj, known).map_err(|e| ApiError::invalid_fields(&[e]))?;
    }
    // Postgres stores no NUL character: refuse it here, naming where, rather than
    // let the insert fail with a 500.
    if let Some(at) = herald_core::event::nul_path(&body) {
        let field = at.trim_start_matches('.');
        let field = if field.is_empty() { "body" } else { field };
        return Err(ApiError::invalid_field(
            field,
            herald_core::event::nul_message(""),
        ));
    }
    serde_json::from_value(body).map_err(|e| ApiError::Invalid {
        message: e.to_string(),
        details: vec![crate::error::Detail {
            field: "body".into(),
            message: e.to_string(),
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types_and_only_those_are_read() {
        for (essence, json) in [
            ("application/json", true),
            ("application/cloudevents+json", true),
            ("application/x-www-form-urlencoded", false),
            ("text/plain", false),
            ("text/json", false),
            ("application/jsonp", false),
            ("", false),
        ] {
            assert_eq!(is_json_media_type(essence), json, "{essence}");
        }
    }
}
