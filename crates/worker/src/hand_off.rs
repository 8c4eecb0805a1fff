//! Fresh deliveries run in this worker's own free job slots, without a trip through
//! Redis (contract §6).
//!
//! Routing commits a notification as `pending` before it is handed off, so nothing is
//! lost when the worker dies meanwhile: the recovery sweep enqueues a pending, overdue
//! notification that has no job on a stream. A hand-off skips what a stream job costs
//! (the enqueue with its copy count, the read, the acknowledgement) and the wait for
//! the next read. Only deliveries of partitions this worker serves are handed off:
//! into a slot free at once, else into a short list that the job which routed them
//! works off in its own slot once acknowledged (`consumer::work_off`: routing never
//! waits for a slot, so route jobs holding every slot cannot starve each other). Past
//! that list's bound, or once the worker drains, the rest go to the streams as before.

use herald_queue::{Job, Lane, Partition};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// Runs one handed-off delivery in the slot it holds (`consumer::lend_slots`).
pub type Start = Box<dyn Fn(Uuid, Lane, OwnedSemaphorePermit) + Send + Sync>;

/// Off until the consume loop lends its job slots ([`HandOff::lend`]): a context that
/// runs no loop (a test, a one-off command) sends every job to the streams.
#[derive(Default)]
pub struct HandOff {
    lent: OnceLock<Lent>,
    /// Handed off while no slot was free; worked off by whichever job or hand-off
    /// ends next (`consumer::work_off`).
    waiting: Mutex<VecDeque<(Uuid, Lane)>>,
}

struct Lent {
    slots: Arc<Semaphore>,
    /// The partitions the worker serves: only their deliveries are handed off.
    served: Vec<Partition>,
    /// How many may wait for a slot.
    max_waiting: usize,
    start: Start,
}

impl HandOff {
    /// Lets routing run deliveries in `slots`, the consume loop's job slots (whose
    /// drain on shutdown then waits for them too), with `start`.
    pub fn lend(
        &self,
        slots: Arc<Semaphore>,
        served: Vec<Partition>,
        max_waiting: usize,
        start: Start,
    ) {
        let lent = Lent {
            slots,
            served,
            max_waiting,
            start,
        };
        if self.lent.set(lent).is_err() {
            tracing::debug!("job slots already lent to the hand-off");
        }
    }

    /// Starts those of `jobs` this worker can deliver now, each holding a job slot,
    /// and keeps those it can deliver soon; returns the others, for the streams.
    pub fn start(&self, jobs: Vec<(Lane, Job)>) -> Vec<(Lane, Job)> {
        let Some(lent) = self.lent.get() else {
            return jobs;
        };
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        jobs.into_iter()
            .filter_map(|(lane, job)| {
                let Job::Deliver { notification_id } = job else {
                    return Some((lane, job));
                };
                if !lent.served.contains(&lane.partition) || lent.slots.is_closed() {
                    return Some((lane, job));
                }
                // Fails when no slot is free, and while the drain waits for them all.
                match lent.slots.clone().try_acquire_owned() {
                    Ok(slot) => (lent.start)(notification_id, lane, slot),
                    Err(_) if waiting.len() < lent.max_waiting => {
                        waiting.push_back((notification_id, lane));
                    }
                    Err(_) => return Some((lane, job)),
                }
                None
            })
            .collect()
    }

    /// The next handed-off delivery that waits for a slot.
    pub fn next_waiting(&self) -> Option<(Uuid, Lane)> {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }
}
