//! The read loops: one over every partition the worker serves, or on a Redis Cluster one
//! per partition (a read cannot span the slots they live in; `Queue::readers`). Each
//! reads as many jobs as there are free slots, runs each in its own task holding a
//! semaphore permit shared by all of them (`concurrency` slots, plus one per reader for
//! the slot it holds while it waits for jobs), and acknowledges a job only after its
//! handler finished: a worker killed mid-job leaves
//! it pending for another to reclaim. Routing's fresh deliveries may take free slots
//! too (`hand_off`). On shutdown it stops reading and waits for every
//! permit to come back, i.e. for in-flight jobs to finish.

use crate::context::Context;
use crate::hand_off::HandOffJob;
use crate::{bundling, claims, delivery, routing};
use futures::FutureExt;
use herald_queue::{Job, Reader, Received};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Jobs taken by one read at most.
const MAX_READ: usize = 500;

/// How long a read blocks when the queues are empty; bounds shutdown latency too.
const READ_BLOCK: Duration = Duration::from_millis(1000);

pub async fn consume_loop(ctx: Arc<Context>, shutdown: CancellationToken) {
    // Each reader holds a slot while it waits for jobs (that slot runs the first job it
    // reads). A slot per reader on top of `concurrency` keeps idle readers from holding
    // every slot: a job read by one reader would otherwise wait for another reader's
    // read to time out, and a later critical job of the same person could overtake it.
    let readers = ctx.queue.readers(&ctx.settings.served);
    let total = ctx.settings.concurrency + readers.len();
    let slots = Arc::new(Semaphore::new(total));
    lend_slots(&ctx, slots.clone());
    // Jobs failing one after another (Postgres down, say): each failed job waits in the
    // pending list for the visibility timeout, so reading on at full speed would move
    // the whole backlog there in seconds. Instead, back off and probe one job at a
    // time until one succeeds. Shared by the readers.
    let failing = Arc::new(AtomicU32::new(0));
    let readers = readers.into_iter().map(|reader| {
        tokio::spawn(read_loop(
            ctx.clone(),
            reader,
            slots.clone(),
            failing.clone(),
            shutdown.clone(),
        ))
    });
    futures::future::join_all(readers).await;
    // Drain: every permit back means every spawned job finished. Closed afterwards, so
    // a reclaimed job still routing hands nothing off to a worker about to exit.
    let _ = slots.acquire_many(total as u32).await;
    slots.close();
}

/// Reads its partitions' streams, handing each job to a task of its own. The readers
/// share the worker's slots, so together they never run more than `concurrency` jobs.
async fn read_loop(
    ctx: Arc<Context>,
    mut reader: Reader,
    slots: Arc<Semaphore>,
    failing: Arc<AtomicU32>,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let streak = failing.load(Ordering::Relaxed);
        if streak > 0 {
            tokio::select! {
                _ = tokio::time::sleep(backoff(streak)) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        // Wait for at least one free slot before reading, so jobs are never read
        // (and their visibility clock started) without capacity to run them.
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => p,
            _ = shutdown.cancelled() => break,
        };
        let Ok(first) = first else { break };
        let want = if streak > 0 {
            1
        } else {
            1 + slots.available_permits().min(MAX_READ - 1)
        };
        let read = tokio::select! {
            r = reader.read(&ctx.worker_id, &ctx.settings.queues, want, READ_BLOCK) => r,
            _ = shutdown.cancelled() => break,
        };
        let jobs = match read {
            Ok(jobs) => {
                failures = 0;
                jobs
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, partitions = ?reader.partitions(), "reading the queue failed; retrying");
                drop(first);
                tokio::time::sleep(backoff(failures)).await;
                continue;
            }
        };
        let mut first = Some(first);
        for job in jobs {
            let permit = match first.take() {
                Some(p) => p,
                None => match slots.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let ctx = ctx.clone();
            let failing = failing.clone();
            tokio::spawn(async move {
                if handle(&ctx, job).await {
                    failing.store(0, Ordering::Relaxed);
                } else {
                    failing.fetch_add(1, Ordering::Relaxed);
                }
                drop(permit);
            });
        }
    }
}

/// Runs one received job and acknowledges it unless its handler asked for a retry
/// through the stream (an infrastructure error, or a panic: the job stays pending and
/// is reclaimed after the visibility timeout, and its error is kept for a dead letter
/// should it fail every time). Returns false in that case. While it runs, its claim is
/// kept (see `claims`).
pub async fn handle(ctx: &Context, received: Received) -> bool {
    let claim = claims::keep(
        ctx.queue.clone(),
        received.lane,
        ctx.worker_id.clone(),
        received.entry_id.clone(),
        claims::interval(ctx.settings.visibility_timeout),
    );
    let outcome = match AssertUnwindSafe(run(ctx, &received)).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => Err(anyhow::anyhow!("panicked: {}", panic_message(&*panic))),
    };
    let handled = match outcome {
        Ok(()) => {
            let marker = received.marker();
            ctx.acker.ack(received.lane, received.entry_id, marker);
            true
        }
        Err(e) => {
            tracing::warn!(job = ?received.job, deliveries = received.deliveries, error = %e,
                "job failed; left pending for another try after the visibility timeout");
            // Kept until the job can have been reclaimed past its last delivery.
            let ttl = ctx.settings.visibility_timeout * (ctx.settings.max_deliveries + 2);
            let error = format!("{e:#}");
            if let Err(e) = ctx
                .queue
                .record_failure(received.lane, &received.entry_id, &error, ttl)
                .await
            {
                tracing::debug!(error = %e, "could not keep the job's error");
            }
            false
        }
    };
    drop(claim);
    // The deliveries this job handed off while no slot was free (a route job that
    // failed on a later rule may have handed off some), in its own slot.
    work_off(ctx).await;
    handled
}

/// Lends the job slots to routing's hand-off (`hand_off`): a delivery it starts runs
/// in a task of its own holding its slot, then works off those waiting for one.
pub fn lend_slots(ctx: &Arc<Context>, slots: Arc<Semaphore>) {
    // Weak: the context owns its hand-off, which owns this closure.
    let weak = Arc::downgrade(ctx);
    let start: crate::hand_off::Start = Box::new(move |job, slot| {
        // Gone only as the process ends: the row stays pending for the recovery sweep.
        let Some(ctx) = weak.upgrade() else { return };
        tokio::spawn(async move {
            deliver_handed_off(&ctx, job).await;
            work_off(&ctx).await;
            drop(slot);
        });
    });
    let (served, waiting) = (ctx.settings.served.clone(), ctx.settings.concurrency);
    ctx.hand_off.lend(slots, served, waiting, start);
}

/// Delivers the handed-off deliveries that wait for a slot, in the caller's.
pub async fn work_off(ctx: &Context) {
    while let Some(job) = ctx.hand_off.next_waiting() {
        deliver_handed_off(ctx, job).await;
    }
}

/// Delivers one hand-off. An error (or a panic) leaves it for another try after the
/// visibility timeout, as a failed stream job is: here through the delayed set.
async fn deliver_handed_off(ctx: &Context, job: HandOffJob) {
    let HandOffJob { lane, id, row } = job;
    let outcome = AssertUnwindSafe(delivery::deliver(ctx, id, lane, row.map(|r| *r)))
        .catch_unwind()
        .await;
    let error = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(e)) => format!("{e:#}"),
        Err(panic) => format!("panicked: {}", panic_message(&*panic)),
    };
    tracing::warn!(notification_id = %id, %error,
        "delivery failed; tried again after the visibility timeout");
    let due = delivery::due_in(ctx.settings.visibility_timeout);
    if let Err(e) = delivery::schedule_job(ctx, lane, id, due).await {
        // The row stays pending in Postgres: the recovery sweep enqueues it.
        tracing::warn!(notification_id = %id, error = %e,
            "could not schedule the retry; the recovery sweep will");
    }
}

async fn run(ctx: &Context, received: &Received) -> anyhow::Result<()> {
    match &received.job {
        None => {
            tracing::error!(entry = %received.entry_id, "undecodable job dropped");
            Ok(())
        }
        Some(Job::Route {
            event_id,
            rule,
            after,
        }) => routing::route(ctx, *event_id, rule.as_deref(), after.as_deref()).await,
        Some(Job::Deliver { notification_id }) => {
            delivery::deliver(ctx, *notification_id, received.lane, None).await
        }
        Some(Job::FlushBundle { bundle_id }) => match bundling::flush(ctx, *bundle_id).await {
            Ok(Some(user_id)) => {
                ctx.changes.announce(&[user_id.as_str()]);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        },
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// 100 ms doubling to 5 s: infrastructure outages are retried patiently.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(5))
}
