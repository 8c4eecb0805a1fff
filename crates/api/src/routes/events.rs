//! `POST /api/v1/events` (SPEC 3.1).

use crate::body::read_json;
use crate::error::ApiError;
use crate::ingest::store_and_enqueue;
use crate::openapi::ErrorBody;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use herald_core::event::{batch_items, parse_event, BatchError};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

/// One event of a batch (SPEC 3.1).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documentation only: events are parsed field by field in core
pub struct EventIn {
    /// `[A-Za-z0-9_.:-]{1,100}`
    event_type: String,
    /// RFC 3339, between 1970 and now + 24 h.
    event_timestamp: String,
    /// The person the event is about; unknown people are created.
    user_id: Option<String>,
    topic: Option<String>,
    /// The client's idempotency key: seen before, the item is a duplicate.
    event_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    properties: Option<Value>,
    /// Merged into the person's traits.
    #[schema(value_type = Option<Object>)]
    user_traits: Option<Value>,
}

/// The answer to a batch of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsAccepted {
    accepted: usize,
    duplicates: usize,
    /// Herald's id of each item: null if rejected, the original's if a duplicate.
    event_ids: Vec<Option<uuid::Uuid>>,
    rejected: Vec<Rejected>,
}

/// An item of a batch that was skipped, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rejected {
    pub index: usize,
    /// The field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub error: String,
}

/// What became of one event's notifications.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventStats {
    /// Distinct people with a notification row (suppressed ones included).
    recipients: i64,
    /// Accepted by a provider (a 2xx), including those later delivered, opened or bounced.
    sent: i64,
    /// With a `delivered` or `opened` receipt.
    delivered: i64,
    /// With an `opened` receipt.
    opened: i64,
    failed: i64,
    suppressed: i64,
    /// Not final yet (`pending` or `bundled`).
    pending: i64,
}

/// Accept a batch of events (or a single one): valid items are committed and routed,
/// invalid ones are listed in `rejected` with the reason.
#[utoipa::path(post, path = "/api/v1/events", tag = "ingestion",
    request_body(content = Vec<EventIn>, description = "up to 1,000 events, or one event object"),
    responses(
        (status = 202, description = "the valid items are committed", body = EventsAccepted),
        (status = 400, description = "malformed JSON, or neither an array nor an object", body = ErrorBody),
        (status = 413, description = "over 1 MiB or over 1,000 items", body = ErrorBody),
    ))]
pub async fn post_events(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload).await?;
    let items = batch_items(&body).map_err(|e| match e {
        BatchError::NotArrayOrObject => ApiError::BadRequest(e.to_string()),
        BatchError::TooLarge(_) => ApiError::TooLarge(e.to_string()),
    })?;
    let now = Utc::now();
    let mut valid = Vec::with_capacity(items.len());
    let mut slot_of_item = vec![None; items.len()];
    let mut rejected = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match parse_event(item, now) {
            Ok(event) => {
                slot_of_item[i] = Some(valid.len());
                valid.push(event);
            }
            Err(e) => rejected.push(json!({"index": i, "field": e.field, "error": e.to_string()})),
        }
    }
    let stored = store_and_enqueue(&state, valid).await?;
    let event_ids: Vec<Value> = slot_of_item
        .iter()
        .map(|slot| slot.map_or(Value::Null, |s| json!(stored[s].id)))
        .collect();
    let duplicates = stored.iter().filter(|s| s.duplicate).count();
    Ok(HttpResponse::Accepted().json(json!({
        "accepted": stored.len() - duplicates,
        "duplicates": duplicates,
        "event_ids": event_ids,
        "rejected": rejected,
    })))
}

/// Counts of one event's notifications: recipients, sent, delivered, opened, failed,
/// suppressed, pending.
#[utoipa::path(get, path = "/api/v1/events/{event_id}/stats", tag = "ingestion",
    params(("event_id" = uuid::Uuid, Path, description = "Herald's event id")),
    responses(
        (status = 200, description = "the counts", body = EventStats),
        (status = 404, description = "unknown event", body = ErrorBody),
    ))]
pub async fn get_event_stats(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let unknown = || ApiError::NotFound(format!("unknown event {raw:?}"));
    let event_id = uuid::Uuid::parse_str(&raw).map_err(|_| unknown())?;
    let mut conn = herald_store::pool::get(&state.pool).await?;
    let s = herald_store::stats::event_stats(&mut conn, event_id)
        .await?
        .ok_or_else(unknown)?;
    Ok(HttpResponse::Ok().json(EventStats {
        recipients: s.recipients,
        sent: s.sent,
        delivered: s.delivered,
        opened: s.opened,
        failed: s.failed,
        suppressed: s.suppressed,
        pending: s.pending,
    }))
}
