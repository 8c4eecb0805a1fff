//! The statements every routed event and every delivery makes, shared across
//! concurrent jobs through the store's group-commit [`Batcher`]s: one query loads
//! many jobs' rows, one statement (and one commit) writes many jobs' results. A
//! batch the database refuses is run again job by job, so one job's row (deleted
//! meanwhile, say) fails only that job.
//!
//! They have small pools of their own. Jobs hold connections from the main pool
//! while they wait on a batch; if the batches drew from the same pool, jobs holding
//! every connection would wait forever on a batch that cannot get one. Batches commit
//! without waiting for the WAL flush, but for the notifications' insert: a delivery
//! may go out milliseconds after it. Statements that read by key only are planned
//! once per session, the others for each run (see [`Pools`]).

use crate::metrics::Metrics;
use herald_core::routing::FAN_OUT_CHUNK;
use herald_store::batch::{BatchError, Batcher, Options};
use herald_store::events::{self, EventRow};
use herald_store::notifications::{self, AttemptRecord, DeliveryRow, Inserted, NewNotification};
use herald_store::people::{self, Member, TopicPage};
use herald_store::pool::Plans;
use herald_store::Pool;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

/// Rows per batch at most: far below Postgres's limits, large enough that one
/// statement serves a whole read of the queue.
const MAX_ITEMS: usize = 512;
/// Batches of one kind running at once. One: while it runs, the next batch gathers,
/// so batches grow with the load (measured: two in flight halved the batch sizes
/// and cost more Postgres time per row).
const IN_FLIGHT: usize = 1;
/// Jobs' items waiting for a batcher at most; further jobs wait to hand theirs over.
const WAITING: usize = 8192;
/// Connections of the pool of the batches planned for each run.
const LAZY_POOL_SIZE: usize = 6;
/// The event loads and the `routed` marks, one batch of each at a time ([`IN_FLIGHT`]).
const KEYED_POOL_SIZE: usize = 2;
/// The notifications' insert alone uses this one, one batch at a time.
const DURABLE_POOL_SIZE: usize = 2;

/// The batches' connections, by how their commits treat the WAL and how their
/// statements are planned ([`Plans`]).
pub struct Pools {
    /// Commits that may be forgotten by a crash of Postgres and are then redone;
    /// statements that join or read ranges, planned for each run's arrays.
    lazy: Pool,
    /// Commits as `lazy`'s; statements that read `events` by key only, planned once
    /// ([`key_lookup_plans`]).
    keyed: Pool,
    /// Commits that are on disk when they return: the notifications' insert. A
    /// notification inserted lazily, delivered at once (handed off or read from the
    /// stream) and then forgotten by a crash would be routed again under a new id, and
    /// its receiver would get it twice under two `webhook-id`s. The price is one WAL
    /// flush per batch on the way to the webhook: 0.1 ms on 2026-12-04 on this box
    /// (`pg_test_fsync`), 3.2 ms on the day BENCHMARKS.md's machine table was made.
    /// Planned as `keyed`: the insert reads `events` by key only, and it is where
    /// Postgres checks each row's person (a foreign key), once per row.
    durable: Pool,
}

/// With more partitions of `events` than this, statements that read by key are
/// planned for each run too. Postgres 15 locks every partition a generic plan names at
/// each run, which past this many costs more than planning: measured with `pgbench`
/// (BENCHMARKS.md, round two, sixth part), the `routed` mark ran in 0.198 ms planned
/// once against 0.240 ms planned each run at 65 partitions, 0.252 against 0.245 ms at
/// 105, 0.40 against 0.27 ms at 155. The default retention (30 days of daily
/// partitions) keeps about 35.
const MOST_PARTITIONS_FOR_PLANS_ONCE: usize = 60;

/// How the statements that read by key only are planned, given how many partitions
/// `events` has.
fn key_lookup_plans(event_partitions: usize) -> Plans {
    if event_partitions <= MOST_PARTITIONS_FOR_PLANS_ONCE {
        Plans::Once
    } else {
        Plans::EachRun
    }
}

impl Pools {
    /// The pools, for a database whose `events` table has `event_partitions`
    /// partitions (see [`key_lookup_plans`]).
    pub fn connect(
        database_url: &str,
        event_partitions: usize,
    ) -> Result<Pools, herald_store::StoreError> {
        use herald_store::pool::connect_for_batches as connect;
        use herald_store::pool::Commits;
        let by_key = key_lookup_plans(event_partitions);
        tracing::info!(
            event_partitions,
            ?by_key,
            "how batch statements that read by key are planned"
        );
        Ok(Pools {
            lazy: connect(database_url, LAZY_POOL_SIZE, Commits::Lazy, Plans::EachRun)?,
            keyed: connect(database_url, KEYED_POOL_SIZE, Commits::Lazy, by_key)?,
            durable: connect(database_url, DURABLE_POOL_SIZE, Commits::Durable, by_key)?,
        })
    }
}

#[derive(Clone)]
pub struct Statements {
    events: Batcher<Uuid, Option<EventRow>>,
    notifications: Batcher<Vec<NewNotification>, Vec<Inserted>>,
    routed: Batcher<Uuid, ()>,
    topic_pages: Batcher<TopicPage, Vec<Member>>,
    deliveries: Batcher<Uuid, Option<DeliveryRow>>,
    attempts: Batcher<AttemptRecord, ()>,
}

impl Statements {
    /// Starts the batchers on the current runtime; each batch's size and time go to
    /// `metrics` under the batcher's name.
    pub fn start(pools: Pools, metrics: Metrics) -> Statements {
        let lazy = (pools.lazy, metrics.clone());
        let keyed = (pools.keyed, metrics.clone());
        let durable = (pools.durable, metrics);
        Statements {
            events: batcher(
                &keyed,
                "events",
                |mut conn, ids: Arc<Vec<Uuid>>| async move {
                    let found = events::find_many(&mut conn, &ids).await?;
                    Ok(in_order(&ids, found, |e| e.id))
                },
            ),
            notifications: batcher(
                &durable,
                "notifications",
                |mut conn, chunks: Arc<Vec<_>>| async move {
                    Ok(notifications::insert_chunks(&mut conn, &chunks).await?)
                },
            ),
            routed: batcher(
                &keyed,
                "routed",
                |mut conn, ids: Arc<Vec<Uuid>>| async move {
                    events::mark_routed(&mut conn, &ids).await?;
                    Ok(vec![(); ids.len()])
                },
            ),
            topic_pages: batcher(
                &lazy,
                "topic pages",
                |mut conn, pages: Arc<Vec<TopicPage>>| async move {
                    Ok(people::topic_pages(&mut conn, &pages, FAN_OUT_CHUNK).await?)
                },
            ),
            deliveries: batcher(
                &lazy,
                "deliveries",
                |mut conn, ids: Arc<Vec<Uuid>>| async move {
                    let found = notifications::for_delivery(&mut conn, &ids).await?;
                    Ok(in_order(&ids, found, |r| r.id))
                },
            ),
            attempts: batcher(
                &lazy,
                "attempts",
                |mut conn, recs: Arc<Vec<AttemptRecord>>| async move {
                    notifications::record_attempts(&mut conn, &recs).await?;
                    Ok(vec![(); recs.len()])
                },
            ),
        }
    }

    /// The event, if it exists.
    pub async fn event(&self, id: Uuid) -> Result<Option<EventRow>, BatchError> {
        self.events.call(id).await
    }

    /// Inserts a chunk of notification rows; returns those that did not exist yet.
    pub async fn insert_notifications(
        &self,
        rows: Vec<NewNotification>,
    ) -> Result<Vec<Inserted>, BatchError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        self.notifications.call(rows).await
    }

    /// Marks the event routed: all its notification rows exist.
    pub async fn mark_routed(&self, id: Uuid) -> Result<(), BatchError> {
        self.routed.call(id).await
    }

    /// One page (at most [`FAN_OUT_CHUNK`]) of a topic's members, each with whether
    /// they switched the page's event type off.
    pub async fn topic_page(&self, page: TopicPage) -> Result<Vec<Member>, BatchError> {
        self.topic_pages.call(page).await
    }

    /// What delivering the notification needs, if it exists.
    pub async fn delivery_row(&self, id: Uuid) -> Result<Option<DeliveryRow>, BatchError> {
        self.deliveries.call(id).await
    }

    /// Records a try and the notification's new state.
    pub async fn record_attempt(&self, rec: AttemptRecord) -> Result<(), BatchError> {
        self.attempts.call(rec).await
    }
}

/// A batcher (named `name` in logs and metrics) whose batch function runs on a
/// connection from the pool.
fn batcher<I, O, F, Fut>(
    (pool, metrics): &(Pool, Metrics),
    name: &'static str,
    run: F,
) -> Batcher<I, O>
where
    I: Send + Sync + 'static,
    O: Send + 'static,
    F: Fn(herald_store::Conn, Arc<Vec<I>>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<Vec<O>, BatchError>> + Send + 'static,
{
    let (pool, metrics) = (pool.clone(), metrics.clone());
    let options = Options {
        name,
        max_weight: MAX_ITEMS,
        in_flight: IN_FLIGHT,
        waiting: WAITING,
    };
    Batcher::start(options, move |items| {
        let (pool, run, metrics) = (pool.clone(), run.clone(), metrics.clone());
        async move {
            let (started, count) = (Instant::now(), items.len());
            let conn = herald_store::pool::get(&pool).await?;
            let answers = run(conn, items).await;
            metrics.batch(name, count, started.elapsed());
            answers
        }
    })
}

/// One entry per key, in the keys' order: the row found for it, if any. (A key asked
/// twice in one batch gets a copy of the row each time.)
fn in_order<K: Eq + Hash + Copy, V: Clone>(
    keys: &[K],
    found: Vec<V>,
    key_of: impl Fn(&V) -> K,
) -> Vec<Option<V>> {
    let mut last_ask: HashMap<K, usize> = HashMap::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        last_ask.insert(*k, i);
    }
    let mut rows: HashMap<K, V> = found.into_iter().map(|v| (key_of(&v), v)).collect();
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            if last_ask.get(k) == Some(&i) {
                rows.remove(k)
            } else {
                rows.get(k).cloned()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{in_order, key_lookup_plans, Plans, MOST_PARTITIONS_FOR_PLANS_ONCE};

    #[test]
    fn statements_that_read_by_key_are_planned_once_up_to_the_partition_limit() {
        let most = MOST_PARTITIONS_FOR_PLANS_ONCE;
        for (partitions, plans) in [
            (0, Plans::Once),
            (35, Plans::Once),
            (most, Plans::Once),
            (most + 1, Plans::EachRun),
            (405, Plans::EachRun),
        ] {
            assert_eq!(
                key_lookup_plans(partitions),
                plans,
                "{partitions} partitions"
            );
        }
    }

    #[test]
    fn rows_come_back_in_the_order_asked_with_gaps_and_repeats() {
        let found = vec![(3, "c"), (1, "a")];
        let out = in_order(&[1, 2, 3, 1], found, |v| v.0);
        assert_eq!(
            out,
            vec![Some((1, "a")), None, Some((3, "c")), Some((1, "a"))]
        );
    }
}
