//! Requests with a missing or wrong API key, limited per client address: after
//! [`MAX_FAILURES`] in a minute, every request from that address gets `429` with
//! `Retry-After` until the minute ends, valid key or not, so guessing keys stops
//! paying. (Refusing only the failures would still tell a guesser when a guess was
//! right.)
//!
//! Failures are counted in Redis, so the limit holds across api processes; each
//! process also remembers the addresses it saw go over, so a blocked address costs no
//! Redis call. Without Redis the limit fails open: the requests still get their 401.
//!
//! The first failure of an address in a minute is logged (address and path, never
//! the key); the rest of that minute's are counted only.

use herald_queue::Counters;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Failures allowed per address and minute; the next one is refused with 429.
pub const MAX_FAILURES: u64 = 20;
const WINDOW_S: u64 = 60;
/// How long a count may take before the failure is let go uncounted.
const REDIS_BUDGET: Duration = Duration::from_millis(250);
/// Addresses remembered as blocked, at most; beyond it, expired ones are dropped and,
/// if still full, the address is simply not remembered (Redis still counts it).
const MAX_REMEMBERED: usize = 100_000;

pub struct FailedKeys {
    counters: Counters,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

/// What to answer a request from an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Clear,
    /// Over the limit: 429 for this many more seconds.
    Blocked {
        retry_after_s: u64,
    },
}

impl FailedKeys {
    pub fn new(counters: Counters) -> FailedKeys {
        FailedKeys {
            counters,
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `addr` is blocked; asks no one but this process's memory.
    pub fn standing(&self, addr: IpAddr) -> Standing {
        let now = Instant::now();
        let Ok(blocked) = self.blocked.lock() else {
            return Standing::Clear;
        };
        match blocked.get(&addr) {
            Some(until) if *until > now => Standing::Blocked {
                retry_after_s: (*until - now).as_secs().max(1),
            },
            _ => Standing::Clear,
        }
    }

    /// Counts one failure of `addr`, logs the first of its window, and says whether
    /// the address is now over the limit.
    pub async fn record(&self, addr: IpAddr, path: &str) -> Standing {
        let now_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let window = now_s / WINDOW_S;
        let name = format!("authfail:{addr}:{window}");
        let ttl = Duration::from_secs(2 * WINDOW_S);
        let count =
            match tokio::time::timeout(REDIS_BUDGET, self.counters.count_hit(&name, ttl)).await {
                Ok(Ok(n)) => n,
                _ => return Standing::Clear,
            };
        if count == 1 {
            tracing::warn!(client = %addr, path, "request without a valid API key (further ones from this address this minute are counted, not logged)");
        }
        if count <= MAX_FAILURES {
            return Standing::Clear;
        }
        let retry_after_s = WINDOW_S - now_s % WINDOW_S;
        if count == MAX_FAILURES + 1 {
            tracing::warn!(client = %addr, "too many requests without a valid API key: refusing this address until the minute ends");
        }
        self.remember(addr, Duration::from_secs(retry_after_s));
        Standing::Blocked {
            retry_after_s: retry_after_s.max(1),
        }
    }

    fn remember(&self, addr: IpAddr, for_how_long: Duration) {
        let Ok(mut blocked) = self.blocked.lock() else {
            return;
        };
        let now = Instant::now();
        if blocked.len() >= MAX_REMEMBERED {
            blocked.retain(|_, until| *until > now);
        }
        if blocked.len() < MAX_REMEMBERED {
            blocked.insert(addr, now + for_how_long);
        }
    }
}
