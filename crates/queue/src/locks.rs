//! Short locks: `SET NX PX` with a random token per holder, so that two workers do
//! not deliver the same notification (or run the same periodic task) at once. A lock
//! expires by itself, so a holder that dies blocks the others for its `ttl` at most;
//! unlocking checks the token, so a holder whose lock expired cannot free another's.

use crate::connection::Redis;
use crate::error::QueueError;
use redis::Script;
use std::time::Duration;

/// Deletes a lock only if it still holds our token.
const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Named locks under `{prefix}lock:`; cheap to clone.
#[derive(Clone)]
pub struct Locks {
    redis: Redis,
}

impl Locks {
    pub fn new(redis: Redis) -> Locks {
        Locks { redis }
    }

    /// Takes the lock `name` for `ttl` if free; `token` identifies the holder.
    pub async fn try_lock(
        &self,
        name: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, QueueError> {
        let mut c = self.redis.conn().await?;
        let set: Option<String> = redis::cmd("SET")
            .arg(self.redis.keys().lock(name))
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut c)
            .await?;
        Ok(set.is_some())
    }

    /// Frees the lock `name` if `token` still holds it.
    pub async fn unlock(&self, name: &str, token: &str) -> Result<(), QueueError> {
        let mut c = self.redis.conn().await?;
        Script::new(UNLOCK)
            .key(self.redis.keys().lock(name))
            .arg(token)
            .invoke_async::<i64>(&mut c)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs the Redis of `make test`.
    #[tokio::test]
    async fn a_lock_is_held_until_its_holder_frees_it() {
        let handle = crate::testing::TestRedis::connect();
        let locks = Locks::new(handle.clone());
        let ttl = Duration::from_secs(10);
        let first = locks
            .try_lock("job", "a", ttl)
            .await
            .expect("redis answers");
        assert!(first, "a free lock is taken");
        assert!(!locks.try_lock("job", "b", ttl).await.expect("redis"));
        locks.unlock("job", "b").await.expect("redis");
        assert!(
            !locks.try_lock("job", "b", ttl).await.expect("redis"),
            "another token does not free it"
        );
        locks.unlock("job", "a").await.expect("redis");
        assert!(locks.try_lock("job", "b", ttl).await.expect("redis"));
    }
}
