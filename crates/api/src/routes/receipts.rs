//! `POST /webhooks/receipts` (seed 001, SPEC 3.3): providers report what became of
//! the deliveries they accepted. Ids Herald does not know are listed in `unknown`
//! (not fatal); malformed items are skipped and listed in `rejected`, as every batch
//! route does.

use super::events::Rejected;
use crate::body::read_json;
use crate::error::ApiError;
use crate::openapi::ErrorBody;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use herald_core::event::{parse_timestamp, FieldError, MAX_BATCH_ITEMS};
use herald_store::receipts::{self, Receipt, ReceiptKind};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// One receipt.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documentation only: items are parsed one by one below
pub struct ReceiptIn {
    /// The `notification_id` of the delivery (also its `webhook-id`).
    notification_id: Uuid,
    /// `delivered`, `opened` (implies delivered) or `bounced` (the notification fails).
    status: String,
    /// When it happened, RFC 3339; the time of receipt when absent.
    at: Option<String>,
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
    request_body(content = Vec<ReceiptIn>, description = "up to 1,000 receipts, or one receipt object"),
    responses(
        (status = 200, description = "applied; unknown ids and malformed items are listed", body = ReceiptsApplied),
        (status = 400, description = "malformed JSON, or neither an array nor an object", body = ErrorBody),
        (status = 413, description = "over 1 MiB or over 1,000 items", body = ErrorBody),
    ))]
pub async fn post_receipts(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload).await?;
    let items = match &body {
        Value::Array(items) if items.len() > MAX_BATCH_ITEMS => {
            return Err(ApiError::TooLarge(format!(
                "a batch holds at most {MAX_BATCH_ITEMS} receipts, this one has {}",
                items.len()
            )))
        }
        Value::Array(items) => items.as_slice(),
        Value::Object(_) => std::slice::from_ref(&body),
        _ => {
            return Err(ApiError::BadRequest(
                "the body must be a JSON array of receipts or a single receipt object".into(),
            ))
        }
    };
    let now = Utc::now();
    let mut valid = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match parse_receipt(item, now) {
            Ok(r) => valid.push(r),
            Err(e) => rejected.push(Rejected {
                index,
                field: Some(e.field.clone()),
                error: e.to_string(),
            }),
        }
    }
    let applied = if valid.is_empty() {
        receipts::Applied::default()
    } else {
        let mut conn = herald_store::pool::get(&state.pool).await?;
        receipts::apply(&mut conn, &valid).await?
    };
    let people: Vec<&str> = applied.people.iter().map(String::as_str).collect();
    state.changes.announce(&people);
    Ok(HttpResponse::Ok().json(ReceiptsApplied {
        updated: applied.updated,
        unknown: applied.unknown,
        rejected,
    }))
}

/// Validates one receipt item (public for the property tests).
pub fn parse_receipt(item: &Value, now: DateTime<Utc>) -> Result<Receipt, FieldError> {
    let obj = item
        .as_object()
        .ok_or_else(|| FieldError::invalid("item", "must be a JSON object"))?;
    if let Some(extra) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "notification_id" | "status" | "at"))
    {
        return Err(FieldError::invalid(
            extra,
            "unknown field: expected notification_id, status, at",
        ));
    }
    let id = match obj.get("notification_id") {
        None | Some(Value::Null) => return Err(FieldError::missing("notification_id")),
        Some(v) => v
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| FieldError::invalid("notification_id", "must be a UUID"))?,
    };
    let kind = match obj.get("status") {
        None | Some(Value::Null) => return Err(FieldError::missing("status")),
        Some(v) => v.as_str().and_then(ReceiptKind::parse).ok_or_else(|| {
            FieldError::invalid("status", "must be one of delivered, opened, bounced")
        })?,
    };
    let at = match obj.get("at") {
        None | Some(Value::Null) => now,
        Some(Value::String(s)) => parse_timestamp("at", s, now)?,
        Some(_) => return Err(FieldError::invalid("at", "must be an RFC 3339 string")),
    };
    Ok(Receipt {
        notification_id: id,
        kind,
        at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_receipt_needs_a_uuid_and_a_known_status_and_defaults_its_time() {
        let now = Utc::now();
        let id = Uuid::now_v7();
        let ok = parse_receipt(&json!({"notification_id": id, "status": "opened"}), now);
        assert_eq!(
            ok,
            Ok(Receipt {
                notification_id: id,
                kind: ReceiptKind::Opened,
                at: now
            })
        );
        for (item, field) in [
            (json!({"status": "opened"}), "notification_id"),
            (
                json!({"notification_id": "x", "status": "opened"}),
                "notification_id",
            ),
            (json!({"notification_id": id, "status": "read"}), "status"),
            (
                json!({"notification_id": id, "status": "opened", "at": "yesterday"}),
                "at",
            ),
            (
                json!({"notification_id": id, "status": "opened", "when": 1}),
                "when",
            ),
            (json!(7), "item"),
        ] {
            let err = parse_receipt(&item, now).expect_err("invalid");
            assert_eq!(err.field, field, "{item}");
        }
    }
}
