//! Provider receipts and the per-event stats they feed (contract §3.3): which statuses
//! each receipt may change, and the answer naming those it may not.

use crate::fixtures::{self, insert, people, row, with_status};
use crate::helpers::spawn_app;
use diesel_async::RunQueryDsl;
use serde_json::{json, Value};
use uuid::Uuid;

async fn notification(app: &crate::helpers::TestApp, id: &Uuid) -> Value {
    let (status, body) = app.get(&format!("/api/v1/notifications/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn receipts_set_delivered_opened_and_bounced_and_name_unknown_ids() {
    // Arrange
    let app = spawn_app().await;
    people(&app, &["a", "b", "c"]).await;
    let ev = fixtures::event(&app, "broadcast", None).await;
    let id = insert(
        &app,
        &[
            row(ev, "a", "BROADCAST"),
            row(ev, "b", "BROADCAST"),
            row(ev, "c", "BROADCAST"),
        ],
    )
    .await;
    let ghost = Uuid::now_v7();

    // Act
    let (status, body) = app
        .post(
            "/webhooks/receipts",
            json!([
                {"notification_id": id[0], "status": "delivered", "at": "2025-11-20T10:00:00Z"},
                {"notification_id": id[1], "status": "opened", "at": "2025-11-20T10:00:05Z"},
                {"notification_id": id[2], "status": "bounced", "at": "2025-11-20T10:00:01Z"},
                {"notification_id": ghost, "status": "delivered", "at": "2025-11-20T10:00:00Z"},
                {"notification_id": ghost, "status": "opened", "at": "2025-11-20T10:00:00Z"},
            ]),
        )
        .await;

    // Assert
    assert_eq!(
        (status, body),
        (
            200,
            json!({"updated": 3, "unknown": [ghost], "ignored": [], "rejected": []})
        )
    );
    let delivered = notification(&app, &id[0]).await;
    assert_eq!(delivered["delivered_at"], "2025-11-20T10:00:00Z");
    assert_eq!(delivered["opened_at"], Value::Null);
    let opened = notification(&app, &id[1]).await;
    assert_eq!(opened["opened_at"], "2025-11-20T10:00:05Z");
    assert_eq!(
        opened["delivered_at"], "2025-11-20T10:00:05Z",
        "opened implies delivered"
    );
    let bounced = notification(&app, &id[2]).await;
    assert_eq!(bounced["status"], "failed");
    assert!(bounced["last_error"]
        .as_str()
        .unwrap_or_default()
        .contains("bounced"));
    assert!(bounced["sent_at"].is_string(), "a bounce keeps sent_at");

    // The same receipts again change nothing: the earliest time reported wins.
    app.post(
        "/webhooks/receipts",
        json!([{"notification_id": id[0], "status": "delivered", "at": "2025-11-21T00:00:00Z"}]),
    )
    .await;
    assert_eq!(
        notification(&app, &id[0]).await["delivered_at"],
        "2025-11-20T10:00:00Z"
    );
}

#[tokio::test]
async fn malformed_receipts_are_rejected_one_by_one_and_bad_bodies_refused() {
    let app = spawn_app().await;
    people(&app, &["a"]).await;
    let ev = fixtures::event(&app, "broadcast", None).await;
    let id = insert(&app, &[row(ev, "a", "BROADCAST")]).await;

    let (status, body) = app
        .post(
            "/webhooks/receipts",
            json!([
                {"notification_id": "not-a-uuid", "status": "delivered"},
                {"notification_id": id[0], "status": "read"},
                {"notification_id": id[0], "status": "opened"},
                {"notification_id": id[0], "status": "opened", "at": "2999-01-01T00:00:00Z"},
            ]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["updated"], 1);
    let rejected: Vec<(i64, &str)> = body["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| {
            (
                r["index"].as_i64().unwrap_or(-1),
                r["field"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(rejected, [(0, "notification_id"), (1, "status"), (3, "at")]);
    assert!(
        notification(&app, &id[0]).await["opened_at"].is_string(),
        "`at` defaults to now"
    );

    let (status, single) = app
        .post(
            "/webhooks/receipts",
            json!({"notification_id": id[0], "status": "delivered"}),
        )
        .await;
    assert_eq!(
        (status, single["updated"].clone()),
        (200, json!(1)),
        "one object is a batch"
    );
    assert_eq!(app.post("/webhooks/receipts", json!("x")).await.0, 400);
    let too_many: Vec<Value> = (0..1001)
        .map(|_| json!({"notification_id": id[0], "status": "delivered"}))
        .collect();
    assert_eq!(app.post("/webhooks/receipts", json!(too_many)).await.0, 413);
}

#[tokio::test]
async fn event_stats_count_recipients_and_every_outcome() {
    // Arrange: a sent+delivered+opened row, a sent row, a bounced one, a failed one,
    // a suppressed one, a pending one and a bundled one.
    let app = spawn_app().await;
    people(&app, &["a", "b", "c", "d", "e", "f"]).await;
    let ev = fixtures::event(&app, "broadcast", None).await;
    let other = fixtures::event(&app, "broadcast", None).await;
    let id = insert(
        &app,
        &[
            row(ev, "a", "BROADCAST"),
            row(ev, "b", "BROADCAST"),
            row(ev, "c", "BROADCAST"),
            with_status(row(ev, "d", "BROADCAST"), "failed"),
            with_status(row(ev, "e", "BROADCAST"), "suppressed"),
            with_status(row(ev, "f", "BROADCAST"), "pending"),
            with_status(row(ev, "f", "OTHER"), "bundled"),
            row(other, "a", "BROADCAST"),
        ],
    )
    .await;
    app.post(
        "/webhooks/receipts",
        json!([
            {"notification_id": id[0], "status": "opened"},
            {"notification_id": id[1], "status": "delivered"},
            {"notification_id": id[2], "status": "bounced"},
        ]),
    )
    .await;

    // Act
    let (status, stats) = app.get(&format!("/api/v1/events/{ev}/stats")).await;

    // Assert
    assert_eq!(status, 200, "{stats}");
    assert_eq!(
        stats,
        json!({"recipients": 6, "sent": 3, "delivered": 2, "opened": 1,
               "failed": 2, "suppressed": 1, "pending": 2})
    );
    assert_eq!(
        app.get(&format!("/api/v1/events/{}/stats", Uuid::now_v7()))
            .await
            .0,
        404
    );
    assert_eq!(app.get("/api/v1/events/nope/stats").await.0, 404);
}

#[tokio::test]
async fn receipts_change_only_the_statuses_they_may_and_say_why_not() {
    // Arrange: one row in each status; a receipt of every kind for each.
    let app = spawn_app().await;
    people(&app, &["a"]).await;
    let ev = fixtures::event(&app, "broadcast", None).await;
    let statuses = ["sent", "pending", "suppressed", "failed", "bundled"];
    let rows: Vec<_> = statuses
        .iter()
        .map(|s| with_status(row(ev, "a", &s.to_uppercase()), s))
        .collect();
    let id = insert(&app, &rows).await;
    let receipts: Vec<Value> = ["delivered", "opened", "bounced"]
        .iter()
        .flat_map(|kind| {
            id.iter().map(move |id| {
                json!({"notification_id": id, "status": kind, "at": "2025-11-20T10:00:00Z"})
            })
        })
        .collect();

    // Act
    let (status, body) = app.post("/webhooks/receipts", json!(receipts)).await;

    // Assert: delivered and opened apply to sent and pending (in flight) rows, a
    // bounce to the sent one only; every other receipt is listed with its reason.
    assert_eq!(status, 200, "{body}");
    let ignored = |i: usize, kind: &str, reason: &str| json!({"notification_id": id[i], "status": kind, "reason": reason});
    let never_sent = "suppressed: it was never sent";
    let bundled = "bundled: held in a pending bundle, never sent on its own";
    let failed = "failed: its delivery failed";
    assert_eq!(
        body,
        json!({
            "updated": 5,
            "unknown": [],
            "ignored": [
                ignored(2, "delivered", never_sent),
                ignored(3, "delivered", failed),
                ignored(4, "delivered", bundled),
                ignored(2, "opened", never_sent),
                ignored(3, "opened", failed),
                ignored(4, "opened", bundled),
                ignored(1, "bounced", "pending: not sent yet; a bounce applies to a sent notification"),
                ignored(2, "bounced", never_sent),
                ignored(3, "bounced", "failed: it has already failed"),
                ignored(4, "bounced", bundled),
            ],
            "rejected": [],
        })
    );
    let seen: Vec<(Value, Value, Value)> = {
        let mut seen = Vec::new();
        for id in &id {
            let n = notification(&app, id).await;
            seen.push((
                n["status"].clone(),
                n["delivered_at"].clone(),
                n["opened_at"].clone(),
            ));
        }
        seen
    };
    let at = json!("2025-11-20T10:00:00Z");
    assert_eq!(
        seen,
        [
            (json!("failed"), at.clone(), at.clone()),
            (json!("pending"), at.clone(), at.clone()),
            (json!("suppressed"), Value::Null, Value::Null),
            (json!("failed"), Value::Null, Value::Null),
            (json!("bundled"), Value::Null, Value::Null),
        ]
    );
}

#[tokio::test]
async fn a_bounced_bundle_fails_its_sent_items_with_it() {
    // Arrange: a sent bundle of three items (the first carried it) and another
    // notification of the same person.
    let app = spawn_app().await;
    people(&app, &["a"]).await;
    let ev = fixtures::event(&app, "tour_completed", Some("a")).await;
    let bundle = Uuid::now_v7();
    let mut conn = fixtures::conn(&app).await;
    diesel::sql_query(
        "INSERT INTO bundles (id, user_id, notification_type, status, first_at, last_at, tours,
                              first_friend, ready_at, sent_at)
         VALUES ($1, 'a', 'FRIEND_TOUR', 'sent', now(), now(), 3, 'bob', now(), now())",
    )
    .bind::<diesel::sql_types::Uuid, _>(bundle)
    .execute(&mut conn)
    .await
    .expect("bundle stored");
    let items: Vec<_> = (0..3)
        .map(|k| {
            let mut item = row(ev, "a", &format!("FRIEND_TOUR_{k}"));
            item.bundle_id = Some(bundle);
            item
        })
        .collect();
    let mut ids = insert(&app, &items).await;
    ids.extend(insert(&app, &[row(ev, "a", "OTHER")]).await);
    diesel::sql_query("UPDATE bundles SET notification_id = $1 WHERE id = $2")
        .bind::<diesel::sql_types::Uuid, _>(ids[0])
        .bind::<diesel::sql_types::Uuid, _>(bundle)
        .execute(&mut conn)
        .await
        .expect("carrier set");

    // Act
    let (status, body) = app
        .post(
            "/webhooks/receipts",
            json!([{"notification_id": ids[0], "status": "bounced"}]),
        )
        .await;

    // Assert
    assert_eq!((status, body["updated"].clone()), (200, json!(1)), "{body}");
    let mut statuses = Vec::new();
    for id in &ids {
        statuses.push(notification(&app, id).await["status"].clone());
    }
    assert_eq!(statuses, ["failed", "failed", "failed", "sent"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_batch_aborted_by_a_deadlock_is_retried_not_answered_5xx() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    // Arrange: two sent rows, a < b. Another transaction holds b; it will wait for
    // a too, once the receipt batch (which locks a, then waits for b) holds a. Its
    // own deadlock check comes late (10 s), so Postgres aborts the receipt batch's
    // statement after the default 1 s: the api must run it again.
    let app = spawn_app().await;
    people(&app, &["a"]).await;
    let ev = fixtures::event(&app, "broadcast", None).await;
    let id = insert(&app, &[row(ev, "a", "ONE"), row(ev, "a", "TWO")]).await;
    let mut other = AsyncPgConnection::establish(&app.db.url)
        .await
        .expect("connection");
    other
        .batch_execute(&format!(
            "BEGIN; SET LOCAL deadlock_timeout = '10s';
             SELECT id FROM notifications WHERE id = '{}' FOR UPDATE",
            id[1]
        ))
        .await
        .expect("b locked");

    // Act: the receipts wait for b; then the other transaction waits for a.
    let receipts = {
        let (client, url) = (app.client.clone(), app.url("/webhooks/receipts"));
        let body = json!([
            {"notification_id": id[0], "status": "delivered"},
            {"notification_id": id[1], "status": "delivered"},
        ]);
        tokio::spawn(async move {
            let resp = client
                .post(url)
                .bearer_auth(crate::helpers::API_KEY)
                .json(&body)
                .send()
                .await
                .expect("answered");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    let mut watcher = fixtures::conn(&app).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting: i64 = diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .get_result(&mut watcher)
        .await
        .expect("pg_stat_activity read");
        if waiting > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the receipts never waited for b"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let took_a = other
        .batch_execute(&format!(
            "SELECT id FROM notifications WHERE id = '{}' FOR UPDATE",
            id[0]
        ))
        .await;
    other.batch_execute("COMMIT").await.expect("committed");

    // Assert: the other transaction got a (so the receipts' statement was the one
    // aborted), and the receipts were applied all the same.
    assert!(
        took_a.is_ok(),
        "the other transaction was aborted: {took_a:?}"
    );
    let (status, body) = receipts.await.expect("the request ran");
    assert_eq!((status, body["updated"].clone()), (200, json!(2)), "{body}");
    for id in &id {
        assert!(notification(&app, id).await["delivered_at"].is_string());
    }
}
