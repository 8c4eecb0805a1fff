//! At most `max_in_flight` deliveries at once per destination host (contract §6), so
//! one slow host cannot take every one of the worker's job slots: a delivery that
//! finds its host's slots taken does not wait in its job slot but goes back to the
//! delayed set for a moment ([`HOST_BUSY_WAIT`]), without spending an attempt.
//!
//! The limit holds per worker process: each process keeps a semaphore per host it
//! delivers to. With `n` workers a host sees at most `n × max_in_flight` at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a delivery whose host is busy waits before it is looked at again.
pub const HOST_BUSY_WAIT: Duration = Duration::from_millis(250);

#[derive(Default)]
pub struct HostSlots {
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl HostSlots {
    /// One of `host`'s `limit` slots if one is free; it is freed when the permit is
    /// dropped. The first caller for a host sets its limit (channels sharing a host
    /// share its slots).
    pub fn try_acquire(&self, host: &str, limit: u32) -> Option<OwnedSemaphorePermit> {
        let semaphore = {
            let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
            hosts
                .entry(host.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(limit.max(1) as usize)))
                .clone()
        };
        semaphore.try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_runs_at_most_its_limit_at_once_and_others_are_free() {
        let slots = HostSlots::default();
        let a1 = slots.try_acquire("a:443", 2).expect("a first slot");
        let _a2 = slots.try_acquire("a:443", 2).expect("a second slot");
        assert!(
            slots.try_acquire("a:443", 2).is_none(),
            "a third delivery to a waits"
        );
        assert!(
            slots.try_acquire("b:443", 2).is_some(),
            "another host is free"
        );
        drop(a1);
        assert!(
            slots.try_acquire("a:443", 2).is_some(),
            "a freed slot is taken"
        );
    }
}
