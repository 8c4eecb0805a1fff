//! At most `max_in_flight` deliveries at once per destination host (contract §6).
//!
//! A delivery that finds its host's slots taken waits for one in process, for at most
//! [`HOST_BUSY_WAIT`]; slots of a host that answers quickly free up within
//! milliseconds. Only when the wait times out, or when the host already has as many
//! deliveries waiting as it may, does the delivery go back to the delayed set (for
//! [`HOST_BUSY_WAIT`], without spending an attempt).
//!
//! How many may wait on a host: half the worker's job slots, or as many as the host
//! freed slots in the last [`HOST_BUSY_WAIT`] if that is more. So a slow host (few
//! slots freed) cannot take every one of the worker's job slots, while a fast one with
//! a backlog is not made to go round the delayed set: its waiters get a slot within
//! the wait. Sending each busy delivery back costs a lock, a reload of its row, a
//! circuit read, the delayed set and a second read of the job; with a fixed half of
//! 512 slots, `make bench`'s drain (one host, 512 jobs read at once) sent back 1.8
//! deliveries for each one delivered (BENCHMARKS.md, "Round two, third part").
//!
//! The limit holds per worker process: each process keeps a semaphore per host it
//! delivers to. With `n` workers a host sees at most `n × max_in_flight` at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How long a delivery waits in process for its host, and then in the delayed set.
pub const HOST_BUSY_WAIT: Duration = Duration::from_millis(250);

/// One host's slots, and how many deliveries wait for them.
struct Host {
    slots: Arc<Semaphore>,
    pace: Arc<Mutex<Pace>>,
}

/// A host's waiters, and the slots it freed in the current and the previous
/// [`HOST_BUSY_WAIT`].
struct Pace {
    waiting: usize,
    window_start: Instant,
    freed_now: usize,
    freed_before: usize,
}

impl Pace {
    fn new(now: Instant) -> Pace {
        Pace {
            waiting: 0,
            window_start: now,
            freed_now: 0,
            freed_before: 0,
        }
    }

    /// Moves the windows on to `now`.
    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= HOST_BUSY_WAIT * 2 {
            self.freed_before = 0;
            self.freed_now = 0;
            self.window_start = now;
        } else if elapsed >= HOST_BUSY_WAIT {
            self.freed_before = self.freed_now;
            self.freed_now = 0;
            self.window_start += HOST_BUSY_WAIT;
        }
    }

    /// Slots freed within about the last wait: that many waiters can expect a slot
    /// before their wait ends.
    fn freed_recently(&mut self, now: Instant) -> usize {
        self.roll(now);
        self.freed_before.max(self.freed_now)
    }
}

fn lock(pace: &Mutex<Pace>) -> std::sync::MutexGuard<'_, Pace> {
    pace.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One of a host's slots, held while a delivery runs; dropping it frees the slot and
/// counts it in the host's pace.
pub struct HostSlot {
    _permit: OwnedSemaphorePermit,
    pace: Arc<Mutex<Pace>>,
}

impl Drop for HostSlot {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut pace = lock(&self.pace);
        pace.roll(now);
        pace.freed_now += 1;
    }
}

/// A delivery's place among a host's waiters, given up when dropped.
struct Waiting(Arc<Mutex<Pace>>);

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut pace = lock(&self.0);
        pace.waiting = pace.waiting.saturating_sub(1);
    }
}

pub struct HostSlots {
    hosts: Mutex<HashMap<String, Host>>,
    /// Deliveries that may wait on any one host (half the worker's job slots).
    max_waiting: usize,
}

impl HostSlots {
    /// Slots for a worker running `concurrency` jobs at once.
    pub fn new(concurrency: usize) -> HostSlots {
        HostSlots {
            hosts: Mutex::default(),
            max_waiting: (concurrency / 2).max(1),
        }
    }

    /// One of `host`'s `limit` slots: at once if one is free, else after waiting up to
    /// `wait` (None: still busy, or the host has as many waiters as it may). The first
    /// caller for a host sets its limit (channels sharing a host share its slots).
    pub async fn acquire(&self, host: &str, limit: u32, wait: Duration) -> Option<HostSlot> {
        let (slots, pace) = {
            let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = hosts.entry(host.to_string()).or_insert_with(|| Host {
                slots: Arc::new(Semaphore::new(limit.max(1) as usize)),
                pace: Arc::new(Mutex::new(Pace::new(Instant::now()))),
            });
            (entry.slots.clone(), entry.pace.clone())
        };
        let slot = |permit| HostSlot {
            _permit: permit,
            pace: pace.clone(),
        };
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return Some(slot(permit));
        }
        let _place = self.wait_place(&pace)?;
        let permit = tokio::time::timeout(wait, slots.acquire_owned())
            .await
            .ok()?
            .ok()?;
        Some(slot(permit))
    }

    /// A place among the host's waiters, if it has fewer than it may.
    fn wait_place(&self, pace: &Arc<Mutex<Pace>>) -> Option<Waiting> {
        let mut p = lock(pace);
        let may_wait = self.max_waiting.max(p.freed_recently(Instant::now()));
        if p.waiting >= may_wait {
            return None;
        }
        p.waiting += 1;
        Some(Waiting(pace.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_WAIT: Duration = Duration::ZERO;

    #[tokio::test(start_paused = true)]
    async fn a_host_runs_at_most_its_limit_at_once_and_others_are_free() {
        let slots = HostSlots::new(8);
        let a1 = slots
            .acquire("a:443", 2, NO_WAIT)
            .await
            .expect("a first slot");
        let _a2 = slots
            .acquire("a:443", 2, NO_WAIT)
            .await
            .expect("a second slot");
        assert!(
            slots.acquire("a:443", 2, NO_WAIT).await.is_none(),
            "a third delivery to a waits"
        );
        assert!(
            slots.acquire("b:443", 2, NO_WAIT).await.is_some(),
            "another host is free"
        );
        drop(a1);
        assert!(
            slots.acquire("a:443", 2, NO_WAIT).await.is_some(),
            "a freed slot is taken"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_host_is_waited_for_until_a_slot_frees_within_the_wait() {
        let slots = Arc::new(HostSlots::new(8));
        let held = slots
            .acquire("a:443", 1, NO_WAIT)
            .await
            .expect("the only slot");
        let waiter = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire("a:443", 1, HOST_BUSY_WAIT).await })
        };
        tokio::time::sleep(HOST_BUSY_WAIT / 2).await;
        drop(held);
        let got = waiter.await.expect("the waiter ran");
        assert!(
            got.is_some(),
            "the slot freed within the wait went to the waiter"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_empty_handed_after_its_time() {
        let slots = HostSlots::new(8);
        let _held = slots
            .acquire("a:443", 1, NO_WAIT)
            .await
            .expect("the only slot");
        let started = tokio::time::Instant::now();
        assert!(slots.acquire("a:443", 1, HOST_BUSY_WAIT).await.is_none());
        assert_eq!(
            started.elapsed(),
            HOST_BUSY_WAIT,
            "it waited exactly the wait"
        );
    }

    /// Starts `n` deliveries waiting on `host` (limit 1) and lets them reach their wait.
    async fn waiters(
        slots: &Arc<HostSlots>,
        host: &'static str,
        n: usize,
    ) -> Vec<tokio::task::JoinHandle<Option<HostSlot>>> {
        let waiting = (0..n)
            .map(|_| {
                let slots = slots.clone();
                tokio::spawn(async move { slots.acquire(host, 1, HOST_BUSY_WAIT).await })
            })
            .collect();
        tokio::task::yield_now().await;
        waiting
    }

    /// Whether one more delivery is turned away from `host` at once.
    async fn turned_away_at_once(slots: &HostSlots, host: &str) -> bool {
        let started = tokio::time::Instant::now();
        slots.acquire(host, 1, HOST_BUSY_WAIT).await.is_none() && started.elapsed().is_zero()
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_that_frees_slots_quickly_may_have_as_many_waiters_as_it_freed() {
        // A worker of 4 job slots: 2 may wait on a slow host.
        let slots = Arc::new(HostSlots::new(4));
        for _ in 0..5 {
            drop(
                slots
                    .acquire("a:443", 1, NO_WAIT)
                    .await
                    .expect("a free slot"),
            );
        }
        let held = slots
            .acquire("a:443", 1, NO_WAIT)
            .await
            .expect("the only slot");
        let five = waiters(&slots, "a:443", 5).await;
        assert!(
            five.iter().all(|w| !w.is_finished()),
            "all five wait for a slot (half the job slots would be two)"
        );
        assert!(
            turned_away_at_once(&slots, "a:443").await,
            "five freed in the last wait: a sixth waiter is turned away"
        );
        for w in five {
            assert!(w.await.expect("ran").is_none(), "the held slot never freed");
        }
        // Two waits without a slot freed: the host counts as slow again.
        tokio::time::sleep(HOST_BUSY_WAIT * 2).await;
        let two = waiters(&slots, "a:443", 2).await;
        assert!(
            turned_away_at_once(&slots, "a:443").await,
            "back to half the job slots"
        );
        drop(held);
        let served = futures::future::join_all(two).await;
        assert_eq!(
            served.iter().filter(|w| matches!(w, Ok(Some(_)))).count(),
            1,
            "the freed slot went to one waiter"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_half_the_job_slots_wait_on_one_host() {
        // A worker of 4 job slots: 2 may wait on a host, the third goes back at once.
        let slots = Arc::new(HostSlots::new(4));
        let _held = slots
            .acquire("a:443", 1, NO_WAIT)
            .await
            .expect("the only slot");
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let slots = slots.clone();
                tokio::spawn(async move { slots.acquire("a:443", 1, HOST_BUSY_WAIT).await })
            })
            .collect();
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        assert!(
            slots.acquire("a:443", 1, HOST_BUSY_WAIT).await.is_none(),
            "a third waiter is turned away"
        );
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "at once, without waiting"
        );
        assert!(
            slots.acquire("b:443", 1, NO_WAIT).await.is_some(),
            "another host is free"
        );
        for w in waiters {
            assert!(w.await.expect("ran").is_none(), "the held slot never freed");
        }
    }
}
