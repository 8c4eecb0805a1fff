//! Redis for tests: `HERALD_TEST_REDIS_URL` (default the local one that `make test`
//! starts), a key prefix of each test's own, and a guard that deletes the prefix when
//! the test ends. Tests need Redis: one that cannot reach it fails rather than
//! passing without checking.
//!
//! Every test prefix starts `herald_test_`; when `HERALD_TEST_RUN` is set (`make
//! test` sets a fresh value per run), it starts `herald_test_<run>_`, so the end of
//! the run can check that its own tests left nothing behind, whatever other
//! checkouts' tests are doing on the same Redis at the time.

use crate::connection::Redis;
use crate::error::QueueError;
use crate::job::{Lane, Partitions, QueueName};
use crate::queue::{Queue, Received};
use std::ops::Deref;
use std::time::Duration;

/// A lane of partition 0, for a test's job that nothing re-enqueues by its person.
pub fn lane(queue: QueueName) -> Lane {
    Lane::new(Partitions::default().all()[0], queue)
}

/// Where the api and the sweep put the route job of an event addressed to no person
/// and no topic (the tests' bare events): its own id names the partition.
pub fn route_lane(event_id: uuid::Uuid, queue: QueueName) -> Lane {
    let partition = Partitions::default().of_event(None, None, event_id);
    Lane::new(partition, queue)
}

/// Reads every partition once, in order, each blocking up to `block` when empty (a
/// worker reads each with a `Reader` of its own, concurrently).
pub async fn read_all(
    queue: &Queue,
    consumer: &str,
    queues: &[QueueName],
    count: usize,
    block: Duration,
) -> Result<Vec<Received>, QueueError> {
    let mut out = Vec::new();
    for partition in queue.partitions().all() {
        let mut reader = queue.reader(partition);
        out.extend(reader.read(consumer, queues, count, block).await?);
    }
    Ok(out)
}

/// The test Redis's URL.
pub fn redis_url() -> String {
    std::env::var("HERALD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A fresh key prefix: `herald_test_[<HERALD_TEST_RUN>_]<uuid>:`.
pub fn prefix() -> String {
    let id = uuid::Uuid::new_v4().simple();
    match std::env::var("HERALD_TEST_RUN") {
        Ok(run) if !run.is_empty() => format!("herald_test_{run}_{id}:"),
        _ => format!("herald_test_{id}:"),
    }
}

/// Deletes every key under `prefix`, from a thread and runtime of its own: it is
/// called from `Drop`, where the test's runtime (which drives the test's own
/// connections) is the one busy dropping, so it could not answer.
pub fn purge(prefix: &str) {
    let prefix = prefix.to_string();
    let purged = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let redis = Redis::connect(&redis_url(), &prefix, crate::Partitions::default())
                .map_err(|e| e.to_string())?;
            Queue::new(redis).purge().await.map_err(|e| e.to_string())
        })
        .map_err(|e| format!("{prefix}: {e}"))
    })
    .join();
    match purged {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("could not delete the test's Redis keys: {e}"),
        Err(_) => eprintln!("could not delete the test's Redis keys: the purge panicked"),
    }
}

/// A handle on the test Redis under a fresh [`prefix`]; deletes the prefix's keys when
/// dropped. Derefs to the [`Redis`] handle.
pub struct TestRedis {
    redis: Redis,
    prefix: String,
}

impl TestRedis {
    pub fn connect() -> TestRedis {
        let prefix = prefix();
        let redis = Redis::connect(&redis_url(), &prefix, crate::Partitions::default())
            .expect("the test Redis URL is valid");
        TestRedis { redis, prefix }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl Deref for TestRedis {
    type Target = Redis;
    fn deref(&self) -> &Redis {
        &self.redis
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        purge(&self.prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_fresh_and_names_the_run_when_there_is_one() {
        let (a, b) = (prefix(), prefix());
        assert_ne!(a, b);
        assert!(a.starts_with("herald_test_") && a.ends_with(':'), "{a}");
        if let Ok(run) = std::env::var("HERALD_TEST_RUN") {
            if !run.is_empty() {
                assert!(a.starts_with(&format!("herald_test_{run}_")), "{a}");
            }
        }
    }
}
