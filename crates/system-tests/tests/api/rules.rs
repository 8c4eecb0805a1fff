//! The rules engine end to end (seed 004): conditions, proximity, debounce under
//! concurrency, delayed rules with recheck, and the audit trail.

use crate::helpers::{spawn_app, TestApp, WorkerOptions};
use serde_json::{json, Value};
use std::time::Duration;
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

const USER: &str = "u_12345";

/// A worker whose bank-link reminder waits `reminder` instead of an hour.
async fn app_with_rules(reminder: &str) -> TestApp {
    let mut app = spawn_app().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&app.provider)
        .await;
    app.start_worker(WorkerOptions {
        config_env: vec![("HERALD_BANK_LINK_REMINDER_DELAY".into(), reminder.into())],
        ..Default::default()
    });
    app
}

/// Posts events and waits until they are routed; returns the response.
async fn send(app: &TestApp, events: Value) -> Value {
    let (status, resp) = app.post("/api/v1/events", events).await;
    assert_eq!(status, 202, "{resp}");
    let ids: Vec<Value> = resp["event_ids"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| !v.is_null())
        .cloned()
        .collect();
    app.wait_routed(&ids).await;
    resp
}

fn history_of<'a>(audit: &'a Value, notification_type: &str) -> Vec<&'a Value> {
    audit["notification_history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["notification_type"] == notification_type)
        .collect()
}

fn with_status<'a>(items: &[&'a Value], status: &str) -> Vec<&'a Value> {
    items
        .iter()
        .copied()
        .filter(|n| n["status"] == status)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_004_readme_gives_the_audit_trail_it_describes() {
    let app = app_with_rules("2s").await;
    // Every curl of the seed's README, in order.
    send(&app, json!([{"user_id": USER, "event_type": "signup_completed", "event_timestamp": "2025-10-31T19:00:00Z",
        "properties": {"signup_method": "email"}, "user_traits": {"email": "maria@example.com", "marketing_opt_in": true}}])).await;
    send(&app, json!([{"user_id": USER, "event_type": "link_bank_success", "event_timestamp": "2025-10-31T19:10:45Z",
        "properties": {"bank_name": "Santander"}, "user_traits": {"email": "maria@example.com"}}])).await;
    send(&app, json!([{"user_id": USER, "event_type": "payment_failed", "event_timestamp": "2025-10-31T19:30:00Z",
        "properties": {"amount": 1425.00, "attempt_number": 1, "failure_reason": "INSUFFICIENT_FUNDS"},
        "user_traits": {"email": "maria@example.com"}}])).await;
    let high_risk = send(&app, json!([{"user_id": USER, "event_type": "payment_failed", "event_timestamp": "2025-10-31T19:30:00Z",
        "properties": {"amount": 1425.00, "attempt_number": 3, "failure_reason": "INSUFFICIENT_FUNDS"},
        "user_traits": {"email": "maria@example.com"}}])).await;
    send(&app, json!([
        {"user_id": USER, "event_type": "signup_completed", "event_timestamp": "2025-10-31T19:00:00Z", "properties": {}, "user_traits": {"marketing_opt_in": true}},
        {"user_id": USER, "event_type": "link_bank_success", "event_timestamp": "2025-10-31T19:10:45Z", "properties": {"bank_name": "Santander"}, "user_traits": {}}])).await;
    let mixed = send(&app, json!([
        {"user_id": USER, "event_type": "signup_completed", "event_timestamp": "2025-10-31T19:00:00Z", "properties": {}, "user_traits": {}},
        {"user_id": USER},
        {"event_type": "orphan_event"},
        {"user_id": USER, "event_type": "payment_failed", "event_timestamp": "2025-10-31T19:30:00Z", "properties": {"failure_reason": "INSUFFICIENT_FUNDS"}, "user_traits": {}}])).await;
    assert_eq!(mixed["accepted"], 2);
    assert_eq!(mixed["rejected"].as_array().unwrap().len(), 2);
    assert_eq!(send(&app, json!([])).await["accepted"], 0);

    // The reminders wait 2 s, then are rechecked: the bank was linked, so they cancel.
    let audit = app
        .wait_for(
            "the reminders to be rechecked",
            Duration::from_secs(20),
            || async {
                let (_, audit) = app.get(&format!("/audit/{USER}")).await;
                let reminders = history_of(&audit, "BANK_LINK_REMINDER_SMS");
                (!reminders.is_empty() && reminders.iter().all(|n| n["status"] != "pending"))
                    .then_some(audit)
            },
        )
        .await;

    let welcome = history_of(&audit, "WELCOME_EMAIL");
    assert_eq!(
        with_status(&welcome, "sent").len(),
        1,
        "WELCOME_EMAIL sent once: {welcome:?}"
    );
    assert!(with_status(&welcome, "suppressed").iter().all(
        |n| n["suppression_reason"] == "skipped WELCOME_EMAIL: already sent 1 before (limit 1)"
    ));
    assert_eq!(with_status(&welcome, "suppressed").len(), 2);

    assert!(!with_status(&history_of(&audit, "BANK_LINK_NUDGE_SMS"), "sent").is_empty());

    let funds = history_of(&audit, "INSUFFICIENT_FUNDS_EMAIL");
    assert_eq!(
        with_status(&funds, "sent").len(),
        1,
        "one per calendar day: {funds:?}"
    );
    let skipped = with_status(&funds, "suppressed");
    assert_eq!(skipped.len(), 2);
    assert!(skipped.iter().all(|n| n["suppression_reason"]
        == "skipped INSUFFICIENT_FUNDS_EMAIL: already sent 1 today (limit 1)"));

    let alert_event = high_risk["event_ids"][0].clone();
    let risk = history_of(&audit, "HIGH_RISK_ALERT");
    assert_eq!(risk.len(), 1, "only attempt 3 is high risk");
    assert_eq!(
        (risk[0]["channel"].as_str(), risk[0]["status"].as_str()),
        (Some("internal"), Some("sent"))
    );
    assert_eq!(risk[0]["event_id"], alert_event);
    assert!(
        funds.iter().any(|n| n["event_id"] == alert_event),
        "the same event also produced the email row"
    );

    let reminders = history_of(&audit, "BANK_LINK_REMINDER_SMS");
    assert_eq!(
        reminders.len(),
        3,
        "one per signup, absence left to the send"
    );
    assert!(
        reminders.iter().all(|n| n["status"] == "suppressed"
            && n["suppression_reason"]
                .as_str()
                .unwrap()
                .contains("link_bank_success happened within 1h")),
        "{reminders:?}"
    );

    // Events come newest first, and an unknown person has an empty trail.
    assert_eq!(audit["recent_events"][0]["event_type"], "payment_failed");
    let (status, empty) = app.get("/audit/nobody").await;
    assert_eq!(
        (status, empty),
        (
            200,
            json!({"user_id": "nobody", "recent_events": [], "notification_history": []})
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debounce_limit_of_one_never_sends_two_under_racing_workers() {
    let mut app = app_with_rules("1h").await;
    for _ in 0..3 {
        app.start_worker(WorkerOptions::default());
    }
    // 40 failures of the same person on the same day, routed by 4 workers at once.
    let events: Vec<Value> = (0..40)
        .map(|i| {
            json!({"user_id": "racer", "event_type": "payment_failed",
        "event_timestamp": format!("2025-10-31T10:{:02}:00Z", i),
        "properties": {"failure_reason": "INSUFFICIENT_FUNDS", "attempt_number": 1}})
        })
        .collect();
    send(&app, Value::Array(events)).await;
    let (_, audit) = app.get("/audit/racer?limit=100").await;
    let funds = history_of(&audit, "INSUFFICIENT_FUNDS_EMAIL");
    assert_eq!(funds.len(), 40);
    assert_eq!(
        funds.iter().filter(|n| n["status"] != "suppressed").count(),
        1,
        "{funds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_reminder_is_sent_when_the_bank_was_never_linked() {
    let app = app_with_rules("1s").await;
    let resp = send(
        &app,
        json!([{"user_id": "slow", "event_type": "signup_completed",
        "event_timestamp": "2025-10-31T19:00:00Z", "user_traits": {"phone": "+3361234"}}]),
    )
    .await;
    let items = app
        .wait_final(
            resp["event_ids"][0].as_str().unwrap(),
            1,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(items[0]["notification_type"], "BANK_LINK_REMINDER_SMS");
    assert_eq!(items[0]["status"], "sent");
    let sms = app
        .provider
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/sms")
        .count();
    assert_eq!(sms, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calendar_day_is_the_persons_local_day() {
    let app = app_with_rules("1h").await;
    app.put("/api/v1/users/paris", json!({"timezone": "Europe/Paris"}))
        .await;
    // 22:30 and 23:30 UTC on Oct 31 are Oct 31 and Nov 1 in Paris: two local days.
    let resp = send(&app, json!([
        {"user_id": "paris", "event_type": "payment_failed", "event_timestamp": "2025-10-31T22:30:00Z", "properties": {"failure_reason": "INSUFFICIENT_FUNDS"}},
        {"user_id": "paris", "event_type": "payment_failed", "event_timestamp": "2025-10-31T23:30:00Z", "properties": {"failure_reason": "INSUFFICIENT_FUNDS"}}])).await;
    assert_eq!(resp["accepted"], 2);
    let (_, audit) = app.get("/audit/paris").await;
    let funds = history_of(&audit, "INSUFFICIENT_FUNDS_EMAIL");
    assert_eq!(
        funds.iter().filter(|n| n["status"] != "suppressed").count(),
        2,
        "{funds:?}"
    );
}
