//! Pending and sent bundles (contract §8). Every change to a bundle runs in a transaction
//! that holds the person's advisory lock (`history::lock_people`), so the daily cap
//! holds under any number of workers. [`add_item`] and [`flush`] are those
//! transactions: they read the state under the lock and ask the caller's pure `decide`
//! what to write, so the bundling decisions stay with the state machine
//! (`herald_core::bundle`) while the locking stays here. Whatever `decide` needs from
//! elsewhere (the friend counters in Redis) is read before: no other I/O happens while
//! the lock is held.
//!
//! A bundle collects `bundled` notification rows (its items, `bundle_id` set); a
//! person has one pending bundle per notification type and `bundle_key` (the value of
//! the rule's `bundle.key`, `''` without one). When it is sent, its oldest item
//! becomes the *carrier*: re-worded with the bundle's message and delivered like any
//! notification; the other items then take the carrier's final status and `sent_at`
//! ([`settle_items`] after the delivery, and [`settle_stranded`] in the recovery sweep
//! for a worker that died in between). The inbox shows only the carrier.
//!
//! Routing an event again (a reclaimed job, the sweep) must not count its item twice:
//! [`add_item`] leaves the bundles alone when the item already exists.

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
    /// The rule's `bundle.key` value for this bundle's items (`''`: none).
    pub bundle_key: String,
}

/// One item of a bundle as the digest reads it: its event's fields and its own text,
/// oldest first.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct ItemFacts {
    pub properties: serde_json::Value,
    pub user_traits: serde_json::Value,
    pub text: String,
}

/// A person's counters for one day: bundles sent and items received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DayCounts {
    pub sent: i64,
    pub items: i64,
}

/// A local day as an instant range `[from, to)`.
pub type Day = (DateTime<Utc>, DateTime<Utc>);

/// Adds `item` (a planned `bundled` row of one person) to that person's pending bundle
/// of `key`, in one transaction under their lock: `decide` gets the pending bundle
/// (if any) and the counters of `day`, and returns the bundle to save; the item is
/// then stored as its member. Returns the item and the saved bundle; nothing (and no
/// bundle touched) when the item exists already, i.e. its event was routed before.
pub async fn add_item<F>(
    conn: &mut AsyncPgConnection,
    mut item: NewNotification,
    key: &str,
    day: Day,
    decide: F,
) -> Result<(Vec<Inserted>, Option<BundleRow>), StoreError>
where
    F: FnOnce(Option<&BundleRow>, DayCounts) -> BundleRow + Send,
{
    let user_id = item.user_id.clone().unwrap_or_default();
    conn.transaction(async move |tx| {
        crate::history::lock_people(tx, &[user_id.as_str()]).await?;
        if item_exists(tx, &item).await? {
            return Ok((Vec::new(), None));
        }
        let nt = item.notification_type.clone();
        let existing = pending(tx, &user_id, &nt, key).await?;
        let counts = day_counts(tx, &user_id, &nt, day.0, day.1).await?;
        let mut bundle = decide(existing.as_ref(), counts);
        bundle.bundle_key = key.to_string();
        save_pending(tx, &bundle).await?;
        item.status = NotificationStatus::Bundled.as_str();
        item.sent_at = None;
        item.bundle_id = Some(bundle.id);
        let new = insert_batch(tx, std::slice::from_ref(&item)).await?;
        Ok((new, Some(bundle)))
    })
    .await
}

/// Whether `item`'s row (event, person, type, channel: `notifications_once`) exists.
async fn item_exists(
    tx: &mut AsyncPgConnection,
    item: &NewNotification,
) -> Result<bool, StoreError> {
    let found: Option<Uuid> = notifications::table
        .filter(notifications::event_id.eq(item.event_id))
        .filter(notifications::user_id.eq(item.user_id.as_deref().unwrap_or_default()))
        .filter(notifications::notification_type.eq(&item.notification_type))
        .filter(notifications::channel.eq(&item.channel))
        .select(notifications::id)
        .first(tx)
        .await
        .optional()?;
    Ok(found.is_some())
}

/// What a flush's `decide` wants done with a pending bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlushStep {
    /// Leave it (e.g. the state machine has nothing to send).
    Nothing,
    /// Not ready yet, or the day's cap is spent: look again then.
    Later(DateTime<Utc>),
    /// Send it now with this message, due at `due_at` (the flush's instant, or the
    /// end of the person's quiet hours, `hold_reason` saying so).
    Send {
        subject: Option<String>,
        text: String,
        due_at: DateTime<Utc>,
        hold_reason: Option<String>,
    },
}

/// What a flush did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flushed {
    /// Nothing (already sent, gone, or nothing to send).
    Nothing,
    /// Not ready yet, or the day's cap is spent: look again then.
    Later(DateTime<Utc>),
    /// Sent at the flush's instant: the carrier notification is to be delivered at
    /// `due_at`.
    Sent {
        carrier: Uuid,
        severity: String,
        user_id: String,
        due_at: DateTime<Utc>,
    },
}

/// Flushes bundle `bundle_id` of `user_id` at `at`, in one transaction under the
/// person's lock: the bundle is re-read (another worker may have sent or grown it)
/// and, if still pending, `decide` gets it with the counters of `day` and its items
/// (oldest first). A bundle put off (`FlushStep::Later`) stores its new ready instant;
/// a bundle without items (left by an older version that counted a re-routed event
/// twice) is deleted rather than flushed again and again.
pub async fn flush<F>(
    conn: &mut AsyncPgConnection,
    bundle_id: Uuid,
    user_id: &str,
    day: Day,
    at: DateTime<Utc>,
    decide: F,
) -> Result<Flushed, StoreError>
where
    F: FnOnce(&BundleRow, DayCounts, &[ItemFacts]) -> FlushStep + Send,
{
    conn.transaction(async move |tx| {
        crate::history::lock_people(tx, &[user_id]).await?;
        let Some(b) = find(tx, bundle_id).await?.filter(|b| b.status == "pending") else {
            return Ok(Flushed::Nothing);
        };
        let items = items_of(tx, b.id).await?;
        if items.is_empty() {
            diesel::delete(bundles::table.find(b.id))
                .execute(tx)
                .await?;
            return Ok(Flushed::Nothing);
        }
        let counts = day_counts(tx, &b.user_id, &b.notification_type, day.0, day.1).await?;
        match decide(&b, counts, &items) {
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
            FlushStep::Send {
                subject,
                text,
                due_at,
                hold_reason,
            } => Ok(
                match send(
                    tx,
                    b.id,
                    at,
                    &Carrier {
                        subject: subject.as_deref(),
                        text: &text,
                        due_at,
                        hold_reason: hold_reason.as_deref(),
                    },
                )
                .await?
                {
                    Some((carrier, severity)) => Flushed::Sent {
                        carrier,
                        severity,
                        user_id: b.user_id,
                        due_at,
                    },
                    None => Flushed::Nothing,
                },
            ),
        }
    })
    .await
}

/// The items of a bundle in the order their events happened, with the events'
/// fields (a digest's `first` is the earliest; events routed concurrently may be
/// stored in another order).
pub async fn items_of(
    tx: &mut AsyncPgConnection,
    bundle_id: Uuid,
) -> Result<Vec<ItemFacts>, StoreError> {
    use crate::schema::events;
    Ok(notifications::table
        .inner_join(events::table.on(crate::partitions::event_of_notification()))
        .filter(notifications::bundle_id.eq(bundle_id))
        .order((events::event_timestamp, events::id, notifications::id))
        .select((
            crate::schema::events::properties,
            crate::schema::events::user_traits,
            notifications::text,
        ))
        .load(tx)
        .await?)
}

/// The person's pending bundle of this type and key, if any.
pub async fn pending(
    tx: &mut AsyncPgConnection,
    user_id: &str,
    notification_type: &str,
    key: &str,
) -> Result<Option<BundleRow>, StoreError> {
    Ok(bundles::table
        .filter(bundles::user_id.eq(user_id))
        .filter(bundles::notification_type.eq(notification_type))
        .filter(bundles::bundle_key.eq(key))
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

/// What the carrier of a sent bundle says and when it is due.
#[derive(Debug, Clone, Copy)]
pub struct Carrier<'a> {
    pub subject: Option<&'a str>,
    pub text: &'a str,
    pub due_at: DateTime<Utc>,
    pub hold_reason: Option<&'a str>,
}

/// Marks the bundle sent at `at` and turns its oldest item into the carrier, with the
/// bundle's text and due time. Returns the carrier's id and severity.
pub async fn send(
    tx: &mut AsyncPgConnection,
    bundle_id: Uuid,
    at: DateTime<Utc>,
    carrier: &Carrier<'_>,
) -> Result<Option<(Uuid, String)>, StoreError> {
    let oldest: Option<(Uuid, String)> = notifications::table
        .filter(notifications::bundle_id.eq(bundle_id))
        .order(notifications::id)
        .select((notifications::id, notifications::severity))
        .first(tx)
        .await
        .optional()?;
    let Some((carrier_id, severity)) = oldest else {
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
            notifications::subject.eq(carrier.subject),
            notifications::text.eq(carrier.text),
            notifications::due_at.eq(carrier.due_at),
            notifications::hold_reason.eq(carrier.hold_reason),
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

/// Settles the items of sent bundles whose carrier reached a final state while the
/// items stayed `bundled`: the worker that delivered the carrier died before
/// [`settle_items`]. At most `limit` items per call; returns how many were settled.
pub async fn settle_stranded(conn: &mut Conn, limit: i64) -> Result<usize, StoreError> {
    Ok(diesel::sql_query(
        "UPDATE notifications AS item SET status = carrier.status, sent_at = carrier.sent_at
         FROM (SELECT i.id, b.notification_id AS carrier_id
               FROM notifications i
               JOIN bundles b ON b.id = i.bundle_id AND b.status = 'sent'
               JOIN notifications c ON c.id = b.notification_id
               WHERE i.status = 'bundled' AND c.status IN ('sent', 'failed')
               LIMIT $1) AS stranded
         JOIN notifications AS carrier ON carrier.id = stranded.carrier_id
         WHERE item.id = stranded.id",
    )
    .bind::<diesel::sql_types::Int8, _>(limit)
    .execute(conn)
    .await?)
}

/// Pending bundles whose ready instant passed before `cutoff`: their flush job may have
/// been lost with Redis.
pub async fn overdue(
    conn: &mut Conn,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(Uuid, String)>, StoreError> {
    Ok(bundles::table
        .filter(bundles::status.eq("pending"))
        .filter(bundles::ready_at.lt(cutoff))
        .order(bundles::ready_at)
        .limit(limit)
        .select((bundles::id, bundles::user_id))
        .load(conn)
        .await?)
}
