//! A channel's `rate_limit_per_s`, shared by every worker: one token bucket per
//! channel in Redis, refilled at the rate and holding at most one second's worth.
//! A Lua script takes a token atomically, with Redis's own clock, so workers on
//! machines whose clocks differ still share one rate. A caller that gets no token is
//! told how long until the next one and puts the delivery back until then, without
//! spending an attempt.

use crate::connection::Redis;
use crate::error::QueueError;
use redis::Script;
use std::time::Duration;

/// Takes a token from KEYS[1] at ARGV[1] tokens per second; returns 0 when taken,
/// else the milliseconds until one is due.
const TAKE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or rate
local ts = tonumber(b[2]) or now
tokens = math.min(rate, tokens + math.max(0, now - ts) * rate / 1000)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], 60000)
return wait
"#;

/// The shared per-channel token buckets; cheap to clone.
#[derive(Clone)]
pub struct RateLimits {
    redis: Redis,
}

impl RateLimits {
    pub fn new(redis: Redis) -> RateLimits {
        RateLimits { redis }
    }

    /// Takes one of `channel`'s tokens at `per_second`: `None` when taken, else how
    /// long until the next token.
    pub async fn take(
        &self,
        channel: &str,
        per_second: u32,
    ) -> Result<Option<Duration>, QueueError> {
        let mut c = self.redis.conn().await?;
        let wait_ms: i64 = Script::new(TAKE)
            .key(self.redis.keys().rate(channel))
            .arg(per_second.max(1))
            .invoke_async(&mut c)
            .await?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms as u64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs the Redis of `make test`.
    #[tokio::test]
    async fn a_bucket_gives_one_seconds_worth_then_says_how_long_to_wait() {
        let redis = crate::testing::TestRedis::connect();
        let limits = RateLimits::new((*redis).clone());
        for i in 0..5 {
            assert_eq!(
                limits.take("sms", 5).await.expect("redis"),
                None,
                "token {i}"
            );
        }
        let wait = limits
            .take("sms", 5)
            .await
            .expect("redis")
            .expect("over the rate");
        // The next token is due within 1/5 s.
        assert!(wait <= Duration::from_millis(200), "{wait:?}");
        // Another channel has its own bucket.
        assert_eq!(limits.take("email", 5).await.expect("redis"), None);
        tokio::time::sleep(wait + Duration::from_millis(20)).await;
        assert_eq!(limits.take("sms", 5).await.expect("redis"), None);
    }
}
