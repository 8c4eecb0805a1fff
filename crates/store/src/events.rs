//! Accepted events. The api stores a whole request (or several coalesced requests)
//! with one multi-row insert; duplicates by idempotency key are resolved to the
//! original's id. Events stay `received` until a worker routes them, which makes this
//! table the outbox the recovery sweep scans when Redis lost the route jobs.

use crate::partitions;
use crate::pool::{Conn, StoreError};
use crate::schema::{event_keys, events};
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment};
use diesel::sql_types::{Array, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use herald_core::event::NewEvent;
use serde_json::Value;
use std::borrow::Borrow;
use std::collections::HashMap;
use uuid::Uuid;

/// The rows of one insert, column by column: `WITH input AS (SELECT * FROM unnest($1,
/// ..., $9)), keyed AS (INSERT INTO event_keys ... ON CONFLICT DO NOTHING) INSERT INTO
/// events ...`. `events` is partitioned by time, so no index there can keep a key
/// unique across partitions: the keys live in `event_keys` (one row per key, pruned with
/// the retention), and an event with a key is stored only when its key was new. Keys
/// are claimed in key order, so two batches sharing keys queue rather than deadlock.
///
/// Nine array parameters whatever the number of rows, so the SQL text never changes
/// and diesel-async prepares it once per connection and reuses it. (A `VALUES` list
/// is new SQL for every row count: diesel prepares it afresh each time, which costs
/// an extra round trip and a parse and plan of hundreds of parameters in Postgres.)
#[derive(Default)]
struct UnnestInsert<'a> {
    ids: Vec<Uuid>,
    event_types: Vec<&'a str>,
    user_ids: Vec<Option<&'a str>>,
    topics: Vec<Option<&'a str>>,
    timestamps: Vec<DateTime<Utc>>,
    properties: Vec<&'a Value>,
    user_traits: Vec<&'a Value>,
    keys: Vec<Option<&'a str>>,
    deliver_at: Vec<Option<DateTime<Utc>>>,
}

impl<'a> UnnestInsert<'a> {
    fn push(&mut self, e: &'a NewEvent) {
        self.ids.push(e.id);
        self.event_types.push(&e.event_type);
        self.user_ids.push(e.user_id.as_deref());
        self.topics.push(e.topic.as_deref());
        self.timestamps.push(e.event_timestamp);
        self.properties.push(&e.properties);
        self.user_traits.push(&e.user_traits);
        self.keys.push(e.idempotency_key.as_deref());
        self.deliver_at.push(e.deliver_at);
    }
}

/// What follows the arrays of [`UnnestInsert`]: claim the keys, store the events
/// whose key was claimed (or that have none).
const INSERT_TAIL: &str = ") AS i(id, event_type, user_id, topic, event_timestamp, properties, \
     user_traits, idempotency_key, deliver_at)),
     keyed AS (
       INSERT INTO event_keys (key, event_id)
       SELECT idempotency_key, id FROM input WHERE idempotency_key IS NOT NULL
       ORDER BY idempotency_key
       ON CONFLICT (key) DO NOTHING RETURNING event_id)
     INSERT INTO events (id, event_type, user_id, topic, event_timestamp, properties, \
       user_traits, idempotency_key, deliver_at)
     SELECT * FROM input
     WHERE idempotency_key IS NULL OR id IN (SELECT event_id FROM keyed)
     RETURNING id";

cacheable_statement!(UnnestInsert);

impl Query for UnnestInsert<'_> {
    type SqlType = diesel::sql_types::Uuid;
}

impl QueryFragment<Pg> for UnnestInsert<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH input AS MATERIALIZED (SELECT * FROM unnest(");
        push_binds!(out;
            Array<diesel::sql_types::Uuid> => &self.ids,
            Array<Text> => &self.event_types,
            Array<Nullable<Text>> => &self.user_ids,
            Array<Nullable<Text>> => &self.topics,
            Array<Timestamptz> => &self.timestamps,
            Array<Jsonb> => &self.properties,
            Array<Jsonb> => &self.user_traits,
            Array<Nullable<Text>> => &self.keys,
            Array<Nullable<Timestamptz>> => &self.deliver_at,
        );
        out.push_sql(INSERT_TAIL);
        Ok(())
    }
}

/// The outcome of storing one event of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Herald's id: the new event's, or the original's for a duplicate.
    pub id: Uuid,
    pub duplicate: bool,
}

/// Stores a batch with one insert (a prepared statement over arrays, see
/// [`UnnestInsert`]). Returns one [`Stored`] per input, in order.
/// Within the batch and against history, the first payload with a key wins.
/// Takes owned events or references (the api's ingestor passes references into the
/// coalesced requests rather than copying them).
pub async fn insert_batch<E: Borrow<NewEvent>>(
    conn: &mut Conn,
    batch: &[E],
) -> Result<Vec<Stored>, StoreError> {
    let batch: Vec<&NewEvent> = batch.iter().map(Borrow::borrow).collect();
    // First occurrence of each key within the batch; later ones are duplicates of it.
    let mut first_by_key: HashMap<&str, usize> = HashMap::new();
    let mut twin_of: Vec<Option<usize>> = Vec::with_capacity(batch.len());
    for (i, e) in batch.iter().enumerate() {
        let twin = e.idempotency_key.as_deref().and_then(|k| {
            first_by_key.get(k).copied().or_else(|| {
                first_by_key.insert(k, i);
                None
            })
        });
        twin_of.push(twin);
    }
    let mut rows = UnnestInsert::default();
    for (e, _) in batch
        .iter()
        .zip(&twin_of)
        .filter(|(_, twin)| twin.is_none())
    {
        rows.push(e);
    }
    let inserted: Vec<Uuid> = if rows.ids.is_empty() {
        Vec::new()
    } else {
        rows.get_results(conn).await?
    };
    let inserted: std::collections::HashSet<Uuid> = inserted.into_iter().collect();

    // Keys already claimed (by an earlier event within the retention): the originals.
    let clashing: Vec<&str> = batch
        .iter()
        .zip(&twin_of)
        .filter(|(e, twin)| twin.is_none() && !inserted.contains(&e.id))
        .filter_map(|(e, _)| e.idempotency_key.as_deref())
        .collect();
    let originals: HashMap<String, Uuid> = if clashing.is_empty() {
        HashMap::new()
    } else {
        event_keys::table
            .filter(event_keys::key.eq_any(&clashing))
            .select((event_keys::key, event_keys::event_id))
            .load::<(String, Uuid)>(conn)
            .await?
            .into_iter()
            .collect()
    };

    let mut out: Vec<Stored> = Vec::with_capacity(batch.len());
    for (i, e) in batch.iter().enumerate() {
        let stored = match twin_of[i] {
            Some(first) => Stored {
                id: out[first].id,
                duplicate: true,
            },
            None if inserted.contains(&e.id) => Stored {
                id: e.id,
                duplicate: false,
            },
            None => {
                let original = e
                    .idempotency_key
                    .as_deref()
                    .and_then(|k| originals.get(k).copied())
                    .ok_or(StoreError::NotFound)?;
                Stored {
                    id: original,
                    duplicate: true,
                }
            }
        };
        out.push(stored);
    }
    Ok(out)
}

/// A stored event, as the worker routes it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct EventRow {
    pub id: Uuid,
    pub event_type: String,
    pub user_id: Option<String>,
    pub topic: Option<String>,
    pub event_timestamp: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub properties: Value,
    pub user_traits: Value,
    pub status: String,
    /// When the event's notifications must go (its `deliver_at`).
    pub deliver_at: Option<DateTime<Utc>>,
}

impl EventRow {
    /// The event as routing sees it.
    pub fn facts(&self) -> herald_core::routing::EventFacts<'_> {
        herald_core::routing::EventFacts {
            id: self.id,
            event_type: &self.event_type,
            user_id: self.user_id.as_deref(),
            topic: self.topic.as_deref(),
            event_timestamp: self.event_timestamp,
            received_at: self.received_at,
            properties: &self.properties,
            user_traits: &self.user_traits,
            deliver_at: self.deliver_at,
        }
    }
}

pub async fn find(conn: &mut Conn, id: Uuid) -> Result<EventRow, StoreError> {
    find_many(conn, &[id])
        .await?
        .pop()
        .ok_or(StoreError::NotFound)
}

type FindWithin<'a> = diesel::dsl::Select<
    diesel::dsl::Filter<
        diesel::dsl::Filter<events::table, diesel::dsl::EqAny<events::id, &'a [Uuid]>>,
        diesel::dsl::Between<events::received_at, DateTime<Utc>, DateTime<Utc>>,
    >,
    diesel::dsl::AsSelect<EventRow, Pg>,
>;

/// The events of `ids` received within `from`…`to`.
fn find_within(ids: &[Uuid], from: DateTime<Utc>, to: DateTime<Utc>) -> FindWithin<'_> {
    events::table
        .filter(events::id.eq_any(ids))
        .filter(events::received_at.between(from, to))
        .select(EventRow::as_select())
}

/// The SQL of [`find_many`]'s query within a window (`$1`: the ids, `$2`, `$3`: the
/// window), for checking its plan.
pub fn find_many_sql() -> Result<String, StoreError> {
    crate::prepared::sql_of(&find_within(&[], Utc::now(), Utc::now()))
}

/// The SQL of [`mark_routed`]'s statement (`$1`: the ids, `$2`, `$3`: the window), for
/// checking its plan.
pub fn mark_routed_sql() -> Result<String, StoreError> {
    crate::prepared::sql_of(&MarkRouted {
        ids: &[],
        window: (None, None),
    })
}

/// The events of `ids` that exist. `events` is partitioned by `received_at`, which the
/// id alone does not name, so a plain lookup by id probes every partition. The ids'
/// times narrow it ([`partitions::id_window`]): one query over those partitions, and
/// only if some ids were not found there, a second over all of them.
pub async fn find_many(conn: &mut Conn, ids: &[Uuid]) -> Result<Vec<EventRow>, StoreError> {
    let mut found = match partitions::id_window(ids) {
        Some((from, to)) => find_within(ids, from, to).load(conn).await?,
        None => Vec::new(),
    };
    let missing = partitions::not_found(ids, found.iter().map(|e| e.id));
    if !missing.is_empty() {
        found.extend(
            events::table
                .filter(events::id.eq_any(&missing))
                .select(EventRow::as_select())
                .load(conn)
                .await?,
        );
    }
    Ok(found)
}

/// `UPDATE events SET status = 'routed' … WHERE id = ANY($1)` and `received_at` within
/// `$2`…`$3` (NULL: unbounded, every partition): one prepared statement for any number
/// of events (diesel's update DSL is prepared afresh on every call). Bounds given as
/// parameters still prune: at planning for a custom plan, at executor start for a
/// generic one.
struct MarkRouted<'a> {
    ids: &'a [Uuid],
    window: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
}

cacheable_statement!(MarkRouted);

impl Query for MarkRouted<'_> {
    type SqlType = diesel::sql_types::Uuid;
}

impl QueryFragment<Pg> for MarkRouted<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("UPDATE events SET status = 'routed', routed_at = now() WHERE id = ANY(");
        out.push_bind_param::<Array<diesel::sql_types::Uuid>, _>(self.ids)?;
        out.push_sql(") AND received_at >= COALESCE(");
        out.push_bind_param::<Nullable<Timestamptz>, _>(&self.window.0)?;
        out.push_sql(", '-infinity') AND received_at <= COALESCE(");
        out.push_bind_param::<Nullable<Timestamptz>, _>(&self.window.1)?;
        out.push_sql(", 'infinity') RETURNING id");
        Ok(())
    }
}

/// Marks events routed: all their notification rows exist. Within the ids' window
/// first ([`partitions::id_window`]), then over every partition for the rest.
pub async fn mark_routed(conn: &mut Conn, ids: &[Uuid]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let done: Vec<Uuid> = match partitions::id_window(ids) {
        Some((from, to)) => {
            MarkRouted {
                ids,
                window: (Some(from), Some(to)),
            }
            .get_results(conn)
            .await?
        }
        None => Vec::new(),
    };
    let missing = partitions::not_found(ids, done);
    if !missing.is_empty() {
        let _: Vec<Uuid> = MarkRouted {
            ids: &missing,
            window: (None, None),
        }
        .get_results(conn)
        .await?;
    }
    Ok(())
}

/// Events still `received` that arrived before `cutoff`: their route job may be lost.
/// Returns (id, event's `properties.severity` is critical) for queue choice.
pub async fn unrouted_before(
    conn: &mut Conn,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<UnroutedEvent>, StoreError> {
    Ok(events::table
        .filter(events::status.eq("received"))
        .filter(events::received_at.lt(cutoff))
        .order(events::received_at)
        .limit(limit)
        .select(UnroutedEvent::as_select())
        .load(conn)
        .await?)
}

/// What the recovery sweep needs of an unrouted event to enqueue its route job: its
/// severity's inputs (the queue) and its addressee (the partition).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct UnroutedEvent {
    pub id: Uuid,
    pub event_type: String,
    pub properties: Value,
    pub user_traits: Value,
    pub user_id: Option<String>,
    pub topic: Option<String>,
}
