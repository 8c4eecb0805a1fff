//! A person's inbox (seeds 001 and 003, contract §4): their notifications on every
//! channel, newest first, with read marks.
//!
//! What shows: the person's rows that are neither `suppressed` nor private (the
//! operators' internal notifications about them), and not still waiting for a future
//! due time (a delayed notification may yet be cancelled by its recheck). A bundle
//! must show as one item: rows held in a pending bundle (`bundled`) are hidden, and
//! the bundling work decides how a sent bundle appears, in [`visible`].
//!
//! Pages are keyed by notification id (UUID v7, so time-ordered): `before` continues
//! after the last id of the previous page. The partial indexes of the
//! `*_inbox` migration serve both the listing and the unread count.

use crate::pool::{Conn, StoreError};
use crate::schema::notifications;
use chrono::{DateTime, Utc};
use diesel::dsl::{not, now};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use herald_core::status::NotificationStatus;
use uuid::Uuid;

/// One inbox item.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = notifications)]
pub struct InboxItem {
    pub id: Uuid,
    pub notification_type: String,
    pub channel: String,
    pub subject: Option<String>,
    pub text: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

/// The rows of `user_id`'s inbox. Bundles: until the bundling work replaces them
/// with their bundle's single item, rows held in a bundle (`bundled`) are hidden.
fn visible(
    user_id: &str,
) -> Box<
    dyn BoxableExpression<
        notifications::table,
        Pg,
        SqlType = diesel::sql_types::Nullable<diesel::sql_types::Bool>,
    >,
> {
    Box::new(
        notifications::user_id
            .eq(user_id.to_string())
            .and(not(notifications::private))
            // Literal SQL rather than bound values, so the planner can match the
            // partial indexes' predicate with any plan, generic ones included.
            .and(diesel::dsl::sql::<diesel::sql_types::Bool>(
                "notifications.status NOT IN ('suppressed', 'bundled')",
            ))
            // A sent bundle shows once: as its carrier, not as each item.
            .and(diesel::dsl::sql::<diesel::sql_types::Bool>(
                "(notifications.bundle_id IS NULL OR EXISTS (SELECT 1 FROM bundles b \
                 WHERE b.id = notifications.bundle_id AND b.notification_id = notifications.id))",
            ))
            .and(
                notifications::status
                    .ne(NotificationStatus::Pending.as_str())
                    .or(notifications::due_at.le(now)),
            ),
    )
}

/// One page of the inbox, newest first: at most `limit` items with ids below
/// `before`, unread ones only when `unread_only`.
pub async fn page(
    conn: &mut Conn,
    user_id: &str,
    unread_only: bool,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<InboxItem>, StoreError> {
    let mut q = notifications::table
        .filter(visible(user_id))
        .select(InboxItem::as_select())
        .order(notifications::id.desc())
        .limit(limit)
        .into_boxed();
    if unread_only {
        q = q.filter(notifications::read_at.is_null());
    }
    if let Some(before) = before {
        q = q.filter(notifications::id.lt(before));
    }
    Ok(q.load(conn).await?)
}

/// Unread items in the inbox, whatever page or filter is shown.
pub async fn unread_count(conn: &mut Conn, user_id: &str) -> Result<i64, StoreError> {
    Ok(notifications::table
        .filter(visible(user_id))
        .filter(notifications::read_at.is_null())
        .count()
        .get_result(conn)
        .await?)
}

/// Marks one inbox item read (the first read time is kept); `None` when `id` is not
/// in this person's inbox (unknown, another person's, suppressed or private).
pub async fn mark_read(
    conn: &mut Conn,
    user_id: &str,
    id: Uuid,
) -> Result<Option<InboxItem>, StoreError> {
    Ok(diesel::update(
        notifications::table
            .filter(notifications::id.eq(id))
            .filter(visible(user_id)),
    )
    .set(notifications::read_at.eq(diesel::dsl::sql::<
        diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
    >("COALESCE(read_at, now())")))
    .returning(InboxItem::as_returning())
    .get_result(conn)
    .await
    .optional()?)
}

/// Marks every unread item of the inbox read; returns how many. The rows are locked
/// in id order first ([`crate::locking`]), so this cannot deadlock with the worker's
/// attempts or a receipt batch over the same rows.
pub async fn mark_all_read(conn: &mut Conn, user_id: &str) -> Result<usize, StoreError> {
    use diesel_async::AsyncConnection;
    let user_id = user_id.to_string();
    conn.transaction(async move |tx| {
        let unread: Vec<Uuid> = notifications::table
            .filter(visible(&user_id))
            .filter(notifications::read_at.is_null())
            .order(notifications::id)
            .select(notifications::id)
            .for_update()
            .load(tx)
            .await?;
        Ok::<_, StoreError>(
            diesel::update(notifications::table.filter(notifications::id.eq_any(&unread)))
                .set(notifications::read_at.eq(Some(Utc::now())))
                .execute(tx)
                .await?,
        )
    })
    .await
}
