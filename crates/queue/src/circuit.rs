//! Circuit state per destination host, shared by every worker: a hash
//! `{prefix}circuit:{host}` (consecutive `failures`, `opened_at` in epoch ms) and a set
//! `{prefix}circuit:{host}:ids` of the notifications among those failures. Both expire
//! an hour after the last failure, so an old streak does not linger. Policy decisions
//! live in `herald_core::circuit`.

use crate::connection::Redis;
use crate::error::QueueError;
use crate::locks::Locks;
use herald_core::circuit::{CircuitPolicy, CircuitState};
use redis::Script;
use std::time::Duration;

/// Counts a failure and opens the circuit when the policy says so, atomically.
/// Returns 1 when this failure opened it.
const RECORD_FAILURE: &str = r#"
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('SADD', KEYS[2], ARGV[1])
local distinct = redis.call('SCARD', KEYS[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if failures >= tonumber(ARGV[2]) and distinct >= tonumber(ARGV[3])
   and redis.call('HEXISTS', KEYS[1], 'opened_at') == 0 then
  redis.call('HSET', KEYS[1], 'opened_at', ARGV[4])
  return 1
end
return 0
"#;

/// How long a failure streak is remembered without new failures.
const STREAK_TTL: Duration = Duration::from_secs(3600);

/// The circuits of every destination host; cheap to clone.
#[derive(Clone)]
pub struct Circuits {
    redis: Redis,
    /// The probe of an open circuit is claimed with a lock.
    locks: Locks,
}

impl Circuits {
    pub fn new(redis: Redis) -> Circuits {
        Circuits {
            locks: Locks::new(redis.clone()),
            redis,
        }
    }

    /// `host`'s failure streak, and when its circuit opened (if it did).
    pub async fn state(&self, host: &str) -> Result<CircuitState, QueueError> {
        let (hash, ids) = self.redis.keys().circuit(host);
        let mut c = self.redis.conn().await?;
        let ((failures, opened_at), distinct): ((Option<u32>, Option<i64>), u32) = redis::pipe()
            .cmd("HMGET")
            .arg(&hash)
            .arg("failures")
            .arg("opened_at")
            .cmd("SCARD")
            .arg(&ids)
            .query_async(&mut c)
            .await?;
        Ok(CircuitState {
            failures: failures.unwrap_or(0),
            notifications: distinct,
            opened_at_ms: opened_at,
        })
    }

    /// Records a failed try of `notification_id` to `host`; true when it opened the circuit.
    pub async fn record_failure(
        &self,
        host: &str,
        notification_id: &str,
        policy: &CircuitPolicy,
        now_ms: i64,
    ) -> Result<bool, QueueError> {
        let (hash, ids) = self.redis.keys().circuit(host);
        let mut c = self.redis.conn().await?;
        let opened: i64 = Script::new(RECORD_FAILURE)
            .key(hash)
            .key(ids)
            .arg(notification_id)
            .arg(policy.failures_to_open)
            .arg(policy.min_notifications)
            .arg(now_ms)
            .arg(STREAK_TTL.as_millis() as u64)
            .invoke_async(&mut c)
            .await?;
        Ok(opened == 1)
    }

    /// A success closes the circuit and ends the streak.
    pub async fn record_success(&self, host: &str) -> Result<(), QueueError> {
        let (hash, ids) = self.redis.keys().circuit(host);
        let mut c = self.redis.conn().await?;
        redis::cmd("DEL")
            .arg(&hash)
            .arg(&ids)
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    /// Claims the right to send the probe for the next `every`; true for one caller.
    pub async fn try_probe(&self, host: &str, every: Duration) -> Result<bool, QueueError> {
        self.locks
            .try_lock(&format!("circuit:{host}:probe"), "probe", every)
            .await
    }
}
