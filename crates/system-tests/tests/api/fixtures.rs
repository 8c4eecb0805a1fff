//! Rows written straight into a test's database, for states the HTTP API reaches
//! only through a worker and a provider (sent, failed, private, suppressed...).

use crate::helpers::TestApp;
use chrono::{DateTime, Utc};
use herald_core::event::NewEvent;
use herald_store::notifications::{self, NewNotification};
use serde_json::json;
use uuid::Uuid;

pub async fn conn(app: &TestApp) -> herald_store::Conn {
    let pool = herald_store::connect(&app.db.url, 1).expect("pool");
    herald_store::pool::get(&pool).await.expect("connection")
}

/// Stores an event (not routed: no worker runs) and returns its id.
pub async fn event(app: &TestApp, event_type: &str, user_id: Option<&str>) -> Uuid {
    let e = NewEvent {
        id: Uuid::now_v7(),
        event_type: event_type.into(),
        user_id: user_id.map(String::from),
        topic: None,
        event_timestamp: Utc::now(),
        properties: json!({"n": 1}),
        user_traits: json!({"email": "someone@example.com"}),
        idempotency_key: None,
        deliver_at: None,
    };
    let stored = herald_store::events::insert_batch(&mut conn(app).await, &[e])
        .await
        .expect("event stored");
    stored[0].id
}

/// A notification row of `event_id` for `user_id`, `sent` on `in_app` unless changed.
pub fn row(event_id: Uuid, user_id: &str, notification_type: &str) -> NewNotification {
    NewNotification {
        id: Uuid::now_v7(),
        event_id,
        user_id: Some(user_id.into()),
        notification_type: notification_type.into(),
        channel: "in_app".into(),
        status: "sent",
        suppression_reason: None,
        severity: "standard",
        private: false,
        subject: Some(format!("{notification_type} subject")),
        text: format!("{notification_type} text"),
        due_at: Utc::now(),
        sent_at: Some(Utc::now()),
        bundle_id: None,
        hold_reason: None,
    }
}

pub fn with_status(mut row: NewNotification, status: &'static str) -> NewNotification {
    row.status = status;
    if status != "sent" {
        row.sent_at = None;
    }
    row
}

pub fn due_later(mut row: NewNotification, due_at: DateTime<Utc>) -> NewNotification {
    row.status = "pending";
    row.sent_at = None;
    row.due_at = due_at;
    row
}

/// Inserts rows (in order, so their ids sort as given) and returns their ids.
pub async fn insert(app: &TestApp, rows: &[NewNotification]) -> Vec<Uuid> {
    let mut conn = conn(app).await;
    let inserted = notifications::insert_batch(&mut conn, rows)
        .await
        .expect("rows inserted");
    assert_eq!(inserted.len(), rows.len(), "every row is new");
    rows.iter().map(|r| r.id).collect()
}

/// Creates people (no fields) through the API.
pub async fn people(app: &TestApp, ids: &[&str]) {
    for id in ids {
        let (status, body) = app.put(&format!("/api/v1/users/{id}"), json!({})).await;
        assert!(status == 201 || status == 200, "{body}");
    }
}
