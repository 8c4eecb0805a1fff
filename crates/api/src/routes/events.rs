//! `POST /api/v1/events` (SPEC 3.1).

use crate::body::read_json;
use crate::error::ApiError;
use crate::ingest::store_and_enqueue;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use herald_core::event::{batch_items, parse_event, BatchError};
use serde_json::{json, Value};

/// Accept a batch of events (or a single one): valid items are committed and routed,
/// invalid ones are listed in `rejected` with the reason.
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
    let stored = store_and_enqueue(&state, &valid).await?;
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
