//! `GET /audit/{user_id}` (seed 004): what happened for a person, newest first.

use crate::error::ApiError;
use crate::openapi::ErrorBody;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use herald_store::audit;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// How many events and notifications to show (1–500, default 50).
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/audit/{user_id}", tag = "audit",
    params(("user_id" = String, Path, description = "the person"), AuditQuery),
    responses(
        (status = 200, description = "recent_events and notification_history, newest first"),
        (status = 400, description = "a bad query parameter", body = ErrorBody),
    ))]
/// A person's recent events and notification history (sent, suppressed with the
/// reason, failed); an unknown person has empty lists.
pub async fn get_audit(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let user_id = path.into_inner();
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let mut conn = herald_store::pool::get(&state.pool).await?;
    let recent_events = audit::recent_events(&mut conn, &user_id, limit).await?;
    let notification_history = audit::notification_history(&mut conn, &user_id, limit).await?;
    Ok(HttpResponse::Ok().json(json!({
        "user_id": user_id,
        "recent_events": recent_events,
        "notification_history": notification_history,
    })))
}
