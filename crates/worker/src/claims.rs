//! Keeping a running job's claim. A job stays in the stream's pending list until it is
//! acknowledged, and another worker takes it over once it has been idle for the
//! visibility timeout. A long job (a fan-out page, a slow delivery) would be taken
//! over while it still runs, and done twice; so while a job runs, a task resets its
//! idle time every third of the timeout. Only while this worker still holds the
//! entry: one already taken over is left to its new holder.

use herald_queue::{Lane, Queue};
use std::future::Future;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Resets the claim of one entry until dropped.
pub struct ClaimKeeper(JoinHandle<()>);

impl Drop for ClaimKeeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How often a running job's idle time is reset: a third of the visibility timeout,
/// so two resets can fail in a row before anyone may take the job over.
pub fn interval(visibility_timeout: Duration) -> Duration {
    (visibility_timeout / 3).max(Duration::from_millis(10))
}

/// Starts keeping `consumer`'s claim on `entry_id` every `every`, until the keeper is
/// dropped (the job ended) or the claim is found lost.
pub fn keep(
    queue: Queue,
    lane: Lane,
    consumer: String,
    entry_id: String,
    every: Duration,
) -> ClaimKeeper {
    ClaimKeeper(tokio::spawn(tick(every, move || {
        let (queue, consumer, entry_id) = (queue.clone(), consumer.clone(), entry_id.clone());
        async move {
            match queue.keep_claim(lane, &consumer, &entry_id).await {
                Ok(kept) => kept,
                Err(e) => {
                    // Redis hiccup: try again at the next tick; the timeout leaves room.
                    tracing::debug!(error = %e, entry = %entry_id, "keeping a job's claim failed");
                    true
                }
            }
        }
    })))
}

/// Calls `refresh` every `every` (the first time after one period) until it answers
/// false.
async fn tick<F, Fut>(every: Duration, mut refresh: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !refresh().await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn the_claim_is_reset_every_period_until_the_job_ends() {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let task = tokio::spawn(tick(Duration::from_secs(10), move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                true
            }
        }));
        tokio::time::sleep(Duration::from_millis(9_999)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 0, "not before one period");
        tokio::time::sleep(Duration::from_millis(25_001)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3, "at 10, 20 and 30 s");
        task.abort();
        let _ = task.await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "nothing after the job ended"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_claim_stops_the_keeper() {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let done = tick(Duration::from_secs(1), move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move { n < 1 }
        });
        tokio::time::timeout(Duration::from_secs(10), done)
            .await
            .expect("the keeper stops by itself");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_third_of_the_visibility_timeout() {
        assert_eq!(interval(Duration::from_secs(30)), Duration::from_secs(10));
        assert_eq!(
            interval(Duration::from_millis(3)),
            Duration::from_millis(10)
        );
    }
}
