//! The metrics' queue sample: stream lengths, the group's pending entries and the
//! delayed set, zero for what does not exist yet. Needs the Redis of `make test`.

use herald_queue::testing::{lane, TestRedis};
use herald_queue::{Backlogs, Job, Queue, QueueName, StreamBacklog};
use std::time::Duration;

#[tokio::test]
async fn the_sample_counts_waiting_held_and_delayed_jobs() {
    let redis = TestRedis::connect();
    let (queue, backlogs) = (Queue::new(redis.clone()), Backlogs::new(redis.clone()));
    let empty = backlogs
        .sample()
        .await
        .expect("a sample without any stream");
    assert_eq!(empty.delayed, 0);
    assert!(empty
        .streams
        .iter()
        .all(|s| s.length == 0 && s.pending == 0));

    queue.ensure_groups().await.expect("groups");
    let job = || Job::route(uuid::Uuid::now_v7());
    queue
        .enqueue(&[
            (lane(QueueName::Default), job()),
            (lane(QueueName::Default), job()),
            (lane(QueueName::Default), job()),
            (lane(QueueName::Critical), job()),
        ])
        .await
        .expect("enqueued");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    let far = now_ms + 3_600_000;
    queue
        .schedule(&[(lane(QueueName::Default), job(), far)])
        .await
        .expect("scheduled");
    let read = queue
        .reader(lane(QueueName::Default).partition)
        .read("w", &[QueueName::Default], 2, Duration::from_millis(10))
        .await
        .expect("read");
    assert_eq!(read.len(), 2);

    let sample = backlogs.sample().await.expect("sample");
    assert_eq!(
        sample.streams,
        vec![
            StreamBacklog {
                queue: QueueName::Critical,
                length: 1,
                pending: 0
            },
            StreamBacklog {
                queue: QueueName::Default,
                length: 3,
                pending: 2
            },
        ]
    );
    assert_eq!(sample.delayed, 1);
}
