//! Burying a dead letter records it and settles what the job was about, only where
//! that still waits: a `received` event becomes `failed_routing`, a `pending`
//! notification `failed` with the reason; routed events and sent notifications keep
//! their state (the dead letter is recorded all the same).

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use herald_store::dead_letters::{self, NewDeadLetter};
use herald_store::notifications;
use herald_store::schema::{events, notifications as n};
use herald_store::testing::{insert_event, pending_notification, TestDb};
use uuid::Uuid;

fn letter(kind: &str, event_id: Option<Uuid>, notification_id: Option<Uuid>) -> NewDeadLetter {
    NewDeadLetter {
        kind: kind.into(),
        stream: "h:queue:default".into(),
        entry_id: "1-0".into(),
        job: serde_json::json!({"kind": kind}),
        event_id,
        notification_id,
        reason: "dead-lettered after 5 deliveries: boom".into(),
        deliveries: 5,
    }
}

#[tokio::test]
async fn a_route_job_fails_its_event_and_a_delivery_job_its_notification() {
    let db = TestDb::create().await.unwrap();
    let pool = herald_store::connect(&db.url, 2).unwrap();
    let waiting = insert_event(&pool, "broadcast", Utc::now()).await;
    let routed = insert_event(&pool, "broadcast", Utc::now()).await;
    let mut conn = pool.get().await.unwrap();
    herald_store::events::mark_routed(&mut conn, &[routed])
        .await
        .unwrap();
    let row = pending_notification(routed, None, "T");
    let notification = row.id;
    notifications::insert_batch(&mut conn, &[row])
        .await
        .unwrap();

    for id in [waiting, routed] {
        let person = dead_letters::bury(&mut conn, &letter("route", Some(id), None))
            .await
            .unwrap();
        assert_eq!(person, None);
    }
    dead_letters::bury(&mut conn, &letter("deliver", None, Some(notification)))
        .await
        .unwrap();

    let status = |id: Uuid| events::table.find(id).select(events::status);
    assert_eq!(
        status(waiting).first::<String>(&mut conn).await.unwrap(),
        "failed_routing"
    );
    assert_eq!(
        status(routed).first::<String>(&mut conn).await.unwrap(),
        "routed"
    );
    let (st, last_error): (String, Option<String>) = n::table
        .find(notification)
        .select((n::status, n::last_error))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(st, "failed");
    assert_eq!(
        last_error.as_deref(),
        Some("dead-lettered: dead-lettered after 5 deliveries: boom")
    );

    let listed = dead_letters::list(&mut conn, None, 10).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0].kind, "deliver");
    assert_eq!(listed[0].notification_id, Some(notification));
    assert_eq!(listed[0].event_id, Some(routed), "the notification's event");
    assert_eq!(listed[0].deliveries, 5);
    let older = dead_letters::list(&mut conn, Some(listed[0].id), 10)
        .await
        .unwrap();
    assert_eq!(older.len(), 2);
    assert!(older.iter().all(|d| d.id < listed[0].id));

    // Already failed: a second dead letter of the same delivery changes nothing more.
    dead_letters::bury(&mut conn, &letter("deliver", None, Some(notification)))
        .await
        .unwrap();
    let count: i64 = n::table
        .filter(n::status.eq("failed"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 1);
}
