//! Bearer-key authentication (contract §3). Keys are compared in constant time and never
//! logged. Health, metrics, the OpenAPI document and the console's static files are
//! open; the SSE stream also accepts `?access_token=` because browsers' EventSource
//! cannot send headers. With `HERALD_RATE_LIMIT_PER_S` set, each key's requests are
//! counted here too (see [`crate::rate_limit`]).

use crate::error::ApiError;
use crate::rate_limit::Verdict;
use crate::state::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error};
use subtle::ConstantTimeEq;

fn is_open(path: &str) -> bool {
    path.starts_with("/healthz/")
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

/// Whether `key` matches one of `keys`, without an early exit that would leak which
/// byte differed.
pub fn key_matches(keys: &[String], key: &str) -> bool {
    keys.iter().fold(false, |found, k| {
        found | bool::from(k.as_bytes().ct_eq(key.as_bytes()))
    })
}

pub async fn require_key(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let open = is_open(req.path());
    let needs_key = state.as_ref().is_some_and(|s| !s.api_keys.is_empty()) && !open;
    let key = presented_key(&req);
    if needs_key {
        let ok = match (&state, &key) {
            (Some(s), Some(k)) => key_matches(&s.api_keys, k),
            _ => false,
        };
        if !ok {
            return Err(ApiError::Unauthorized.into());
        }
    }
    // The rate limit counts per key; without keys configured, all callers share one.
    if let Some(limiter) = state.as_ref().and_then(|s| s.rate_limiter.as_ref()) {
        if !open {
            let bucket = if needs_key { key.as_deref() } else { None };
            if let Verdict::Deny { retry_after_s } = limiter.check(bucket.unwrap_or("")).await {
                return Err(ApiError::RateLimited {
                    per_second: limiter.per_second(),
                    retry_after_s,
                }
                .into());
            }
        }
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_configured_key_matches() {
        let keys = vec!["k1".to_string(), "secret-2".to_string()];
        assert!(key_matches(&keys, "secret-2"));
        assert!(!key_matches(&keys, "secret-3"));
        assert!(!key_matches(&keys, ""));
        assert!(!key_matches(&[], "k1"));
    }
}
