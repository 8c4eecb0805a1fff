//! Expiring hit counters, shared by every process on the same Redis: the api's rate
//! limit per key counts its windows with them. Counting and setting the expiry run in
//! one script, so a counter never misses its expiry between the two commands.

use crate::connection::Redis;
use crate::error::QueueError;
use redis::Script;
use std::time::Duration;

/// Counts a hit on KEYS[1], which expires ARGV[1] ms after the first hit; returns the
/// count.
const COUNT_HIT: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"#;

/// Hit counters under the prefix; cheap to clone.
#[derive(Clone)]
pub struct Counters {
    redis: Redis,
}

impl Counters {
    pub fn new(redis: Redis) -> Counters {
        Counters { redis }
    }

    /// Counts one hit on the counter `name`, which lives `ttl` from its first hit;
    /// returns the count so far.
    pub async fn count_hit(&self, name: &str, ttl: Duration) -> Result<u64, QueueError> {
        let mut c = self.redis.conn().await?;
        let n: u64 = Script::new(COUNT_HIT)
            .key(self.redis.keys().counter(name))
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut c)
            .await?;
        Ok(n)
    }
}
