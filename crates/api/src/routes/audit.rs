//! `GET /audit/{user_id}` (seed 004): what happened for a person, newest first.

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use herald_store::audit::{self, AuditEvent, AuditNotification};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// How many events and notifications to show (1–500, default 50).
    limit: Option<i64>,
}

/// What happened for a person.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditOut {
    user_id: String,
    /// The person's events, newest first.
    #[schema(value_type = Vec<Object>)]
    recent_events: Vec<AuditEvent>,
    /// Their notifications (sent, suppressed with the reason, failed), newest first.
    #[schema(value_type = Vec<Object>)]
    notification_history: Vec<AuditNotification>,
}

#[utoipa::path(get, path = "/audit/{user_id}", tag = "audit",
    params(("user_id" = String, Path, description = "the person"), AuditQuery),
    responses(
        (status = 200, description = "recent_events and notification_history, newest first", body = AuditOut),
        (status = 400, description = "a bad query parameter", body = ErrorBody),
    ))]
/// A person's recent events and notification history (sent, suppressed with the
/// reason, failed); an unknown person has empty lists. The id is taken as given (not
/// checked like the other person routes'): an id no person can have has an empty audit.
pub async fn get_audit(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let user_id = path.into_inner();
    let mut conn = state.reads.conn_for(&user_id).await?;
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let recent_events = audit::recent_events(&mut conn, &user_id, limit).await?;
    let notification_history = audit::notification_history(&mut conn, &user_id, limit).await?;
    Ok(HttpResponse::Ok().json(AuditOut {
        user_id,
        recent_events,
        notification_history,
    }))
}
