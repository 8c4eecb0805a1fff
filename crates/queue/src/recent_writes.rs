//! Each person's last write position: after an api process writes something a person
//! reads back (a read mark), it keeps the primary's WAL position here for a while, so
//! that any api process serving the person's next read knows whether a replica has
//! caught up with it (read-your-writes across processes).

use crate::connection::Redis;
use crate::error::QueueError;
use std::time::Duration;

/// `{prefix}wrote:{user_id}` → WAL position, expiring; cheap to clone.
#[derive(Clone)]
pub struct RecentWrites {
    redis: Redis,
}

impl RecentWrites {
    pub fn new(redis: Redis) -> RecentWrites {
        RecentWrites { redis }
    }

    /// Keeps `position` as the person's last write for `ttl`.
    pub async fn remember(
        &self,
        user_id: &str,
        position: &str,
        ttl: Duration,
    ) -> Result<(), QueueError> {
        let mut c = self.redis.conn().await?;
        redis::cmd("SET")
            .arg(self.redis.keys().recent_write(user_id))
            .arg(position)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    /// The person's last write position, if one was kept and has not expired.
    pub async fn last(&self, user_id: &str) -> Result<Option<String>, QueueError> {
        let mut c = self.redis.conn().await?;
        Ok(redis::cmd("GET")
            .arg(self.redis.keys().recent_write(user_id))
            .query_async(&mut c)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestRedis;

    /// Needs the Redis of `make test`.
    #[tokio::test]
    async fn remembers_and_forgets() {
        let t = TestRedis::connect();
        let writes = RecentWrites::new((*t).clone());
        assert_eq!(writes.last("ana").await.unwrap(), None);
        writes
            .remember("ana", "0/16B3748", Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(
            writes.last("ana").await.unwrap().as_deref(),
            Some("0/16B3748")
        );
        assert_eq!(writes.last("bob").await.unwrap(), None);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(writes.last("ana").await.unwrap(), None);
    }
}
