//! The ingestion path shared by events and alerts: commit to Postgres with one
//! multi-row insert, then enqueue a route job per new event. A 202 means committed;
//! if Redis is down the events wait in Postgres as `received` and the workers'
//! recovery sweep enqueues them (the outbox pattern).
//!
//! # Group commit
//! Requests do not insert by themselves. They hand their validated events to the
//! [`Ingestor`], a task owned by the api's state, and wait for their share of the
//! result. The ingestor coalesces whatever requests are waiting into one multi-row
//! insert (up to [`MAX_ROWS`] rows), enqueues the route jobs of the whole group with
//! one pipelined XADD, then answers each request with its own slice. At most
//! [`MAX_IN_FLIGHT`] groups are being written at once; while they are, newcomers
//! accumulate into the next group. So a lone request is written at once (no added
//! wait), and under load the statements and commits per event fall as the groups
//! grow: one commit serves many requests.
//!
//! Semantics are those of one request alone: the answer comes after the commit (and
//! the enqueue attempt); an idempotency key seen twice in a group is one event, the
//! first occurrence, exactly as if the two requests had run one after the other.
//! Should a group fail for a reason other than the database being unavailable (a row
//! Postgres refuses), each of its requests is retried alone, so one request's bad
//! data never fails another's.

use crate::error::ApiError;
use herald_core::event::NewEvent;
use herald_core::queues::queue_for;
use herald_core::rules::RuleSet;
use herald_queue::{Job, Queue, QueueName};
use herald_store::events::{self, Stored};
use herald_store::{Pool, StoreError};
use prometheus::IntCounter;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// Rows in one insert at most (8 bind parameters each; Postgres allows 65,535).
pub const MAX_ROWS: usize = 2000;
/// Groups being written at once. Two cores: more would only queue inside Postgres.
pub const MAX_IN_FLIGHT: usize = 4;
/// Requests waiting for the ingestor at most; further ones wait to hand over.
const QUEUE_DEPTH: usize = 4096;

/// Why a group could not be stored, in a form every request of it can receive.
#[derive(Debug, Clone)]
enum Failure {
    Unavailable(String),
    Internal(String),
}

impl From<&StoreError> for Failure {
    fn from(e: &StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Failure::Unavailable(m.clone()),
            other => Failure::Internal(other.to_string()),
        }
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Unavailable(m) => {
                ApiError::Unavailable(format!("the database is unavailable: {m}"))
            }
            Failure::Internal(m) => ApiError::Internal(anyhow::anyhow!("storing events: {m}")),
        }
    }
}

type Reply = oneshot::Sender<Result<Vec<Stored>, Failure>>;

struct Request {
    events: Vec<NewEvent>,
    reply: Reply,
}

/// The handle requests use; cheap to clone. The task stops when every handle is gone.
#[derive(Clone)]
pub struct Ingestor {
    tx: mpsc::Sender<Request>,
}

/// What a group needs to be written.
#[derive(Clone)]
struct Sinks {
    pool: Pool,
    queue: Queue,
    accepted: IntCounter,
    /// The rules decide which queue each new event's route job takes.
    rules: RuleSet,
}

impl Ingestor {
    /// Starts the ingestor on the current Tokio runtime.
    pub fn start(pool: Pool, queue: Queue, accepted: IntCounter, rules: RuleSet) -> Ingestor {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let sinks = Sinks {
            pool,
            queue,
            accepted,
            rules,
        };
        tokio::spawn(coalesce(rx, sinks));
        Ingestor { tx }
    }

    /// Stores `events` (as part of whatever group they join) and enqueues their route
    /// jobs; one [`Stored`] per event, in order.
    pub async fn submit(&self, events: Vec<NewEvent>) -> Result<Vec<Stored>, ApiError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let stopped = || ApiError::Unavailable("ingestion is shutting down".into());
        self.tx
            .send(Request { events, reply })
            .await
            .map_err(|_| stopped())?;
        match answer.await {
            Ok(result) => result.map_err(ApiError::from),
            // The group's task died (a panic): the outcome is unknown.
            Err(_) => Err(ApiError::Internal(anyhow::anyhow!(
                "the ingestion task stopped before answering"
            ))),
        }
    }
}

/// The coalescing loop: gathers waiting requests into groups and starts writing a
/// group as soon as a write slot is free.
async fn coalesce(mut rx: mpsc::Receiver<Request>, sinks: Sinks) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut carried: Option<Request> = None;
    loop {
        let first = match carried.take() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => return, // every handle dropped: the api is stopping
            },
        };
        let mut rows = first.events.len();
        let mut group = vec![first];
        let permit = loop {
            // Take everything already waiting, up to the row limit.
            while rows < MAX_ROWS && carried.is_none() {
                match rx.try_recv() {
                    Ok(r) if rows + r.events.len() > MAX_ROWS => carried = Some(r),
                    Ok(r) => {
                        rows += r.events.len();
                        group.push(r);
                    }
                    Err(_) => break,
                }
            }
            if rows >= MAX_ROWS || carried.is_some() {
                break slots.clone().acquire_owned().await;
            }
            // Not full: write as soon as a slot frees, taking newcomers meanwhile.
            tokio::select! {
                biased;
                permit = slots.clone().acquire_owned() => break permit,
                next = rx.recv() => match next {
                    Some(r) if rows + r.events.len() > MAX_ROWS => carried = Some(r),
                    Some(r) => {
                        rows += r.events.len();
                        group.push(r);
                    }
                    None => break slots.clone().acquire_owned().await,
                },
            }
        };
        let Ok(permit) = permit else { return }; // the semaphore is never closed
        tokio::spawn(write_group(group, sinks.clone(), permit));
    }
}

/// Writes one group and answers its requests.
async fn write_group(group: Vec<Request>, sinks: Sinks, _slot: OwnedSemaphorePermit) {
    let rows: usize = group.iter().map(|r| r.events.len()).sum();
    let mut events = Vec::with_capacity(rows);
    let mut parts = Vec::with_capacity(group.len());
    for r in group {
        parts.push((r.events.len(), r.reply));
        events.extend(r.events);
    }
    match insert(&sinks.pool, &events).await {
        Ok(stored) => {
            enqueue(&sinks, &events, &stored).await;
            let mut from = 0;
            for (n, reply) in parts {
                let _ = reply.send(Ok(stored[from..from + n].to_vec()));
                from += n;
            }
        }
        Err(e) if parts.len() > 1 && !e.is_unavailable() => {
            tracing::warn!(error = %e, requests = parts.len(),
                "a grouped insert failed; storing its requests one by one");
            let mut rest = events.into_iter();
            for (n, reply) in parts {
                let own: Vec<NewEvent> = rest.by_ref().take(n).collect();
                let result = match insert(&sinks.pool, &own).await {
                    Ok(stored) => {
                        enqueue(&sinks, &own, &stored).await;
                        Ok(stored)
                    }
                    Err(e) => Err(Failure::from(&e)),
                };
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            let failure = Failure::from(&e);
            for (_, reply) in parts {
                let _ = reply.send(Err(failure.clone()));
            }
        }
    }
}

async fn insert(pool: &Pool, events: &[NewEvent]) -> Result<Vec<Stored>, StoreError> {
    let mut conn = herald_store::pool::get(pool).await?;
    events::insert_batch(&mut conn, events).await
}

/// One pipelined XADD for the group's new events. Failing is not fatal: the events
/// are committed and the recovery sweep routes them.
async fn enqueue(sinks: &Sinks, events: &[NewEvent], stored: &[Stored]) {
    let jobs: Vec<(QueueName, Job)> = events
        .iter()
        .zip(stored)
        .filter(|(_, s)| !s.duplicate)
        .map(|(e, s)| (route_queue(&sinks.rules, e), Job::route(s.id)))
        .collect();
    sinks.accepted.inc_by(jobs.len() as u64);
    if let Err(e) = sinks.queue.enqueue(&jobs).await {
        tracing::warn!(error = %e, events = jobs.len(),
            "could not enqueue; the events are committed and the recovery sweep will route them");
    }
}

/// An event that makes critical notifications is routed on the critical queue, ahead
/// of everything else.
fn route_queue(rules: &RuleSet, event: &NewEvent) -> QueueName {
    queue_for(rules.event_severity(&event.event_type, &event.properties))
}
