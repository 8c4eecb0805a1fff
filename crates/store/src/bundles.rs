//! Pending and sent bundles (SPEC 8). Every function that changes a bundle runs inside
//! the caller's transaction, after the caller took the person's advisory lock
//! (`history::lock_people`), so the daily cap holds under any number of workers.
//!
//! A bundle collects `bundled` notification rows (its items, `bundle_id` set). When it
//! is sent, its oldest item becomes the *carrier*: re-worded with the bundle's message
//! and delivered like any notification; the other items then take the carrier's final
//! status and `sent_at`. The inbox shows only the carrier.

use crate::pool::{Conn, StoreError};
use crate::schema::{bundles, notifications};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = bundles)]
pub struct BundleRow {
    pub id: Uuid,
    pub user_id: String,
    pub notification_type: String,
    pub status: String,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    pub tours: i32,
    pub first_friend: String,
    pub ready_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub notification_id: Option<Uuid>,
}

/// The person's pending bundle of this type, if any.
pub async fn pending(
    tx: &mut AsyncPgConnection,
    user_id: &str,
    notification_type: &str,
) -> Result<Option<BundleRow>, StoreError> {
    Ok(bundles::table
        .filter(bundles::user_id.eq(user_id))
        .filter(bundles::notification_type.eq(notification_type))
        .filter(bundles::status.eq("pending"))
        .select(BundleRow::as_select())
        .first(tx)
        .await
        .optional()?)
}

pub async fn find(tx: &mut AsyncPgConnection, id: Uuid) -> Result<Option<BundleRow>, StoreError> {
    Ok(bundles::table
        .find(id)
        .select(BundleRow::as_select())
        .first(tx)
        .await
        .optional()?)
}

/// Bundles sent and items received in `[from, to)`: the state machine's day counters.
pub async fn day_counts(
    tx: &mut AsyncPgConnection,
    user_id: &str,
    notification_type: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(i64, i64), StoreError> {
    let sent: i64 = bundles::table
        .filter(bundles::user_id.eq(user_id))
        .filter(bundles::notification_type.eq(notification_type))
        .filter(bundles::status.eq("sent"))
        .filter(bundles::sent_at.ge(from).and(bundles::sent_at.lt(to)))
        .count()
        .get_result(tx)
        .await?;
    let items: i64 = notifications::table
        .filter(notifications::user_id.eq(user_id))
        .filter(notifications::notification_type.eq(notification_type))
        .filter(notifications::bundle_id.is_not_null())
        .filter(
            notifications::created_at
                .ge(from)
                .and(notifications::created_at.lt(to)),
        )
        .count()
        .get_result(tx)
        .await?;
    Ok((sent, items))
}

/// Creates or updates a pending bundle.
pub async fn save_pending(tx: &mut AsyncPgConnection, b: &BundleRow) -> Result<(), StoreError> {
    diesel::insert_into(bundles::table)
        .values(b)
        .on_conflict(bundles::id)
        .do_update()
        .set(b)
        .execute(tx)
        .await?;
    Ok(())
}

/// Marks the bundle sent at `at` and turns its oldest item into the carrier, due now,
/// with the bundle's text. Returns the carrier's id and severity.
pub async fn send(
    tx: &mut AsyncPgConnection,
    bundle_id: Uuid,
    at: DateTime<Utc>,
    subject: Option<&str>,
    text: &str,
) -> Result<Option<(Uuid, String)>, StoreError> {
    let carrier: Option<(Uuid, String)> = notifications::table
        .filter(notifications::bundle_id.eq(bundle_id))
        .order(notifications::id)
        .select((notifications::id, notifications::severity))
        .first(tx)
        .await
        .optional()?;
    let Some((carrier_id, severity)) = carrier else {
        return Ok(None);
    };
    diesel::update(bundles::table.find(bundle_id))
        .set((
            bundles::status.eq("sent"),
            bundles::sent_at.eq(at),
            bundles::notification_id.eq(carrier_id),
        ))
        .execute(tx)
        .await?;
    diesel::update(notifications::table.find(carrier_id))
        .set((
            notifications::status.eq("pending"),
            notifications::subject.eq(subject),
            notifications::text.eq(text),
            notifications::due_at.eq(at),
        ))
        .execute(tx)
        .await?;
    Ok(Some((carrier_id, severity)))
}

/// The carrier's final status and `sent_at` spread to the bundle's other items.
pub async fn settle_items(conn: &mut Conn, carrier_id: Uuid) -> Result<usize, StoreError> {
    Ok(diesel::sql_query(
        "UPDATE notifications AS item SET status = carrier.status, sent_at = carrier.sent_at
         FROM notifications AS carrier
         WHERE carrier.id = $1 AND carrier.bundle_id IS NOT NULL
           AND item.bundle_id = carrier.bundle_id AND item.id <> carrier.id
           AND carrier.status IN ('sent', 'failed')",
    )
    .bind::<diesel::sql_types::Uuid, _>(carrier_id)
    .execute(conn)
    .await?)
}

/// Pending bundles whose ready instant passed before `cutoff`: their flush job may have
/// been lost with Redis.
pub async fn overdue(
    conn: &mut Conn,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>, StoreError> {
    Ok(bundles::table
        .filter(bundles::status.eq("pending"))
        .filter(bundles::ready_at.lt(cutoff))
        .order(bundles::ready_at)
        .limit(limit)
        .select(bundles::id)
        .load(conn)
        .await?)
}
