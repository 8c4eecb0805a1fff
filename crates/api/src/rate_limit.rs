//! An optional rate limit per API key (issue 6): at most `HERALD_RATE_LIMIT_PER_S`
//! requests per second per key, counted in Redis so the limit holds across every api
//! process behind a load balancer. Off by default.
//!
//! A fixed one-second window: the key `{prefix}rate:{key id}:{second}` is incremented
//! and expires two seconds later, in one script, so a window's count is exact across
//! processes (a burst may straddle a window boundary, as with any fixed window).
//! Over the limit, the request gets `429 Too Many Requests` with `Retry-After` (the
//! seconds until the window ends, at least 1) and a JSON error.
//!
//! The key itself never reaches Redis or a log: it is named by the first 16 hex digits
//! of its SHA-256. When Redis is down or slow (over 250 ms), the limit fails open:
//! ingestion must keep working without Redis (contract §3.1), and a rate limit is not worth
//! refusing committed work for.

use herald_queue::Counters;
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a count may take before the request is let through uncounted.
const REDIS_BUDGET: Duration = Duration::from_millis(250);
const WINDOW_MS: u64 = 1000;

/// What the limiter says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Over the limit: retry after this many seconds.
    Deny {
        retry_after_s: u64,
    },
}

pub struct RateLimiter {
    per_second: u64,
    counters: Counters,
}

impl RateLimiter {
    /// A limiter allowing `per_second` requests per key and second; None when 0 (off).
    pub fn new(per_second: u32, counters: Counters) -> Option<RateLimiter> {
        (per_second > 0).then(|| RateLimiter {
            per_second: u64::from(per_second),
            counters,
        })
    }

    pub fn per_second(&self) -> u64 {
        self.per_second
    }

    /// Counts one request of `api_key` and says whether it may proceed.
    pub async fn check(&self, api_key: &str) -> Verdict {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let window = now_ms / WINDOW_MS;
        let name = format!("rate:{}:{window}", key_id(api_key));
        let ttl = Duration::from_millis(2 * WINDOW_MS);
        match tokio::time::timeout(REDIS_BUDGET, self.counters.count_hit(&name, ttl)).await {
            Ok(Ok(n)) if n > self.per_second => Verdict::Deny {
                retry_after_s: retry_after_s(now_ms),
            },
            Ok(Ok(_)) => Verdict::Allow,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "rate limit not counted: redis unavailable; letting the request through");
                Verdict::Allow
            }
            Err(_) => {
                tracing::debug!(
                    "rate limit not counted: redis too slow; letting the request through"
                );
                Verdict::Allow
            }
        }
    }
}

/// A stable, non-secret name for an API key: 16 hex digits of its SHA-256.
pub fn key_id(api_key: &str) -> String {
    let digest = Sha256::digest(api_key.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whole seconds until the current window ends, at least 1 (`Retry-After` counts in
/// whole seconds).
fn retry_after_s(now_ms: u64) -> u64 {
    let left_ms = WINDOW_MS - now_ms % WINDOW_MS;
    left_ms.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_named_by_a_hash_never_by_themselves() {
        let id = key_id("super-secret-key");
        assert_eq!(id.len(), 16);
        assert!(!id.contains("secret"));
        assert_eq!(id, key_id("super-secret-key"));
        assert_ne!(id, key_id("another-key"));
    }

    #[test]
    fn retry_after_is_the_rest_of_the_window_rounded_up() {
        assert_eq!(retry_after_s(5_000), 1);
        assert_eq!(retry_after_s(5_999), 1);
        assert_eq!(retry_after_s(5_001), 1);
    }
}
