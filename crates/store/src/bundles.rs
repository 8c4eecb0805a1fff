//! Pending and sent bundles (contract §8). Every change to a bundle runs in a transaction
//! that holds the person's advisory lock (`history::lock_people`), so the daily cap
//! holds under any number of workers. [`add_item`] and [`flush`] are those
//! transactions: they read the state under the lock and ask the caller's pure `decide`
//! what to write, so the bundling decisions stay with the state machine
//! (`herald_core::bundle`) while the locking stays here. Whatever `decide` needs from
//! elsewhere (the friend counters in Redis) is read before: no other I/O happens while
//! the lock is held.
//!
//! A bundle collects `bundled` notification rows (its items, `bundle_id` set). When it
//! is sent, its oldest item becomes the *carrier*: re-worded with the bundle's message
//! and delivered like any notification; the other items then take the carrier's final
//! status and `sent_at`. The inbox shows only the carrier.

use crate::notifications::{insert_batch, Inserted, NewNotification};
use crate::pool::{Conn, StoreError};
use crate::schema::{bundles, notifications};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use herald_core::status::NotificationStatus;
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

/// A person's counters for one day: bundles sent and items received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DayCounts {
    pub sent: i64,
    pub items: i64,
}

/// A local day as an instant range `[from, to)`.
pub type Day = (DateTime<Utc>, DateTime<Utc>);

/// Adds `item` (a planned `bundled` row of one person) to that person's pending bundle,
/// in one transaction under their lock: `decide` gets the pending bundle (if any) and
/// the counters of `day`, and returns the bundle to save; the item is then stored as
/// its member. Returns the item if it is new, and the saved bundle.
pub async fn add_item<F>(
    conn: &mut AsyncPgConnection,
    mut item: NewNotification,
    day: Day,
    decide: F,
) -> Result<(Vec<Inserted>, BundleRow), StoreError>
where
    F: FnOnce(Option<&BundleRow>, DayCounts) -> BundleRow + Send,
{
    let user_id = item.user_id.clone().unwrap_or_default();
    conn.transaction(async move |tx| {
        crate::history::lock_people(tx, &[user_id.as_str()]).await?;
        let nt = item.notification_type.clone();
        let existing = pending(tx, &user_id, &nt).await?;
        let counts = day_counts(tx, &user_id, &nt, day.0, day.1).await?;
        let bundle = decide(existing.as_ref(), counts);
        save_pending(tx, &bundle).await?;
        item.status = NotificationStatus::Bundled.as_str();
        item.sent_at = None;
        item.bundle_id = Some(bundle.id);
        let new = insert_batch(tx, std::slice::from_ref(&item)).await?;
        Ok((new, bundle))
    })
    .await
}

/// What a flush's `decide` wants done with a pending bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlushStep {
    /// Leave it (e.g. the state machine has nothing to send).
    Nothing,
    /// Not ready yet, or the day's cap is spent: look again then.
    Later(DateTime<Utc>),
    /// Send it now with this message.
    Send { text: String },
}

/// What a flush did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flushed {
    /// Nothing (already sent, gone, or nothing to send).
    Nothing,
    /// Not ready yet, or the day's cap is spent: look again then.
    Later(DateTime<Utc>),
    /// Sent at the flush's instant: the carrier notification is to be delivered.
    Sent {
        carrier: Uuid,
        severity: String,
        user_id: String,
    },
}

/// Flushes bundle `bundle_id` of `user_id` at `at`, in one transaction under the
/// person's lock: the bundle is re-read (another worker may have sent or grown it)
/// and, if still pending, `decide` gets it with the counters of `day`. A bundle put
/// off (`FlushStep::Later`) stores its new ready instant.
pub async fn flush<F>(
    conn: &mut AsyncPgConnection,
    bundle_id: Uuid,
    user_id: &str,
    day: Day,
    at: DateTime<Utc>,
    decide: F,
) -> Result<Flushed, StoreError>
where
    F: FnOnce(&BundleRow, DayCounts) -> FlushStep + Send,
{
    conn.transaction(async move |tx| {
        crate::history::lock_people(tx, &[user_id]).await?;
        let Some(b) = find(tx, bundle_id).await?.filter(|b| b.status == "pending") else {
            return Ok(Flushed::Nothing);
        };
        let counts = day_counts(tx, &b.user_id, &b.notification_type, day.0, day.1).await?;
        match decide(&b, counts) {
            FlushStep::Nothing => Ok(Flushed::Nothing),
            FlushStep::Later(when) => {
                // The new ready instant goes to Postgres too, so the recovery sweep
                // does not take the deferred bundle for a lost flush and poll it.
                diesel::update(bundles::table.find(b.id))
                    .set(bundles::ready_at.eq(when))
                    .execute(tx)
                    .await?;
                Ok(Flushed::Later(when))
            }
            FlushStep::Send { text } => Ok(match send(tx, b.id, at, None, &text).await? {
                Some((carrier, severity)) => Flushed::Sent {
                    carrier,
                    severity,
                    user_id: b.user_id,
                },
                None => Flushed::Nothing,
            }),
        }
    })
    .await
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
) -> Result<DayCounts, StoreError> {
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
    Ok(DayCounts { sent, items })
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
            notifications::status.eq(NotificationStatus::Pending.as_str()),
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
