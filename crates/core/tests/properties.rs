//! Property tests (proptest) of the parsers that see untrusted input and of the rules
//! evaluator (issue 6): whatever the JSON, they answer with a value or a named error,
//! never a panic, and what they accept satisfies the contract of contract §3 and 5.1.
//!
//! `PROPTEST_CASES=10000 cargo test -p herald-core --test properties` runs longer.

use chrono::{DateTime, Duration, TimeZone, Utc};
use herald_core::alert::{parse_alert, AlertLabels, ALERT_EVENT_TYPE};
use herald_core::conditions::{parse_conditions, Condition, Facts, History, Op};
use herald_core::event::{
    batch_items, parse_event, parse_timestamp, timestamp_from_epoch, validate_event_type,
    BatchError, MAX_BATCH_ITEMS,
};
use herald_core::ids::MAX_ID_CHARS;
use herald_core::severity::Severity;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn now() -> DateTime<Utc> {
    "2025-11-01T00:00:00Z".parse().unwrap()
}

fn latest() -> DateTime<Utc> {
    now() + Duration::hours(24)
}

// ------------------------------------------------------------------ strategies

/// Field names the parsers look for, mixed with arbitrary ones.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "event_type", "event_timestamp", "user_id", "topic", "event_id", "properties",
            "user_traits", "alert_uuid", "location", "label", "url", "time_spotted", "amount",
            "notification_id", "status", "at", "property", "op", "value", "case_insensitive",
            "event_within", "no_event_within", "any", "all", "within", "traits", "plan",
        ])
        .prop_map(String::from),
        1 => ".{0,12}",
    ]
}

/// Timestamps around the accepted range, as RFC 3339 text.
fn timestamp_text() -> impl Strategy<Value = String> {
    (-5_000_000_000i64..300_000_000_000i64, 0u32..1_000_000_000).prop_map(|(s, ns)| {
        Utc.timestamp_opt(s, ns)
            .single()
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "2025-10-31T19:30:00Z".into())
    })
}

/// Strings a hostile client sends: empty, huge, control characters, look-alikes of
/// valid values, numbers as text, timestamps.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z_.:-]{1,16}",
        ".{0,40}",
        "\\PC{120,140}",
        (0usize..12_000).prop_map(|n| "x".repeat(n)),
        Just("a/b".to_string()),
        Just("\u{0}\u{7f}\n".to_string()),
        Just("theft".to_string()),
        Just("33cbb18c-3e9d-4acc-9667-2fbe7bf29137".to_string()),
        Just("NaN".to_string()),
        Just("-0".to_string()),
        Just("1e308".to_string()),
        Just("true".to_string()),
        timestamp_text(),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinities", |f| f.is_finite())
            .prop_map(Value::from),
        nasty_string().prop_map(Value::String),
    ]
}

/// Any JSON value, nested up to 5 levels.
fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A JSON object whose known fields are mostly of the right shape, so that parsing
/// gets past the first check and into the deeper ones.
fn event_like() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            "[A-Za-z0-9_.:-]{1,100}".prop_map(Value::String),
            json_value()
        ],
        prop_oneof![timestamp_text().prop_map(Value::String), json_value()],
        prop::option::of(prop_oneof![
            nasty_string().prop_map(Value::String),
            json_value()
        ]),
        prop::option::of(prop_oneof![
            "[a-z0-9_]{1,10}".prop_map(Value::String),
            json_value()
        ]),
        prop::option::of(json_value()),
        prop::option::of(json_value()),
    )
        .prop_map(|(t, ts, user, topic, props, traits)| {
            let mut m = Map::new();
            m.insert("event_type".into(), t);
            m.insert("event_timestamp".into(), ts);
            for (k, v) in [
                ("user_id", user),
                ("topic", topic),
                ("properties", props),
                ("user_traits", traits),
            ] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            Value::Object(m)
        })
}

/// A valid event item and what it should parse into.
fn valid_event() -> impl Strategy<Value = (Value, String, DateTime<Utc>, Option<String>)> {
    (
        "[A-Za-z0-9_.:-]{1,100}",
        0i64..1_762_041_600, // 1970 .. now
        prop::option::of("[^/\\p{Cc}]{1,128}"),
        prop::collection::btree_map("[a-z]{1,8}", leaf(), 0..5),
    )
        .prop_map(|(event_type, secs, user_id, props)| {
            let ts = Utc.timestamp_opt(secs, 0).unwrap();
            let mut item = json!({"event_type": event_type, "event_timestamp": ts.to_rfc3339(),
                "properties": props.into_iter().collect::<Map<_, _>>()});
            if let Some(u) = &user_id {
                item["user_id"] = json!(u);
            }
            (item, event_type, ts, user_id)
        })
        // Postgres cannot store NUL, so an item holding one is invalid (see event.rs).
        .prop_filter("valid items hold no NUL", |(item, ..)| {
            !item.to_string().contains("\\u0000")
        })
}

// ---------------------------------------------------------------------- events

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the item, parse_event answers; what it accepts obeys contract §3.1.
    #[test]
    fn parse_event_never_panics_and_accepts_only_valid_events(item in prop_oneof![json_value(), event_like()]) {
        match parse_event(&item, now()) {
            Ok(e) => {
                prop_assert!(validate_event_type(&e.event_type).is_ok());
                prop_assert!(e.event_timestamp >= DateTime::UNIX_EPOCH && e.event_timestamp <= latest());
                for id in [&e.user_id, &e.topic, &e.idempotency_key].into_iter().flatten() {
                    prop_assert!(!id.is_empty() && id.chars().count() <= MAX_ID_CHARS, "{id:?}");
                    prop_assert!(!id.contains('/') && !id.chars().any(char::is_control));
                }
                prop_assert!(e.properties.is_object() && e.user_traits.is_object());
            }
            Err(err) => {
                // The error names a field the client can find in its item.
                prop_assert!(!err.field.is_empty());
                prop_assert!(err.to_string().contains(&err.field));
            }
        }
    }

    /// Every well-formed event parses, keeping what the client sent.
    #[test]
    fn a_valid_event_parses_with_its_fields((item, event_type, ts, user_id) in valid_event()) {
        let e = parse_event(&item, now()).unwrap();
        prop_assert_eq!(e.event_type, event_type);
        prop_assert_eq!(e.event_timestamp, ts);
        prop_assert_eq!(e.user_id, user_id);
        prop_assert_eq!(&e.properties, &item["properties"]);
    }

    /// One bad field rejects the item and the error names that field.
    #[test]
    fn a_corrupted_field_is_named((item, ..) in valid_event(), which in 0usize..7) {
        let mut bad = item.clone();
        let field = match which {
            0 => { bad.as_object_mut().unwrap().remove("event_type"); "event_type" }
            1 => { bad["event_type"] = json!("has space"); "event_type" }
            2 => { bad["event_timestamp"] = json!("1969-12-31T23:59:59Z"); "event_timestamp" }
            3 => { bad["event_timestamp"] = json!("2025-11-03T00:00:00Z"); "event_timestamp" }
            4 => { bad["user_id"] = json!("u".repeat(10_000)); "user_id" }
            5 => { bad["properties"] = json!([1, 2]); "properties" }
            _ => { bad["topic"] = json!(42); "topic" }
        };
        let err = parse_event(&bad, now()).unwrap_err();
        prop_assert_eq!(err.field, field);
    }

    /// A body is a batch when it is an array of at most 1,000 items or one object.
    #[test]
    fn batch_items_accepts_arrays_and_objects_only(body in json_value(), extra in 0usize..3) {
        let body = match (&body, extra) {
            (Value::Array(_), 2) => Value::Array(vec![json!({}); MAX_BATCH_ITEMS + 1]),
            _ => body,
        };
        match (&body, batch_items(&body)) {
            (Value::Array(items), Ok(got)) => prop_assert!(items.len() <= MAX_BATCH_ITEMS && got.len() == items.len()),
            (Value::Array(items), Err(BatchError::TooLarge(n))) => prop_assert!(items.len() > MAX_BATCH_ITEMS && n == items.len()),
            (Value::Object(_), Ok(got)) => prop_assert_eq!(got.len(), 1),
            (Value::Array(_) | Value::Object(_), other) => prop_assert!(false, "{other:?}"),
            (_, other) => prop_assert_eq!(other, Err(BatchError::NotArrayOrObject)),
        }
    }

    /// Timestamps are accepted exactly between 1970 and now + 24 h.
    #[test]
    fn timestamps_are_accepted_exactly_within_bounds(secs in -10_000_000_000i64..300_000_000_000i64) {
        let Some(ts) = Utc.timestamp_opt(secs, 0).single() else { return Ok(()) };
        let inside = ts >= DateTime::UNIX_EPOCH && ts <= latest();
        prop_assert_eq!(parse_timestamp("at", &ts.to_rfc3339(), now()).is_ok(), inside);
        prop_assert_eq!(timestamp_from_epoch("at", secs as f64, now()).is_ok(), inside);
    }

    /// Any float as epoch seconds (alerts' `time_spotted`) gets an answer.
    #[test]
    fn epoch_seconds_never_panic(secs in any::<f64>()) {
        if let Ok(ts) = timestamp_from_epoch("time_spotted", secs, now()) {
            prop_assert!(ts >= DateTime::UNIX_EPOCH && ts <= latest());
        }
    }

    /// Arbitrary text as a timestamp gets an answer.
    #[test]
    fn timestamp_text_never_panics(text in prop_oneof![nasty_string(), ".*"]) {
        if let Ok(ts) = parse_timestamp("event_timestamp", &text, now()) {
            prop_assert!(ts >= DateTime::UNIX_EPOCH && ts <= latest());
        }
    }
}

// ---------------------------------------------------------------------- alerts

fn valid_alert() -> impl Strategy<Value = Value> {
    (
        any::<u128>(),
        "[A-Za-z0-9_ -]{1,128}",
        prop::sample::select(vec!["theft", "suspicious", "normal"]),
        ".{0,200}",
        0.0f64..1_762_041_600.0,
    )
        .prop_map(|(id, location, label, url, t)| {
            json!({"alert_uuid": uuid::Uuid::from_u128(id), "location": location, "label": label,
                   "url": url, "time_spotted": t})
        })
        // Postgres cannot store NUL, so an alert holding one is invalid (see alert.rs).
        .prop_filter("valid alerts hold no NUL", |a| {
            !a.to_string().contains("\\u0000")
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the body, parse_alert answers; an accepted alert is a valid event.
    #[test]
    fn parse_alert_never_panics(body in prop_oneof![json_value(), valid_alert().prop_flat_map(|a| {
        // A valid alert with one field replaced by anything.
        (Just(a), key(), json_value()).prop_map(|(mut a, k, v)| { a[k] = v; a })
    })]) {
        let labels = AlertLabels::default();
        match parse_alert(&body, &labels, now()) {
            Ok(alert) => {
                prop_assert!(labels.0.contains_key(&alert.label));
                prop_assert!(alert.spotted_at >= DateTime::UNIX_EPOCH && alert.spotted_at <= latest());
                let event = alert.into_event();
                prop_assert_eq!(event.event_type, ALERT_EVENT_TYPE);
                prop_assert!(event.topic.as_ref().is_some_and(|t| t.chars().count() <= MAX_ID_CHARS));
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                prop_assert!(errors.iter().all(|e| !e.field.is_empty()));
            }
        }
    }

    /// Every well-formed alert parses into a critical or standard event on its shop.
    #[test]
    fn a_valid_alert_becomes_an_event_on_its_location(body in valid_alert()) {
        let alert = parse_alert(&body, &AlertLabels::default(), now()).unwrap();
        let severity = if body["label"] == "theft" { Severity::Critical } else { Severity::Standard };
        prop_assert_eq!(alert.severity, severity);
        let event = alert.into_event();
        prop_assert_eq!(event.topic.as_deref(), body["location"].as_str());
        prop_assert_eq!(event.idempotency_key, Some(format!("alert:{}", body["alert_uuid"].as_str().unwrap())));
        prop_assert_eq!(&event.properties["url"], &body["url"]);
    }

    /// Every missing required field is reported, all at once.
    #[test]
    fn every_missing_alert_field_is_named(body in valid_alert(), drop in prop::collection::btree_set(0usize..5, 1..5)) {
        let fields = ["alert_uuid", "location", "label", "url", "time_spotted"];
        let mut body = body;
        for i in &drop {
            body.as_object_mut().unwrap().remove(fields[*i]);
        }
        let errors = parse_alert(&body, &AlertLabels::default(), now()).unwrap_err();
        let named: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        let expected: Vec<&str> = drop.iter().map(|i| fields[*i]).collect();
        prop_assert_eq!(named, expected);
    }
}

// ------------------------------------------------------------------ conditions

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "properties.amount",
            "properties.reason",
            "properties.list",
            "properties.nested.deep",
            "properties.list.0",
            "user_traits.plan",
            "user_traits.marketing_opt_in",
            "user.traits.plan",
            "user.email",
            "properties",
        ])
        .prop_map(String::from),
        "(properties|user_traits|user)\\.[a-z.0-9]{0,12}",
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop::sample::select(vec![
        Op::Eq,
        Op::Neq,
        Op::In,
        Op::Nin,
        Op::Gt,
        Op::Gte,
        Op::Lt,
        Op::Lte,
        Op::Exists,
        Op::Contains,
    ])
}

fn condition() -> impl Strategy<Value = Condition> {
    let property = (path(), op(), json_value(), any::<bool>()).prop_map(|(path, op, value, ci)| {
        Condition::Property {
            path,
            op,
            value,
            case_insensitive: ci,
        }
    });
    property.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Condition::Any),
            prop::collection::vec(inner, 0..4).prop_map(Condition::All),
        ]
    })
}

/// Facts where the paths above often resolve.
fn facts() -> impl Strategy<Value = (Value, Value, Value)> {
    let props = (
        leaf(),
        leaf(),
        prop::collection::vec(leaf(), 0..4),
        json_value(),
    )
        .prop_map(|(amount, reason, list, nested)| {
            json!({"amount": amount, "reason": reason, "list": list, "nested": {"deep": nested}})
        });
    let traits =
        (leaf(), leaf()).prop_map(|(plan, opt)| json!({"plan": plan, "marketing_opt_in": opt}));
    let user = prop_oneof![
        Just(Value::Null),
        (leaf(), leaf())
            .prop_map(|(plan, email)| json!({"traits": {"plan": plan}, "email": email})),
    ];
    (
        prop_oneof![props, json_value()],
        prop_oneof![traits, json_value()],
        user,
    )
}

fn holds(path: &str, op: Op, value: &Value, ci: bool, f: &Facts<'_>) -> bool {
    Condition::Property {
        path: path.into(),
        op,
        value: value.clone(),
        case_insensitive: ci,
    }
    .evaluate(f, &History::new())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any condition over any facts evaluates, and explains exactly when it fails.
    #[test]
    fn evaluation_never_panics_and_explains_failures(c in condition(), (p, t, u) in facts()) {
        let f = Facts { properties: &p, user_traits: &t, user: &u };
        let history = History::new();
        let held = c.evaluate(&f, &history);
        prop_assert_eq!(c.explain_failure(&f, &history).is_none(), held);
    }

    /// On a present value, EQ and NEQ are complementary, and so are IN and NIN.
    #[test]
    fn eq_and_neq_are_complementary_on_present_values(
        path in path(), value in json_value(), list in prop::collection::vec(json_value(), 0..4),
        ci in any::<bool>(), (p, t, u) in facts(),
    ) {
        let f = Facts { properties: &p, user_traits: &t, user: &u };
        let present = f.lookup(&path).is_some_and(|v| !v.is_null());
        let eq = holds(&path, Op::Eq, &value, ci, &f);
        let neq = holds(&path, Op::Neq, &value, ci, &f);
        let list = Value::Array(list);
        let is_in = holds(&path, Op::In, &list, ci, &f);
        let nin = holds(&path, Op::Nin, &list, ci, &f);
        if present {
            prop_assert!(eq != neq, "EQ {eq} NEQ {neq}");
            prop_assert!(is_in != nin, "IN {is_in} NIN {nin}");
        } else {
            // A condition on a missing path is false (contract §5.1).
            prop_assert!(!eq && !neq && !is_in && !nin);
        }
    }

    /// IN ⊇ EQ: a value equal to the expected one is also in any list holding it.
    #[test]
    fn in_contains_eq(
        path in path(), value in leaf(), before in prop::collection::vec(leaf(), 0..3),
        after in prop::collection::vec(leaf(), 0..3), ci in any::<bool>(), (p, t, u) in facts(),
    ) {
        let f = Facts { properties: &p, user_traits: &t, user: &u };
        let list: Vec<Value> = before.into_iter().chain([value.clone()]).chain(after).collect();
        if holds(&path, Op::Eq, &value, ci, &f) {
            prop_assert!(holds(&path, Op::In, &Value::Array(list), ci, &f));
        }
    }

    /// Numbers compare as numbers, whatever the operator.
    #[test]
    fn numeric_comparisons_agree_with_arithmetic(a in -1e9f64..1e9, b in prop_oneof![-1e9f64..1e9, Just(0.0)]) {
        let props = json!({"amount": a});
        let empty = json!({});
        let f = Facts { properties: &props, user_traits: &empty, user: &Value::Null };
        let p = "properties.amount";
        for (op, want) in [(Op::Eq, a == b), (Op::Neq, a != b), (Op::Gt, a > b), (Op::Gte, a >= b),
                           (Op::Lt, a < b), (Op::Lte, a <= b)] {
            prop_assert_eq!(holds(p, op, &json!(b), false, &f), want, "{:?}", op);
            // A numeric string counts as the number.
            prop_assert_eq!(holds(p, op, &json!(b.to_string()), false, &f), want, "{:?} as text", op);
        }
    }

    /// EXISTS tests presence; EXISTS false its absence.
    #[test]
    fn exists_tests_presence(path in path(), (p, t, u) in facts()) {
        let f = Facts { properties: &p, user_traits: &t, user: &u };
        let present = f.lookup(&path).is_some_and(|v| !v.is_null());
        prop_assert_eq!(holds(&path, Op::Exists, &Value::Null, false, &f), present);
        prop_assert_eq!(holds(&path, Op::Exists, &json!(false), false, &f), !present);
    }

    /// `conditions:` of any shape parse to a condition or a list of located errors;
    /// what parses can be evaluated and its history windows computed for any event
    /// time Herald accepts.
    #[test]
    fn parse_conditions_never_panics(raw in prop_oneof![
        json_value(),
        prop::collection::vec(condition_yaml(), 0..4).prop_map(Value::Array),
    ], secs in 0i64..1_762_128_000, (p, t, u) in facts()) {
        match parse_conditions(&raw) {
            Ok(c) => {
                let f = Facts { properties: &p, user_traits: &t, user: &u };
                let mut needs = Vec::new();
                c.history_needs(&mut needs);
                let at = Utc.timestamp_opt(secs, 0).unwrap();
                let history: History = needs.iter().map(|n| (n.clone(), secs % 2 == 0)).collect();
                for n in &needs {
                    let (from, to) = n.window(at);
                    prop_assert!(from <= at && at <= to);
                }
                let _ = c.evaluate(&f, &history);
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                prop_assert!(errors.iter().all(|e| e.starts_with("conditions")), "{errors:?}");
            }
        }
    }
}

/// A condition as an operator writes it in YAML, sometimes wrong.
fn condition_yaml() -> impl Strategy<Value = Value> {
    let within = prop_oneof![
        Just(json!("24h")),
        Just(json!("1h 30m")),
        Just(json!("0s")),
        Just(json!(86400)),
        Just(json!(u64::MAX)),
        Just(json!(9_000_000_000_000u64)),
        Just(json!("300000y")),
        Just(json!("-1h")),
        json_value(),
    ];
    let property = (
        path(),
        prop_oneof![
            prop::sample::select(vec![
                "EQ", "neq", "IN", "GTE", "EXISTS", "CONTAINS", "EQUALS"
            ])
            .prop_map(|s| json!(s)),
            json_value()
        ],
        prop::option::of(json_value()),
    )
        .prop_map(|(p, op, v)| {
            let mut m = json!({"property": p, "op": op});
            if let Some(v) = v {
                m["value"] = v;
            }
            m
        });
    let proximity = (
        prop::sample::select(vec!["event_within", "no_event_within"]),
        prop_oneof!["[a-z_]{1,10}".prop_map(|s| json!(s)), json_value()],
        within,
    )
        .prop_map(|(k, t, w)| json!({k: {"event_type": t, "within": w}}));
    prop_oneof![property, proximity].prop_recursive(2, 12, 3, move |inner| {
        (
            prop::sample::select(vec!["any", "all"]),
            prop::collection::vec(inner, 0..3),
        )
            .prop_map(|(k, cs)| json!({k: cs}))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A debounce period of any spelling parses or is refused with a message, and the
    /// window it gives around any accepted event time contains that time.
    #[test]
    fn debounce_periods_never_panic(
        period in prop_oneof![
            any::<u64>().prop_map(|n| json!(n)),
            Just(json!(u64::MAX)),
            Just(json!("300000y")),
            Just(json!("calendar_day")),
            Just(json!("forever")),
            nasty_string().prop_map(|s| json!(s)),
            "[0-9]{1,6}(s|m|h|d|y)".prop_map(|s| json!(s)),
            json_value(),
        ],
        secs in 0i64..1_762_128_000,
    ) {
        let raw = json!({"limit": 1, "period": period});
        if let Ok(d) = serde_json::from_value::<herald_core::debounce::Debounce>(raw) {
            let at = Utc.timestamp_opt(secs, 0).unwrap();
            let (from, to) = d.window(at, chrono_tz::UTC);
            prop_assert!(from <= at && at <= to);
        }
    }
}
