//! Ingested events (contract §3.1): parsing one JSON item into a [`NewEvent`], and a
//! request body into a batch of per-item results.
//!
//! Parsing works on `serde_json::Value` rather than a derived struct so that every
//! problem can be reported against the field that caused it, and so that one bad
//! item never rejects its neighbours: a batch is a list of independent results.

use crate::fields::check_known_fields;
use crate::ids::validate_id;
use crate::limits::check_json_bounds;
// `FieldError` lives with the id rules, which every validator (events, alerts,
// people, topics) builds on; re-exported here, where callers have always found it.
pub use crate::ids::FieldError;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The most items one batch request may carry (contract §3: over it, 413).
pub const MAX_BATCH_ITEMS: usize = 1_000;
/// How far in the future an event timestamp may lie; clocks drift, but not by days.
pub const MAX_FUTURE_SKEW_HOURS: i64 = 24;
/// How far ahead an event's `deliver_at` may schedule its notifications.
pub const MAX_DELIVER_AHEAD_DAYS: i64 = 90;

/// The fields an event item may carry; any other is refused with a suggestion.
pub const EVENT_FIELDS: &[&str] = &[
    "event_type",
    "event_timestamp",
    "user_id",
    "topic",
    "event_id",
    "properties",
    "user_traits",
    "deliver_at",
];

/// A client `event_id` may not start with this: alerts' idempotency keys are
/// `alert:<alert_uuid>` (contract §3.2), and an event must not shadow an alert.
pub const ALERT_KEY_PREFIX: &str = "alert:";

/// An event that passed validation and is ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Herald's id: a UUID v7, so ids sort by arrival and index well.
    pub id: Uuid,
    pub event_type: String,
    pub user_id: Option<String>,
    pub topic: Option<String>,
    pub event_timestamp: DateTime<Utc>,
    pub properties: Value,
    pub user_traits: Value,
    /// The client's `event_id` (or `alert:<uuid>` for alerts): only a dedupe key.
    pub idempotency_key: Option<String>,
    /// When the event's notifications must go (contract §3.1, `deliver_at`); they
    /// wait in the delayed set until then.
    pub deliver_at: Option<DateTime<Utc>>,
}

/// Why a whole body was refused before looking at its items.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("the body must be a JSON array of events or a single event object")]
    NotArrayOrObject,
    #[error("a batch holds at most {MAX_BATCH_ITEMS} items, this one has {0}")]
    TooLarge(usize),
}

/// Splits a body into items: an array is a batch, a single object a one-item batch.
pub fn batch_items(body: &Value) -> Result<&[Value], BatchError> {
    match body {
        Value::Array(items) if items.len() > MAX_BATCH_ITEMS => {
            Err(BatchError::TooLarge(items.len()))
        }
        Value::Array(items) => Ok(items),
        Value::Object(_) => Ok(std::slice::from_ref(body)),
        _ => Err(BatchError::NotArrayOrObject),
    }
}

/// Validates one event item. `now` bounds the timestamp (contract §3: 1970 ..= now + 24 h).
pub fn parse_event(item: &Value, now: DateTime<Utc>) -> Result<NewEvent, FieldError> {
    let obj = item
        .as_object()
        .ok_or_else(|| FieldError::invalid("item", "must be a JSON object"))?;
    check_known_fields(obj, EVENT_FIELDS)?;
    let event_type = required_str(obj, "event_type")?;
    validate_event_type(event_type)?;
    let event_timestamp = parse_timestamp(
        "event_timestamp",
        required_str(obj, "event_timestamp")?,
        now,
    )?;
    let user_id = optional_id(obj, "user_id")?;
    let topic = optional_id(obj, "topic")?;
    let idempotency_key = optional_id(obj, "event_id")?;
    if idempotency_key
        .as_deref()
        .is_some_and(|k| k.starts_with(ALERT_KEY_PREFIX))
    {
        return Err(FieldError::invalid(
            "event_id",
            "must not start with \"alert:\", which is reserved for alerts' alert_uuid",
        ));
    }
    let properties = optional_object(obj, "properties")?;
    let user_traits = optional_object(obj, "user_traits")?;
    let deliver_at = optional_deliver_at(obj, now)?;
    Ok(NewEvent {
        id: Uuid::now_v7(),
        event_type: event_type.to_string(),
        user_id,
        topic,
        event_timestamp,
        properties,
        user_traits,
        idempotency_key,
        deliver_at,
    })
}

/// `deliver_at`: an RFC 3339 instant at most [`MAX_DELIVER_AHEAD_DAYS`] ahead of
/// `now`. One already past means "now".
fn optional_deliver_at(
    obj: &Map<String, Value>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, FieldError> {
    const FIELD: &str = "deliver_at";
    let raw = match obj.get(FIELD) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(FieldError::invalid(
                FIELD,
                "must be an RFC 3339 timestamp string",
            ))
        }
    };
    let at = DateTime::parse_from_rfc3339(raw)
        .map_err(|_| {
            FieldError::invalid(
                FIELD,
                "must be an RFC 3339 timestamp, e.g. 2025-10-31T19:30:00Z",
            )
        })?
        .with_timezone(&Utc);
    if at < DateTime::UNIX_EPOCH {
        return Err(FieldError::invalid(FIELD, "must not be before 1970"));
    }
    if at > now + Duration::days(MAX_DELIVER_AHEAD_DAYS) {
        return Err(FieldError::invalid(
            FIELD,
            format!("must not be more than {MAX_DELIVER_AHEAD_DAYS} days ahead"),
        ));
    }
    Ok(Some(at))
}

/// `event_type` is `[A-Za-z0-9_.:-]{1,100}`: it appears in rule files and URLs.
pub fn validate_event_type(event_type: &str) -> Result<(), FieldError> {
    let ok_chars = event_type
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if event_type.is_empty() || event_type.len() > 100 || !ok_chars {
        return Err(FieldError::invalid(
            "event_type",
            "must match [A-Za-z0-9_.:-]{1,100}",
        ));
    }
    Ok(())
}

/// Parses an RFC 3339 timestamp and checks it lies between 1970 and now + 24 h.
pub fn parse_timestamp(
    field: &str,
    raw: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, FieldError> {
    let ts = DateTime::parse_from_rfc3339(raw)
        .map_err(|_| {
            FieldError::invalid(
                field,
                "must be an RFC 3339 timestamp, e.g. 2025-10-31T19:30:00Z",
            )
        })?
        .with_timezone(&Utc);
    check_time_bounds(field, ts, now)
}

/// Converts epoch seconds (as alerts carry them) to a timestamp within bounds.
pub fn timestamp_from_epoch(
    field: &str,
    seconds: f64,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, FieldError> {
    if !seconds.is_finite() {
        return Err(FieldError::invalid(field, "must be a finite number"));
    }
    // Rounded to microseconds, Postgres' precision; the cast saturates, and the
    // bounds check below refuses anything that far out.
    let micros = (seconds * 1e6).round() as i64;
    let ts = Utc
        .timestamp_micros(micros)
        .single()
        .ok_or_else(|| FieldError::invalid(field, "is out of range"))?;
    check_time_bounds(field, ts, now)
}

fn check_time_bounds(
    field: &str,
    ts: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, FieldError> {
    if ts < DateTime::UNIX_EPOCH {
        return Err(FieldError::invalid(field, "must not be before 1970"));
    }
    if ts > now + Duration::hours(MAX_FUTURE_SKEW_HOURS) {
        return Err(FieldError::invalid(
            field,
            "must not be more than 24 hours in the future",
        ));
    }
    Ok(ts)
}

fn required_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(FieldError::missing(field)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(FieldError::invalid(field, "must be a string")),
    }
}

fn optional_id(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            validate_id(field, s)?;
            Ok(Some(s.clone()))
        }
        Some(_) => Err(FieldError::invalid(field, "must be a string")),
    }
}

fn optional_object(obj: &Map<String, Value>, field: &str) -> Result<Value, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(v @ Value::Object(_)) => match nul_path(v) {
            Some(at) => Err(FieldError::invalid(field, nul_message(&at))),
            None => check_json_bounds(field, v).map(|()| v.clone()),
        },
        Some(_) => Err(FieldError::invalid(field, "must be a JSON object")),
    }
}

/// Where `value` holds a NUL character (`\u0000`) in a string or an object key, as a
/// path such as `.note` or `[2].name`; None when it holds none. Postgres stores no
/// NUL in `text` or `jsonb`, so such input is refused up front (a 4xx naming the
/// field), never left to fail the insert (a 500 for the whole batch).
pub fn nul_path(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(String::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_path(v).map(|rest| format!("[{i}]{rest}"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(format!(".{}", k.replace('\0', "\\u0000")))
            } else {
                nul_path(v).map(|rest| format!(".{k}{rest}"))
            }
        }),
        _ => None,
    }
}

/// The message for a NUL found at `at` (a path from [`nul_path`]).
pub fn nul_message(at: &str) -> String {
    if at.is_empty() {
        "must not contain NUL characters (\\u0000)".to_string()
    } else {
        format!("must not contain NUL characters (\\u0000), found at {at}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2025-11-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_complete_event_parses_with_every_field() {
        let e = parse_event(
            &json!({"user_id": "u_1", "event_type": "payment_failed",
                    "event_timestamp": "2025-10-31T19:30:00Z", "event_id": "k1",
                    "topic": "shop", "properties": {"amount": 1425.0},
                    "user_traits": {"email": "m@example.com"}}),
            now(),
        )
        .unwrap();
        assert_eq!(e.event_type, "payment_failed");
        assert_eq!(e.user_id.as_deref(), Some("u_1"));
        assert_eq!(e.idempotency_key.as_deref(), Some("k1"));
        assert_eq!(e.properties["amount"], json!(1425.0));
    }

    #[test]
    fn each_bad_field_is_named_in_the_error() {
        let cases = [
            (
                json!({"event_timestamp": "2025-10-31T19:30:00Z"}),
                "missing field: event_type",
            ),
            (json!({"event_type": "x"}), "missing field: event_timestamp"),
            (
                json!({"event_type": "a b", "event_timestamp": "2025-10-31T19:30:00Z"}),
                "event_type",
            ),
            (
                json!({"event_type": "x", "event_timestamp": "yesterday"}),
                "event_timestamp",
            ),
            (
                json!({"event_type": "x", "event_timestamp": "1969-12-31T23:59:59Z"}),
                "before 1970",
            ),
            (
                json!({"event_type": "x", "event_timestamp": "2025-11-02T00:00:01Z"}),
                "future",
            ),
            (
                json!({"event_type": "x", "event_timestamp": "2025-10-31T19:30:00Z", "user_id": 5}),
                "user_id",
            ),
            (
                json!({"event_type": "x", "event_timestamp": "2025-10-31T19:30:00Z", "user_id": "a".repeat(10_000)}),
                "user_id",
            ),
            (
                json!({"event_type": "x", "event_timestamp": "2025-10-31T19:30:00Z", "properties": [1]}),
                "properties",
            ),
            (
                json!({"event_type": "x", "event_timestamp": "2025-10-31T19:30:00Z", "user_traits": "x"}),
                "user_traits",
            ),
            (json!("just a string"), "item"),
            (
                json!({"event_type": "x", "event_timestamp": "2025-10-31T19:30:00Z", "user_Id": "u_1"}),
                r#"unknown field "user_Id"; did you mean "user_id"?"#,
            ),
            (
                json!({"event_type": "x", "event_timestamp": "2025-10-31T19:30:00Z", "propertys": {}}),
                r#"unknown field "propertys"; did you mean "properties"?"#,
            ),
            (
                json!({"event_type": "x", "event_timestamp": "2025-10-31T19:30:00Z", "event_id": "alert:33cbb18c"}),
                "reserved for alerts",
            ),
            (
                json!({"event_type": "x", "event_timestamp": "2025-10-31T19:30:00Z", "properties": {"s": "x".repeat(70_000)}}),
                "invalid field properties: must be at most 64 KiB",
            ),
        ];
        for (item, expected) in cases {
            let err = parse_event(&item, now()).unwrap_err();
            assert!(
                err.to_string().contains(expected),
                "{item}: got {err}, wanted {expected}"
            );
        }
    }

    #[test]
    fn deliver_at_is_an_instant_at_most_90_days_ahead() {
        let base = json!({"event_type": "x", "event_timestamp": "2025-10-31T19:30:00Z"});
        let with = |v: Value| {
            let mut item = base.clone();
            item["deliver_at"] = v;
            parse_event(&item, now())
        };
        let ok = [
            (Value::Null, None),
            (json!("2025-11-01T00:00:05Z"), Some("2025-11-01T00:00:05Z")),
            (
                json!("2025-11-01T02:00:05+02:00"),
                Some("2025-11-01T00:00:05Z"),
            ),
            (json!("2026-01-30T00:00:00Z"), Some("2026-01-30T00:00:00Z")),
            (json!("2025-10-01T00:00:00Z"), Some("2025-10-01T00:00:00Z")),
        ];
        for (v, want) in ok {
            let got = with(v.clone())
                .unwrap_or_else(|e| panic!("{v}: {e}"))
                .deliver_at;
            assert_eq!(got, want.map(|w| w.parse().unwrap()), "{v}");
        }
        assert_eq!(parse_event(&base, now()).unwrap().deliver_at, None);
        let bad = [
            (json!("2026-01-30T00:00:01Z"), "90 days"),
            (json!("tomorrow"), "RFC 3339"),
            (json!(1_762_000_000), "RFC 3339"),
            (json!("1969-12-31T00:00:00Z"), "1970"),
        ];
        for (v, want) in bad {
            let err = with(v.clone()).unwrap_err();
            assert_eq!(err.field, "deliver_at", "{v}");
            assert!(err.message.contains(want), "{v}: {err}");
        }
    }

    #[test]
    fn nul_characters_anywhere_in_properties_or_traits_are_refused() {
        for (item, field) in [
            (json!({"properties": {"note": "a\u{0}b"}}), "properties"),
            (
                json!({"properties": {"list": [1, {"k": "\u{0}"}]}}),
                "properties",
            ),
            (json!({"user_traits": {"k\u{0}": 1}}), "user_traits"),
        ] {
            let mut item = item;
            item["event_type"] = json!("x");
            item["event_timestamp"] = json!("2025-10-31T19:30:00Z");
            let err = parse_event(&item, now()).unwrap_err();
            assert_eq!(err.field, field, "{item}");
            assert!(err.message.contains("NUL"), "{err}");
        }
        assert_eq!(
            nul_path(&json!({"a": [0, {"b": "\u{0}"}]})).as_deref(),
            Some(".a[1].b")
        );
        assert_eq!(nul_path(&json!({"a": "fine"})), None);
    }

    #[test]
    fn a_timestamp_exactly_24_hours_ahead_is_accepted() {
        let item = json!({"event_type": "x", "event_timestamp": "2025-11-02T00:00:00Z"});
        assert!(parse_event(&item, now()).is_ok());
    }

    #[test]
    fn a_single_object_is_a_one_item_batch_and_scalars_are_refused() {
        assert_eq!(batch_items(&json!({"a": 1})).unwrap().len(), 1);
        assert_eq!(batch_items(&json!([])).unwrap().len(), 0);
        assert_eq!(batch_items(&json!(3)), Err(BatchError::NotArrayOrObject));
        let big = Value::Array(vec![json!({}); MAX_BATCH_ITEMS + 1]);
        assert_eq!(
            batch_items(&big),
            Err(BatchError::TooLarge(MAX_BATCH_ITEMS + 1))
        );
    }

    #[test]
    fn epoch_seconds_keep_microseconds() {
        let ts = timestamp_from_epoch("time_spotted", 1742470260.083, now()).unwrap();
        assert_eq!(ts.timestamp_subsec_millis(), 83);
        assert!(timestamp_from_epoch("time_spotted", f64::NAN, now()).is_err());
        assert!(timestamp_from_epoch("time_spotted", 1e300, now()).is_err());
    }
}
