//! `POST /webhooks/alerts` and its seed-002 alias `POST /webhook/notifications`
//! (contract §3.2).

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Db, FromJsonBody, ValidatedJson};
use crate::schema::{self, Kind};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use herald_core::alert::{parse_alert, Alert};
use herald_core::event::FieldError;
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

/// A shop alert as validated by `herald_core::alert::parse_alert`, which
/// reports every bad field at once.
#[derive(Debug)]
pub struct AlertIn(pub Alert);

impl FromJsonBody for AlertIn {
    fn from_json(body: Value, state: &AppState) -> Result<Self, ApiError> {
        parse_alert(&body, &state.config.alert_labels, Utc::now())
            .map(AlertIn)
            .map_err(|errors| ApiError::invalid_fields(&errors))
    }
}

impl PartialSchema for AlertIn {
    fn schema() -> RefOr<Schema> {
        schema::object(
            "A shop alert from a camera system.",
            &[
                (
                    "alert_uuid",
                    Kind::Uuid,
                    true,
                    "Deduplicates: the same alert again is answered 200 with `duplicate: true`.",
                ),
                ("location", Kind::String, true, "An existing topic."),
                (
                    "label",
                    Kind::String,
                    true,
                    "A key of `alerts.labels` in rules.yml (default theft, suspicious, normal).",
                ),
                ("url", Kind::String, true, ""),
                ("time_spotted", Kind::Number, true, "Epoch seconds."),
            ],
        )
    }
}

impl ToSchema for AlertIn {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("AlertIn")
    }
}

/// The stored alert's event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertAccepted {
    event_id: Uuid,
    /// Present (and true) when the `alert_uuid` was seen before: nothing new happens.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
}

/// Receive a shop alert: it is stored once per `alert_uuid` and fanned out to the
/// members of its location.
#[utoipa::path(post, path = "/webhooks/alerts", tag = "ingestion",
    request_body = AlertIn,
    responses(
        (status = 202, description = "stored; fan-out follows", body = AlertAccepted,
            example = json!({"event_id": "0193..."})),
        (status = 200, description = "a duplicate alert_uuid: nothing new happens", body = AlertAccepted,
            example = json!({"event_id": "0193...", "duplicate": true})),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 422, description = "invalid fields (unknown location or label...)", body = ErrorBody),
    ))]
pub async fn post_alert(
    state: web::Data<AppState>,
    ValidatedJson(AlertIn(alert)): ValidatedJson<AlertIn>,
    mut conn: Db,
) -> Result<HttpResponse, ApiError> {
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
    let stored = state.ingestor.submit(vec![alert.into_event()]).await?;
    let Some(s) = stored.first() else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "insert returned no row"
        )));
    };
    let answer = AlertAccepted {
        event_id: s.id,
        duplicate: s.duplicate,
    };
    Ok(if s.duplicate {
        HttpResponse::Ok().json(answer)
    } else {
        HttpResponse::Accepted().json(answer)
    })
}

/// The older path of `POST /webhooks/alerts`, kept for camera systems configured with it.
#[utoipa::path(post, path = "/webhook/notifications", tag = "ingestion",
    request_body = AlertIn,
    responses(
        (status = 202, description = "stored; fan-out follows", body = AlertAccepted),
        (status = 200, description = "a duplicate alert_uuid", body = AlertAccepted),
        (status = 422, description = "invalid fields", body = ErrorBody),
    ))]
pub async fn post_alert_seed(
    state: web::Data<AppState>,
    body: ValidatedJson<AlertIn>,
    conn: Db,
) -> Result<HttpResponse, ApiError> {
    post_alert(state, body, conn).await
}
