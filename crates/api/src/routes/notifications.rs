//! Notifications as operators inspect them: one with its delivery attempts, and
//! lists filtered by status (the dead letters are `status=failed`), event or person.

use crate::error::ApiError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use herald_store::notifications::{self, ListFilter};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(format!("no notification {raw:?}")))
}

/// A notification with its attempt count and every delivery attempt.
pub async fn get_notification(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let mut conn = herald_store::pool::get(&state.pool).await?;
    let n = notifications::find(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no notification {id}")))?;
    let attempts = notifications::attempts_of(&mut conn, id).await?;
    let mut body = serde_json::to_value(&n).map_err(anyhow::Error::from)?;
    body["delivery_attempts"] = json!(attempts);
    Ok(HttpResponse::Ok().json(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    event_id: Option<Uuid>,
    user_id: Option<String>,
    limit: Option<i64>,
    cursor: Option<Uuid>,
}

const STATUSES: [&str; 5] = ["pending", "bundled", "sent", "failed", "suppressed"];

/// Notifications newest first, filtered; `next_cursor` continues the list.
pub async fn list_notifications(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    if let Some(s) = &q.status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "invalid status {s:?}: expected one of {}",
                STATUSES.join(", ")
            )));
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
    let mut conn = herald_store::pool::get(&state.pool).await?;
    let items = notifications::list(&mut conn, &filter).await?;
    let next = (items.len() as i64 == limit)
        .then(|| items.last().map(|n| n.id))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({"items": items, "next_cursor": next})))
}
