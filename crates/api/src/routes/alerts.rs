//! `POST /webhooks/alerts` and its seed-002 alias `POST /webhook/notifications`
//! (SPEC 3.2).

use crate::body::read_json;
use crate::error::ApiError;
use crate::ingest::store_and_enqueue;
use crate::openapi::ErrorBody;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use herald_core::alert::parse_alert;
use herald_core::event::FieldError;
use serde_json::json;
use utoipa::ToSchema;

/// A shop alert (seed 002).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documentation only: alerts are parsed field by field in core
pub struct AlertIn {
    /// Deduplicates: the same alert again is answered 200 with `duplicate: true`.
    alert_uuid: uuid::Uuid,
    /// An existing topic.
    location: String,
    /// A key of `alerts.labels` in rules.yml (default theft, suspicious, normal).
    label: String,
    url: String,
    /// Epoch seconds.
    time_spotted: f64,
}

/// Receive a shop alert: it is stored once per `alert_uuid` and fanned out to the
/// members of its location.
#[utoipa::path(post, path = "/webhooks/alerts", tag = "ingestion",
    request_body = AlertIn,
    responses(
        (status = 202, description = "stored; fan-out follows", body = Object,
            example = json!({"event_id": "0193..."})),
        (status = 200, description = "a duplicate alert_uuid: nothing new happens", body = Object,
            example = json!({"event_id": "0193...", "duplicate": true})),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 422, description = "invalid fields (unknown location or label...)", body = ErrorBody),
    ))]
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
    let stored = store_and_enqueue(&state, vec![alert.into_event()]).await?;
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

/// Seed 002's alias of `POST /webhooks/alerts`.
#[utoipa::path(post, path = "/webhook/notifications", tag = "ingestion",
    request_body = AlertIn,
    responses(
        (status = 202, description = "stored; fan-out follows", body = Object),
        (status = 200, description = "a duplicate alert_uuid", body = Object),
        (status = 422, description = "invalid fields", body = ErrorBody),
    ))]
pub async fn post_alert_seed(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    post_alert(state, req, payload).await
}
