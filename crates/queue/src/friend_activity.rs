//! Per-person daily friend counters for the bundling ranker (contract §8): how many tours
//! each friend told a person on one (local) calendar day. The ranker's forecast of a
//! person's further tours counts a friend's repeats for less than new friends
//! (`herald_core::bundle::ranker::FriendModel`), so it needs these counts at every tour
//! and at every flush.
//!
//! One hash per person, day and notification type,
//! `{prefix}friends:{notification_type}:{day}:{user_id}`, field = friend id, value =
//! tours. A tour is counted with HINCRBY, PEXPIRE and HVALS in one MULTI, so the counts
//! read back include it. The hash expires two days after its last tour: the counters
//! only matter on their own day.
//!
//! Redis is not the record here: after a Redis loss the counts restart from zero,
//! and the ranker then sees fewer repeats than there were (it errs towards waiting
//! less). A job retried after its count was taken counts the tour twice; the same.

use crate::connection::Redis;
use crate::error::QueueError;
use std::time::Duration;

/// How long a day's counters outlive their last tour.
pub const FRIEND_COUNTS_TTL: Duration = Duration::from_secs(2 * 86_400);

/// The friend counters of every person; cheap to clone.
#[derive(Clone)]
pub struct FriendCounts {
    redis: Redis,
}

impl FriendCounts {
    pub fn new(redis: Redis) -> FriendCounts {
        FriendCounts { redis }
    }

    /// Counts one tour of `friend_id` told to `user_id` on `day` and returns the tours
    /// each friend told them that day, this one included (in no particular order).
    pub async fn count_tour(
        &self,
        notification_type: &str,
        day: i64,
        user_id: &str,
        friend_id: &str,
    ) -> Result<Vec<u32>, QueueError> {
        let key = self
            .redis
            .keys()
            .friend_counts(notification_type, day, user_id);
        let mut c = self.redis.conn().await?;
        let (_, _, values): (i64, i64, Vec<String>) = redis::pipe()
            .atomic()
            .cmd("HINCRBY")
            .arg(&key)
            .arg(friend_id)
            .arg(1)
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(FRIEND_COUNTS_TTL.as_millis() as u64)
            .cmd("HVALS")
            .arg(&key)
            .query_async(&mut c)
            .await?;
        Ok(parse_counts(&values))
    }

    /// The tours each friend told `user_id` on `day` (empty when none, or expired).
    pub async fn tours(
        &self,
        notification_type: &str,
        day: i64,
        user_id: &str,
    ) -> Result<Vec<u32>, QueueError> {
        let key = self
            .redis
            .keys()
            .friend_counts(notification_type, day, user_id);
        let mut c = self.redis.conn().await?;
        let values: Vec<String> = redis::cmd("HVALS").arg(&key).query_async(&mut c).await?;
        Ok(parse_counts(&values))
    }
}

/// Positive counts; anything else in the hash (written by hand, say) is skipped.
fn parse_counts(values: &[String]) -> Vec<u32> {
    values
        .iter()
        .filter_map(|v| v.parse::<u32>().ok())
        .filter(|&k| k > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_that_are_not_positive_numbers_are_skipped() {
        let v: Vec<String> = ["3", "x", "0", "-2", "1", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(parse_counts(&v), vec![3, 1]);
    }

    /// Needs the Redis of `make test`.
    #[tokio::test]
    async fn counts_per_friend_and_day_include_the_tour_just_counted() {
        let handle = crate::testing::TestRedis::connect();
        let queue = crate::queue::Queue::new(handle.clone());
        queue.ping().await.expect("redis answers");
        let q = FriendCounts::new(handle.clone());
        let mut got = q
            .count_tour("FRIEND_TOUR", 17_000, "u1", "f1")
            .await
            .expect("count");
        assert_eq!(got, vec![1]);
        q.count_tour("FRIEND_TOUR", 17_000, "u1", "f2")
            .await
            .expect("count");
        got = q
            .count_tour("FRIEND_TOUR", 17_000, "u1", "f1")
            .await
            .expect("count");
        got.sort_unstable();
        assert_eq!(got, vec![1, 2]);
        // Other days, people and notification types have their own counters.
        assert!(q
            .tours("FRIEND_TOUR", 17_001, "u1")
            .await
            .expect("read")
            .is_empty());
        assert!(q
            .tours("OTHER", 17_000, "u1")
            .await
            .expect("read")
            .is_empty());
        assert!(q
            .tours("FRIEND_TOUR", 17_000, "u2")
            .await
            .expect("read")
            .is_empty());
        let mut again = q.tours("FRIEND_TOUR", 17_000, "u1").await.expect("read");
        again.sort_unstable();
        assert_eq!(again, vec![1, 2]);
        let mut c = handle.conn();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(handle.keys().friend_counts("FRIEND_TOUR", 17_000, "u1"))
            .query_async(&mut c)
            .await
            .expect("pttl");
        assert!(ttl > 0 && ttl <= FRIEND_COUNTS_TTL.as_millis() as i64);
        queue.purge().await.ok();
    }
}
