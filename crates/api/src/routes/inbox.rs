//! A person's inbox (seeds 001 and 003, contract §4): their notifications on every
//! channel except suppressed and private ones, newest first, with read marks.

use super::people::require_user;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Db, PathNotificationId, PathUserId};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use herald_store::inbox;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// The most items one page may hold.
const MAX_LIMIT: i64 = 500;

/// One notification in a person's inbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboxItem {
    id: Uuid,
    notification_type: String,
    channel: String,
    subject: Option<String>,
    text: String,
    /// pending, sent or failed (suppressed ones never show).
    status: String,
    created_at: DateTime<Utc>,
    /// Null while unread.
    read_at: Option<DateTime<Utc>>,
}

impl From<inbox::InboxItem> for InboxItem {
    fn from(i: inbox::InboxItem) -> Self {
        InboxItem {
            id: i.id,
            notification_type: i.notification_type,
            channel: i.channel,
            subject: i.subject,
            text: i.text,
            status: i.status,
            created_at: i.created_at,
            read_at: i.read_at,
        }
    }
}

/// One page of an inbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboxPage {
    items: Vec<InboxItem>,
    /// Unread items in the whole inbox, whatever the filter and cursor.
    unread_count: i64,
    /// Pass as `cursor` for the next page; null on the last one.
    next_cursor: Option<Uuid>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InboxQuery {
    /// Only unread items.
    #[serde(default)]
    unread: bool,
    /// 1 to 500 (default 50).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<Uuid>,
}

/// How many items were marked read.
#[derive(Debug, Serialize, ToSchema)]
pub struct Marked {
    marked: usize,
}

/// A person's notifications, newest first, with the unread count.
#[utoipa::path(get, path = "/api/v1/users/{user_id}/notifications", tag = "inbox",
    params(("user_id" = String, Path), InboxQuery),
    responses(
        (status = 200, description = "one page of the inbox", body = InboxPage),
        (status = 400, description = "a malformed parameter", body = ErrorBody),
        (status = 404, description = "unknown person", body = ErrorBody),
    ))]
pub async fn list_inbox(
    state: web::Data<AppState>,
    PathUserId(user_id): PathUserId,
    query: web::Query<InboxQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = match q.limit {
        None => 50,
        Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::BadRequest(format!(
                "limit must be between 1 and {MAX_LIMIT}, got {n}"
            )))
        }
    };
    let mut conn = state.reads.conn_for(&user_id).await?;
    require_user(&mut conn, &user_id).await?;
    // One more than asked tells whether another page follows.
    let mut rows = inbox::page(&mut conn, &user_id, q.unread, q.cursor, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more.then(|| rows.last().map(|r| r.id)).flatten();
    let unread_count = inbox::unread_count(&mut conn, &user_id).await?;
    Ok(HttpResponse::Ok().json(InboxPage {
        items: rows.into_iter().map(InboxItem::from).collect(),
        unread_count,
        next_cursor,
    }))
}

/// Mark one of a person's notifications read (marking it again keeps the first time).
#[utoipa::path(post, path = "/api/v1/users/{user_id}/notifications/{id}/read", tag = "inbox",
    params(("user_id" = String, Path), ("id" = Uuid, Path)),
    responses(
        (status = 200, description = "the item, now read", body = InboxItem),
        (status = 404, description = "not in this person's inbox", body = ErrorBody),
    ))]
pub async fn mark_read(
    state: web::Data<AppState>,
    PathUserId(user_id): PathUserId,
    PathNotificationId(id): PathNotificationId,
    mut conn: Db,
) -> Result<HttpResponse, ApiError> {
    let item = inbox::mark_read(&mut conn, &user_id, id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no notification {:?} in the inbox of {user_id:?}",
                id.to_string()
            ))
        })?;
    state.reads.wrote(&mut conn, &user_id).await;
    drop(conn);
    state.changes.announce(&[&user_id]);
    Ok(HttpResponse::Ok().json(InboxItem::from(item)))
}

/// Mark every unread notification of a person read.
#[utoipa::path(post, path = "/api/v1/users/{user_id}/notifications/read-all", tag = "inbox",
    params(("user_id" = String, Path)),
    responses(
        (status = 200, description = "how many were marked", body = Marked),
        (status = 404, description = "unknown person", body = ErrorBody),
    ))]
pub async fn mark_all_read(
    state: web::Data<AppState>,
    PathUserId(user_id): PathUserId,
    mut conn: Db,
) -> Result<HttpResponse, ApiError> {
    require_user(&mut conn, &user_id).await?;
    let marked = inbox::mark_all_read(&mut conn, &user_id).await?;
    if marked > 0 {
        state.reads.wrote(&mut conn, &user_id).await;
    }
    drop(conn);
    if marked > 0 {
        state.changes.announce(&[&user_id]);
    }
    Ok(HttpResponse::Ok().json(Marked { marked }))
}
