//! The JSON batch parser of `POST /api/v1/events` (contract §3.1): raw request bytes →
//! `serde_json::Value` (as `body::read_json` does) → `batch_items` → `parse_event`
//! for every item, and the same body through the alert parser (contract §3.2). Nothing may
//! panic, and whatever is accepted must honour the contract; a broken invariant is a
//! crash libFuzzer reports.
#![no_main]

use chrono::{DateTime, Duration, Utc};
use herald_core::alert::{parse_alert, AlertLabels};
use herald_core::event::{batch_items, parse_event, validate_event_type, MAX_BATCH_ITEMS};
use herald_core::ids::MAX_ID_CHARS;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // The api refuses bodies over 1 MiB before parsing them.
    if data.len() > 1 << 20 {
        return;
    }
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return; // a 400 "malformed JSON"
    };
    let now: DateTime<Utc> = DateTime::from_timestamp(1_762_000_000, 0).unwrap();
    if let Ok(items) = batch_items(&body) {
        assert!(items.len() <= MAX_BATCH_ITEMS);
        for item in items {
            match parse_event(item, now) {
                Ok(e) => {
                    assert!(validate_event_type(&e.event_type).is_ok());
                    assert!(e.event_timestamp >= DateTime::UNIX_EPOCH);
                    assert!(e.event_timestamp <= now + Duration::hours(24));
                    for id in [&e.user_id, &e.topic, &e.idempotency_key]
                        .into_iter()
                        .flatten()
                    {
                        assert!(!id.is_empty() && id.chars().count() <= MAX_ID_CHARS);
                    }
                    assert!(e.properties.is_object() && e.user_traits.is_object());
                }
                Err(err) => assert!(err.to_string().contains(&err.field)),
            }
        }
    }
    if let Ok(alert) = parse_alert(&body, &AlertLabels::default(), now) {
        let event = alert.into_event();
        assert!(event.topic.is_some());
    }
});
