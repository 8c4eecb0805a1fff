//! Worker heartbeats: each worker keeps a key `{prefix}worker:{id}` alive with what it
//! serves, so the operations view can list the live workers of any api process. A key
//! that is not renewed expires, and its worker drops off the list.

use crate::connection::Redis;
use crate::error::QueueError;
use std::time::Duration;

/// Heartbeats under `{prefix}worker:`; cheap to clone.
#[derive(Clone)]
pub struct Heartbeats {
    redis: Redis,
}

impl Heartbeats {
    pub fn new(redis: Redis) -> Heartbeats {
        Heartbeats { redis }
    }

    /// Records that a worker is alive, with what it serves, for `ttl`.
    pub async fn beat(&self, worker_id: &str, info: &str, ttl: Duration) -> Result<(), QueueError> {
        let mut c = self.redis.conn().await?;
        redis::cmd("SET")
            .arg(self.redis.keys().heartbeat(worker_id))
            .arg(info)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    /// The live workers' heartbeat payloads.
    pub async fn live_workers(&self) -> Result<Vec<String>, QueueError> {
        let mut c = self.redis.conn().await?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(self.redis.keys().heartbeat_pattern())
            .query_async(&mut c)
            .await?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut c).await?;
        Ok(values.into_iter().flatten().collect())
    }
}
