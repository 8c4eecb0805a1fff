//! Fresh deliveries run in this worker's own free job slots, without a trip through
//! Redis (contract §6).
//!
//! Routing commits a notification as `pending` before it is handed off, so nothing is
//! lost when the worker dies meanwhile: the recovery sweep enqueues a pending, overdue
//! notification that has no job on a stream. A hand-off skips what a stream job costs
//! (the enqueue with its copy count, the read, the acknowledgement) and the wait for
//! the next read. It carries the row its delivery reads, built by routing from the
//! event, the person and the inserted notification, so the delivery loads nothing
//! (but for a person's own webhook, whose secrets routing does not read).
//!
//! Only deliveries of partitions this worker serves are handed off: into a slot free
//! at once, else into a short list that the job which routed them works off in its own
//! slot once acknowledged (`consumer::work_off`: routing never waits for a slot, so
//! route jobs holding every slot cannot starve each other). Past that list's bound, or
//! once the worker drains, the rest go to the streams as before.

use herald_queue::{Job, Lane, Partition};
use herald_store::notifications::DeliveryRow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// Runs one handed-off delivery in the slot it holds (`consumer::lend_slots`).
pub type Start = Box<dyn Fn(HandOffJob, OwnedSemaphorePermit) + Send + Sync>;

/// A delivery routing hands off: its notification, the lane its job would take, and
/// the row the delivery reads, when routing could build it.
pub struct HandOffJob {
    pub lane: Lane,
    pub id: Uuid,
    pub row: Option<Box<DeliveryRow>>,
}

/// Off until the consume loop lends its job slots ([`HandOff::lend`]): a context that
/// runs no loop (a test, a one-off command) sends every job to the streams.
#[derive(Default)]
pub struct HandOff {
    lent: OnceLock<Lent>,
    /// Handed off while no slot was free; worked off by whichever job or hand-off
    /// ends next (`consumer::work_off`).
    waiting: Mutex<VecDeque<(HandOffJob, Instant)>>,
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

    /// Starts those of `jobs` (lane, notification, what `row` builds its row from)
    /// this worker can deliver now, each holding a job slot, and keeps those it can
    /// deliver soon; returns the others, for the streams. `row` runs only for those
    /// handed off: a job for the streams carries its id alone.
    pub fn start<T>(
        &self,
        jobs: Vec<(Lane, Uuid, T)>,
        row: impl Fn(T) -> Option<DeliveryRow>,
    ) -> Vec<(Lane, Job)> {
        let stream_job = |lane, notification_id| (lane, Job::Deliver { notification_id });
        let Some(lent) = self.lent.get() else {
            return jobs
                .into_iter()
                .map(|(l, id, _)| stream_job(l, id))
                .collect();
        };
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let mut streamed = Vec::new();
        for (lane, id, source) in jobs {
            if !lent.served.contains(&lane.partition) || lent.slots.is_closed() {
                streamed.push(stream_job(lane, id));
                continue;
            }
            // Fails when no slot is free, and while the drain waits for them all.
            let slot = lent.slots.clone().try_acquire_owned().ok();
            if slot.is_none() && waiting.len() >= lent.max_waiting {
                streamed.push(stream_job(lane, id));
                continue;
            }
            let job = HandOffJob {
                lane,
                id,
                row: row(source).map(Box::new),
            };
            match slot {
                Some(slot) => (lent.start)(job, slot),
                None => waiting.push_back((job, Instant::now())),
            }
        }
        streamed
    }

    /// The next handed-off delivery that waits for a slot. One that waited longer than
    /// [`ROW_FRESH_FOR`] loses its row, so its delivery reads the stored one: the
    /// recovery sweep may have enqueued a copy meanwhile (it enqueues pending rows
    /// overdue by the visibility timeout), and only the stored status would tell.
    pub fn next_waiting(&self) -> Option<HandOffJob> {
        let (mut job, since) = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()?;
        if since.elapsed() > ROW_FRESH_FOR {
            job.row = None;
        }
        Some(job)
    }
}

/// How long a handed-off row may wait and still be delivered without reading the
/// stored one; far below any visibility timeout.
pub const ROW_FRESH_FOR: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_queue::{Partitions, QueueName};

    fn job(partition: Partition) -> (Lane, Uuid, ()) {
        (Lane::new(partition, QueueName::Default), Uuid::now_v7(), ())
    }

    type Started = Arc<Mutex<Vec<OwnedSemaphorePermit>>>;

    /// A hand-off lending `slots` for the first of the partitions; what it starts keeps
    /// its slot.
    fn lent(slots: usize, max_waiting: usize) -> (HandOff, Vec<Partition>, Started) {
        let partitions = Partitions::default().all();
        let started = Started::default();
        let running = started.clone();
        let hand_off = HandOff::default();
        hand_off.lend(
            Arc::new(Semaphore::new(slots)),
            vec![partitions[0]],
            max_waiting,
            Box::new(move |_, slot| running.lock().expect("test lock").push(slot)),
        );
        (hand_off, partitions, started)
    }

    #[test]
    fn free_slots_first_then_the_waiting_list_then_the_stream() {
        let (hand_off, partitions, started) = lent(2, 3);
        let jobs: Vec<_> = (0..7).map(|_| job(partitions[0])).collect();
        let ids: Vec<Uuid> = jobs.iter().map(|(_, id, _)| *id).collect();
        let streamed = hand_off.start(jobs, |()| None);
        assert_eq!(started.lock().expect("test lock").len(), 2);
        let waiting: Vec<Uuid> = std::iter::from_fn(|| hand_off.next_waiting())
            .map(|j| j.id)
            .collect();
        assert_eq!(waiting, ids[2..5]);
        let streamed: Vec<Uuid> = streamed
            .into_iter()
            .map(|(_, job)| match job {
                Job::Deliver { notification_id } => notification_id,
                other => panic!("not a delivery: {other:?}"),
            })
            .collect();
        assert_eq!(streamed, ids[5..]);
    }

    #[test]
    fn partitions_not_served_and_a_context_without_slots_go_to_the_stream() {
        let (hand_off, partitions, started) = lent(4, 4);
        assert_eq!(hand_off.start(vec![job(partitions[1])], |()| None).len(), 1);
        assert_eq!(started.lock().expect("test lock").len(), 0);
        assert_eq!(
            HandOff::default()
                .start(vec![job(partitions[0])], |()| None)
                .len(),
            1
        );
    }
}
