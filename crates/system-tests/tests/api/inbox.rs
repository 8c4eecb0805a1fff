//! A person's inbox: visible rows, newest first, unread filter and count, cursor
//! pages, read marks.

use crate::fixtures::{self, due_later, insert, people, row, with_status};
use crate::helpers::spawn_app;
use chrono::{Duration, Utc};
use serde_json::{json, Value};

fn ids(page: &Value) -> Vec<uuid::Uuid> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["id"].as_str()?.parse().ok())
        .collect()
}

#[tokio::test]
async fn the_inbox_lists_a_persons_visible_notifications_newest_first() {
    // Arrange
    let app = spawn_app().await;
    people(&app, &["ann", "bob"]).await;
    let ev = fixtures::event(&app, "test_scenario.created", Some("ann")).await;
    let mut private = row(ev, "ann", "HIGH_RISK_ALERT");
    private.private = true;
    let rows = vec![
        row(ev, "ann", "A"),
        with_status(row(ev, "ann", "B"), "failed"),
        with_status(row(ev, "ann", "SUPPRESSED"), "suppressed"),
        private,
        due_later(row(ev, "ann", "LATER"), Utc::now() + Duration::hours(1)),
        with_status(row(ev, "ann", "BUNDLED"), "bundled"),
        row(ev, "bob", "A"),
        row(ev, "ann", "C"),
    ];
    let id = insert(&app, &rows).await;

    // Act
    let (status, page) = app.get("/api/v1/users/ann/notifications").await;

    // Assert
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), [id[7], id[1], id[0]], "{page}");
    assert_eq!(page["unread_count"], 3);
    assert_eq!(page["next_cursor"], Value::Null);
    let first = &page["items"][0];
    assert_eq!(
        first,
        &json!({
            "id": id[7], "notification_type": "C", "channel": "in_app",
            "subject": "C subject", "text": "C text", "status": "sent",
            "created_at": first["created_at"], "read_at": null,
        })
    );
    assert_eq!(page["items"][1]["status"], "failed");
}

#[tokio::test]
async fn pages_follow_the_cursor_and_the_unread_count_ignores_filters() {
    let app = spawn_app().await;
    people(&app, &["ann"]).await;
    let ev = fixtures::event(&app, "x", Some("ann")).await;
    let rows: Vec<_> = (0..5).map(|i| row(ev, "ann", &format!("T{i}"))).collect();
    let id = insert(&app, &rows).await;
    let (status, _) = app
        .post(
            &format!("/api/v1/users/ann/notifications/{}/read", id[4]),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);

    let (_, first) = app
        .get("/api/v1/users/ann/notifications?unread=true&limit=2")
        .await;
    assert_eq!(ids(&first), [id[3], id[2]]);
    assert_eq!(first["unread_count"], 4);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let (_, second) = app
        .get(&format!(
            "/api/v1/users/ann/notifications?unread=true&limit=2&cursor={cursor}"
        ))
        .await;
    assert_eq!(ids(&second), [id[1], id[0]]);
    assert_eq!(second["unread_count"], 4, "the count ignores the cursor");
    assert_eq!(second["next_cursor"], Value::Null, "nothing follows");

    let (_, all) = app.get("/api/v1/users/ann/notifications").await;
    assert_eq!(ids(&all).len(), 5, "read ones show without the filter");
    assert!(all["items"][0]["read_at"].is_string());
}

#[tokio::test]
async fn marking_read_changes_the_unread_count_and_keeps_the_first_read_time() {
    let app = spawn_app().await;
    people(&app, &["ann", "bob"]).await;
    let ev = fixtures::event(&app, "x", Some("ann")).await;
    let mut private = row(ev, "ann", "P");
    private.private = true;
    let id = insert(
        &app,
        &[
            row(ev, "ann", "A"),
            row(ev, "ann", "B"),
            row(ev, "bob", "A"),
            with_status(row(ev, "ann", "S"), "suppressed"),
            private,
        ],
    )
    .await;
    let read = |user: &str, n: &uuid::Uuid| format!("/api/v1/users/{user}/notifications/{n}/read");

    let (status, item) = app.post(&read("ann", &id[0]), json!({})).await;
    assert_eq!(status, 200, "{item}");
    let first_read = item["read_at"].clone();
    assert!(first_read.is_string());
    let (_, again) = app.post(&read("ann", &id[0]), json!({})).await;
    assert_eq!(again["read_at"], first_read, "marking again keeps the time");
    let (_, page) = app.get("/api/v1/users/ann/notifications").await;
    assert_eq!(page["unread_count"], 1);

    for (user, n, why) in [
        ("ann", &id[2], "another person's"),
        ("bob", &id[1], "another person's"),
        ("ann", &id[3], "suppressed"),
        ("ann", &id[4], "private"),
    ] {
        let (status, _) = app.post(&read(user, n), json!({})).await;
        assert_eq!(status, 404, "{why} notification");
    }
    let (status, _) = app
        .post(&read("ann", &uuid::Uuid::now_v7()), json!({}))
        .await;
    assert_eq!(status, 404, "unknown id");
    let (status, _) = app
        .post("/api/v1/users/ann/notifications/nope/read", json!({}))
        .await;
    assert_eq!(status, 404, "not an id at all");
    let (_, bob) = app.get("/api/v1/users/bob/notifications").await;
    assert_eq!(bob["unread_count"], 1, "bob's stays unread");
}

#[tokio::test]
async fn read_all_marks_every_unread_item_and_only_the_persons() {
    let app = spawn_app().await;
    people(&app, &["ann", "bob"]).await;
    let ev = fixtures::event(&app, "x", Some("ann")).await;
    insert(
        &app,
        &[
            row(ev, "ann", "A"),
            row(ev, "ann", "B"),
            row(ev, "bob", "A"),
        ],
    )
    .await;

    let (status, body) = app
        .post("/api/v1/users/ann/notifications/read-all", json!({}))
        .await;
    assert_eq!((status, body), (200, json!({"marked": 2})));
    let (_, again) = app
        .post("/api/v1/users/ann/notifications/read-all", json!({}))
        .await;
    assert_eq!(again, json!({"marked": 0}));
    let (_, ann) = app.get("/api/v1/users/ann/notifications?unread=true").await;
    assert_eq!(
        (ann["unread_count"].clone(), ids(&ann).len()),
        (json!(0), 0)
    );
    let (_, bob) = app.get("/api/v1/users/bob/notifications").await;
    assert_eq!(bob["unread_count"], 1);
}

#[tokio::test]
async fn an_unknown_person_or_a_bad_parameter_is_refused() {
    let app = spawn_app().await;
    people(&app, &["ann"]).await;
    assert_eq!(app.get("/api/v1/users/ghost/notifications").await.0, 404);
    assert_eq!(
        app.post("/api/v1/users/ghost/notifications/read-all", json!({}))
            .await
            .0,
        404
    );
    for query in [
        "limit=0",
        "limit=501",
        "cursor=nope",
        "unread=maybe",
        "colour=red",
    ] {
        let (status, body) = app
            .get(&format!("/api/v1/users/ann/notifications?{query}"))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
}
