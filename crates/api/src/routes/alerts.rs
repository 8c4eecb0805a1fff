//! `POST /webhooks/alerts` and its seed-002 alias `POST /webhook/notifications`
//! (SPEC 3.2).

use crate::body::read_json;
use crate::error::ApiError;
use crate::ingest::store_and_enqueue;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use herald_core::alert::parse_alert;
use herald_core::event::FieldError;
use serde_json::json;

/// Receive a shop alert: it is stored once per `alert_uuid` and fanned out to the
/// members of its location.
pub async fn post_alert(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload).await?;
    let alert = parse_alert(&body, &state.config.alert_labels, Utc::now())
        .map_err(|errors| ApiError::invalid_fields(&errors))?;
    let mut conn = herald_store::pool::get(&state.pool).await?;
    if !herald_store::people::topic_exists(&mut conn, &alert.location).await? {
        let e = FieldError::invalid(
            "location",
            format!(
                "unknown location {:?}: create it with PUT /api/v1/topics/{{topic}}",
                alert.location
            ),
        );
        return Err(ApiError::invalid_fields(&[e]));
    }
    drop(conn);
    let stored = store_and_enqueue(&state, &[alert.into_event()]).await?;
    let Some(s) = stored.first() else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "insert returned no row"
        )));
    };
    Ok(if s.duplicate {
        HttpResponse::Ok().json(json!({"event_id": s.id, "duplicate": true}))
    } else {
        HttpResponse::Accepted().json(json!({"event_id": s.id}))
    })
}
