//! Group commit (`ingest`): concurrent requests are stored together, yet each gets
//! exactly the answer it would have got alone.

use crate::helpers::spawn_app;
use futures::future::join_all;
use serde_json::{json, Value};
use std::collections::HashSet;

fn event(key: &str, n: usize) -> Value {
    json!({"user_id": format!("u_{n}"), "event_type": "payment_failed", "event_id": key,
           "event_timestamp": "2025-10-31T19:30:00Z", "properties": {"n": n}})
}

async fn count_rows(url: &str) -> i64 {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let pool = herald_store::connect(url, 1).unwrap();
    let mut conn = herald_store::pool::get(&pool).await.unwrap();
    herald_store::schema::events::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_each_get_their_own_items_back() {
    // Arrange: 48 requests at once, each a batch of two with its own keys.
    let app = spawn_app().await;
    let bodies: Vec<Value> = (0..48)
        .map(|i| json!([event(&format!("r{i}-a"), i), event(&format!("r{i}-b"), i)]))
        .collect();

    // Act
    let answers = join_all(bodies.iter().map(|b| app.post("/api/v1/events", b.clone()))).await;

    // Assert: all accepted, 96 distinct ids, 96 rows, 96 route jobs.
    let mut ids = HashSet::new();
    for (status, resp) in &answers {
        assert_eq!(*status, 202, "{resp}");
        assert_eq!(resp["accepted"], 2, "{resp}");
        for id in resp["event_ids"].as_array().unwrap() {
            assert!(
                ids.insert(id.as_str().unwrap().to_string()),
                "id {id} answered twice"
            );
        }
    }
    assert_eq!(ids.len(), 96);
    assert_eq!(count_rows(&app.db.url).await, 96);
    assert_eq!(app.queue.depths().await.unwrap().default, 96);

    // Each request's slice is its own: sending one again names the same ids.
    let (status, again) = app.post("/api/v1/events", bodies[17].clone()).await;
    assert_eq!(status, 202);
    assert_eq!(again["duplicates"], 2);
    assert_eq!(again["event_ids"], answers[17].1["event_ids"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_sent_concurrently_is_one_event() {
    let app = spawn_app().await;
    let answers = join_all((0..32).map(|_| app.post("/api/v1/events", event("same-key", 1)))).await;
    let ids: HashSet<String> = answers
        .iter()
        .map(|(status, resp)| {
            assert_eq!(*status, 202, "{resp}");
            resp["event_ids"][0].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "every answer names the one event");
    let accepted: u64 = answers
        .iter()
        .map(|(_, r)| r["accepted"].as_u64().unwrap())
        .sum();
    assert_eq!(accepted, 1, "exactly one request stored it");
    assert_eq!(count_rows(&app.db.url).await, 1);
    assert_eq!(app.queue.depths().await.unwrap().default, 1);
}
