//! The ingestion path shared by events and alerts: commit to Postgres with one
//! multi-row insert, then enqueue a route job per new event. A 202 means committed;
//! if Redis is down the events wait in Postgres as `received` and the workers'
//! recovery sweep enqueues them (the outbox pattern).

use crate::error::ApiError;
use crate::state::AppState;
use herald_core::event::NewEvent;
use herald_queue::{Job, QueueName};
use herald_store::events::{self, Stored};

pub async fn store_and_enqueue(
    state: &AppState,
    batch: &[NewEvent],
) -> Result<Vec<Stored>, ApiError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = herald_store::pool::get(&state.pool).await?;
    let stored = events::insert_batch(&mut conn, batch).await?;
    drop(conn);
    let jobs: Vec<(QueueName, Job)> = batch
        .iter()
        .zip(&stored)
        .filter(|(_, s)| !s.duplicate)
        .map(|(e, s)| (queue_for(e), Job::route(s.id)))
        .collect();
    state.metrics.events_accepted.inc_by(jobs.len() as u64);
    if let Err(e) = state.queue.enqueue(&jobs).await {
        tracing::warn!(error = %e, events = jobs.len(),
            "could not enqueue; the events are committed and the recovery sweep will route them");
    }
    Ok(stored)
}

/// Critical alerts are routed on the critical queue, ahead of everything else.
fn queue_for(event: &NewEvent) -> QueueName {
    match event.properties.get("severity").and_then(|s| s.as_str()) {
        Some("critical") => QueueName::Critical,
        _ => QueueName::Default,
    }
}
