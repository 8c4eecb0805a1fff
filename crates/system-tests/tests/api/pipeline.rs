//! The whole pipeline in one process: api + worker against real Postgres and Redis,
//! with wiremock standing in for the providers and people's webhooks.

use crate::helpers::{alert, spawn_app, spawn_app_with_worker, TestApp, WorkerOptions};
use herald_core::signing::{verify, WebhookSecret};
use serde_json::{json, Value};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn ok_provider(app: &TestApp) {
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&app.provider)
        .await;
}

async fn shop_with(app: &TestApp, shop: &str, members: &[(&str, &str, Option<String>)]) {
    app.put(&format!("/api/v1/topics/{shop}"), json!({})).await;
    for (user, level, webhook) in members {
        let mut body = json!({"topics": [shop], "level": level});
        if let Some(url) = webhook {
            body["webhook_url"] = json!(url);
        }
        let (status, resp) = app.put(&format!("/api/v1/users/{user}"), body).await;
        assert!(status == 200 || status == 201, "{resp}");
    }
}

fn by_user<'a>(items: &'a [Value], user: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i["user_id"] == user)
        .unwrap_or_else(|| panic!("no notification for {user}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_theft_reaches_every_member_and_a_suspicious_alert_only_standard_ones() {
    let app = spawn_app_with_worker().await;
    ok_provider(&app).await;
    shop_with(
        &app,
        "Carrefour",
        &[("crit", "CRITICAL", None), ("std", "standard", None)],
    )
    .await;

    let theft = alert("Carrefour", "theft");
    let (_, resp) = app.post("/webhooks/alerts", theft.clone()).await;
    let items = app
        .wait_final(
            resp["event_id"].as_str().unwrap(),
            2,
            Duration::from_secs(20),
        )
        .await;
    for user in ["crit", "std"] {
        let n = by_user(&items, user);
        assert_eq!(
            (n["status"].as_str(), n["severity"].as_str()),
            (Some("sent"), Some("critical"))
        );
    }
    let received = app.provider.received_requests().await.unwrap();
    let bodies: Vec<Value> = received
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let mut targets: Vec<&str> = bodies
        .iter()
        .filter_map(|b| b["target_user_uuid"].as_str())
        .collect();
    targets.sort();
    assert_eq!(targets, ["crit", "std"]);
    for b in &bodies {
        assert_eq!(b["alert_uuid"], theft["alert_uuid"]);
        assert_eq!(
            (b["location"].as_str(), b["label"].as_str()),
            (Some("Carrefour"), Some("theft"))
        );
        assert_eq!(b["url"], theft["url"]);
    }
    assert!(received
        .iter()
        .all(|r| r.url.path() == "/webhook/notifications/"));

    let (_, resp) = app
        .post("/webhooks/alerts", alert("Carrefour", "suspicious"))
        .await;
    let items = app
        .wait_final(
            resp["event_id"].as_str().unwrap(),
            2,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(by_user(&items, "std")["status"], "sent");
    let skipped = by_user(&items, "crit");
    assert_eq!(skipped["status"], "suppressed");
    assert!(skipped["suppression_reason"]
        .as_str()
        .unwrap()
        .contains("critical notifications only"));
    assert_eq!(app.provider.received_requests().await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_answering_500_is_tried_max_attempts_times_then_failed() {
    let app = spawn_app_with_worker().await;
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&hook)
        .await;
    shop_with(
        &app,
        "Auchan",
        &[("flaky", "standard", Some(format!("{}/hook", hook.uri())))],
    )
    .await;

    let (_, resp) = app.post("/webhooks/alerts", alert("Auchan", "theft")).await;
    // Backoff 3 s then 6 s (±20%): the third try lands about 9 s in.
    let items = app
        .wait_final(
            resp["event_id"].as_str().unwrap(),
            1,
            Duration::from_secs(30),
        )
        .await;
    let id = items[0]["id"].as_str().unwrap();
    let (_, n) = app.get(&format!("/api/v1/notifications/{id}")).await;
    assert_eq!(n["status"], "failed");
    assert_eq!(n["attempts"], 3);
    let outcomes: Vec<&str> = n["delivery_attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["retry", "retry", "permanent_failure"]);
    assert!(n["delivery_attempts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["http_status"] == 500));
    assert_eq!(hook.received_requests().await.unwrap().len(), 3);
    // The dead letter is listed.
    let (_, failed) = app.get("/api/v1/notifications?status=failed").await;
    assert_eq!(failed["items"][0]["id"], n["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_answering_400_fails_at_once_without_retry() {
    let app = spawn_app_with_worker().await;
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string("nope"))
        .mount(&hook)
        .await;
    shop_with(
        &app,
        "Lidl",
        &[(
            "rejecting",
            "standard",
            Some(format!("{}/hook", hook.uri())),
        )],
    )
    .await;

    let (_, resp) = app.post("/webhooks/alerts", alert("Lidl", "theft")).await;
    let items = app
        .wait_final(
            resp["event_id"].as_str().unwrap(),
            1,
            Duration::from_secs(20),
        )
        .await;
    let (_, n) = app
        .get(&format!(
            "/api/v1/notifications/{}",
            items[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        (n["status"].as_str(), n["attempts"].as_i64()),
        (Some("failed"), Some(1))
    );
    assert_eq!(n["delivery_attempts"][0]["http_status"], 400);
    assert!(n["last_error"].as_str().unwrap().contains("nope"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        hook.received_requests().await.unwrap().len(),
        1,
        "a 4xx is never retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_and_then_sent() {
    let app = spawn_app_with_worker().await;
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .mount(&hook)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&hook)
        .await;
    shop_with(
        &app,
        "Aldi",
        &[("busy", "standard", Some(format!("{}/hook", hook.uri())))],
    )
    .await;

    let (_, resp) = app.post("/webhooks/alerts", alert("Aldi", "theft")).await;
    let items = app
        .wait_final(
            resp["event_id"].as_str().unwrap(),
            1,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(items[0]["status"], "sent");
    assert_eq!(items[0]["attempts"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_when_the_channel_has_a_secret() {
    let mut app = spawn_app().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    app.start_worker(WorkerOptions {
        channel_secret: Some(secret.into()),
        ..Default::default()
    });
    Mock::given(method("POST"))
        .and(path("/webhook/notifications/"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&app.provider)
        .await;
    shop_with(&app, "Monoprix", &[("signed", "standard", None)]).await;

    let (_, resp) = app
        .post("/webhooks/alerts", alert("Monoprix", "theft"))
        .await;
    let items = app
        .wait_final(
            resp["event_id"].as_str().unwrap(),
            1,
            Duration::from_secs(20),
        )
        .await;
    let req = &app.provider.received_requests().await.unwrap()[0];
    let header = |name: &str| req.headers.get(name).unwrap().to_str().unwrap().to_string();
    assert_eq!(header("webhook-id"), items[0]["id"].as_str().unwrap());
    let ts: i64 = header("webhook-timestamp").parse().unwrap();
    let key = WebhookSecret::parse(secret).unwrap();
    assert!(verify(
        &key,
        &header("webhook-id"),
        ts,
        &req.body,
        &header("webhook-signature")
    ));
    let mut tampered = req.body.clone();
    tampered.push(b' ');
    assert!(!verify(
        &key,
        &header("webhook-id"),
        ts,
        &tampered,
        &header("webhook-signature")
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_whose_jobs_redis_lost_are_routed_by_the_recovery_sweep() {
    // Arrange: accept an alert while no worker runs, then lose every Redis key.
    let mut app = spawn_app().await;
    ok_provider(&app).await;
    shop_with(
        &app,
        "Casino",
        &[("u1", "standard", None), ("u2", "standard", None)],
    )
    .await;
    let (_, resp) = app.post("/webhooks/alerts", alert("Casino", "theft")).await;
    app.queue.purge().await.unwrap();
    assert_eq!(app.queue.depths().await.unwrap().critical, 0);
    // Act: a worker starts; only the sweep (Postgres outbox) can find the event.
    app.start_worker(WorkerOptions {
        visibility_timeout: Duration::from_secs(1),
        ..Default::default()
    });
    // Assert
    let items = app
        .wait_final(
            resp["event_id"].as_str().unwrap(),
            2,
            Duration::from_secs(20),
        )
        .await;
    assert!(items.iter().all(|n| n["status"] == "sent"));
    app.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_answering_410_gone_is_disabled_until_set_again() {
    let app = spawn_app_with_worker().await;
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(410))
        .mount(&hook)
        .await;
    let url = format!("{}/hook", hook.uri());
    shop_with(&app, "Franprix", &[("gone", "standard", Some(url.clone()))]).await;

    let (_, resp) = app
        .post("/webhooks/alerts", alert("Franprix", "theft"))
        .await;
    let items = app
        .wait_final(
            resp["event_id"].as_str().unwrap(),
            1,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(
        (items[0]["status"].as_str(), items[0]["attempts"].as_i64()),
        (Some("failed"), Some(1))
    );
    let (_, person) = app.get("/api/v1/users/gone").await;
    assert!(person["webhook_disabled_at"].is_string(), "{person}");

    // The next alert does not even try the dead endpoint.
    let (_, resp) = app
        .post("/webhooks/alerts", alert("Franprix", "theft"))
        .await;
    let items = app
        .wait_final(
            resp["event_id"].as_str().unwrap(),
            1,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(items[0]["attempts"], 0);
    assert!(items[0]["last_error"]
        .as_str()
        .unwrap()
        .contains("410 Gone"));
    assert_eq!(hook.received_requests().await.unwrap().len(), 1);

    // Setting the webhook again re-enables it.
    let (_, person) = app
        .put("/api/v1/users/gone", json!({"webhook_url": url}))
        .await;
    assert!(person["webhook_disabled_at"].is_null(), "{person}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_host_opens_its_circuit_and_deliveries_wait_without_spending_attempts() {
    let app = spawn_app_with_worker().await;
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&hook)
        .await;
    let members: Vec<(String, Option<String>)> = (0..10)
        .map(|i| (format!("m{i}"), Some(format!("{}/hook/{i}", hook.uri()))))
        .collect();
    let members: Vec<(&str, &str, Option<String>)> = members
        .iter()
        .map(|(u, h)| (u.as_str(), "standard", h.clone()))
        .collect();
    shop_with(&app, "Intermarche", &members).await;

    // 10 notifications x 3 attempts would be 30 tries; the circuit opens at the 20th
    // failure (across >= 5 notifications) and the third tries wait instead.
    let (_, resp) = app
        .post("/webhooks/alerts", alert("Intermarche", "theft"))
        .await;
    let event_id = resp["event_id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(13)).await;
    let items = app.notifications_of(&event_id).await;
    let attempts: i64 = items.iter().map(|n| n["attempts"].as_i64().unwrap()).sum();
    let tries = hook.received_requests().await.unwrap().len();
    assert!((20..=22).contains(&tries), "{tries} tries reached the host");
    assert_eq!(attempts as usize, tries);
    assert!(
        items
            .iter()
            .any(|n| n["status"] == "pending" && n["attempts"] == 2),
        "held notifications keep their last attempt: {items:?}"
    );
    let host = herald_core::circuit::host_of(&hook.uri()).unwrap();
    let state = app.circuits.state(&host).await.unwrap();
    assert!(state.opened_at_ms.is_some(), "{state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_over_several_pages_reaches_every_member_once() {
    let app = spawn_app_with_worker().await;
    ok_provider(&app).await;
    app.put("/api/v1/topics/Mall", json!({})).await;
    // 1,201 members: three pages of at most 500, routed by chained jobs.
    let ids: Vec<String> = (0..1201).map(|i| format!("shopper_{i:04}")).collect();
    for chunk in ids.chunks(1000) {
        let (status, resp) = app
            .put("/api/v1/topics/Mall/members", json!({"user_ids": chunk}))
            .await;
        assert_eq!(status, 200, "{resp}");
    }
    let (_, resp) = app.post("/webhooks/alerts", alert("Mall", "theft")).await;
    let event_id = resp["event_id"].as_str().unwrap().to_string();
    app.wait_for("1201 deliveries", Duration::from_secs(60), || async {
        let (_, stats) = app.get(&format!("/api/v1/events/{event_id}/stats")).await;
        (stats["sent"] == 1201).then_some(())
    })
    .await;
    let (_, stats) = app.get(&format!("/api/v1/events/{event_id}/stats")).await;
    assert_eq!(stats["recipients"], 1201, "{stats}");
    assert_eq!(app.provider.received_requests().await.unwrap().len(), 1201);
}
