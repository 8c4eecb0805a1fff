//! A worker killed with SIGKILL while deliveries are in flight loses nothing: another
//! worker reclaims its unacknowledged jobs after the visibility timeout, and every
//! notification ends in a final state. Receivers may see a delivery twice (at least
//! once), but never more often than the jobs the dead worker held.

use herald_core::alert::{parse_alert, AlertLabels};
use herald_core::status::NotificationStatus;
use herald_queue::testing::route_lane;
use herald_queue::{Job, Partitions, Queue, QueueName, Redis};
use herald_store::people::{self, PersonPatch};
use herald_store::testing::TestDb;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const MEMBERS: usize = 40;
const CONCURRENCY: usize = 8;

fn redis_url() -> String {
    std::env::var("HERALD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn start_worker(db: &TestDb, prefix: &str, provider: &str) -> Child {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config");
    Command::new(env!("CARGO_BIN_EXE_herald-worker"))
        .args([
            "--queues",
            "critical,default",
            "--concurrency",
            &CONCURRENCY.to_string(),
        ])
        .args(["--visibility-timeout", "11s", "--sweep-interval", "1s"])
        .env("DATABASE_URL", &db.url)
        .env("REDIS_URL", redis_url())
        .env("HERALD_REDIS_PREFIX", prefix)
        .env("HERALD_CONFIG_DIR", config)
        .env("HERALD_PROVIDER_URL", provider)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("worker binary starts")
}

/// A shop with `MEMBERS` people and one theft alert routed to them.
async fn arrange(db: &TestDb, queue: &Queue) -> uuid::Uuid {
    let pool = herald_store::connect(&db.url, 2).unwrap();
    let mut conn = herald_store::pool::get(&pool).await.unwrap();
    people::create_topic(&mut conn, "Carrefour").await.unwrap();
    for i in 0..MEMBERS {
        let patch = PersonPatch {
            topics: Some(vec!["Carrefour".into()]),
            ..Default::default()
        };
        people::upsert(&mut conn, &format!("member_{i:02}"), &patch)
            .await
            .unwrap();
    }
    let body = serde_json::json!({"alert_uuid": uuid::Uuid::new_v4(), "location": "Carrefour",
        "label": "theft", "url": "https://m/x.mp4", "time_spotted": 1742470260.0});
    let event = parse_alert(&body, &AlertLabels::default(), chrono::Utc::now())
        .unwrap()
        .into_event();
    let stored = herald_store::events::insert_batch(&mut conn, &[event])
        .await
        .unwrap();
    queue
        .enqueue(&[(
            route_lane(stored[0].id, QueueName::Critical),
            Job::route(stored[0].id),
        )])
        .await
        .unwrap();
    stored[0].id
}

async fn statuses(db: &TestDb) -> HashMap<String, usize> {
    let pool = herald_store::connect(&db.url, 1).unwrap();
    let mut conn = herald_store::pool::get(&pool).await.unwrap();
    let filter = herald_store::notifications::ListFilter {
        limit: 1000,
        ..Default::default()
    };
    let mut counts = HashMap::new();
    for n in herald_store::notifications::list(&mut conn, &filter)
        .await
        .unwrap()
    {
        *counts.entry(n.status).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_delivery_leaves_nothing_stuck() {
    // Arrange: a slow provider, so deliveries are in flight when the kill lands.
    let db = TestDb::create().await.unwrap();
    let prefix = herald_queue::testing::prefix();
    let queue = Queue::new(Redis::connect(&redis_url(), &prefix, Partitions::default()).unwrap());
    queue.ensure_groups().await.unwrap();
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(700)))
        .mount(&provider)
        .await;
    arrange(&db, &queue).await;

    // Act: the first worker starts delivering and is killed with SIGKILL.
    let mut first = start_worker(&db, &prefix, &provider.uri());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while provider.received_requests().await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().expect("SIGKILL");
    first.wait().unwrap();
    let in_flight_at_kill = provider.received_requests().await.unwrap().len();
    let mut second = start_worker(&db, &prefix, &provider.uri());

    // Assert: every notification reaches a final state (sent), none stuck.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let counts = statuses(&db).await;
        if counts.get(NotificationStatus::Sent.as_str()) == Some(&MEMBERS) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "stuck: {counts:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let received = provider.received_requests().await.unwrap();
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for r in &received {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        *per_id
            .entry(body["notification_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(per_id.len(), MEMBERS, "every member was delivered to");
    let duplicates = received.len() - MEMBERS;
    assert!(
        duplicates <= in_flight_at_kill.max(CONCURRENCY),
        "{duplicates} duplicates, more than the {CONCURRENCY} jobs the dead worker could hold"
    );

    // SIGTERM drains and exits cleanly.
    let pid = second.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let exit = tokio::task::spawn_blocking(move || second.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "worker exit after SIGTERM: {exit:?}");
    queue.purge().await.unwrap();
}
