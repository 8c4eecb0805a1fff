//! Provider receipts (seed 001, contract §3.3): a provider reports what became of a
//! delivery it accepted (`delivered`, `opened` or `bounced`).
//!
//! Like events and alerts, a receipt is parsed from the raw JSON item rather than a
//! derived struct, so that every problem names the field at fault and one bad item
//! never rejects its neighbours: the api lists it under `rejected` and applies the
//! rest. The store applies parsed [`Receipt`]s; nothing here touches it.

use crate::event::{batch_items, parse_timestamp, BatchError, FieldError, MAX_BATCH_ITEMS};
use crate::fields::check_known_fields;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

/// What the provider reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReceiptKind {
    /// The message reached the recipient.
    Delivered,
    /// The recipient opened it (which implies delivered).
    Opened,
    /// The provider could not deliver it: the notification fails.
    Bounced,
}

impl ReceiptKind {
    pub const ALL: [ReceiptKind; 3] = [
        ReceiptKind::Delivered,
        ReceiptKind::Opened,
        ReceiptKind::Bounced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptKind::Delivered => "delivered",
            ReceiptKind::Opened => "opened",
            ReceiptKind::Bounced => "bounced",
        }
    }

    /// The kind named exactly (lowercase, as providers send it).
    pub fn parse(s: &str) -> Option<ReceiptKind> {
        ReceiptKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One receipt of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub notification_id: Uuid,
    pub kind: ReceiptKind,
    pub at: DateTime<Utc>,
}

/// Why a whole receipts body was refused before looking at its items.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptBatchError {
    #[error("the body must be a JSON array of receipts or a single receipt object")]
    NotArrayOrObject,
    #[error("a batch holds at most {MAX_BATCH_ITEMS} receipts, this one has {0}")]
    TooLarge(usize),
}

/// Splits a body into receipt items: an array is a batch, a single object a
/// one-item batch (the same shapes as events, with messages that say receipts).
pub fn receipt_items(body: &Value) -> Result<&[Value], ReceiptBatchError> {
    batch_items(body).map_err(|e| match e {
        BatchError::NotArrayOrObject => ReceiptBatchError::NotArrayOrObject,
        BatchError::TooLarge(n) => ReceiptBatchError::TooLarge(n),
    })
}

/// The fields a receipt may carry.
pub const RECEIPT_FIELDS: &[&str] = &["notification_id", "status", "at"];

/// Validates one receipt item; `now` is its time when `at` is absent and bounds it
/// when given.
pub fn parse_receipt(item: &Value, now: DateTime<Utc>) -> Result<Receipt, FieldError> {
    let obj = item
        .as_object()
        .ok_or_else(|| FieldError::invalid("item", "must be a JSON object"))?;
    check_known_fields(obj, RECEIPT_FIELDS)?;
    let notification_id = match obj.get("notification_id") {
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
        notification_id,
        kind,
        at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2025-11-01T00:00:00Z".parse().expect("a valid timestamp")
    }

    #[test]
    fn valid_receipts_name_a_uuid_and_a_known_status_and_default_their_time() {
        let id = Uuid::now_v7();
        let earlier: DateTime<Utc> = "2025-10-31T12:00:00Z".parse().expect("valid");
        for (item, kind, at) in [
            (
                json!({"notification_id": id, "status": "opened"}),
                ReceiptKind::Opened,
                now(),
            ),
            (
                json!({"notification_id": id, "status": "delivered", "at": null}),
                ReceiptKind::Delivered,
                now(),
            ),
            (
                json!({"notification_id": id, "status": "bounced", "at": "2025-10-31T12:00:00Z"}),
                ReceiptKind::Bounced,
                earlier,
            ),
        ] {
            assert_eq!(
                parse_receipt(&item, now()),
                Ok(Receipt {
                    notification_id: id,
                    kind,
                    at
                }),
                "{item}"
            );
        }
    }

    #[test]
    fn an_invalid_receipt_names_the_field_at_fault() {
        let id = Uuid::now_v7();
        for (item, field, message) in [
            (
                json!({"status": "opened"}),
                "notification_id",
                "missing field: notification_id",
            ),
            (
                json!({"notification_id": "x", "status": "opened"}),
                "notification_id",
                "invalid field notification_id: must be a UUID",
            ),
            (
                json!({"notification_id": id}),
                "status",
                "missing field: status",
            ),
            (
                json!({"notification_id": id, "status": "read"}),
                "status",
                "invalid field status: must be one of delivered, opened, bounced",
            ),
            (
                json!({"notification_id": id, "status": "OPENED"}),
                "status",
                "invalid field status: must be one of delivered, opened, bounced",
            ),
            (
                json!({"notification_id": id, "status": "opened", "at": "yesterday"}),
                "at",
                "invalid field at: must be an RFC 3339 timestamp, e.g. 2025-10-31T19:30:00Z",
            ),
            (
                json!({"notification_id": id, "status": "opened", "at": 5}),
                "at",
                "invalid field at: must be an RFC 3339 string",
            ),
            (
                json!({"notification_id": id, "status": "opened", "when": 1}),
                "when",
                "unknown field \"when\"; expected one of notification_id, status, at",
            ),
            (
                json!({"notification_id": id, "satus": "opened"}),
                "satus",
                "unknown field \"satus\"; did you mean \"status\"?",
            ),
            (
                json!(7),
                "item",
                "invalid field item: must be a JSON object",
            ),
        ] {
            let err = parse_receipt(&item, now()).expect_err("invalid");
            assert_eq!(
                (err.field.as_str(), err.to_string().as_str()),
                (field, message),
                "{item}"
            );
        }
    }

    #[test]
    fn a_body_is_an_array_of_receipts_or_one_receipt() {
        let one = json!({"status": "opened"});
        assert_eq!(receipt_items(&one).map(<[Value]>::len), Ok(1));
        assert_eq!(receipt_items(&json!([one, one])).map(<[Value]>::len), Ok(2));
        let too_many = Value::Array(vec![json!({}); MAX_BATCH_ITEMS + 1]);
        for (body, error) in [
            (json!("x"), ReceiptBatchError::NotArrayOrObject),
            (json!(null), ReceiptBatchError::NotArrayOrObject),
            (too_many, ReceiptBatchError::TooLarge(MAX_BATCH_ITEMS + 1)),
        ] {
            assert_eq!(receipt_items(&body), Err(error));
        }
    }

    #[test]
    fn kinds_parse_from_their_own_names_only() {
        for kind in ReceiptKind::ALL {
            assert_eq!(ReceiptKind::parse(kind.as_str()), Some(kind));
        }
        for other in ["", "Delivered", "read", "bounce"] {
            assert_eq!(ReceiptKind::parse(other), None, "{other}");
        }
    }
}
