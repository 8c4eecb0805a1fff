//! Operators' routes: retrying a failed notification, the ops summary, deleting a
//! person, bulk membership.

use crate::fixtures::{self, insert, people, row, with_status};
use crate::helpers::spawn_app;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use herald_store::schema::{events, notifications};
use serde_json::{json, Value};
use uuid::Uuid;

#[tokio::test]
async fn a_failed_notification_is_requeued_and_others_are_refused() {
    // Arrange
    let app = spawn_app().await;
    people(&app, &["a"]).await;
    let ev = fixtures::event(&app, "broadcast", None).await;
    let mut critical = with_status(row(ev, "a", "CRIT"), "failed");
    critical.severity = "critical";
    let id = insert(
        &app,
        &[
            with_status(row(ev, "a", "FAILED"), "failed"),
            row(ev, "a", "SENT"),
            critical,
        ],
    )
    .await;

    // Act
    let (status, body) = app
        .post(&format!("/api/v1/notifications/{}/retry", id[0]), json!({}))
        .await;

    // Assert
    assert_eq!(
        (status, body),
        (202, json!({"id": id[0], "status": "pending"}))
    );
    let (_, n) = app.get(&format!("/api/v1/notifications/{}", id[0])).await;
    assert_eq!(n["status"], "pending");
    let depths = app.queue.depths().await.expect("redis answers");
    assert_eq!(
        (depths.default, depths.critical),
        (1, 0),
        "a deliver job is queued"
    );
    app.post(&format!("/api/v1/notifications/{}/retry", id[2]), json!({}))
        .await;
    let depths = app.queue.depths().await.expect("redis answers");
    assert_eq!(
        depths.critical, 1,
        "a critical one goes on the critical queue"
    );

    let (status, body) = app
        .post(&format!("/api/v1/notifications/{}/retry", id[1]), json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("sent"));
    let (status, _) = app
        .post(&format!("/api/v1/notifications/{}/retry", id[0]), json!({}))
        .await;
    assert_eq!(status, 409, "already pending again");
    let (status, _) = app
        .post(
            &format!("/api/v1/notifications/{}/retry", Uuid::now_v7()),
            json!({}),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_ops_summary_shows_queues_recent_statuses_and_workers() {
    let app = spawn_app().await;
    people(&app, &["a"]).await;
    let ev = fixtures::event(&app, "broadcast", None).await;
    insert(
        &app,
        &[
            row(ev, "a", "A"),
            row(ev, "a", "B"),
            with_status(row(ev, "a", "C"), "failed"),
        ],
    )
    .await;

    let (status, body) = app.get("/api/v1/ops/summary").await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redis"], "up");
    assert_eq!(
        body["queues"],
        json!({"critical": 0, "default": 0, "delayed": 0})
    );
    assert_eq!(
        body["notifications_last_hour"],
        json!({"pending": 0, "bundled": 0, "sent": 2, "failed": 1, "suppressed": 0})
    );
    assert_eq!(body["workers"], json!([]), "no worker runs in this test");
}

#[tokio::test]
async fn deleting_a_person_removes_their_history_and_blanks_their_events() {
    // Arrange
    let app = spawn_app().await;
    people(&app, &["gone", "stays"]).await;
    app.put(
        "/api/v1/users/gone",
        json!({"topics": ["club"], "email": "g@example.com"}),
    )
    .await;
    app.put("/api/v1/users/stays", json!({"topics": ["club"]}))
        .await;
    app.put(
        "/api/v1/users/gone/subscriptions/test_scenario.created",
        json!({"enabled": true}),
    )
    .await;
    let ev = fixtures::event(&app, "signup", Some("gone")).await;
    let id = insert(&app, &[row(ev, "gone", "A"), row(ev, "stays", "A")]).await;

    // Act
    let (status, body) = app
        .send(reqwest::Method::DELETE, "/api/v1/users/gone", None)
        .await;

    // Assert
    assert_eq!((status, body), (204, Value::Null));
    assert_eq!(app.get("/api/v1/users/gone").await.0, 404);
    assert_eq!(
        app.get(&format!("/api/v1/notifications/{}", id[0])).await.0,
        404
    );
    assert_eq!(
        app.get(&format!("/api/v1/notifications/{}", id[1])).await.0,
        200
    );
    let (_, members) = app.get("/api/v1/topics/club/members").await;
    assert_eq!(members["items"], json!(["stays"]));
    let mut conn = fixtures::conn(&app).await;
    let (user_id, traits): (Option<String>, Value) = events::table
        .find(ev)
        .select((events::user_id, events::user_traits))
        .first(&mut conn)
        .await
        .expect("the event stays");
    assert_eq!((user_id, traits), (None, json!({})));
    let left: i64 = notifications::table
        .filter(notifications::user_id.eq("gone"))
        .count()
        .get_result(&mut conn)
        .await
        .expect("count");
    assert_eq!(left, 0);
    let subs: i64 = herald_store::schema::subscriptions::table
        .count()
        .get_result(&mut conn)
        .await
        .expect("count");
    assert_eq!(subs, 0, "subscriptions go with the person");
    assert_eq!(
        app.send(reqwest::Method::DELETE, "/api/v1/users/gone", None)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn bulk_membership_adds_people_creating_unknown_ones() {
    let app = spawn_app().await;
    people(&app, &["known"]).await;
    app.put("/api/v1/topics/club", json!({})).await;
    app.put("/api/v1/topics/club/members/known", json!({}))
        .await;

    let (status, body) = app
        .put(
            "/api/v1/topics/club/members",
            json!({"user_ids": ["known", "new1", "new2", "new1"]}),
        )
        .await;

    assert_eq!(
        (status, body),
        (
            200,
            json!({"topic": "club", "requested": 3, "added": 2, "created_users": 2})
        )
    );
    let (_, members) = app.get("/api/v1/topics/club/members").await;
    assert_eq!(members["items"], json!(["known", "new1", "new2"]));
    assert_eq!(app.get("/api/v1/users/new2").await.0, 200);
}

#[tokio::test]
async fn bulk_membership_refuses_an_unknown_topic_bad_ids_and_over_1000_ids() {
    let app = spawn_app().await;
    app.put("/api/v1/topics/club", json!({})).await;
    let path = "/api/v1/topics/club/members";
    assert_eq!(
        app.put("/api/v1/topics/nowhere/members", json!({"user_ids": ["a"]}))
            .await
            .0,
        404
    );
    let (status, body) = app
        .put(path, json!({"user_ids": ["ok", "x".repeat(129)]}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "user_ids[1]");
    let many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    assert_eq!(app.put(path, json!({"user_ids": many})).await.0, 413);
    assert_eq!(app.put(path, json!({"users": []})).await.0, 422);
    let (status, body) = app.put(path, json!({"user_ids": []})).await;
    assert_eq!((status, body["added"].clone()), (200, json!(0)));
}

#[tokio::test]
async fn dead_letters_are_listed_newest_first_a_page_at_a_time() {
    let app = spawn_app().await;
    let (status, body) = app.get("/api/v1/dead-letters").await;
    assert_eq!(
        (status, body),
        (200, json!({"items": [], "next_cursor": null}))
    );
    let ev = fixtures::event(&app, "broadcast", None).await;
    let mut conn = fixtures::conn(&app).await;
    for n in 1..=3 {
        let letter = herald_store::dead_letters::NewDeadLetter {
            kind: "route".into(),
            stream: "herald:queue:default".into(),
            entry_id: format!("{n}-0"),
            job: json!({"kind": "route", "event_id": ev}),
            event_id: Some(ev),
            notification_id: None,
            reason: format!("dead-lettered after 5 deliveries: boom {n}"),
            deliveries: 5,
        };
        herald_store::dead_letters::bury(&mut conn, &letter)
            .await
            .expect("buried");
    }

    let (status, first) = app.get("/api/v1/dead-letters?limit=2").await;
    assert_eq!(status, 200, "{first}");
    let entries: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["entry_id"].as_str().unwrap())
        .collect();
    assert_eq!(entries, ["3-0", "2-0"]);
    assert_eq!(first["items"][0]["event_id"], json!(ev));
    assert_eq!(first["items"][0]["deliveries"], 5);
    let cursor = first["next_cursor"].as_i64().expect("a next page");
    let (_, rest) = app
        .get(&format!("/api/v1/dead-letters?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        rest["items"][0]["reason"],
        "dead-lettered after 5 deliveries: boom 1"
    );
    assert_eq!(rest["next_cursor"], Value::Null);
    let status: String = events::table
        .find(ev)
        .select(events::status)
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(status, "failed_routing");

    let (status, body) = app.get("/api/v1/dead-letters?limit=ten").await;
    assert_eq!(status, 400, "{body}");
}
