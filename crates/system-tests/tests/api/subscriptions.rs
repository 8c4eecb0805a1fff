//! Seed 003's subscriptions: the API, and the story end to end with a worker.

use crate::fixtures::people;
use crate::helpers::{spawn_app, spawn_app_with_worker, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn subscriptions_are_listed_created_and_switched() {
    let app = spawn_app().await;
    people(&app, &["ann"]).await;
    let (status, list) = app.get("/api/v1/users/ann/subscriptions").await;
    assert_eq!((status, list), (200, json!([])));

    let path = "/api/v1/users/ann/subscriptions/test_scenario.created";
    let (status, body) = app.put(path, json!({"enabled": true})).await;
    assert_eq!(
        (status, body),
        (
            201,
            json!({"event_type": "test_scenario.created", "enabled": true})
        )
    );
    let (status, body) = app.put(path, json!({"enabled": false})).await;
    assert_eq!((status, body["enabled"].clone()), (200, json!(false)));
    app.put(
        "/api/v1/users/ann/subscriptions/test_scenario.deleted",
        json!({"enabled": true}),
    )
    .await;

    let (_, list) = app.get("/api/v1/users/ann/subscriptions").await;
    assert_eq!(
        list,
        json!([
            {"event_type": "test_scenario.created", "enabled": false},
            {"event_type": "test_scenario.deleted", "enabled": true},
        ])
    );
}

#[tokio::test]
async fn bad_subscription_requests_get_clear_errors() {
    let app = spawn_app().await;
    people(&app, &["ann"]).await;
    let ok_type = "/api/v1/users/ann/subscriptions/test_scenario.created";
    assert_eq!(app.get("/api/v1/users/ghost/subscriptions").await.0, 404);
    assert_eq!(
        app.put(
            "/api/v1/users/ghost/subscriptions/test_scenario.created",
            json!({"enabled": true})
        )
        .await
        .0,
        404
    );
    let (status, body) = app
        .put(
            "/api/v1/users/ann/subscriptions/bad%20type!",
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "event_type");
    for bad in [
        json!({}),
        json!({"enabled": "yes"}),
        json!({"enabled": true, "x": 1}),
    ] {
        let (status, body) = app.put(ok_type, bad.clone()).await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
    let (status, _) = app.put(ok_type, json!([1])).await;
    assert_eq!(status, 422);
}

async fn publish(app: &TestApp, event_type: &str, scenario: u32) -> String {
    let (status, body) = app
        .post(
            "/api/v1/events",
            json!([{"event_type": event_type, "event_timestamp": "2025-11-20T10:00:00Z",
                    "properties": {"test_scenario_id": scenario}}]),
        )
        .await;
    assert_eq!(
        (status, body["accepted"].clone()),
        (202, json!(1)),
        "{body}"
    );
    body["event_ids"][0].as_str().expect("an id").to_string()
}

async fn inbox(app: &TestApp, user: &str) -> Value {
    let (status, body) = app
        .get(&format!("/api/v1/users/{user}/notifications"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn texts(inbox: &Value) -> Vec<String> {
    inbox["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_person_gets_exactly_the_test_scenario_events_they_subscribed_to() {
    // Arrange: ann follows creations and executions, bob executions and deletions.
    let app = spawn_app_with_worker().await;
    people(&app, &["ann", "bob", "cid"]).await;
    for (user, event_type) in [
        ("ann", "created"),
        ("ann", "executed"),
        ("bob", "executed"),
        ("bob", "deleted"),
    ] {
        let path = format!("/api/v1/users/{user}/subscriptions/test_scenario.{event_type}");
        assert_eq!(app.put(&path, json!({"enabled": true})).await.0, 201);
    }

    // Act
    for (event_type, recipients) in [("created", 1), ("executed", 2), ("deleted", 1)] {
        let id = publish(&app, &format!("test_scenario.{event_type}"), 42).await;
        app.wait_for("the event routed", Duration::from_secs(20), || async {
            let n = app.notifications_of(&id).await;
            (n.len() == recipients).then_some(())
        })
        .await;
    }

    // Assert
    let ann = inbox(&app, "ann").await;
    assert_eq!(
        texts(&ann),
        [
            "Test scenario 42 was executed at 2025-11-20T10:00:00Z",
            "Test scenario 42 was created at 2025-11-20T10:00:00Z",
        ]
    );
    assert_eq!(ann["unread_count"], 2);
    assert!(ann["items"]
        .as_array()
        .expect("items")
        .iter()
        .all(|i| i["channel"] == "in_app" && i["status"] == "sent"));
    let bob = inbox(&app, "bob").await;
    assert_eq!(
        texts(&bob),
        [
            "Test scenario 42 was deleted at 2025-11-20T10:00:00Z",
            "Test scenario 42 was executed at 2025-11-20T10:00:00Z",
        ]
    );
    assert_eq!(
        inbox(&app, "cid").await["items"],
        json!([]),
        "no subscription, nothing"
    );

    // Disabling a subscription stops the next one.
    app.put(
        "/api/v1/users/ann/subscriptions/test_scenario.executed",
        json!({"enabled": false}),
    )
    .await;
    let id = publish(&app, "test_scenario.executed", 43).await;
    let rows = app
        .wait_for("the event routed", Duration::from_secs(20), || async {
            let n = app.notifications_of(&id).await;
            (!n.is_empty()).then_some(n)
        })
        .await;
    let users: Vec<&str> = rows.iter().filter_map(|r| r["user_id"].as_str()).collect();
    assert_eq!(users, ["bob"]);
    assert_eq!(
        inbox(&app, "ann").await["items"].as_array().map(Vec::len),
        Some(2)
    );
}
