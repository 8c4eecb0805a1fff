//! Each person's change log (the console's live stream, issue 8).
//!
//! Triggers on `notifications` (migration `*_person_changes`) append one row per
//! change of a person's notification — created, status, read, delivered, opened — to
//! `person_changes`, numbered by the person's own counter in `person_change_seqs`. The
//! numbers are dense and become visible in order (see the migration), so a reader that
//! has seen everything up to `n` asks for `seq > n` and misses nothing. Private rows
//! (operators' alerts about a person) and rows without a person are not logged.
//!
//! A change row holds what changed (status and read mark as the change left them); the
//! rest (type, channel, texts) is read from the notification when the change is read.

use crate::pool::{Conn, StoreError};
use crate::schema::{notifications, person_change_seqs, person_changes, users};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

/// What a change did, as stored in `person_changes.kind`.
pub mod kind {
    pub const CREATED: &str = "created";
    pub const STATUS: &str = "status";
    pub const READ: &str = "read";
    pub const DELIVERED: &str = "delivered";
    pub const OPENED: &str = "opened";
}

/// One change of a person's notification, with the notification it concerns.
#[derive(Debug, Clone, PartialEq, Queryable, serde::Serialize)]
pub struct Change {
    /// The person's sequence number: the SSE event id.
    pub seq: i64,
    /// created, status, read, delivered or opened.
    pub kind: String,
    /// When the change was committed.
    pub at: DateTime<Utc>,
    /// The notification's id.
    pub id: Uuid,
    /// The notification's status as this change left it.
    pub status: String,
    /// Its read mark as this change left it.
    pub read_at: Option<DateTime<Utc>>,
    pub notification_type: String,
    pub channel: String,
    pub subject: Option<String>,
    pub text: String,
    pub created_at: DateTime<Utc>,
    pub suppression_reason: Option<String>,
    pub bundle_id: Option<Uuid>,
}

/// The last sequence number of a person's log: `Some(0)` before their first change,
/// `None` when the person does not exist.
pub async fn position(conn: &mut Conn, user_id: &str) -> Result<Option<i64>, StoreError> {
    let found: Option<Option<i64>> = users::table
        .left_join(person_change_seqs::table.on(person_change_seqs::user_id.eq(users::user_id)))
        .filter(users::user_id.eq(user_id))
        .select(person_change_seqs::seq.nullable())
        .first(conn)
        .await
        .optional()?;
    Ok(found.map(|seq| seq.unwrap_or(0)))
}

/// The person's changes numbered above `after`, oldest first, at most `limit`.
/// Served by the primary key (user_id, seq).
pub async fn after(
    conn: &mut Conn,
    user_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<Change>, StoreError> {
    Ok(person_changes::table
        .inner_join(notifications::table.on(notifications::id.eq(person_changes::notification_id)))
        .filter(person_changes::user_id.eq(user_id))
        .filter(person_changes::seq.gt(after))
        .order(person_changes::seq)
        .limit(limit)
        .select((
            person_changes::seq,
            person_changes::kind,
            person_changes::at,
            notifications::id,
            person_changes::status,
            person_changes::read_at,
            notifications::notification_type,
            notifications::channel,
            notifications::subject,
            notifications::text,
            notifications::created_at,
            notifications::suppression_reason,
            notifications::bundle_id,
        ))
        .load(conn)
        .await?)
}

/// Deletes up to `batch` changes older than `before`; returns how many. Call it
/// repeatedly until it returns less than `batch` (short statements: the log is
/// written on the hot path and must not wait behind one long delete). A client
/// resuming from a pruned number is told to reload (the stream's `reset` event).
pub async fn prune(
    conn: &mut Conn,
    before: DateTime<Utc>,
    batch: i64,
) -> Result<usize, StoreError> {
    Ok(diesel::sql_query(
        // By key, not ctid: the log is partitioned and a ctid is only unique within
        // one partition. Retention drops whole partitions; this trims the days before.
        "DELETE FROM person_changes d USING (
           SELECT user_id, seq, at FROM person_changes WHERE at < $1 LIMIT $2) o
         WHERE d.user_id = o.user_id AND d.seq = o.seq AND d.at = o.at",
    )
    .bind::<diesel::sql_types::Timestamptz, _>(before)
    .bind::<diesel::sql_types::BigInt, _>(batch)
    .execute(conn)
    .await?)
}
