//! Accepted events. The api stores a whole request (or several coalesced requests)
//! with one multi-row insert; duplicates by idempotency key are resolved to the
//! original's id. Events stay `received` until a worker routes them, which makes this
//! table the outbox the recovery sweep scans when Redis lost the route jobs.

use crate::pool::{Conn, StoreError};
use crate::schema::events;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::on_constraint;
use diesel_async::RunQueryDsl;
use herald_core::event::NewEvent;
use serde_json::Value;
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Insertable)]
#[diesel(table_name = events)]
struct EventInsert<'a> {
    id: Uuid,
    event_type: &'a str,
    user_id: Option<&'a str>,
    topic: Option<&'a str>,
    event_timestamp: DateTime<Utc>,
    properties: &'a Value,
    user_traits: &'a Value,
    idempotency_key: Option<&'a str>,
}

/// The outcome of storing one event of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Herald's id: the new event's, or the original's for a duplicate.
    pub id: Uuid,
    pub duplicate: bool,
}

/// Stores a batch with one multi-row insert. Returns one [`Stored`] per input, in order.
/// Within the batch and against history, the first payload with a key wins.
pub async fn insert_batch(conn: &mut Conn, batch: &[NewEvent]) -> Result<Vec<Stored>, StoreError> {
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
    let rows: Vec<EventInsert> = batch
        .iter()
        .zip(&twin_of)
        .filter(|(_, twin)| twin.is_none())
        .map(|(e, _)| EventInsert {
            id: e.id,
            event_type: &e.event_type,
            user_id: e.user_id.as_deref(),
            topic: e.topic.as_deref(),
            event_timestamp: e.event_timestamp,
            properties: &e.properties,
            user_traits: &e.user_traits,
            idempotency_key: e.idempotency_key.as_deref(),
        })
        .collect();
    let inserted: Vec<Uuid> = if rows.is_empty() {
        Vec::new()
    } else {
        diesel::insert_into(events::table)
            .values(&rows)
            .on_conflict(on_constraint("events_idempotency_key_key"))
            .do_nothing()
            .returning(events::id)
            .get_results(conn)
            .await?
    };
    let inserted: std::collections::HashSet<Uuid> = inserted.into_iter().collect();

    // Keys whose row already existed: look up the original ids.
    let clashing: Vec<&str> = batch
        .iter()
        .zip(&twin_of)
        .filter(|(e, twin)| twin.is_none() && !inserted.contains(&e.id))
        .filter_map(|(e, _)| e.idempotency_key.as_deref())
        .collect();
    let originals: HashMap<String, Uuid> = if clashing.is_empty() {
        HashMap::new()
    } else {
        events::table
            .filter(events::idempotency_key.eq_any(&clashing))
            .select((events::idempotency_key.assume_not_null(), events::id))
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
}

pub async fn find(conn: &mut Conn, id: Uuid) -> Result<EventRow, StoreError> {
    Ok(events::table
        .find(id)
        .select(EventRow::as_select())
        .first(conn)
        .await?)
}

/// Marks an event routed: all its notification rows exist.
pub async fn mark_routed(conn: &mut Conn, id: Uuid) -> Result<(), StoreError> {
    diesel::update(events::table.find(id))
        .set((
            events::status.eq("routed"),
            events::routed_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Events still `received` that arrived before `cutoff`: their route job may be lost.
/// Returns (id, event's `properties.severity` is critical) for queue choice.
pub async fn unrouted_before(
    conn: &mut Conn,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(Uuid, Value)>, StoreError> {
    Ok(events::table
        .filter(events::status.eq("received"))
        .filter(events::received_at.lt(cutoff))
        .order(events::received_at)
        .limit(limit)
        .select((events::id, events::properties))
        .load(conn)
        .await?)
}
