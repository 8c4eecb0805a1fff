//! Notifications as operators inspect them: one with its delivery attempts, and
//! lists filtered by status (the dead letters are `status=failed`), event or person.

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Db, PathNotificationId, ReadDb};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use herald_core::status::NotificationStatus;
use herald_queue::Job;
use herald_store::notifications::{self, AttemptRow, ListFilter, NotificationRow, Retry};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// A notification as stored, with its delivery attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationOut {
    /// The notification's columns, `attempts` (a count) among them.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    notification: NotificationRow,
    /// Every delivery attempt, oldest first.
    #[schema(value_type = Vec<Object>)]
    delivery_attempts: Vec<AttemptRow>,
}

/// A page of notifications.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationsPage {
    #[schema(value_type = Vec<Object>)]
    items: Vec<NotificationRow>,
    /// Pass as `cursor` for the next page; null on the last one.
    next_cursor: Option<Uuid>,
}

/// A notification with its attempt count and every delivery attempt.
#[utoipa::path(get, path = "/api/v1/notifications/{id}", tag = "notifications",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "the notification, with `attempts` (a count) and `delivery_attempts` (the rows)", body = NotificationOut),
        (status = 404, description = "unknown notification", body = ErrorBody),
    ))]
pub async fn get_notification(
    PathNotificationId(id): PathNotificationId,
    mut conn: Db,
) -> Result<HttpResponse, ApiError> {
    let notification = notifications::find(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no notification {id}")))?;
    let delivery_attempts = notifications::attempts_of(&mut conn, id).await?;
    Ok(HttpResponse::Ok().json(NotificationOut {
        notification,
        delivery_attempts,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// pending, bundled, sent, failed or suppressed (`failed`: the dead letters).
    status: Option<String>,
    event_id: Option<Uuid>,
    user_id: Option<String>,
    /// 1 to 500 (default 50).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<Uuid>,
}

/// Notifications newest first, filtered; `next_cursor` continues the list.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications",
    params(ListQuery),
    responses(
        (status = 200, description = "one page, newest first", body = NotificationsPage),
        (status = 400, description = "an unknown status or a malformed parameter", body = ErrorBody),
    ))]
pub async fn list_notifications(
    query: web::Query<ListQuery>,
    mut conn: ReadDb,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    if let Some(s) = &q.status {
        if let Err(e) = s.parse::<NotificationStatus>() {
            return Err(ApiError::BadRequest(e.to_string()));
        }
    }
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let filter = ListFilter {
        status: q.status,
        event_id: q.event_id,
        user_id: q.user_id,
        before: q.cursor,
        limit,
    };
    let items = notifications::list(&mut conn, &filter).await?;
    let next_cursor = (items.len() as i64 == limit)
        .then(|| items.last().map(|n| n.id))
        .flatten();
    Ok(HttpResponse::Ok().json(NotificationsPage { items, next_cursor }))
}

/// A notification put back on the queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct Requeued {
    id: Uuid,
    /// `pending`: due now.
    status: &'static str,
}

/// Re-queue a failed notification: it goes back to `pending`, due now, for one more
/// try (its attempt count is kept).
#[utoipa::path(post, path = "/api/v1/notifications/{id}/retry", tag = "notifications",
    params(("id" = Uuid, Path)),
    responses(
        (status = 202, description = "queued for delivery", body = Requeued),
        (status = 404, description = "unknown notification", body = ErrorBody),
        (status = 409, description = "the notification has not failed", body = ErrorBody),
    ))]
pub async fn retry_notification(
    state: web::Data<AppState>,
    PathNotificationId(id): PathNotificationId,
    mut conn: Db,
) -> Result<HttpResponse, ApiError> {
    let (severity, user_id) = match notifications::retry(&mut conn, id).await? {
        Retry::Requeued { severity, user_id } => (severity, user_id),
        Retry::NotFailed { status } => {
            return Err(ApiError::Conflict(format!(
                "notification {id} is {status}: only a failed notification can be retried"
            )))
        }
        Retry::NotFound => return Err(ApiError::NotFound(format!("no notification {id}"))),
    };
    drop(conn);
    if let Some(user_id) = &user_id {
        state.changes.announce(&[user_id]);
    }
    let partition = state
        .queue
        .partitions()
        .of_recipient(user_id.as_deref(), id);
    let lane = herald_queue::Lane::new(partition, herald_core::queues::queue_for_stored(&severity));
    let job = Job::Deliver {
        notification_id: id,
    };
    if let Err(e) = state.queue.enqueue(&[(lane, job)]).await {
        // The row is pending and due: the workers' sweep delivers it without the job.
        tracing::warn!(error = %e, notification_id = %id,
            "could not enqueue the retry; the recovery sweep will pick it up");
    }
    Ok(HttpResponse::Accepted().json(Requeued {
        id,
        status: NotificationStatus::Pending.as_str(),
    }))
}
