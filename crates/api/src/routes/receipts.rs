//! `POST /webhooks/receipts` (contract §3.3): providers report what became of the
//! deliveries they accepted. Ids Herald does not know are listed in `unknown` (not
//! fatal), receipts whose notification's status does not take them in `ignored` with
//! the reason; malformed items are skipped and listed in `rejected`, as every batch
//! route does. Parsing and which status takes which receipt are
//! `herald_core::receipt`'s; applying them the store's.

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
use herald_store::retry::retry_on_conflict;
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
                    "`delivered`, `opened` (implies delivered) or `bounced` (a sent notification fails).",
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
    /// Receipts applied to their notification.
    updated: usize,
    /// Notification ids Herald does not know, each once.
    unknown: Vec<Uuid>,
    /// Receipts left unapplied because their notification's status does not take
    /// them (a bounce for a suppressed notification, say), one per id and status.
    ignored: Vec<IgnoredReceipt>,
    /// Malformed items, skipped.
    rejected: Vec<Rejected>,
}

/// A receipt Herald did not apply, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct IgnoredReceipt {
    notification_id: Uuid,
    /// The receipt's status: `delivered`, `opened` or `bounced`.
    status: &'static str,
    /// Names the notification's status and why it does not take the receipt, e.g.
    /// `suppressed: it was never sent`.
    reason: &'static str,
}

impl From<receipts::Ignored> for IgnoredReceipt {
    fn from(i: receipts::Ignored) -> Self {
        IgnoredReceipt {
            notification_id: i.notification_id,
            status: i.kind.as_str(),
            reason: i.reason,
        }
    }
}

/// Record provider receipts: `delivered`, `opened` or `bounced`.
#[utoipa::path(post, path = "/webhooks/receipts", tag = "ingestion",
    request_body(content = ReceiptsIn, description = "up to 1,000 receipts, or one receipt object"),
    responses(
        (status = 200, description = "applied; unknown ids, receipts the notification's status does not take, and malformed items are listed", body = ReceiptsApplied),
        (status = 400, description = "malformed JSON, or neither an array nor an object", body = ErrorBody),
        (status = 413, description = "over 1 MiB or over 1,000 items", body = ErrorBody),
    ))]
pub async fn post_receipts(
    state: web::Data<AppState>,
    ValidatedJson(batch): ValidatedJson<ReceiptsIn>,
) -> Result<HttpResponse, ApiError> {
    // No connection when nothing is valid: a batch of rejects is answered even while
    // the database is down. A statement Postgres aborted for a conflict with another
    // transaction is run again rather than answered with a 5xx.
    let applied = if batch.valid.is_empty() {
        receipts::Applied::default()
    } else {
        let (pool, valid) = (&state.pool, &batch.valid);
        retry_on_conflict("receipts", || async move {
            let mut conn = herald_store::pool::get(pool).await?;
            receipts::apply(&mut conn, valid).await
        })
        .await?
    };
    let people: Vec<&str> = applied.people.iter().map(String::as_str).collect();
    state.changes.announce(&people);
    Ok(HttpResponse::Ok().json(ReceiptsApplied {
        updated: applied.updated,
        unknown: applied.unknown,
        ignored: applied
            .ignored
            .into_iter()
            .map(IgnoredReceipt::from)
            .collect(),
        rejected: batch.rejected,
    }))
}
