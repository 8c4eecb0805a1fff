//! Dead letters: jobs taken off their stream after too many deliveries (issue 15).
//! Burying one settles what the job was about, in the same transaction as the record:
//! a route job's event becomes `failed_routing`, a delivery job's notification
//! `failed`, so neither the recovery sweep nor a person waits for it any longer.

use crate::pool::{Conn, StoreError};
use crate::schema::{dead_letters, events, notifications};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use herald_core::status::NotificationStatus;
use serde_json::Value;
use uuid::Uuid;

/// The event status of a route job given up on.
pub const FAILED_ROUTING: &str = "failed_routing";

/// A job to bury. `event_id` is the route job's event; `notification_id` the delivery
/// job's notification (its event is looked up).
#[derive(Debug, Clone)]
pub struct NewDeadLetter {
    pub kind: String,
    pub stream: String,
    pub entry_id: String,
    pub job: Value,
    pub event_id: Option<Uuid>,
    pub notification_id: Option<Uuid>,
    pub reason: String,
    pub deliveries: i32,
}

#[derive(Insertable)]
#[diesel(table_name = dead_letters)]
struct Row<'a> {
    kind: &'a str,
    stream: &'a str,
    entry_id: &'a str,
    job: &'a Value,
    event_id: Option<Uuid>,
    notification_id: Option<Uuid>,
    reason: &'a str,
    deliveries: i32,
}

/// Records the dead letter and settles its event or notification (only one still
/// waiting: a routed event or a sent notification keeps its state). Returns the
/// person whose notification was failed, whose live views should hear of it.
pub async fn bury(conn: &mut Conn, dl: &NewDeadLetter) -> Result<Option<String>, StoreError> {
    let out = conn
        .transaction(async move |tx| {
            if let (Some(id), None) = (dl.event_id, dl.notification_id) {
                diesel::update(events::table.find(id))
                    .filter(events::status.eq("received"))
                    .set(events::status.eq(FAILED_ROUTING))
                    .execute(tx)
                    .await?;
            }
            let mut event_id = dl.event_id;
            let mut person = None;
            if let Some(id) = dl.notification_id {
                let last_error = format!("dead-lettered: {}", dl.reason);
                let failed: Option<(Uuid, Option<String>)> =
                    diesel::update(notifications::table.find(id))
                        .filter(notifications::status.eq(NotificationStatus::Pending.as_str()))
                        .set((
                            notifications::status.eq(NotificationStatus::Failed.as_str()),
                            notifications::last_error.eq(last_error),
                        ))
                        .returning((notifications::event_id, notifications::user_id))
                        .get_result(tx)
                        .await
                        .optional()?;
                event_id = match failed {
                    Some((event, user)) => {
                        person = user;
                        Some(event)
                    }
                    None => notifications::table
                        .find(id)
                        .select(notifications::event_id)
                        .first(tx)
                        .await
                        .optional()?,
                };
            }
            diesel::insert_into(dead_letters::table)
                .values(Row {
                    kind: &dl.kind,
                    stream: &dl.stream,
                    entry_id: &dl.entry_id,
                    job: &dl.job,
                    event_id,
                    notification_id: dl.notification_id,
                    reason: &dl.reason,
                    deliveries: dl.deliveries,
                })
                .execute(tx)
                .await?;
            Ok::<_, diesel::result::Error>(person)
        })
        .await?;
    Ok(out)
}

/// A dead letter as `GET /api/v1/dead-letters` lists it.
#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = dead_letters)]
pub struct DeadLetterRow {
    pub id: i64,
    pub kind: String,
    pub stream: String,
    pub entry_id: String,
    pub job: Value,
    pub event_id: Option<Uuid>,
    pub notification_id: Option<Uuid>,
    pub reason: String,
    pub deliveries: i32,
    pub created_at: DateTime<Utc>,
}

/// Dead letters newest first, at most `limit`, with ids below `before` when given.
pub async fn list(
    conn: &mut Conn,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<DeadLetterRow>, StoreError> {
    let mut q = dead_letters::table
        .order(dead_letters::id.desc())
        .limit(limit)
        .select(DeadLetterRow::as_select())
        .into_boxed();
    if let Some(b) = before {
        q = q.filter(dead_letters::id.lt(b));
    }
    Ok(q.load(conn).await?)
}
