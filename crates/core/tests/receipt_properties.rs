//! Property tests (proptest) of `herald_core::receipt::parse_receipt`, the parser
//! behind `POST /webhooks/receipts` (contract §3.3, issue 6): any item gets a receipt or
//! an error naming a field, never a panic; what is accepted names a UUID, a known
//! status and a time within bounds.

use chrono::{DateTime, Duration, TimeZone, Utc};
use herald_core::receipt::{parse_receipt, ReceiptKind};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn now() -> DateTime<Utc> {
    "2025-11-01T00:00:00Z".parse().unwrap()
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["notification_id", "status", "at", "when", "id"]).prop_map(String::from),
        1 => ".{0,12}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        ".{0,40}",
        (0usize..12_000).prop_map(|n| "x".repeat(n)),
        prop::sample::select(vec!["delivered", "opened", "bounced", "DELIVERED", "read"])
            .prop_map(String::from),
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        (-5_000_000_000i64..300_000_000_000i64).prop_map(|s| {
            Utc.timestamp_opt(s, 0)
                .single()
                .map(|t| t.to_rfc3339())
                .unwrap_or_default()
        }),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn valid_receipt() -> impl Strategy<Value = (Value, ReceiptKind, Option<DateTime<Utc>>)> {
    (
        any::<u128>(),
        prop::sample::select(vec![
            ReceiptKind::Delivered,
            ReceiptKind::Opened,
            ReceiptKind::Bounced,
        ]),
        prop::option::of(0i64..1_762_041_600),
    )
        .prop_map(|(id, kind, at)| {
            let mut item =
                json!({"notification_id": uuid::Uuid::from_u128(id), "status": kind.as_str()});
            let at = at.map(|s| Utc.timestamp_opt(s, 0).unwrap());
            if let Some(at) = at {
                item["at"] = json!(at.to_rfc3339());
            }
            (item, kind, at)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn parse_receipt_never_panics(item in prop_oneof![
        json_value(),
        valid_receipt().prop_flat_map(|(r, ..)| (Just(r), key(), json_value()).prop_map(|(mut r, k, v)| { r[k] = v; r })),
    ]) {
        match parse_receipt(&item, now()) {
            Ok(r) => {
                let obj = item.as_object().unwrap();
                prop_assert_eq!(obj["notification_id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap(), r.notification_id);
                prop_assert!(r.at >= DateTime::UNIX_EPOCH && r.at <= now() + Duration::hours(24));
                prop_assert!(obj.keys().all(|k| ["notification_id", "status", "at"].contains(&k.as_str())));
            }
            Err(e) => {
                prop_assert!(!e.field.is_empty() || item.as_object().is_some_and(|o| o.contains_key("")));
                prop_assert!(e.to_string().contains(&e.field));
            }
        }
    }

    #[test]
    fn a_valid_receipt_parses((item, kind, at) in valid_receipt()) {
        let r = parse_receipt(&item, now()).unwrap();
        prop_assert_eq!(r.kind, kind);
        prop_assert_eq!(r.at, at.unwrap_or_else(now));
    }
}
