//! `POST /api/v1/events` (contract §3.1) and one event's notification counts.

use crate::error::{ApiError, ErrorBody};
use crate::extract::{FromJsonBody, PathEventId, ReadDb, ValidatedJson};
use crate::schema::{self, Kind};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use herald_core::event::{batch_items, parse_event, BatchError, NewEvent, MAX_BATCH_ITEMS};
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

/// A batch of events as validated by `herald_core::event::parse_event`: the valid
/// ones, where each item went, and the rejected ones with the reason.
#[derive(Debug)]
pub struct EventsIn {
    valid: Vec<NewEvent>,
    /// Per item of the request: its index in `valid`, or None when rejected.
    slot_of_item: Vec<Option<usize>>,
    rejected: Vec<Rejected>,
    /// Indexes of valid items whose `event_type` no rule handles.
    unrouted: Vec<usize>,
}

impl FromJsonBody for EventsIn {
    fn from_json(body: Value, state: &AppState) -> Result<Self, ApiError> {
        let items = batch_items(&body).map_err(|e| match e {
            BatchError::NotArrayOrObject => ApiError::BadRequest(e.to_string()),
            BatchError::TooLarge(_) => ApiError::TooLarge(e.to_string()),
        })?;
        let now = Utc::now();
        let mut batch = EventsIn {
            valid: Vec::with_capacity(items.len()),
            slot_of_item: vec![None; items.len()],
            rejected: Vec::new(),
            unrouted: Vec::new(),
        };
        for (index, item) in items.iter().enumerate() {
            match parse_event(item, now) {
                Ok(event) => {
                    if state
                        .config
                        .rules
                        .matching(&event.event_type)
                        .next()
                        .is_none()
                    {
                        batch.unrouted.push(index);
                    }
                    batch.slot_of_item[index] = Some(batch.valid.len());
                    batch.valid.push(event);
                }
                Err(e) => batch.rejected.push(Rejected::item(index, &e)),
            }
        }
        Ok(batch)
    }
}

impl PartialSchema for EventsIn {
    fn schema() -> RefOr<Schema> {
        let event = schema::object(
            "One event (contract §3.1).",
            &[
                ("event_type", Kind::String, true, "`[A-Za-z0-9_.:-]{1,100}`"),
                (
                    "event_timestamp",
                    Kind::String,
                    true,
                    "RFC 3339, between 1970 and now + 24 h.",
                ),
                (
                    "user_id",
                    Kind::String,
                    false,
                    "The person the event is about; unknown people are created.",
                ),
                ("topic", Kind::String, false, ""),
                (
                    "event_id",
                    Kind::String,
                    false,
                    "The client's idempotency key: seen before, the item is a duplicate.",
                ),
                ("properties", Kind::Object, false, ""),
                (
                    "user_traits",
                    Kind::Object,
                    false,
                    "Merged into the person's traits.",
                ),
                (
                    "deliver_at",
                    Kind::String,
                    false,
                    "RFC 3339, at most 90 days ahead: the event's notifications wait until then.",
                ),
            ],
        );
        schema::batch(
            "Up to 1,000 events (a single event object is accepted too).",
            event,
            MAX_BATCH_ITEMS,
        )
    }
}

impl ToSchema for EventsIn {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EventsIn")
    }
}

/// The answer to a batch of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsAccepted {
    accepted: usize,
    duplicates: usize,
    /// Herald's id of each item: null if rejected, the original's if a duplicate.
    event_ids: Vec<Option<Uuid>>,
    rejected: Vec<Rejected>,
    /// Indexes of the accepted items whose `event_type` no rule handles: they are kept
    /// as history and notify no one (a typo in `event_type`, or a rule not written yet).
    unrouted: Vec<usize>,
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

impl Rejected {
    /// Item `index` refused for `error`.
    pub fn item(index: usize, error: &herald_core::event::FieldError) -> Rejected {
        Rejected {
            index,
            field: Some(error.field.clone()),
            error: error.to_string(),
        }
    }
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
    request_body(content = EventsIn, description = "up to 1,000 events, or one event object"),
    responses(
        (status = 202, description = "the valid items are committed", body = EventsAccepted),
        (status = 400, description = "malformed JSON, or neither an array nor an object", body = ErrorBody),
        (status = 413, description = "over 1 MiB or over 1,000 items", body = ErrorBody),
    ))]
pub async fn post_events(
    state: web::Data<AppState>,
    ValidatedJson(batch): ValidatedJson<EventsIn>,
) -> Result<HttpResponse, ApiError> {
    let stored = state.ingestor.submit(batch.valid).await?;
    let event_ids = batch
        .slot_of_item
        .iter()
        .map(|slot| slot.map(|s| stored[s].id))
        .collect();
    let duplicates = stored.iter().filter(|s| s.duplicate).count();
    state
        .metrics
        .events_unrouted
        .inc_by(batch.unrouted.len() as u64);
    state
        .metrics
        .events_rejected
        .inc_by(batch.rejected.len() as u64);
    Ok(HttpResponse::Accepted().json(EventsAccepted {
        accepted: stored.len() - duplicates,
        duplicates,
        event_ids,
        rejected: batch.rejected,
        unrouted: batch.unrouted,
    }))
}

/// Counts of one event's notifications: recipients, sent, delivered, opened, failed,
/// suppressed, pending.
#[utoipa::path(get, path = "/api/v1/events/{event_id}/stats", tag = "ingestion",
    params(("event_id" = Uuid, Path, description = "Herald's event id")),
    responses(
        (status = 200, description = "the counts", body = EventStats),
        (status = 404, description = "unknown event", body = ErrorBody),
    ))]
pub async fn get_event_stats(
    PathEventId(event_id): PathEventId,
    mut conn: ReadDb,
) -> Result<HttpResponse, ApiError> {
    let s = herald_store::stats::event_stats(&mut conn, event_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown event {:?}", event_id.to_string())))?;
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
