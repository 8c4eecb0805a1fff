//! `POST /webhooks/receipts` (seed 001, contract §3.3): providers report what became of
//! the deliveries they accepted. Ids Herald does not know are listed in `unknown`
//! (not fatal); malformed items are skipped and listed in `rejected`, as every batch
//! route does. Parsing is `herald_core::receipt`'s; applying them the store's.

use super::events::Rejected;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{FromJsonBody, ValidatedJson};
use crate::schema::{self, Kind};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use herald_core::event::MAX_BATCH_ITEMS;
use herald_core::receipt::{parse_receipt, receipt_items, Receipt, ReceiptBatchError};
use herald_store::receipts;
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

/// A batch of receipts, split into the valid ones and the rejected items.
#[derive(Debug)]
pub struct ReceiptsIn {
    valid: Vec<Receipt>,
    rejected: Vec<Rejected>,
}

impl FromJsonBody for ReceiptsIn {
    fn from_json(body: Value, _: &AppState) -> Result<Self, ApiError> {
        let items = receipt_items(&body).map_err(|e| match e {
            ReceiptBatchError::NotArrayOrObject => ApiError::BadRequest(e.to_string()),
            ReceiptBatchError::TooLarge(_) => ApiError::TooLarge(e.to_string()),
        })?;
        let now = Utc::now();
        let mut batch = ReceiptsIn {
            valid: Vec::with_capacity(items.len()),
            rejected: Vec::new(),
        };
        for (index, item) in items.iter().enumerate() {
            match parse_receipt(item, now) {
                Ok(r) => batch.valid.push(r),
                Err(e) => batch.rejected.push(Rejected::item(index, &e)),
            }
        }
        Ok(batch)
    }
}

impl PartialSchema for ReceiptsIn {
    fn schema() -> RefOr<Schema> {
        let receipt = schema::object(
            "One receipt.",
            &[
                (
                    "notification_id",
                    Kind::Uuid,
                    true,
                    "The `notification_id` of the delivery (also its `webhook-id`).",
                ),
                (
                    "status",
                    Kind::String,
                    true,
                    "`delivered`, `opened` (implies delivered) or `bounced` (the notification fails).",
                ),
                (
                    "at",
                    Kind::String,
                    false,
                    "When it happened, RFC 3339; the time of receipt when absent.",
                ),
            ],
        );
        schema::batch(
            "Up to 1,000 receipts (a single receipt object is accepted too).",
            receipt,
            MAX_BATCH_ITEMS,
        )
    }
}

impl ToSchema for ReceiptsIn {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ReceiptsIn")
    }
}

/// What a batch of receipts did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptsApplied {
    /// Receipts applied to a known notification.
    updated: usize,
    /// Notification ids Herald does not know, each once.
    unknown: Vec<Uuid>,
    /// Malformed items, skipped.
    rejected: Vec<Rejected>,
}

/// Record provider receipts: `delivered`, `opened` or `bounced`.
#[utoipa::path(post, path = "/webhooks/receipts", tag = "ingestion",
    request_body(content = ReceiptsIn, description = "up to 1,000 receipts, or one receipt object"),
    responses(
        (status = 200, description = "applied; unknown ids and malformed items are listed", body = ReceiptsApplied),
        (status = 400, description = "malformed JSON, or neither an array nor an object", body = ErrorBody),
        (status = 413, description = "over 1 MiB or over 1,000 items", body = ErrorBody),
    ))]
pub async fn post_receipts(
    state: web::Data<AppState>,
    ValidatedJson(batch): ValidatedJson<ReceiptsIn>,
) -> Result<HttpResponse, ApiError> {
    // No connection when nothing is valid: a batch of rejects is answered even while
    // the database is down.
    let applied = if batch.valid.is_empty() {
        receipts::Applied::default()
    } else {
        let mut conn = herald_store::pool::get(&state.pool).await?;
        receipts::apply(&mut conn, &batch.valid).await?
    };
    let people: Vec<&str> = applied.people.iter().map(String::as_str).collect();
    state.changes.announce(&people);
    Ok(HttpResponse::Ok().json(ReceiptsApplied {
        updated: applied.updated,
        unknown: applied.unknown,
        rejected: batch.rejected,
    }))
}
