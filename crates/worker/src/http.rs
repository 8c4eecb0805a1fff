//! Outbound HTTP. Two clients are built once and reused for every delivery
//! (connection pooling is most of the speed of a webhook sender):
//!
//! * `trusted` posts to channel URLs from config, which are the operator's.
//! * `guarded` posts to people's own `webhook_url`s. Literal addresses are vetted
//!   before the POST; its DNS resolver vets every address a name resolves to. Both go
//!   through `herald_core::targets::AllowedTargets::vet`, the one address policy
//!   (globally reachable per the IANA special-purpose registries, or allowed by
//!   `HERALD_ALLOWED_TARGETS`), and the connection uses exactly the addresses the
//!   resolver vetted, so a DNS answer cannot change between check and connect.
//!
//! For tests, the resolver can answer some names from a fixed list instead of DNS
//! (`Settings::resolve_overrides`); those answers are vetted like any other.
//!
//! Neither follows redirects (a redirect could lead anywhere), and only the first
//! kilobyte of a response body is read, for the error text.

use herald_core::delivery::{HttpTry, Target};
use herald_core::signing::{sign_all, WebhookSecret};
use herald_core::targets::{check_webhook_url, AllowedTargets};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// How much of a failed response's body is kept as its error text.
const ERROR_BODY_LIMIT: usize = 1024;
/// The marker in a refused resolution's error, so the try counts as permanent.
const FORBIDDEN: &str = "forbidden webhook target";

/// The result of one POST.
#[derive(Debug, Clone, Default)]
pub struct HttpResult {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub retry_after: Option<Duration>,
    /// The target is refused: retrying cannot help.
    pub forbidden: bool,
}

impl From<HttpResult> for HttpTry {
    fn from(r: HttpResult) -> HttpTry {
        HttpTry {
            status: r.status,
            retry_after: r.retry_after,
            forbidden: r.forbidden,
            error: r.error,
        }
    }
}

pub struct Clients {
    trusted: reqwest::Client,
    guarded: reqwest::Client,
    allowed: AllowedTargets,
}

impl Clients {
    /// `resolve_overrides` answers the listed host names instead of DNS (a testing
    /// hook; empty in production).
    pub fn new(
        allowed: AllowedTargets,
        resolve_overrides: Vec<(String, IpAddr)>,
    ) -> anyhow::Result<Clients> {
        let builder = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("Herald/", env!("CARGO_PKG_VERSION")))
                .pool_max_idle_per_host(256)
                .tcp_nodelay(true)
                .no_proxy()
        };
        Ok(Clients {
            trusted: builder().build()?,
            guarded: builder()
                .dns_resolver(VettingResolver {
                    allowed: Arc::new(allowed.clone()),
                    overrides: Arc::new(resolve_overrides),
                })
                .build()?,
            allowed,
        })
    }

    /// Sends one request with Standard Webhooks headers (signed with every secret
    /// given, space-separated). An error about a person's webhook never carries its
    /// URL, which is often a capability.
    pub async fn send(&self, target: &Target, request: Request<'_>) -> HttpResult {
        let (client, url) = match target {
            Target::Channel(url) => (&self.trusted, url.as_str()),
            Target::Personal(url) => {
                if let Err(e) = check_webhook_url(url, &self.allowed) {
                    return HttpResult {
                        error: Some(format!("{FORBIDDEN}: {e}")),
                        forbidden: true,
                        ..Default::default()
                    };
                }
                (&self.guarded, url.as_str())
            }
            Target::Mail(_) => {
                return HttpResult {
                    error: Some("an SMTP target is not sent over HTTP".into()),
                    forbidden: true,
                    ..Default::default()
                };
            }
        };
        let method =
            reqwest::Method::from_bytes(request.method.as_bytes()).unwrap_or(reqwest::Method::POST);
        let timestamp = chrono::Utc::now().timestamp();
        let mut req = client
            .request(method, url)
            .timeout(request.timeout)
            .header("content-type", request.content_type)
            .header("webhook-id", request.msg_id)
            .header("webhook-timestamp", timestamp.to_string());
        for (name, value) in request.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        if !request.secrets.is_empty() {
            let signature = sign_all(request.secrets, request.msg_id, timestamp, &request.body);
            req = req.header("webhook-signature", signature);
        }
        match req.body(request.body).send().await {
            Ok(resp) => read_response(resp).await,
            Err(e) => {
                let e = match target {
                    Target::Personal(_) => e.without_url(),
                    _ => e,
                };
                let text = error_chain(&e);
                HttpResult {
                    forbidden: text.contains(FORBIDDEN),
                    error: Some(text),
                    ..Default::default()
                }
            }
        }
    }
}

/// One HTTP request of a delivery.
pub struct Request<'a> {
    pub method: &'a str,
    /// The channel's extra headers (a provider's key, ...).
    pub headers: &'a [(String, String)],
    pub content_type: &'a str,
    pub body: Vec<u8>,
    /// The notification id: `webhook-id`, and part of what is signed.
    pub msg_id: &'a str,
    /// Sign with each (none: unsigned).
    pub secrets: &'a [WebhookSecret],
    pub timeout: Duration,
}

async fn read_response(mut resp: reqwest::Response) -> HttpResult {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| herald_core::retry::retry_after_delay(v, chrono::Utc::now()));
    let error = if status.is_success() {
        None
    } else {
        let mut body = Vec::new();
        while body.len() < ERROR_BODY_LIMIT {
            match resp.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        body.truncate(ERROR_BODY_LIMIT);
        Some(format!(
            "HTTP {}: {}",
            status.as_u16(),
            String::from_utf8_lossy(&body)
        ))
    };
    HttpResult {
        status: Some(status.as_u16()),
        error,
        retry_after,
        forbidden: false,
    }
}

/// reqwest's top-level message hides the cause ("error sending request"); the chain
/// says what happened (refused, timed out, forbidden).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Resolves names and refuses any that reach an address the policy refuses.
struct VettingResolver {
    allowed: Arc<AllowedTargets>,
    /// Names answered without DNS (testing hook).
    overrides: Arc<Vec<(String, IpAddr)>>,
}

impl Resolve for VettingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = self.allowed.clone();
        let overrides = self.overrides.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs = match overridden(&overrides, &host) {
                Some(addrs) => addrs,
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            for addr in &addrs {
                if let Err(refused) = allowed.vet(addr.ip()) {
                    let msg =
                        format!("{FORBIDDEN}: {host} resolves to a refused address: {refused}");
                    return Err(msg.into());
                }
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The fixed answers for `host`, if the override list names it.
fn overridden(overrides: &[(String, IpAddr)], host: &str) -> Option<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = overrides
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(host))
        .map(|(_, ip)| SocketAddr::new(*ip, 0))
        .collect();
    (!addrs.is_empty()).then_some(addrs)
}
