//! Online bundling (contract §8): tours posted over HTTP are held per person and reach the
//! provider as bundles, never more than the daily cap, under concurrent workers.

use crate::helpers::{spawn_app, TestApp, WorkerOptions};
use serde_json::{json, Value};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

/// Readiness σ(−2 + 3600 × hours since the last tour): crosses 0.5 two seconds after
/// the newest tour, so a quick burst goes out as one bundle.
const TWO_SECONDS_QUIET: &str = "max_per_day: 4
threshold: 0.5
weights: {bias: -2.0, tours: 0.0, sends_left: 0.0, expected_more: 0.0, since_first: 0.0,
          since_last: 3600.0, span: 0.0, sent_today: 0.0, time_left: 0.0}
";

/// Always ready: every tour is sent at once, until the cap stops it.
pub const ALWAYS_READY: &str = "max_per_day: 4
threshold: 0.01
weights: {bias: 10.0, tours: 0.0, sends_left: 0.0, expected_more: 0.0, since_first: 0.0,
          since_last: 0.0, span: 0.0, sent_today: 0.0, time_left: 0.0}
";

async fn app_with_bundling(yaml: &str, workers: usize) -> TestApp {
    let mut app = spawn_app().await;
    Mock::given(method("POST"))
        .and(path("/push"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&app.provider)
        .await;
    for _ in 0..workers {
        app.start_worker(WorkerOptions {
            bundling_yaml: Some(yaml.into()),
            ..Default::default()
        });
    }
    app
}

fn tours(user: &str, friends: &[&str]) -> Value {
    Value::Array(
        friends
            .iter()
            .map(|f| json!({"user_id": user, "event_type": "tour_completed", "event_timestamp": "2025-10-31T10:00:00Z",
                             "properties": {"friend_id": format!("id_{f}"), "friend_name": f}}))
            .collect(),
    )
}

async fn pushes_to(app: &TestApp, user: &str) -> Vec<Value> {
    app.provider
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
        .filter(|b| b["user_id"] == user)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_tours_reaches_the_provider_as_one_bundle() {
    let app = app_with_bundling(TWO_SECONDS_QUIET, 1).await;
    let (status, _) = app
        .post(
            "/api/v1/events",
            tours("hiker", &["Matthew", "Anna", "Zoë"]),
        )
        .await;
    assert_eq!(status, 202);
    let bodies = app
        .wait_for("one bundle", Duration::from_secs(20), || async {
            let b = pushes_to(&app, "hiker").await;
            (!b.is_empty()).then_some(b)
        })
        .await;
    // The three tours are routed concurrently: the first friend is whichever came first.
    let text = bodies[0]["text"].as_str().unwrap();
    assert!(text.ends_with(" and 2 others went on a tour"), "{text}");
    assert_eq!(bodies[0]["notification_type"], "FRIEND_TOUR");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        pushes_to(&app, "hiker").await.len(),
        1,
        "one bundle, not three notifications"
    );

    // The items take the bundle's status; the inbox shows the bundle once.
    let (_, audit) = app.get("/audit/hiker").await;
    let items = audit["notification_history"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(
        items
            .iter()
            .all(|n| n["status"] == "sent" && n["sent_at"].is_string()),
        "{items:?}"
    );
    let (_, inbox) = app.get("/api/v1/users/hiker/notifications").await;
    assert_eq!(inbox["items"].as_array().unwrap().len(), 1, "{inbox}");
    assert_eq!(inbox["items"][0]["text"], text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_cap_holds_under_concurrent_workers() {
    let app = app_with_bundling(ALWAYS_READY, 4).await;
    // Six tours one after another, each ready at once, flushed by whichever of four
    // workers: only four bundles may go today; the rest wait for the next midnight.
    for round in 0..6 {
        let friend = format!("friend{round}");
        app.post("/api/v1/events", tours("busy", &[friend.as_str()]))
            .await;
        let expected = (round + 1).min(4);
        app.wait_for(
            &format!("{expected} bundles"),
            Duration::from_secs(20),
            || async { (pushes_to(&app, "busy").await.len() >= expected).then_some(()) },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        pushes_to(&app, "busy").await.len(),
        4,
        "the cap of 4 per day holds"
    );
    let (_, audit) = app.get("/audit/busy?limit=100").await;
    let items = audit["notification_history"].as_array().unwrap();
    let held = items.iter().filter(|n| n["status"] == "bundled").count();
    assert_eq!(
        held, 2,
        "the last two tours wait in tomorrow's bundle: {items:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_bundle_survives_a_worker_restart_and_an_emptied_redis() {
    let mut app = app_with_bundling(TWO_SECONDS_QUIET, 1).await;
    app.post("/api/v1/events", tours("patient", &["Ada", "Bo"]))
        .await;
    app.wait_for(
        "the tours to be bundled",
        Duration::from_secs(20),
        || async {
            let (_, audit) = app.get("/audit/patient").await;
            let items = audit["notification_history"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            (items.len() == 2 && items.iter().all(|n| n["status"] == "bundled")).then_some(())
        },
    )
    .await;
    // The worker stops before the bundle is due and Redis forgets its flush job.
    app.stop_workers().await;
    app.queue.purge().await.unwrap();
    assert!(pushes_to(&app, "patient").await.is_empty());
    app.start_worker(WorkerOptions {
        bundling_yaml: Some(TWO_SECONDS_QUIET.into()),
        visibility_timeout: Duration::from_secs(1),
        ..Default::default()
    });
    let bodies = app
        .wait_for(
            "the bundle after the restart",
            Duration::from_secs(20),
            || async {
                let b = pushes_to(&app, "patient").await;
                (!b.is_empty()).then_some(b)
            },
        )
        .await;
    assert!(bodies[0]["text"]
        .as_str()
        .unwrap()
        .ends_with(" and 1 other went on a tour"));
}
