//! At most `max_in_flight` deliveries at once per destination host (contract §6).
//!
//! A delivery that finds its host's slots taken waits for one in process, for at most
//! [`HOST_BUSY_WAIT`]; slots of a host that answers quickly free up within
//! milliseconds. Only when the wait times out, or when half the worker's job slots
//! already wait on that host, does the delivery go back to the delayed set (for
//! [`HOST_BUSY_WAIT`], without spending an attempt). So one slow host cannot take
//! every one of the worker's job slots, and a fast one is not made to go round the
//! delayed set: sending each busy delivery back at once cost about twenty Redis
//! commands and a reload of its row per bounce, several bounces per delivery when
//! 512 jobs were read for one host's 32 slots (measured: `make bench`'s drain fell to
//! about 1,200 deliveries/s).
//!
//! The limit holds per worker process: each process keeps a semaphore per host it
//! delivers to. With `n` workers a host sees at most `n × max_in_flight` at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a delivery waits in process for its host, and then in the delayed set.
pub const HOST_BUSY_WAIT: Duration = Duration::from_millis(250);

/// One host's slots, and the places for deliveries waiting on them.
struct Host {
    slots: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
}

pub struct HostSlots {
    hosts: Mutex<HashMap<String, Host>>,
    /// Deliveries that may wait on one host at once (half the worker's job slots).
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

    /// One of `host`'s `limit` slots, freed when the permit is dropped: at once if one
    /// is free, else after waiting up to `wait` (None: still busy, or too many
    /// deliveries wait on this host already). The first caller for a host sets its
    /// limit (channels sharing a host share its slots).
    pub async fn acquire(
        &self,
        host: &str,
        limit: u32,
        wait: Duration,
    ) -> Option<OwnedSemaphorePermit> {
        let (slots, waiting) = {
            let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = hosts.entry(host.to_string()).or_insert_with(|| Host {
                slots: Arc::new(Semaphore::new(limit.max(1) as usize)),
                waiting: Arc::new(Semaphore::new(self.max_waiting)),
            });
            (entry.slots.clone(), entry.waiting.clone())
        };
        if let Ok(slot) = slots.clone().try_acquire_owned() {
            return Some(slot);
        }
        let _place = waiting.try_acquire_owned().ok()?;
        tokio::time::timeout(wait, slots.acquire_owned())
            .await
            .ok()?
            .ok()
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
