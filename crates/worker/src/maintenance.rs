//! The loops beside the consumer:
//!
//! * **scheduler**: moves due delayed jobs (retries, rule delays) onto the streams.
//! * **reclaim**: takes over jobs a dead worker read but never acknowledged; one
//!   delivered more than `max_deliveries` times is dead-lettered instead of run again
//!   (see `dead_letters`). It claims nothing while Postgres does not answer, so an
//!   outage does not use up the deliveries of the jobs it held up.
//! * **sweep**: rebuilds lost work from Postgres, the source of truth: events still
//!   `received` and pending notifications overdue by more than the visibility timeout
//!   are enqueued again, and so are pending bundles past their stored ready instant
//!   (a bundle put off stores its new instant, so deferred bundles are never polled).
//!   Items of a sent bundle still `bundled` although its carrier reached a final state
//!   (the worker died between the delivery and settling them) take the carrier's
//!   status. All steps are idempotent (routing inserts nothing twice and counts no
//!   bundle item twice; delivery skips what is no longer pending), so overlap with a
//!   live queue costs only a little work. One worker sweeps at a time (a Redis lock). "Overdue" counts from
//!   the oldest job no worker has read yet (not from now), so a backlog is not taken
//!   for lost work, and the sweep enqueues only jobs with no copy on a stream (read or
//!   not: `Queue::enqueue_absent`), so it never adds a second copy of queued work.
//! * **heartbeat**: tells operators which workers are alive.
//! * **prune**: drops the per-person change log (live console streams) older than a
//!   week, hourly, one worker at a time; the notifications themselves are kept.

use crate::consumer::{backoff, handle};
use crate::context::Context;
use crate::dead_letters;
use chrono::Utc;
use herald_core::queues::{queue_for, queue_for_stored};
use herald_queue::{Job, Lane, QueueName};
use herald_store::{events, notifications};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SCHEDULER_TICK: Duration = Duration::from_millis(100);
const PROMOTE_BATCH: usize = 1000;
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
const SWEEP_BATCH: i64 = 1000;

/// Sleeps for `d` unless shutdown comes first; returns false on shutdown.
async fn pause(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shutdown.cancelled() => false,
    }
}

pub async fn scheduler_loop(ctx: Arc<Context>, shutdown: CancellationToken) {
    let mut failures = 0;
    loop {
        let wait = match promote_due(&ctx).await {
            Ok(moved) if moved == PROMOTE_BATCH => Duration::ZERO,
            Ok(_) => {
                failures = 0;
                SCHEDULER_TICK
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "promoting delayed jobs failed");
                backoff(failures)
            }
        };
        if !pause(wait, &shutdown).await {
            return;
        }
    }
}

/// Promotes due jobs in every partition this worker serves, the partitions'
/// concurrently; answers the most moved in one partition (a full batch means more may
/// be due there at once).
async fn promote_due(ctx: &Context) -> Result<usize, herald_queue::QueueError> {
    let now = Utc::now().timestamp_millis();
    let moved = futures::future::try_join_all(
        ctx.settings
            .served
            .iter()
            .map(|p| ctx.queue.promote_due(*p, now, PROMOTE_BATCH)),
    )
    .await?;
    Ok(moved.into_iter().max().unwrap_or(0))
}

pub async fn reclaim_loop(ctx: Arc<Context>, shutdown: CancellationToken) {
    let visibility = ctx.settings.visibility_timeout;
    let every = (visibility / 4).max(Duration::from_millis(250));
    while pause(every, &shutdown).await {
        // Every claim counts a delivery: while Postgres is down the jobs would fail
        // anyway, and claiming them would spend their deliveries on the outage.
        if !postgres_answers(&ctx).await {
            continue;
        }
        for partition in &ctx.settings.served {
            match ctx
                .queue
                .reclaim(&ctx.worker_id, *partition, visibility, 100)
                .await
            {
                Ok(jobs) if !jobs.is_empty() => run_reclaimed(&ctx, jobs).await,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, %partition, "reclaiming jobs failed"),
            }
        }
    }
}

async fn postgres_answers(ctx: &Context) -> bool {
    match herald_store::pool::get(&ctx.pool).await {
        Ok(mut conn) => herald_store::stats::ping(&mut conn).await.is_ok(),
        Err(_) => false,
    }
}

/// Buries the reclaimed jobs that had their deliveries and runs the others, each in a
/// task of its own.
async fn run_reclaimed(ctx: &Arc<Context>, jobs: Vec<herald_queue::Received>) {
    let (spent, live): (Vec<_>, Vec<_>) = jobs
        .into_iter()
        .partition(|j| dead_letters::exhausted(j, ctx.settings.max_deliveries));
    for job in &spent {
        if let Err(e) = dead_letters::bury(ctx, job).await {
            tracing::warn!(error = %e, entry = %job.entry_id, "dead-lettering a job failed");
        }
    }
    if !live.is_empty() {
        tracing::info!(
            count = live.len(),
            "reclaimed jobs from an unresponsive worker"
        );
    }
    let tasks = live.into_iter().map(|job| {
        let ctx = ctx.clone();
        tokio::spawn(async move { handle(&ctx, job).await })
    });
    futures::future::join_all(tasks).await;
}

pub async fn sweep_loop(ctx: Arc<Context>, shutdown: CancellationToken) {
    let every = ctx.settings.sweep_interval;
    let token = ctx.worker_id.clone();
    while pause(every, &shutdown).await {
        match ctx.locks.try_lock("sweep", &token, every).await {
            Ok(true) => {
                if let Err(e) = sweep(&ctx).await {
                    tracing::warn!(error = %e, "recovery sweep failed");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "recovery sweep could not take its lock"),
        }
    }
}

/// One pass of the recovery sweep; returns (events, notifications) re-enqueued.
pub async fn sweep(ctx: &Context) -> anyhow::Result<(usize, usize)> {
    let grace = chrono::Duration::from_std(ctx.settings.visibility_timeout)?;
    // "Overdue" counts from the oldest job still waiting to be read, not from now:
    // behind a backlog, queued work is late, not lost, and re-enqueuing it would only
    // lengthen the backlog it waits in. With nothing unread (e.g. Redis restarted
    // empty) this is now.
    let now = Utc::now();
    let horizon = match ctx.queue.oldest_unread_ms().await? {
        Some(ms) => chrono::DateTime::from_timestamp_millis(ms).map_or(now, |t| t.min(now)),
        None => now,
    };
    let cutoff = horizon - grace;
    let mut conn = herald_store::pool::get(&ctx.pool).await?;
    let partitions = ctx.queue.partitions();
    let stale_events = events::unrouted_before(&mut conn, cutoff, SWEEP_BATCH).await?;
    let routes: Vec<_> = stale_events
        .iter()
        .map(|e| {
            let severity =
                ctx.config
                    .rules
                    .event_severity(&e.event_type, &e.properties, &e.user_traits);
            let partition = partitions.of_event(e.user_id.as_deref(), e.topic.as_deref(), e.id);
            (Lane::new(partition, queue_for(severity)), Job::route(e.id))
        })
        .collect();
    let overdue = notifications::pending_due_before(&mut conn, cutoff, SWEEP_BATCH).await?;
    let deliveries: Vec<_> = overdue
        .iter()
        .map(|(id, severity, user_id)| {
            let partition = partitions.of_recipient(user_id.as_deref(), *id);
            (
                Lane::new(partition, queue_for_stored(severity)),
                Job::Deliver {
                    notification_id: *id,
                },
            )
        })
        .collect();
    let settled = herald_store::bundles::settle_stranded(&mut conn, SWEEP_BATCH).await?;
    if settled > 0 {
        tracing::info!(
            items = settled,
            "recovery sweep settled the items of sent bundles"
        );
    }
    let bundles = herald_store::bundles::overdue(&mut conn, cutoff, SWEEP_BATCH).await?;
    let flushes: Vec<_> = bundles
        .iter()
        .map(|(id, user_id)| {
            (
                Lane::new(partitions.of_person(user_id), QueueName::Default),
                Job::FlushBundle { bundle_id: *id },
            )
        })
        .collect();
    // Only where no copy is on a stream: a copy may wait in the backlog, or keep
    // failing and be reclaimed, through many passes.
    let routes = enqueue_absent(ctx, routes).await?;
    let deliveries = enqueue_absent(ctx, deliveries).await?;
    let flushes = enqueue_absent(ctx, flushes).await?;
    if !routes.is_empty() || !deliveries.is_empty() || !flushes.is_empty() {
        tracing::info!(
            events = routes.len(),
            notifications = deliveries.len(),
            bundles = flushes.len(),
            "recovery sweep re-enqueued work"
        );
    }
    Ok((routes.len(), deliveries.len()))
}

/// Enqueues the jobs the sweep found that have no copy on a stream; returns those
/// enqueued.
async fn enqueue_absent(ctx: &Context, jobs: Vec<(Lane, Job)>) -> anyhow::Result<Vec<(Lane, Job)>> {
    let added = ctx.queue.enqueue_absent(&jobs).await?;
    Ok(jobs
        .into_iter()
        .zip(added)
        .filter_map(|(job, added)| added.then_some(job))
        .collect())
}

/// How long the per-person change log (what console streams replay) is kept.
const CHANGE_LOG_KEPT: chrono::Duration = chrono::Duration::days(7);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const PRUNE_BATCH: i64 = 5000;

pub async fn prune_loop(ctx: Arc<Context>, shutdown: CancellationToken) {
    let token = ctx.worker_id.clone();
    while pause(PRUNE_EVERY, &shutdown).await {
        if !matches!(
            ctx.locks.try_lock("prune", &token, PRUNE_EVERY).await,
            Ok(true)
        ) {
            continue;
        }
        let cutoff = Utc::now() - CHANGE_LOG_KEPT;
        while let Ok(mut conn) = herald_store::pool::get(&ctx.pool).await {
            match herald_store::changes::prune(&mut conn, cutoff, PRUNE_BATCH).await {
                Ok(n) if n >= PRUNE_BATCH as usize && !shutdown.is_cancelled() => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "pruning the change log failed");
                    break;
                }
            }
        }
    }
}

pub async fn heartbeat_loop(ctx: Arc<Context>, shutdown: CancellationToken) {
    let info = serde_json::json!({
        "worker_id": ctx.worker_id,
        "pid": std::process::id(),
        "queues": ctx.settings.queues,
        "partitions": ctx.settings.served.iter().map(|p| p.index()).collect::<Vec<_>>(),
        "concurrency": ctx.settings.concurrency,
        "started_at": Utc::now(),
    })
    .to_string();
    loop {
        if let Err(e) = ctx
            .heartbeats
            .beat(&ctx.worker_id, &info, HEARTBEAT_EVERY * 3)
            .await
        {
            tracing::debug!(error = %e, "heartbeat failed");
        }
        if !pause(HEARTBEAT_EVERY, &shutdown).await {
            return;
        }
    }
}
