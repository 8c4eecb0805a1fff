//! Provider receipts (seed 001, contract §3.3): a provider reports what became of a
//! delivery it accepted (`delivered`, `opened` or `bounced`).
//!
//! Like events and alerts, a receipt is parsed from the raw JSON item rather than a
//! derived struct, so that every problem names the field at fault and one bad item
//! never rejects its neighbours: the api lists it under `rejected` and applies the
//! rest. The store applies parsed [`Receipt`]s; nothing here touches it.
//!
//! Which notifications a receipt may change is decided here too ([`effect`]): the
//! store asks, per kind, which statuses a receipt applies to, and explains the rest
//! with [`effect`]'s reason.

use crate::event::{batch_items, parse_timestamp, BatchError, FieldError, MAX_BATCH_ITEMS};
use crate::fields::check_known_fields;
use crate::status::NotificationStatus;
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

/// What a receipt does to a notification in some status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The receipt is recorded.
    Apply,
    /// The notification is left as it is; the reason is shown to the provider.
    Ignore(&'static str),
}

/// Whether a receipt of `kind` may change a notification in `status`.
///
/// - A `sent` notification takes every receipt.
/// - A `pending` one takes `delivered` and `opened`: providers learn a notification's
///   id only from its delivery, so a pending notification they report on was handed
///   to them and its attempt is in flight (the worker records it after the provider
///   answered, and the receipt can arrive first). The attempt keeps the times. A
///   bounce, which would fail it, waits for the notification to be `sent`.
/// - `bundled`, `suppressed` and `failed` ones take none: they were never sent on
///   their own, never sent, or their delivery already failed.
pub fn effect(kind: ReceiptKind, status: NotificationStatus) -> Effect {
    use NotificationStatus as S;
    use ReceiptKind as K;
    match (status, kind) {
        (S::Sent, _) => Effect::Apply,
        (S::Pending, K::Delivered | K::Opened) => Effect::Apply,
        (S::Pending, K::Bounced) => {
            Effect::Ignore("pending: not sent yet; a bounce applies to a sent notification")
        }
        (S::Bundled, _) => {
            Effect::Ignore("bundled: held in a pending bundle, never sent on its own")
        }
        (S::Suppressed, _) => Effect::Ignore("suppressed: it was never sent"),
        (S::Failed, K::Bounced) => Effect::Ignore("failed: it has already failed"),
        (S::Failed, K::Delivered | K::Opened) => Effect::Ignore("failed: its delivery failed"),
    }
}

impl ReceiptKind {
    /// The statuses a receipt of this kind applies to ([`effect`] says [`Effect::Apply`]).
    pub fn applies_to(self) -> Vec<NotificationStatus> {
        NotificationStatus::ALL
            .into_iter()
            .filter(|s| effect(self, *s) == Effect::Apply)
            .collect()
    }
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

#[cfg(test)]
mod effect_tests {
    use super::*;
    use NotificationStatus as S;
    use ReceiptKind as K;

    #[test]
    fn each_kind_changes_only_the_statuses_it_may() {
        let apply = Effect::Apply;
        let never_sent = Effect::Ignore("suppressed: it was never sent");
        let bundled = Effect::Ignore("bundled: held in a pending bundle, never sent on its own");
        let failed = Effect::Ignore("failed: its delivery failed");
        for (kind, status, expected) in [
            (K::Delivered, S::Sent, apply),
            (K::Delivered, S::Pending, apply),
            (K::Delivered, S::Bundled, bundled),
            (K::Delivered, S::Failed, failed),
            (K::Delivered, S::Suppressed, never_sent),
            (K::Opened, S::Sent, apply),
            (K::Opened, S::Pending, apply),
            (K::Opened, S::Bundled, bundled),
            (K::Opened, S::Failed, failed),
            (K::Opened, S::Suppressed, never_sent),
            (K::Bounced, S::Sent, apply),
            (
                K::Bounced,
                S::Pending,
                Effect::Ignore("pending: not sent yet; a bounce applies to a sent notification"),
            ),
            (K::Bounced, S::Bundled, bundled),
            (
                K::Bounced,
                S::Failed,
                Effect::Ignore("failed: it has already failed"),
            ),
            (K::Bounced, S::Suppressed, never_sent),
        ] {
            assert_eq!(effect(kind, status), expected, "{kind:?} on {status}");
        }
    }

    #[test]
    fn the_statuses_a_kind_applies_to_are_those_effect_applies() {
        assert_eq!(K::Delivered.applies_to(), [S::Pending, S::Sent]);
        assert_eq!(K::Opened.applies_to(), [S::Pending, S::Sent]);
        assert_eq!(K::Bounced.applies_to(), [S::Sent]);
    }

    #[test]
    fn every_reason_names_the_status_it_explains() {
        for kind in K::ALL {
            for status in S::ALL {
                if let Effect::Ignore(reason) = effect(kind, status) {
                    assert!(
                        reason.starts_with(&format!("{status}:")),
                        "{kind:?} on {status}: {reason}"
                    );
                }
            }
        }
    }
}
