//! A person's audit trail (seed 004): their recent events and every notification
//! about them, sent or suppressed, with the event that triggered it.

use crate::pool::{Conn, StoreError};
use crate::schema::{events, notifications};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Serialize)]
pub struct AuditEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub event_timestamp: DateTime<Utc>,
    pub properties: Value,
}

#[derive(Debug, Clone, Queryable, Serialize)]
pub struct AuditNotification {
    pub notification_id: Uuid,
    pub notification_type: String,
    pub trigger_event: String,
    pub event_id: Uuid,
    pub channel: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub suppression_reason: Option<String>,
    pub attempts: i32,
    /// When it is (or was) due.
    pub due_at: DateTime<Utc>,
    /// Why it waited: `held for quiet hours until 07:00 Europe/Berlin`, the rule's
    /// send window or the event's `deliver_at`.
    pub hold_reason: Option<String>,
}

/// The person's latest `limit` events, newest (by event time) first.
pub async fn recent_events(
    conn: &mut Conn,
    user_id: &str,
    limit: i64,
) -> Result<Vec<AuditEvent>, StoreError> {
    Ok(events::table
        .filter(events::user_id.eq(user_id))
        .order((events::event_timestamp.desc(), events::id.desc()))
        .limit(limit)
        .select((
            events::id,
            events::event_type,
            events::event_timestamp,
            events::properties,
        ))
        .load(conn)
        .await?)
}

/// The person's latest `limit` notifications, newest first, private ones included
/// (the audit trail is for operators).
pub async fn notification_history(
    conn: &mut Conn,
    user_id: &str,
    limit: i64,
) -> Result<Vec<AuditNotification>, StoreError> {
    Ok(notifications::table
        .inner_join(events::table.on(crate::partitions::event_of_notification()))
        .filter(notifications::user_id.eq(user_id))
        .order(notifications::id.desc())
        .limit(limit)
        .select((
            notifications::id,
            notifications::notification_type,
            events::event_type,
            notifications::event_id,
            notifications::channel,
            notifications::status,
            notifications::created_at,
            notifications::sent_at,
            notifications::suppression_reason,
            notifications::attempts,
            notifications::due_at,
            notifications::hold_reason,
        ))
        .load(conn)
        .await?)
}
