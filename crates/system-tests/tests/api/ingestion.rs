//! `POST /api/v1/events`: validation, partial acceptance, idempotency, limits, auth.

use crate::helpers::{spawn_app, API_KEY};
use serde_json::{json, Value};
use std::time::Duration;

fn event(id: Option<&str>) -> Value {
    let mut e = json!({"user_id": "u_1", "event_type": "payment_failed",
                       "event_timestamp": "2025-10-31T19:30:00Z", "properties": {"amount": 1425.0}});
    if let Some(id) = id {
        e["event_id"] = json!(id);
    }
    e
}

#[tokio::test]
async fn a_batch_is_accepted_item_by_item_and_bad_items_are_listed() {
    // Arrange
    let app = spawn_app().await;
    let body = json!([event(None), {"event_type": "x"}, {"event_type": "bad type!", "event_timestamp": "2025-10-31T19:30:00Z"}, event(None)]);
    // Act
    let (status, resp) = app.post("/api/v1/events", body).await;
    // Assert
    assert_eq!(status, 202, "{resp}");
    assert_eq!(resp["accepted"], 2);
    assert_eq!(resp["duplicates"], 0);
    let ids = resp["event_ids"].as_array().unwrap();
    assert!(ids[0].is_string() && ids[1].is_null() && ids[2].is_null() && ids[3].is_string());
    assert_eq!(resp["rejected"][0]["index"], 1);
    assert_eq!(
        resp["rejected"][0]["error"],
        "missing field: event_timestamp"
    );
    assert_eq!(resp["rejected"][1]["index"], 2);
    assert_eq!(resp["rejected"][1]["field"], "event_type");
}

#[tokio::test]
async fn accepted_events_are_committed_and_enqueued() {
    let app = spawn_app().await;
    let (_, resp) = app
        .post("/api/v1/events", json!([event(None), event(None)]))
        .await;
    assert_eq!(resp["accepted"], 2);
    // The route jobs wait on the default stream.
    let depths = app.queue.depths().await.unwrap();
    assert_eq!(depths.default, 2);
    // And the rows are in Postgres, still `received` until a worker routes them.
    let mut conn = herald_store::pool::get(&herald_store::connect(&app.db.url, 1).unwrap())
        .await
        .unwrap();
    let id: uuid::Uuid = resp["event_ids"][0].as_str().unwrap().parse().unwrap();
    let row = herald_store::events::find(&mut conn, id).await.unwrap();
    assert_eq!(row.status, "received");
    assert_eq!(row.properties["amount"], json!(1425.0));
}

#[tokio::test]
async fn a_repeated_event_id_is_a_duplicate_pointing_at_the_original() {
    let app = spawn_app().await;
    let (_, first) = app
        .post("/api/v1/events", json!([event(Some("k-1"))]))
        .await;
    let (status, again) = app
        .post(
            "/api/v1/events",
            json!([event(Some("k-1")), event(Some("k-1")), event(Some("k-2"))]),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(again["accepted"], 1);
    assert_eq!(again["duplicates"], 2);
    assert_eq!(again["event_ids"][0], first["event_ids"][0]);
    assert_eq!(again["event_ids"][1], first["event_ids"][0]);
    assert_ne!(again["event_ids"][2], first["event_ids"][0]);
    // Only the two new events were enqueued, never the duplicates.
    assert_eq!(app.queue.depths().await.unwrap().default, 2);
}

#[tokio::test]
async fn a_single_object_is_a_one_item_batch_and_an_empty_array_accepts_nothing() {
    let app = spawn_app().await;
    let (status, resp) = app.post("/api/v1/events", event(None)).await;
    assert_eq!((status, resp["accepted"].clone()), (202, json!(1)));
    let (status, resp) = app.post("/api/v1/events", json!([])).await;
    assert_eq!((status, resp["accepted"].clone()), (202, json!(0)));
}

#[tokio::test]
async fn malformed_bodies_get_a_json_4xx_naming_the_problem() {
    let app = spawn_app().await;
    let cases: [(&str, Vec<u8>, u16, &str); 5] = [
        ("malformed JSON", b"{bad".to_vec(), 400, "malformed JSON"),
        ("a scalar", b"5".to_vec(), 400, "JSON array"),
        (
            "invalid UTF-8",
            vec![b'[', 0xff, 0xfe, b']'],
            400,
            "malformed JSON",
        ),
        ("an empty body", Vec::new(), 400, "empty"),
        (
            "over 1 MiB",
            format!("[\"{}\"]", "a".repeat(1 << 20)).into_bytes(),
            413,
            "1 MiB",
        ),
    ];
    for (what, body, expected, message) in cases {
        let resp = app
            .client
            .post(app.url("/api/v1/events"))
            .bearer_auth(API_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), expected, "{what}");
        let json: Value = resp.json().await.unwrap();
        let text = json["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{what}: {json}");
    }
}

#[tokio::test]
async fn deep_nesting_is_refused_with_a_400_not_a_crash() {
    let app = spawn_app().await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let resp = app
        .client
        .post(app.url("/api/v1/events"))
        .bearer_auth(API_KEY)
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test]
async fn a_batch_over_1000_items_gets_413() {
    let app = spawn_app().await;
    let items: Vec<Value> = (0..1001)
        .map(|_| json!({"event_type": "x", "event_timestamp": "2025-10-31T19:30:00Z"}))
        .collect();
    let (status, resp) = app.post("/api/v1/events", Value::Array(items)).await;
    assert_eq!(status, 413, "{resp}");
    assert_eq!(resp["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn requests_without_the_right_key_get_401_but_health_is_open() {
    let app = spawn_app().await;
    let no_key = app
        .client
        .post(app.url("/api/v1/events"))
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status().as_u16(), 401);
    let body: Value = no_key.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong = app
        .client
        .post(app.url("/api/v1/events"))
        .bearer_auth("nope")
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    for open in ["/healthz/live", "/healthz/ready", "/metrics"] {
        let resp = app.client.get(app.url(open)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{open}");
    }
}

#[tokio::test]
async fn metrics_count_accepted_events_and_show_queue_depths() {
    let app = spawn_app().await;
    app.post(
        "/api/v1/events",
        json!([event(None), event(None), event(None)]),
    )
    .await;
    // The depths are sampled from Redis every few seconds, not read per scrape.
    let text = app
        .wait_for("the queue sample", Duration::from_secs(15), || async {
            let text = app
                .client
                .get(app.url("/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.contains("herald_queue_depth{queue=\"default\"} 3")
                .then_some(text)
        })
        .await;
    assert!(text.contains("herald_events_accepted_total 3"), "{text}");
    assert!(
        text.contains("herald_http_requests_total{method=\"POST\",status=\"202\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn ready_reports_both_engines_up() {
    let app = spawn_app().await;
    let (status, body) = app.get("/healthz/ready").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"status": "ok", "postgres": "up", "redis": "up"})
    );
}
