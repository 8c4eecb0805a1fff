//! Reads from a streaming replica (`DATABASE_READ_URL`): the reads that decide nothing
//! go to it, a person reads their own read marks however far behind it is, and its
//! lag is a metric. The replica's replay is paused to make it fall behind on demand.

use crate::fixtures::{self, insert, people, row};
use crate::helpers::{spawn_app_with_replica, TestApp};
use crate::metrics::{scrape, sum};
use diesel_async::SimpleAsyncConnection;
use serde_json::Value;
use std::time::Duration;

/// Pauses the replica's WAL replay; resumes it when dropped, even when the test fails,
/// so the replica shared by the run's tests does not stay behind.
struct PausedReplay {
    url: String,
}

impl PausedReplay {
    async fn start(read_url: &str) -> PausedReplay {
        replay(read_url, "pg_wal_replay_pause").await;
        PausedReplay {
            url: read_url.to_string(),
        }
    }
}

impl Drop for PausedReplay {
    fn drop(&mut self) {
        let url = self.url.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread
        // with a runtime of its own resumes the replay.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(replay(&url, "pg_wal_replay_resume")))
        })
        .join();
    }
}

async fn replay(read_url: &str, function: &str) {
    let pool = herald_store::connect(read_url, 1).expect("replica pool");
    let mut conn = herald_store::pool::get(&pool)
        .await
        .expect("replica connection");
    conn.batch_execute(&format!("SELECT {function}()"))
        .await
        .expect("replay control");
}

fn inbox_ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_string())
        .collect()
}

async fn inbox(app: &TestApp, user: &str) -> Value {
    let (status, page) = app
        .get(&format!("/api/v1/users/{user}/notifications"))
        .await;
    assert_eq!(status, 200, "{page}");
    page
}

async fn lag_bytes(app: &TestApp) -> f64 {
    let (_, text) = scrape(&app.client, &app.url("/metrics"), None).await;
    assert!(
        text.contains("herald_db_replica_lag_bytes "),
        "the replica lag gauge is exported"
    );
    sum(&text, "herald_db_replica_lag_bytes", &[])
}

#[tokio::test]
async fn reads_go_to_the_replica_and_a_person_reads_their_own_read_marks() {
    // Arrange: ann and bob each have one notification, replicated.
    let (app, read_url) = spawn_app_with_replica().await;
    people(&app, &["ann", "bob"]).await;
    let ev = fixtures::event(&app, "test_scenario.created", Some("ann")).await;
    let ids = insert(&app, &[row(ev, "ann", "A"), row(ev, "bob", "A")]).await;
    app.wait_for(
        "both inboxes on the replica",
        Duration::from_secs(30),
        || async {
            let (a, b) = (inbox(&app, "ann").await, inbox(&app, "bob").await);
            (inbox_ids(&a).len() == 1 && inbox_ids(&b).len() == 1).then_some(())
        },
    )
    .await;

    // Act: the replica stops replaying; bob gets a second notification and ann marks
    // hers read, both on the primary.
    let paused = PausedReplay::start(&read_url).await;
    let late = insert(&app, &[row(ev, "bob", "B")]).await;
    let (status, marked) = app
        .post(
            &format!("/api/v1/users/ann/notifications/{}/read", ids[0]),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{marked}");

    // Assert: bob's inbox comes from the stalled replica (no second item), ann's from
    // the primary (her mark shows), and the lag is exported.
    let bob = inbox(&app, "bob").await;
    assert_eq!(
        inbox_ids(&bob),
        [ids[1].to_string()],
        "bob reads the replica: {bob}"
    );
    let ann = inbox(&app, "ann").await;
    assert_eq!(ann["unread_count"], 0, "ann reads her own mark: {ann}");
    assert!(ann["items"][0]["read_at"].is_string(), "{ann}");
    app.wait_for(
        "a replica lag above zero",
        Duration::from_secs(15),
        || async { (lag_bytes(&app).await > 0.0).then_some(()) },
    )
    .await;

    // Once the replica replays again, bob's new notification shows.
    drop(paused);
    app.wait_for(
        "bob's second notification",
        Duration::from_secs(30),
        || async {
            inbox_ids(&inbox(&app, "bob").await)
                .contains(&late[0].to_string())
                .then_some(())
        },
    )
    .await;
}
