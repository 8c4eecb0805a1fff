//! Authentication (contract §3): bearer keys with scopes, a limit on requests without
//! a valid key, and signed receipts.
//!
//! * A request needs a key of `HERALD_API_KEYS` whose scope allows it
//!   ([`herald_core::access`]): 401 without one, 403 naming the scope needed when the
//!   key's scope does not cover it. Keys are compared in constant time and never
//!   logged.
//! * Too many requests without a valid key from one client address get 429
//!   ([`crate::failed_keys`]).
//! * A provider may sign its receipts (Standard Webhooks, `HERALD_RECEIPTS_SECRET`)
//!   instead of holding a key: `POST /webhooks/receipts` with a valid signature of its
//!   exact body passes without one.
//! * Open routes (health, metrics, the OpenAPI document, the console's files, `/`) need
//!   nothing; the live stream also takes `?access_token=` because browsers' EventSource
//!   cannot send headers.
//! * With `HERALD_RATE_LIMIT_PER_S` set, each key's requests are counted too (see
//!   [`crate::rate_limit`]).
//! * A request with a valid key carries a [`CallerKey`] for the handlers that limit
//!   something per key (the live streams, [`crate::stream_slots`]).

use crate::body::read_limited;
use crate::caller::CallerKey;
use crate::error::ApiError;
use crate::failed_keys::Standing;
use crate::rate_limit::Verdict;
use crate::state::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage};
use herald_core::access::{required_scope, Scope};
use herald_core::signing::{self, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use std::net::{IpAddr, Ipv4Addr};

/// The route providers post receipts to, which a signature may authenticate.
const RECEIPTS_PATH: &str = "/webhooks/receipts";

fn is_open(path: &str) -> bool {
    path == "/"
        || path.starts_with("/healthz/")
        || path == "/metrics"
        || path == "/openapi.json"
        || path == "/ui"
        || path.starts_with("/ui/")
}

fn presented_key(req: &ServiceRequest) -> Option<String> {
    if let Some(h) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        return h.strip_prefix("Bearer ").map(|k| k.trim().to_string());
    }
    if req.path().ends_with("/stream") {
        return web::Query::<std::collections::HashMap<String, String>>::from_query(
            req.query_string(),
        )
        .ok()
        .and_then(|q| q.get("access_token").cloned());
    }
    None
}

/// The client's address: the peer's, or with `HERALD_CLIENT_IP_HEADER` set (behind a
/// proxy), the last address of that header, which the nearest proxy wrote.
fn client_addr(req: &ServiceRequest, state: &AppState) -> IpAddr {
    let from_header = state.client_ip_header.as_deref().and_then(|name| {
        let value = req.headers().get(name)?.to_str().ok()?;
        value.rsplit(',').next()?.trim().parse().ok()
    });
    from_header
        .or_else(|| req.peer_addr().map(|a| a.ip()))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

pub async fn require_key(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(req).await;
    };
    if is_open(req.path()) {
        return next.call(req).await;
    }
    if state.api_keys.is_empty() {
        // Without keys (development), all callers share one rate-limit bucket.
        rate_limit(&state, "").await?;
        return next.call(req).await;
    }
    let client = client_addr(&req, &state);
    if let Standing::Blocked { retry_after_s } = state.failed_keys.standing(client) {
        return Err(ApiError::TooManyFailedKeys { retry_after_s }.into());
    }
    let key = presented_key(&req);
    match key.as_deref().and_then(|k| state.api_keys.scope_of(k)) {
        Some(scope) => {
            check_scope(scope, &req)?;
            let key = key.as_deref().unwrap_or("");
            rate_limit(&state, key).await?;
            req.extensions_mut().insert(CallerKey::of(key));
            next.call(req).await
        }
        None if key.is_none() && is_signed_receipt(&req, &state) => {
            let req = verify_signed_receipt(req, &state, client).await?;
            next.call(req).await
        }
        None => Err(refuse(&state, client, req.path()).await.into()),
    }
}

/// A 403 when the key's scope does not cover the request.
fn check_scope(scope: Scope, req: &ServiceRequest) -> Result<(), ApiError> {
    let needed = required_scope(req.method().as_str(), req.path());
    if scope.allows(needed) {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "this key's scope \"{}\" does not allow {} {}: it needs a \"{}\" or \"admin\" key",
        scope.as_str(),
        req.method(),
        req.path(),
        needed.as_str()
    )))
}

/// The answer to a request without a valid key: counted against its address, 401, or
/// 429 once the address is over the limit.
async fn refuse(state: &AppState, client: IpAddr, path: &str) -> ApiError {
    match state.failed_keys.record(client, path).await {
        Standing::Blocked { retry_after_s } => ApiError::TooManyFailedKeys { retry_after_s },
        Standing::Clear => ApiError::Unauthorized,
    }
}

async fn rate_limit(state: &AppState, key: &str) -> Result<(), ApiError> {
    let Some(limiter) = state.rate_limiter.as_ref() else {
        return Ok(());
    };
    match limiter.check(key).await {
        Verdict::Deny { retry_after_s } => Err(ApiError::RateLimited {
            per_second: limiter.per_second(),
            retry_after_s,
        }),
        Verdict::Allow => Ok(()),
    }
}

fn is_signed_receipt(req: &ServiceRequest, state: &AppState) -> bool {
    state.receipts_secret.is_some()
        && req.method() == actix_web::http::Method::POST
        && req.path() == RECEIPTS_PATH
        && req.headers().contains_key(HEADER_SIGNATURE)
}

/// Reads the body, checks its signature, and puts the body back for the handler. A
/// bad signature counts as a failed key.
async fn verify_signed_receipt(
    mut req: ServiceRequest,
    state: &AppState,
    client: IpAddr,
) -> Result<ServiceRequest, ApiError> {
    let Some(secret) = state.receipts_secret.as_ref() else {
        return Err(ApiError::Unauthorized);
    };
    let payload = std::mem::replace(req.parts_mut().1, Payload::None);
    let body = read_limited(req.request(), payload).await?;
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let now_s = chrono::Utc::now().timestamp();
    let verdict = signing::verify_request(
        secret,
        header(HEADER_ID),
        header(HEADER_TIMESTAMP),
        header(HEADER_SIGNATURE),
        &body,
        now_s,
    );
    if let Err(e) = verdict {
        tracing::debug!(client = %client, error = %e, "receipts with a bad signature");
        return Err(match refuse(state, client, RECEIPTS_PATH).await {
            ApiError::Unauthorized => ApiError::BadSignature(e.to_string()),
            other => other,
        });
    }
    req.set_payload(Payload::from(body));
    Ok(req)
}
