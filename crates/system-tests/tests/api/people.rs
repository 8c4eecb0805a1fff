//! People, preferences and topics: enough to set up alert recipients.

use crate::helpers::spawn_app;
use serde_json::json;

#[tokio::test]
async fn put_user_creates_then_merges_and_replaces_topics() {
    let app = spawn_app().await;
    let (status, created) = app
        .put(
            "/api/v1/users/maria",
            json!({"email": "m@example.com", "traits": {"a": 1}, "topics": ["T1", "T2"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (status, updated) = app
        .put(
            "/api/v1/users/maria",
            json!({"phone": "+33", "traits": {"b": 2}, "topics": ["T2"]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        updated["email"], "m@example.com",
        "fields not given are kept"
    );
    assert_eq!(updated["phone"], "+33");
    assert_eq!(
        updated["traits"],
        json!({"a": 1, "b": 2}),
        "traits are merged"
    );
    assert_eq!(
        updated["topics"],
        json!(["T2"]),
        "topics replace memberships"
    );
    let (status, got) = app.get("/api/v1/users/maria").await;
    assert_eq!((status, got), (200, updated));
    assert_eq!(app.get("/api/v1/users/nobody").await.0, 404);
}

#[tokio::test]
async fn put_user_refuses_bad_fields_with_422() {
    let app = spawn_app().await;
    for (body, field) in [
        (json!({"timezone": "Mars/Olympus"}), "timezone"),
        (json!({"emial": "typo@example.com"}), "emial"),
        (json!({"webhook_url": "ftp://x"}), "webhook_url"),
        (
            json!({"webhook_url": "http://169.254.169.254/latest"}),
            "webhook_url",
        ),
        (json!({"channels": {"fax": true}}), "channels"),
    ] {
        let (status, resp) = app.put("/api/v1/users/u1", body).await;
        assert_eq!(status, 422, "{field}: {resp}");
        assert!(
            resp["error"]["message"].as_str().unwrap().contains(field),
            "{resp}"
        );
    }
    let (status, _) = app
        .put(&format!("/api/v1/users/{}", "a".repeat(129)), json!({}))
        .await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn seed_002_preferences_set_the_level_case_insensitively() {
    let app = spawn_app().await;
    app.put("/api/v1/users/u1", json!({})).await;
    let (status, resp) = app
        .put(
            "/preferences",
            json!({"user_id": "u1", "level": "CRITICAL"}),
        )
        .await;
    assert_eq!(
        (status, resp),
        (200, json!({"user_id": "u1", "level": "critical"}))
    );
    let (_, prefs) = app.get("/api/v1/users/u1/preferences").await;
    assert_eq!(prefs["level"], "critical");
    let (status, resp) = app
        .put("/preferences", json!({"user_id": "u1", "level": "URGENT"}))
        .await;
    assert_eq!(status, 400);
    assert!(resp["error"]["message"]
        .as_str()
        .unwrap()
        .contains("standard, critical"));
    let (status, _) = app
        .put(
            "/preferences",
            json!({"user_id": "ghost", "level": "standard"}),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn topic_membership_can_be_added_listed_and_removed() {
    let app = spawn_app().await;
    assert_eq!(app.put("/api/v1/topics/shop", json!({})).await.0, 201);
    assert_eq!(app.put("/api/v1/topics/shop", json!({})).await.0, 200);
    for u in ["a", "b", "c"] {
        app.put(&format!("/api/v1/users/{u}"), json!({})).await;
        assert_eq!(
            app.put(&format!("/api/v1/topics/shop/members/{u}"), json!({}))
                .await
                .0,
            201
        );
    }
    let (_, page) = app.get("/api/v1/topics/shop/members?limit=2").await;
    assert_eq!(page, json!({"items": ["a", "b"], "next_cursor": "b"}));
    let (_, rest) = app
        .get("/api/v1/topics/shop/members?limit=2&cursor=b")
        .await;
    assert_eq!(rest["items"], json!(["c"]));
    assert_eq!(
        app.send(
            reqwest::Method::DELETE,
            "/api/v1/topics/shop/members/b",
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        app.send(
            reqwest::Method::DELETE,
            "/api/v1/topics/shop/members/b",
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        app.put("/api/v1/topics/shop/members/ghost", json!({}))
            .await
            .0,
        404
    );
}
