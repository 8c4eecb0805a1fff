//! `POST /webhooks/alerts` (seed 002): validation and idempotency by `alert_uuid`.

use crate::helpers::{alert, spawn_app};
use serde_json::json;

#[tokio::test]
async fn an_alert_for_a_known_location_is_accepted_once() {
    let app = spawn_app().await;
    app.put("/api/v1/topics/Carrefour", json!({})).await;
    let body = alert("Carrefour", "theft");
    let (status, first) = app.post("/webhooks/alerts", body.clone()).await;
    assert_eq!(status, 202, "{first}");
    assert!(first["event_id"].is_string());
    // The same alert again, on the seed-002 alias route: a duplicate, not a new event.
    let (status, again) = app.post("/webhook/notifications", body).await;
    assert_eq!(status, 200);
    assert_eq!(
        again,
        json!({"event_id": first["event_id"], "duplicate": true})
    );
    // Thefts are critical: their route job travels on the critical queue.
    let depths = app.queue.depths().await.unwrap();
    assert_eq!((depths.critical, depths.default), (1, 0));
}

#[tokio::test]
async fn an_alert_with_bad_fields_gets_422_naming_each_field() {
    let app = spawn_app().await;
    app.put("/api/v1/topics/Carrefour", json!({})).await;
    let cases = [
        (alert("Nowhere", "theft"), "location"),
        (alert("Carrefour", "fire"), "label"),
        (
            json!({"location": "Carrefour", "label": "theft", "url": "x", "time_spotted": 1.0}),
            "alert_uuid",
        ),
        (
            json!({"alert_uuid": uuid::Uuid::new_v4(), "location": "Carrefour", "label": "theft", "url": "x", "time_spotted": "noon"}),
            "time_spotted",
        ),
        (
            json!({"alert_uuid": uuid::Uuid::new_v4(), "location": "Carrefour", "label": "theft", "url": "x", "time_spotted": 1e12}),
            "time_spotted",
        ),
    ];
    for (body, field) in cases {
        let (status, resp) = app.post("/webhooks/alerts", body).await;
        assert_eq!(status, 422, "{field}: {resp}");
        let fields: Vec<&str> = resp["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "{field} not named in {resp}");
    }
}
