//! The recovery sweep re-enqueues lost work, and only lost work (issue 6):
//!
//! * jobs merely waiting in a backlog are not copied, however long they wait (the sweep
//!   measures "overdue" from the oldest unread job, not from now);
//! * after Redis lost everything, each lost item is enqueued once, not once per pass
//!   while its copy waits behind others (every enqueue counts the job as queued).
//!
//! Without either, a backlog longer than the visibility timeout fed itself: every pass
//! added up to 1,000 copies of what was already queued (seen in `make chaos`).

use herald_core::event::parse_event;
use herald_core::targets::AllowedTargets;
use herald_queue::testing::{read_all, route_lane};
use herald_queue::{Job, Queue, QueueName};
use herald_store::testing::TestDb;
use herald_worker::{maintenance, Context, Settings};
use std::time::Duration;

const EVENTS: usize = 5;
const VISIBILITY: Duration = Duration::from_millis(800);

fn redis_url() -> String {
    std::env::var("HERALD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn context(db: &TestDb, prefix: &str) -> Context {
    Context::build(Settings {
        database_url: db.url.clone(),
        redis_url: redis_url(),
        redis_prefix: prefix.to_string(),
        config_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../../config").into(),
        queues: QueueName::ALL.to_vec(),
        partitions: Default::default(),
        served: herald_queue::Partitions::default().all(),
        concurrency: 4,
        visibility_timeout: VISIBILITY,
        sweep_interval: Duration::from_secs(1),
        max_deliveries: 5,
        allowed_targets: AllowedTargets::parse("127.0.0.0/8").unwrap(),
        resolve_overrides: Vec::new(),
        config_env: Vec::new(),
        webhook_secret_overlap: Duration::from_secs(24 * 3600),
        metrics_bind: None,
        metrics_key: None,
    })
    .await
    .expect("worker context")
}

async fn stream_len(queue: &Queue) -> u64 {
    let d = queue.depths().await.unwrap();
    d.critical + d.default
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_copies_neither_a_backlog_nor_its_own_copies() {
    let db = TestDb::create().await.unwrap();
    let prefix = herald_queue::testing::prefix();
    let ctx = context(&db, &prefix).await;
    ctx.queue.ensure_groups().await.unwrap();

    // Arrange: events committed and enqueued as the api does, then left unread for
    // longer than the visibility timeout (a backlog: no worker is running).
    let pool = herald_store::connect(&db.url, 2).unwrap();
    let mut conn = herald_store::pool::get(&pool).await.unwrap();
    let now = chrono::Utc::now();
    let batch: Vec<_> = (0..EVENTS)
        .map(|i| {
            let item = serde_json::json!({"event_type": "sweep_test", "event_timestamp": now,
                "event_id": format!("sweep-{i}")});
            parse_event(&item, now).unwrap()
        })
        .collect();
    let stored = herald_store::events::insert_batch(&mut conn, &batch)
        .await
        .unwrap();
    let jobs: Vec<_> = stored
        .iter()
        .map(|s| (route_lane(s.id, QueueName::Default), Job::route(s.id)))
        .collect();
    ctx.queue.enqueue(&jobs).await.unwrap();
    tokio::time::sleep(VISIBILITY * 2).await;

    // Act + assert: queued work is late, not lost.
    assert_eq!(maintenance::sweep(&ctx).await.unwrap(), (0, 0));
    assert_eq!(stream_len(&ctx.queue).await, EVENTS as u64);

    // Redis restarted empty: every lost event is enqueued again, once.
    ctx.queue.purge().await.unwrap();
    ctx.queue.ensure_groups().await.unwrap();
    assert_eq!(maintenance::sweep(&ctx).await.unwrap(), (EVENTS, 0));
    tokio::time::sleep(VISIBILITY * 2).await;
    assert_eq!(maintenance::sweep(&ctx).await.unwrap(), (0, 0));
    assert_eq!(stream_len(&ctx.queue).await, EVENTS as u64);

    // Once read (by a worker that then died), the copies no longer hold the horizon
    // back, and their queued counters keep the sweep from copying them again: the
    // reclaimer's job.
    let read = read_all(
        &ctx.queue,
        "dead-worker",
        &[QueueName::Default],
        100,
        Duration::from_millis(10),
    )
    .await
    .unwrap();
    assert_eq!(read.len(), EVENTS);
    assert_eq!(maintenance::sweep(&ctx).await.unwrap(), (0, 0));
    ctx.queue.purge().await.unwrap();
}
