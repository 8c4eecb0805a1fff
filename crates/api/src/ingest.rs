//! The ingestion path shared by events and alerts: commit to Postgres with one
//! multi-row insert, then enqueue a route job per new event. A 202 means committed;
//! if Redis is down the events wait in Postgres as `received` and the workers'
//! recovery sweep enqueues them (the outbox pattern).
//!
//! # Group commit
//! Requests do not insert by themselves. They hand their validated events to the
//! [`Ingestor`], a group-commit [`Batcher`] of the store owned by the api's state,
//! and wait for their share of the result. The batcher coalesces whatever requests
//! are waiting into one group (up to [`MAX_ROWS`] rows); the group is written with
//! one multi-row insert, its route jobs are enqueued with one pipelined XADD, and
//! each request is answered with its own slice. At most [`MAX_IN_FLIGHT`] groups are
//! being written at once; while they are, newcomers accumulate into the next group.
//! So a lone request is written at once (no added wait), and under load the
//! statements and commits per event fall as the groups grow: one commit serves many
//! requests.
//!
//! Semantics are those of one request alone: the answer comes after the commit (and
//! the enqueue attempt); an idempotency key seen twice in a group is one event, the
//! first occurrence, exactly as if the two requests had run one after the other.
//! Should a group fail for a reason other than the database being unavailable (a row
//! Postgres refuses), the batcher retries each of its requests alone, so one
//! request's bad data never fails another's.

use crate::error::ApiError;
use crate::metrics::IngestFigures;
use herald_core::event::NewEvent;
use herald_core::queues::queue_for;
use herald_core::rules::RuleSet;
use herald_queue::{Job, Lane, Queue, QueueName};
use herald_store::batch::{BatchError, Batcher, Options};
use herald_store::events::{self, Stored};
use herald_store::Pool;
use std::sync::Arc;
use std::time::Instant;

/// Rows in one insert at most (8 bind parameters each; Postgres allows 65,535).
pub const MAX_ROWS: usize = 2000;
/// Groups being written at once. Two cores: more would only queue inside Postgres.
pub const MAX_IN_FLIGHT: usize = 4;
/// Requests waiting for the ingestor at most; further ones wait to hand over.
const QUEUE_DEPTH: usize = 4096;

/// The handle requests use; cheap to clone. The task stops when every handle is gone.
#[derive(Clone)]
pub struct Ingestor {
    /// One item per request: its events; one answer per request: its slice.
    groups: Batcher<Vec<NewEvent>, Vec<Stored>>,
}

/// What a group needs to be written.
struct Sinks {
    pool: Pool,
    queue: Queue,
    metrics: IngestFigures,
    /// The rules decide which queue each new event's route job takes.
    rules: RuleSet,
}

impl Ingestor {
    /// Starts the ingestor on the current Tokio runtime.
    pub fn start(pool: Pool, queue: Queue, metrics: IngestFigures, rules: RuleSet) -> Ingestor {
        let sinks = Arc::new(Sinks {
            pool,
            queue,
            metrics,
            rules,
        });
        let options = Options {
            name: "ingest",
            max_weight: MAX_ROWS,
            in_flight: MAX_IN_FLIGHT,
            waiting: QUEUE_DEPTH,
        };
        let groups = Batcher::start_weighed(options, Vec::len, move |requests| {
            write_group(sinks.clone(), requests)
        });
        Ingestor { groups }
    }

    /// Stores `events` (as part of whatever group they join) and enqueues their route
    /// jobs; one [`Stored`] per event, in order.
    pub async fn submit(&self, events: Vec<NewEvent>) -> Result<Vec<Stored>, ApiError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.groups.call(events).await.map_err(api_error)
    }
}

/// What a request hears when its group (or its own retry) could not be stored.
fn api_error(e: BatchError) -> ApiError {
    match e {
        BatchError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
        BatchError::Stopped => ApiError::Unavailable("ingestion is shutting down".into()),
        // The group's task died (a panic): the outcome is unknown.
        BatchError::Lost => ApiError::Internal(anyhow::anyhow!(
            "the ingestion task stopped before answering"
        )),
        BatchError::Failed(_) | BatchError::Miscounted { .. } => {
            ApiError::Internal(anyhow::anyhow!("storing events: {e}"))
        }
    }
}

/// Writes one group of requests (or, on a retry, one request alone) with one insert,
/// enqueues its new events' route jobs, and slices the result per request.
async fn write_group(
    sinks: Arc<Sinks>,
    requests: Arc<Vec<Vec<NewEvent>>>,
) -> Result<Vec<Vec<Stored>>, BatchError> {
    let events: Vec<&NewEvent> = requests.iter().flatten().collect();
    let started = Instant::now();
    let mut conn = herald_store::pool::get(&sinks.pool).await?;
    let stored = events::insert_batch(&mut conn, &events).await?;
    drop(conn); // back to the pool before the XADD
    sinks
        .metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    sinks.metrics.batch_size.observe(events.len() as f64);
    if stored.len() != events.len() {
        return Err(BatchError::Miscounted {
            items: events.len(),
            answers: stored.len(),
        });
    }
    enqueue(&sinks, &events, &stored).await;
    let mut rest = stored.into_iter();
    Ok(requests
        .iter()
        .map(|own| rest.by_ref().take(own.len()).collect())
        .collect())
}

/// One pipelined XADD for the group's new events. Failing is not fatal: the events
/// are committed and the recovery sweep routes them.
async fn enqueue(sinks: &Sinks, events: &[&NewEvent], stored: &[Stored]) {
    let partitions = sinks.queue.partitions();
    let jobs: Vec<(Lane, Job)> = events
        .iter()
        .zip(stored)
        .filter(|(_, s)| !s.duplicate)
        .map(|(e, s)| {
            let partition = partitions.of_event(e.user_id.as_deref(), e.topic.as_deref(), s.id);
            (
                Lane::new(partition, route_queue(&sinks.rules, e)),
                Job::route(s.id),
            )
        })
        .collect();
    sinks.metrics.accepted.inc_by(jobs.len() as u64);
    sinks
        .metrics
        .duplicate
        .inc_by((stored.len() - jobs.len()) as u64);
    if let Err(e) = sinks.queue.enqueue(&jobs).await {
        tracing::warn!(error = %e, events = jobs.len(),
            "could not enqueue; the events are committed and the recovery sweep will route them");
    }
}

/// An event that makes critical notifications is routed on the critical queue, ahead
/// of everything else.
fn route_queue(rules: &RuleSet, event: &NewEvent) -> QueueName {
    queue_for(rules.event_severity(&event.event_type, &event.properties, &event.user_traits))
}
