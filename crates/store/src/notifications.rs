//! Notification rows and their delivery attempts.
//!
//! Routing inserts a chunk of rows with one statement; the unique index on (event,
//! recipient, type, channel) makes re-processing an event a no-op. Delivery state
//! changes in one round trip per try: the attempt row and the notification's new
//! status are written together by a single statement.

use crate::pool::{Conn, StoreError};
use crate::schema::{delivery_attempts, events, notifications, users};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Int4, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use herald_core::retry::AttemptOutcome;
use serde_json::Value;
use uuid::Uuid;

/// Notification statuses, as stored.
pub mod status {
    pub const PENDING: &str = "pending";
    pub const BUNDLED: &str = "bundled";
    pub const SENT: &str = "sent";
    pub const FAILED: &str = "failed";
    pub const SUPPRESSED: &str = "suppressed";
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = notifications)]
pub struct NewNotification {
    pub id: Uuid,
    pub event_id: Uuid,
    pub user_id: Option<String>,
    pub notification_type: String,
    pub channel: String,
    pub status: &'static str,
    pub suppression_reason: Option<String>,
    pub severity: &'static str,
    pub private: bool,
    pub subject: Option<String>,
    pub text: String,
    pub due_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// The pending bundle this row is an item of (SPEC 8).
    pub bundle_id: Option<Uuid>,
}

/// A newly inserted row that now needs delivering.
#[derive(Debug, Clone, Queryable)]
pub struct Inserted {
    pub id: Uuid,
    pub status: String,
    pub severity: String,
    pub due_at: DateTime<Utc>,
}

/// Inserts a chunk of rows; returns those that did not exist yet.
pub async fn insert_batch(
    conn: &mut diesel_async::AsyncPgConnection,
    rows: &[NewNotification],
) -> Result<Vec<Inserted>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    Ok(diesel::insert_into(notifications::table)
        .values(rows)
        .on_conflict_do_nothing()
        .returning((
            notifications::id,
            notifications::status,
            notifications::severity,
            notifications::due_at,
        ))
        .get_results(conn)
        .await?)
}

/// Everything a delivery needs, read in one query.
#[derive(Debug, Clone, Queryable)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub event_id: Uuid,
    pub user_id: Option<String>,
    pub notification_type: String,
    pub channel: String,
    pub status: String,
    pub severity: String,
    pub subject: Option<String>,
    pub text: String,
    pub attempts: i32,
    pub due_at: DateTime<Utc>,
    pub event_type: String,
    pub event_timestamp: DateTime<Utc>,
    pub properties: Value,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub webhook_url: Option<String>,
    /// The person's webhook answered 410 Gone and is disabled.
    pub webhook_disabled: bool,
    pub created_at: DateTime<Utc>,
    /// Set on a bundle's carrier (and items): its final state spreads to the items.
    pub bundle_id: Option<Uuid>,
}

pub async fn for_delivery(conn: &mut Conn, id: Uuid) -> Result<Option<DeliveryRow>, StoreError> {
    Ok(notifications::table
        .inner_join(events::table)
        .left_join(users::table)
        .filter(notifications::id.eq(id))
        .select((
            notifications::id,
            notifications::event_id,
            notifications::user_id,
            notifications::notification_type,
            notifications::channel,
            notifications::status,
            notifications::severity,
            notifications::subject,
            notifications::text,
            notifications::attempts,
            notifications::due_at,
            events::event_type,
            events::event_timestamp,
            events::properties,
            users::email.nullable(),
            users::phone.nullable(),
            users::webhook_url.nullable(),
            users::webhook_disabled_at.nullable().is_not_null(),
            notifications::created_at,
            notifications::bundle_id,
        ))
        .first(conn)
        .await
        .optional()?)
}

/// One try's result, as the worker reports it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub notification_id: Uuid,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    /// Already capped: a retry past `max_attempts` arrives as a permanent failure.
    pub outcome: AttemptOutcome,
    /// When the next try is due, for a retry.
    pub next_due: Option<DateTime<Utc>>,
}

#[derive(QueryableByName)]
struct AttemptNo {
    #[diesel(sql_type = Int4)]
    attempt: i32,
}

/// Writes the attempt row and moves the notification on, in one statement. A row that
/// is no longer `pending` (a duplicate delivery after a reclaim) keeps its status, but
/// the attempt is still recorded: it happened. Returns the attempt number.
pub async fn record_attempt(conn: &mut Conn, rec: &AttemptRecord) -> Result<i32, StoreError> {
    let new_status = match rec.outcome {
        AttemptOutcome::Success => status::SENT,
        AttemptOutcome::Retry => status::PENDING,
        AttemptOutcome::PermanentFailure => status::FAILED,
    };
    let row = diesel::sql_query(
        "WITH n AS (
           UPDATE notifications SET
             attempts = attempts + 1,
             status = CASE WHEN status = 'pending' THEN $2 ELSE status END,
             sent_at = CASE WHEN $2 = 'sent' THEN COALESCE(sent_at, now()) ELSE sent_at END,
             due_at = COALESCE($3, due_at),
             last_error = CASE WHEN $2 = 'sent' THEN NULL ELSE $4 END
           WHERE id = $1
           RETURNING attempts)
         INSERT INTO delivery_attempts
           (notification_id, attempt, started_at, duration_ms, http_status, error, outcome)
         SELECT $1, attempts, $5, $6, $7, $4, $8 FROM n
         RETURNING attempt",
    )
    .bind::<SqlUuid, _>(rec.notification_id)
    .bind::<Text, _>(new_status)
    .bind::<Nullable<Timestamptz>, _>(rec.next_due)
    .bind::<Nullable<Text>, _>(&rec.error)
    .bind::<Timestamptz, _>(rec.started_at)
    .bind::<Int4, _>(rec.duration_ms)
    .bind::<Nullable<Int4>, _>(rec.http_status)
    .bind::<Text, _>(rec.outcome.as_str())
    .get_result::<AttemptNo>(conn)
    .await?;
    Ok(row.attempt)
}

/// Marks a pending notification sent without an HTTP call (the `in_app` channel).
pub async fn mark_sent(conn: &mut Conn, id: Uuid) -> Result<(), StoreError> {
    diesel::update(notifications::table.find(id))
        .filter(notifications::status.eq(status::PENDING))
        .set((
            notifications::status.eq(status::SENT),
            notifications::sent_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Fails a pending notification without trying (e.g. no address to deliver to).
pub async fn mark_failed(conn: &mut Conn, id: Uuid, reason: &str) -> Result<(), StoreError> {
    diesel::update(notifications::table.find(id))
        .filter(notifications::status.eq(status::PENDING))
        .set((
            notifications::status.eq(status::FAILED),
            notifications::last_error.eq(reason),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Pending notifications due before `cutoff`: their delivery job may be lost.
pub async fn pending_due_before(
    conn: &mut Conn,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(Uuid, String)>, StoreError> {
    Ok(notifications::table
        .filter(notifications::status.eq(status::PENDING))
        .filter(notifications::due_at.lt(cutoff))
        .order(notifications::due_at)
        .limit(limit)
        .select((notifications::id, notifications::severity))
        .load(conn)
        .await?)
}

/// A notification as `GET /api/v1/notifications/{id}` shows it.
#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = notifications)]
pub struct NotificationRow {
    pub id: Uuid,
    pub event_id: Uuid,
    pub user_id: Option<String>,
    pub notification_type: String,
    pub channel: String,
    pub status: String,
    pub suppression_reason: Option<String>,
    pub severity: String,
    pub private: bool,
    pub subject: Option<String>,
    pub text: String,
    pub created_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub opened_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub bundle_id: Option<Uuid>,
}

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = delivery_attempts)]
pub struct AttemptRow {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    pub outcome: String,
}

pub async fn find(conn: &mut Conn, id: Uuid) -> Result<Option<NotificationRow>, StoreError> {
    Ok(notifications::table
        .find(id)
        .select(NotificationRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

pub async fn attempts_of(conn: &mut Conn, id: Uuid) -> Result<Vec<AttemptRow>, StoreError> {
    Ok(delivery_attempts::table
        .filter(delivery_attempts::notification_id.eq(id))
        .order((delivery_attempts::attempt, delivery_attempts::id))
        .select(AttemptRow::as_select())
        .load(conn)
        .await?)
}

/// Filters of `GET /api/v1/notifications`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<String>,
    pub event_id: Option<Uuid>,
    pub user_id: Option<String>,
    /// Keyset cursor: rows with ids below this one (ids are UUID v7, time-ordered).
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// Newest first.
pub async fn list(conn: &mut Conn, f: &ListFilter) -> Result<Vec<NotificationRow>, StoreError> {
    let mut q = notifications::table
        .select(NotificationRow::as_select())
        .order(notifications::id.desc())
        .limit(f.limit)
        .into_boxed();
    if let Some(s) = &f.status {
        q = q.filter(notifications::status.eq(s.clone()));
    }
    if let Some(e) = f.event_id {
        q = q.filter(notifications::event_id.eq(e));
    }
    if let Some(u) = &f.user_id {
        q = q.filter(notifications::user_id.eq(u.clone()));
    }
    if let Some(b) = f.before {
        q = q.filter(notifications::id.lt(b));
    }
    Ok(q.load(conn).await?)
}

/// Suppresses a pending notification, e.g. when its conditions no longer hold at the
/// end of its delay.
pub async fn mark_suppressed(conn: &mut Conn, id: Uuid, reason: &str) -> Result<(), StoreError> {
    diesel::update(notifications::table.find(id))
        .filter(notifications::status.eq(status::PENDING))
        .set((
            notifications::status.eq(status::SUPPRESSED),
            notifications::suppression_reason.eq(reason),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// What `POST /api/v1/notifications/{id}/retry` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry {
    /// Back to `pending`, due now; the caller enqueues its delivery job. Its attempt
    /// count is kept (history), so it gets one more try before failing again.
    Requeued {
        severity: String,
        /// The recipient, whose live views are told.
        user_id: Option<String>,
    },
    /// Only a `failed` notification can be retried; this one is in `status`.
    NotFailed {
        status: String,
    },
    NotFound,
}

/// Moves a failed notification back to `pending`, due now.
pub async fn retry(conn: &mut Conn, id: Uuid) -> Result<Retry, StoreError> {
    let requeued: Option<(String, Option<String>)> = diesel::update(notifications::table.find(id))
        .filter(notifications::status.eq(status::FAILED))
        .set((
            notifications::status.eq(status::PENDING),
            notifications::due_at.eq(diesel::dsl::now),
        ))
        .returning((notifications::severity, notifications::user_id))
        .get_result(conn)
        .await
        .optional()?;
    if let Some((severity, user_id)) = requeued {
        return Ok(Retry::Requeued { severity, user_id });
    }
    let current: Option<String> = notifications::table
        .find(id)
        .select(notifications::status)
        .first(conn)
        .await
        .optional()?;
    Ok(match current {
        Some(status) => Retry::NotFailed { status },
        None => Retry::NotFound,
    })
}

/// Moves a pending notification's due time (held by an open circuit), so the recovery
/// sweep does not think its job was lost.
pub async fn reschedule(
    conn: &mut Conn,
    id: Uuid,
    due_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    diesel::update(notifications::table.find(id))
        .filter(notifications::status.eq(status::PENDING))
        .set(notifications::due_at.eq(due_at))
        .execute(conn)
        .await?;
    Ok(())
}
