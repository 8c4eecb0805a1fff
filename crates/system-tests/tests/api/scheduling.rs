//! Digests keyed by post, quiet hours, send windows and `deliver_at` (contract §4,
//! §5.3, §8), over HTTP with in-process workers. Windows are set a few seconds ahead
//! of now, so nothing waits for hours.

use crate::helpers::{spawn_app, TestApp, WorkerOptions};
use chrono::{DateTime, Duration as Span, SecondsFormat, Timelike, Utc};
use serde_json::{json, Value};
use std::time::Duration;
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

const WAIT: Duration = Duration::from_secs(20);

async fn app_with_worker(config_env: &[(&str, String)]) -> TestApp {
    let mut app = spawn_app().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&app.provider)
        .await;
    app.start_worker(WorkerOptions {
        visibility_timeout: Duration::from_secs(1),
        config_env: config_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..Default::default()
    });
    app
}

/// What the providers received for `user`, in arrival order per provider: HTTP
/// deliveries naming them, then mails to their address (the `email` channel is SMTP).
async fn deliveries_to(app: &TestApp, user: &str) -> Vec<Value> {
    let mut received: Vec<Value> = app
        .provider
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter(|b| b["user_id"] == user)
        .collect();
    let (_, person) = app.get(&format!("/api/v1/users/{user}")).await;
    if let Some(email) = person["email"].as_str() {
        received.extend(
            app.mail
                .records()
                .into_iter()
                .filter(|mail| mail.raw.contains(email))
                .map(|mail| mail.body),
        );
    }
    received
}

/// When the notification of an audit `row` was recorded sent; waits for it, since a
/// provider may have the message a moment before the worker records its attempt.
async fn sent_at(app: &TestApp, row: &Value) -> DateTime<Utc> {
    let id = row["notification_id"].as_str().unwrap_or_default();
    app.wait_for("the attempt recorded", WAIT, || async {
        let (_, row) = app.get(&format!("/api/v1/notifications/{id}")).await;
        row["sent_at"].as_str()?.parse().ok()
    })
    .await
}

/// A local time of day (UTC) `secs` from now, as `HH:MM:SS`.
fn clock_in(secs: i64) -> String {
    (Utc::now() + Span::seconds(secs))
        .format("%H:%M:%S")
        .to_string()
}

fn insufficient_funds(user: &str) -> Value {
    json!([{"user_id": user, "event_type": "payment_failed", "event_timestamp": Utc::now(),
            "properties": {"amount": 10, "attempt_number": 1, "failure_reason": "INSUFFICIENT_FUNDS"}}])
}

/// The one notification of `user`, from the audit trail.
async fn only_notification(app: &TestApp, user: &str) -> Value {
    app.wait_for("a notification row", WAIT, || async {
        let (_, audit) = app.get(&format!("/audit/{user}")).await;
        audit["notification_history"]
            .as_array()
            .and_then(|items| items.first().cloned())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_hold_a_notification_until_they_end_and_others_get_it_at_once() {
    // Arrange: quiet hours from a minute ago until 4 s ahead.
    let app = app_with_worker(&[]).await;
    let (end, ends_at) = (clock_in(4), Utc::now() + Span::seconds(4));
    let quiet = json!({"start": clock_in(-60), "end": end});
    let (status, body) = app
        .put(
            "/api/v1/users/sleeper",
            json!({"email": "s@example.com", "quiet_hours": quiet}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["quiet_hours"], quiet);
    app.put("/api/v1/users/awake", json!({"email": "a@example.com"}))
        .await;

    // Act
    app.post("/api/v1/events", insufficient_funds("sleeper"))
        .await;
    app.post("/api/v1/events", insufficient_funds("awake"))
        .await;

    // Assert: the person without quiet hours gets it at once; the other's waits with
    // its reason and due time, then goes when the hours end.
    app.wait_for("the awake person's email", WAIT, || async {
        (!deliveries_to(&app, "awake").await.is_empty()).then_some(())
    })
    .await;
    let held = only_notification(&app, "sleeper").await;
    assert_eq!(
        held["hold_reason"],
        format!("held for quiet hours until {end} UTC")
    );
    let (_, row) = app
        .get(&format!(
            "/api/v1/notifications/{}",
            held["notification_id"].as_str().unwrap()
        ))
        .await;
    let due: DateTime<Utc> = row["due_at"].as_str().unwrap().parse().unwrap();
    assert!(
        (due - ends_at).num_seconds().abs() <= 1,
        "due {due}, quiet hours end {ends_at}"
    );
    if Utc::now() < due {
        assert!(
            deliveries_to(&app, "sleeper").await.is_empty(),
            "sent inside quiet hours"
        );
    }
    app.wait_for("the email after the quiet hours", WAIT, || async {
        (!deliveries_to(&app, "sleeper").await.is_empty()).then_some(())
    })
    .await;
    let sent = sent_at(&app, &held).await;
    assert!(sent >= due, "sent {sent} before due {due}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_are_checked_naming_the_field_and_null_clears_them() {
    let app = spawn_app().await;
    let cases = [
        (json!({"start": "22:00"}), "quiet_hours"),
        (
            json!({"start": "25:00", "end": "07:00"}),
            "quiet_hours.start",
        ),
        (json!({"start": "07:00", "end": "07:00"}), "quiet_hours.end"),
        (
            json!({"start": "22:00", "end": "07:00", "channels": ["fax"]}),
            "quiet_hours.channels",
        ),
        (json!("22-07"), "quiet_hours"),
    ];
    for (quiet, field) in cases {
        let (status, body) = app
            .put("/api/v1/users/q", json!({"quiet_hours": quiet}))
            .await;
        assert_eq!(status, 422, "{quiet}: {body}");
        assert_eq!(
            body["error"]["details"][0]["field"], field,
            "{quiet}: {body}"
        );
    }
    let quiet =
        json!({"start": "22:00:30", "end": "07:00", "hold_critical": true, "channels": ["sms"]});
    let (status, body) = app
        .put("/api/v1/users/q", json!({"quiet_hours": quiet}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, body) = app
        .put("/api/v1/users/q", json!({"email": "q@example.com"}))
        .await;
    assert_eq!(body["quiet_hours"], quiet, "kept when not given");
    let (_, body) = app
        .put("/api/v1/users/q", json!({"quiet_hours": null}))
        .await;
    assert_eq!(body["quiet_hours"], Value::Null, "null clears them");
    // The preferences route sets and shows them too.
    let night = json!({"start": "23:00", "end": "06:30", "channels": ["push"]});
    let (status, body) = app
        .put("/api/v1/users/q/preferences", json!({"quiet_hours": night}))
        .await;
    assert_eq!((status, &body["quiet_hours"]), (200, &night), "{body}");
    let (status, body) = app
        .put(
            "/api/v1/users/q/preferences",
            json!({"quiet_hours": {"start": "23:00"}}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["details"][0]["field"]),
        (422, &json!("quiet_hours"))
    );
    let (_, body) = app.get("/api/v1/users/q/preferences").await;
    assert_eq!(body["quiet_hours"], night);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_at_more_than_90_days_ahead_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let far = (Utc::now() + Span::days(91)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let (status, body) = app
        .post(
            "/api/v1/events",
            json!([{"user_id": "u", "event_type": "payment_failed", "event_timestamp": Utc::now(),
                    "deliver_at": far},
                   {"user_id": "u", "event_type": "payment_failed", "event_timestamp": Utc::now(),
                    "deliver_at": "next week"}]),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 0, "{body}");
    for i in 0..2 {
        assert_eq!(body["rejected"][i]["field"], "deliver_at", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_send_survives_a_worker_restart_and_an_emptied_redis() {
    // Arrange: an event to be delivered 4 s from now; the worker stops and Redis
    // forgets the delayed job before then.
    let mut app = app_with_worker(&[]).await;
    app.put("/api/v1/users/later", json!({"email": "l@example.com"}))
        .await;
    let deliver_at = Utc::now() + Span::seconds(4);
    let mut events = insufficient_funds("later");
    events[0]["deliver_at"] = json!(deliver_at.to_rfc3339_opts(SecondsFormat::Millis, true));
    app.post("/api/v1/events", events).await;
    let row = only_notification(&app, "later").await;
    assert!(
        row["hold_reason"]
            .as_str()
            .is_some_and(|r| r.contains("deliver_at")),
        "{row}"
    );
    app.stop_workers().await;
    app.queue.purge().await.unwrap();

    // Act
    app.start_worker(WorkerOptions {
        visibility_timeout: Duration::from_secs(1),
        ..Default::default()
    });

    // Assert
    app.wait_for("the scheduled email", WAIT, || async {
        (!deliveries_to(&app, "later").await.is_empty()).then_some(())
    })
    .await;
    let sent = sent_at(&app, &row).await;
    assert!(
        sent >= deliver_at,
        "sent {sent} before deliver_at {deliver_at}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rules_send_window_holds_its_notification_until_it_opens() {
    let opens = Utc::now() + Span::seconds(4);
    let start = opens.format("%H:%M:%S").to_string();
    let opens = opens.with_nanosecond(0).unwrap_or(opens);
    let app = app_with_worker(&[
        ("HERALD_REPORT_WINDOW_START", start.clone()),
        ("HERALD_REPORT_WINDOW_END", clock_in(3600)),
        (
            "HERALD_REPORT_WINDOW_DAYS",
            "[mon, tue, wed, thu, fri, sat, sun]".into(),
        ),
    ])
    .await;
    app.put("/api/v1/users/office", json!({"email": "o@example.com"}))
        .await;

    app.post(
        "/api/v1/events",
        json!([{"user_id": "office", "event_type": "report_ready", "event_timestamp": Utc::now(),
                "properties": {"title": "Q3"}}]),
    )
    .await;

    let row = only_notification(&app, "office").await;
    assert!(
        row["hold_reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("held for the send window")
                && r.ends_with(&format!("until {start} UTC"))),
        "{row}"
    );
    let bodies = app
        .wait_for("the report in its window", WAIT, || async {
            let d = deliveries_to(&app, "office").await;
            (!d.is_empty()).then_some(d)
        })
        .await;
    assert_eq!(
        bodies[0]["text"].as_str().map(str::trim_end),
        Some("Q3 is ready.")
    );
    let sent = sent_at(&app, &row).await;
    assert!(
        sent >= opens,
        "sent {sent} before the window opened {opens}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_are_digested_per_post_with_their_count_and_actors() {
    // A digest goes once its post had 3 s without a new comment.
    let app = app_with_worker(&[("HERALD_COMMENTS_QUIET_PER_HOUR", "1200".into())]).await;
    let comment = |post: u32, author: &str| {
        json!({"user_id": "writer", "event_type": "comment_created", "event_timestamp": Utc::now(),
               "properties": {"post_id": post, "author": author}})
    };
    let (status, body) = app
        .post(
            "/api/v1/events",
            json!([
                comment(1, "Ann"),
                comment(1, "Bob"),
                comment(2, "Cy"),
                comment(1, "Ann")
            ]),
        )
        .await;
    assert_eq!(status, 202, "{body}");

    let bodies = app
        .wait_for("two digests", WAIT, || async {
            let d = deliveries_to(&app, "writer").await;
            (d.len() >= 2).then_some(d)
        })
        .await;
    let mut texts: Vec<&str> = bodies.iter().filter_map(|b| b["text"].as_str()).collect();
    texts.sort();
    assert_eq!(
        texts,
        [
            "Ann and Bob left 3 comments on your post",
            "Cy commented on your post"
        ]
    );
    assert!(bodies
        .iter()
        .all(|b| b["notification_type"] == "COMMENTS_DIGEST"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        deliveries_to(&app, "writer").await.len(),
        2,
        "one digest per post"
    );
    let (_, audit) = app.get("/audit/writer").await;
    let items = audit["notification_history"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert!(items.iter().all(|n| n["status"] == "sent"), "{items:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_ready_inside_quiet_hours_waits_for_their_end() {
    // Arrange: the digest is ready 3 s after the comment; quiet hours end at 6 s.
    let app = app_with_worker(&[("HERALD_COMMENTS_QUIET_PER_HOUR", "1200".into())]).await;
    let (end, ends_at) = (clock_in(6), Utc::now() + Span::seconds(6));
    let quiet = json!({"start": clock_in(-60), "end": end});
    app.put("/api/v1/users/night_writer", json!({"quiet_hours": quiet}))
        .await;

    // Act
    app.post(
        "/api/v1/events",
        json!([{"user_id": "night_writer", "event_type": "comment_created", "event_timestamp": Utc::now(),
                "properties": {"post_id": 7, "author": "Ann"}}]),
    )
    .await;

    // Assert
    let bodies = app
        .wait_for("the digest after the quiet hours", WAIT, || async {
            let d = deliveries_to(&app, "night_writer").await;
            (!d.is_empty()).then_some(d)
        })
        .await;
    assert_eq!(bodies[0]["text"], "Ann commented on your post");
    let id = bodies[0]["notification_id"].as_str().unwrap();
    let (_, row) = app.get(&format!("/api/v1/notifications/{id}")).await;
    assert_eq!(
        row["hold_reason"],
        format!("held for quiet hours until {end} UTC")
    );
    let sent: DateTime<Utc> = row["sent_at"].as_str().unwrap().parse().unwrap();
    assert!(
        sent >= ends_at - Span::seconds(1),
        "sent {sent} inside the quiet hours ending {ends_at}"
    );
}
