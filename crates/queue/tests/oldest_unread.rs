//! The recovery sweep measures "overdue" from the oldest job no worker has read yet
//! (`Queue::oldest_unread_ms`), so a backlog is not mistaken for lost work. Needs the
//! Redis of `make test` (HERALD_TEST_REDIS_URL, default redis://127.0.0.1:6379).

use herald_queue::testing::lane;
use herald_queue::{Job, Queue, QueueName, Redis};
use std::time::Duration;

fn redis_url() -> String {
    std::env::var("HERALD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn the_oldest_unread_job_is_reported_until_it_is_read() {
    let prefix = herald_queue::testing::prefix();
    let queue = Queue::new(Redis::connect(&redis_url(), &prefix, Partitions::default()).unwrap());

    // No streams at all (Redis restarted empty): nothing unread.
    assert_eq!(queue.oldest_unread_ms().await.unwrap(), None);
    queue.ensure_groups().await.unwrap();
    assert_eq!(queue.oldest_unread_ms().await.unwrap(), None);

    let before = now_ms();
    let job = |_| (lane(QueueName::Default), Job::route(uuid::Uuid::now_v7()));
    queue
        .enqueue(&(0..2).map(job).collect::<Vec<_>>())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    queue
        .enqueue(&[(lane(QueueName::Critical), Job::route(uuid::Uuid::now_v7()))])
        .await
        .unwrap();
    let oldest = queue.oldest_unread_ms().await.unwrap().expect("3 unread");
    assert!(
        (before - 1000..=now_ms()).contains(&oldest),
        "{oldest} vs {before}"
    );

    // Reading (not acknowledging) moves the horizon past what was read: jobs read but
    // pending are the reclaimer's business, not the sweep's.
    let first = queue
        .reader(lane(QueueName::Default).partition)
        .read("c1", &[QueueName::Default], 1, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let after_one = queue.oldest_unread_ms().await.unwrap().expect("2 unread");
    assert!(after_one >= oldest);
    let rest = queue
        .reader(lane(QueueName::Default).partition)
        .read(
            "c1",
            &[QueueName::Critical, QueueName::Default],
            10,
            Duration::from_millis(10),
        )
        .await
        .unwrap();
    let rest_default = queue
        .reader(lane(QueueName::Default).partition)
        .read("c1", &[QueueName::Default], 10, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(rest.len() + rest_default.len(), 2);
    assert_eq!(queue.oldest_unread_ms().await.unwrap(), None);
    queue.purge().await.unwrap();
}
