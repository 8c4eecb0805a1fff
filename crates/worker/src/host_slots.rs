//! At most `max_in_flight` deliveries at once per destination host (contract §6), so
//! one slow host cannot take every one of the worker's job slots. The limit holds per
//! worker process: each process keeps a semaphore per host it delivers to. With `n`
//! workers a host sees at most `n × max_in_flight` deliveries at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Default)]
pub struct HostSlots {
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl HostSlots {
    /// Waits for one of `host`'s `limit` slots; the slot is freed when the permit is
    /// dropped. The first caller for a host sets its limit (channels sharing a host
    /// share its slots).
    pub async fn acquire(&self, host: &str, limit: u32) -> OwnedSemaphorePermit {
        let semaphore = {
            let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
            hosts
                .entry(host.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(limit.max(1) as usize)))
                .clone()
        };
        // The semaphore is never closed, so acquiring cannot fail; should it ever,
        // a fresh single permit keeps the delivery going rather than dropping it.
        match semaphore.acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => Arc::new(Semaphore::new(1))
                .acquire_owned()
                .await
                .unwrap_or_else(|_| unreachable!("a new semaphore is open")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_host_runs_at_most_its_limit_at_once_and_others_are_free() {
        let slots = HostSlots::default();
        let a1 = slots.acquire("a:443", 2).await;
        let _a2 = slots.acquire("a:443", 2).await;
        let third = tokio::time::timeout(Duration::from_secs(5), slots.acquire("a:443", 2)).await;
        assert!(third.is_err(), "a third delivery to a waits");
        let _b = tokio::time::timeout(Duration::from_secs(5), slots.acquire("b:443", 2))
            .await
            .expect("another host is free");
        drop(a1);
        let _again = tokio::time::timeout(Duration::from_secs(5), slots.acquire("a:443", 2))
            .await
            .expect("a slot freed is taken");
    }
}
