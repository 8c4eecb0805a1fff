//! `herald-worker`: turns events into notifications and delivers them.
//!
//! | module | owns |
//! |---|---|
//! | [`context`] | what every job handler shares: config, pools, HTTP clients |
//! | [`acks`] | acknowledging handled jobs in batches |
//! | [`claims`] | keeping a running job's claim, so no other worker takes it over |
//! | [`dead_letters`] | giving up on a job delivered too many times, with the reason |
//! | [`bundler`] | the bundling ranker and settings, built once from `bundling.yml` |
//! | [`bundling`] | online bundles: items, ready instants, flushes under the cap |
//! | [`conditions`] | answering a rule's conditions from the person's history |
//! | [`consumer`] | the read loop: bounded concurrency, dispatch, acknowledgement |
//! | [`routing`] | an event → notification rows, per rule, recipient and preference |
//! | [`hand_off`] | fresh deliveries run in this worker's free job slots, not via Redis |
//! | [`delivery`] | one try of one notification: POST, record, retry or give up |
//! | [`http`] | the HTTP clients, signing headers, and vetting of people's webhooks |
//! | [`offline`] | `bundle` and `users` subcommands: replay a komoot file (contract §8) |
//! | [`maintenance`] | the scheduler, reclaim (and dead letters), recovery sweep and heartbeat loops |
//! | [`metrics`] | every Prometheus metric, the queue sampler and the `/metrics` server |
//! | [`partitions`] | history partitions created ahead and dropped past the retention |
//!
//! A worker is stateless: Postgres holds the truth and Redis the work, so any number
//! of workers may run, and any of them may die at any time.

pub mod acks;
pub mod bundler;
pub mod bundling;
pub mod claims;
pub mod conditions;
pub mod consumer;
pub mod context;
pub mod dead_letters;
pub mod delivery;
pub mod hand_off;
pub mod host_slots;
pub mod http;
pub mod maintenance;
pub mod metrics;
pub mod offline;
pub mod partitions;
pub mod routing;
pub mod smtp;
pub mod statements;

pub use context::{Context, Settings};

use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Runs the worker until `shutdown` fires, then drains in-flight jobs and returns.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let ctx = Arc::new(Context::build(settings).await?);
    match ctx.queue.claim_layout().await {
        Err(e @ herald_queue::QueueError::Layout(_)) => return Err(e.into()),
        Err(e) => tracing::warn!(error = %e, "redis unavailable at start; will keep trying"),
        Ok(()) => {
            if let Err(e) = ctx.queue.ensure_groups().await {
                tracing::warn!(error = %e, "creating the queues failed; reads will retry");
            }
        }
    }
    tracing::info!(worker = %ctx.worker_id, queues = ?ctx.settings.queues,
        partitions = ctx.settings.partitions.count(), served = ctx.settings.served.len(),
        concurrency = ctx.settings.concurrency, "worker started");
    let metrics_server = serve_metrics(&ctx)?;
    // Stopped last: it flushes the acknowledgements of the jobs drained at shutdown.
    let acks_done = CancellationToken::new();
    let acker = {
        let (ctx, done) = (ctx.clone(), acks_done.clone());
        tokio::spawn(async move { ctx.acker.run(ctx.queue.clone(), done).await })
    };
    let loops = vec![
        tokio::spawn(maintenance::scheduler_loop(ctx.clone(), shutdown.clone())),
        tokio::spawn(maintenance::reclaim_loop(ctx.clone(), shutdown.clone())),
        tokio::spawn(maintenance::sweep_loop(ctx.clone(), shutdown.clone())),
        tokio::spawn(maintenance::heartbeat_loop(ctx.clone(), shutdown.clone())),
        tokio::spawn(maintenance::prune_loop(ctx.clone(), shutdown.clone())),
        tokio::spawn({
            let (ctx, stop) = (ctx.clone(), shutdown.clone());
            async move { ctx.metrics.sample_queues(ctx.backlogs.clone(), stop).await }
        }),
    ];
    consumer::consume_loop(ctx.clone(), shutdown.clone()).await;
    shutdown.cancel();
    for handle in loops {
        let _ = handle.await;
    }
    acks_done.cancel();
    let _ = acker.await;
    if let Some(server) = metrics_server {
        server.stop(true).await;
    }
    tracing::info!(worker = %ctx.worker_id, "worker stopped");
    Ok(())
}

/// Starts `/metrics` on `--metrics-bind`, when set; a port that cannot be bound stops
/// the worker at start rather than leaving it unobservable.
fn serve_metrics(ctx: &Context) -> anyhow::Result<Option<actix_web::dev::ServerHandle>> {
    let Some(bind) = ctx.settings.metrics_bind else {
        return Ok(None);
    };
    let listener = std::net::TcpListener::bind(bind)
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {bind}: {e}"))?;
    let key = herald_core::access::MetricsKey::new(ctx.settings.metrics_key.as_deref());
    let server = metrics::serve(listener, ctx.metrics.clone(), key)?;
    let handle = server.handle();
    tokio::spawn(server);
    tracing::info!(%bind, "metrics served on /metrics");
    Ok(Some(handle))
}
