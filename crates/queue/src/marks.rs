//! The recovery sweep's marks: the sweep marks what it re-enqueues, so that a lost job
//! is enqueued again once, not on every pass while its copy waits in a backlog. Marks
//! expire, and vanish with Redis's data exactly like the jobs they stand for.

use crate::connection::Redis;
use crate::error::QueueError;
use std::time::Duration;

/// Expiring marks under `{prefix}mark:`; cheap to clone.
#[derive(Clone)]
pub struct Marks {
    redis: Redis,
}

impl Marks {
    pub fn new(redis: Redis) -> Marks {
        Marks { redis }
    }

    /// Marks each of `names` for `ttl` unless it is marked already; returns, in order,
    /// whether each mark is new.
    pub async fn mark_new(&self, names: &[String], ttl: Duration) -> Result<Vec<bool>, QueueError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for name in names {
            pipe.cmd("SET")
                .arg(self.redis.keys().mark(name))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis() as u64);
        }
        let mut c = self.redis.conn();
        let set: Vec<Option<String>> = pipe.query_async(&mut c).await?;
        Ok(set.into_iter().map(|s| s.is_some()).collect())
    }

    /// Removes marks set by [`Marks::mark_new`] (when the enqueue they announced failed).
    pub async fn unmark(&self, names: &[String]) -> Result<(), QueueError> {
        if names.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = names.iter().map(|n| self.redis.keys().mark(n)).collect();
        let mut c = self.redis.conn();
        redis::cmd("DEL")
            .arg(keys)
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs the Redis of `make test`.
    #[tokio::test]
    async fn only_the_first_mark_is_new_until_it_is_removed() {
        let handle = crate::testing::TestRedis::connect(1);
        let marks = Marks::new(handle.clone());
        let ttl = Duration::from_secs(10);
        let (a, b) = ("a".to_string(), "b".to_string());
        let first = marks
            .mark_new(std::slice::from_ref(&a), ttl)
            .await
            .expect("redis answers");
        assert_eq!(first, vec![true]);
        let both = marks.mark_new(&[a.clone(), b.clone()], ttl).await;
        assert_eq!(both.expect("redis"), vec![false, true]);
        marks.unmark(std::slice::from_ref(&a)).await.expect("redis");
        let again = marks.mark_new(&[a, b], ttl).await;
        assert_eq!(again.expect("redis"), vec![true, false]);
    }
}
