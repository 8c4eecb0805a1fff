//! Every way onto a stream counts the job in its "queued" counter and every first
//! acknowledgement takes it back, so `Queue::enqueue_absent` (the recovery sweep's way
//! in) adds no copy of a job while one is on a stream. Needs the Redis of `make test`.

use herald_queue::testing::{lane, TestRedis};
use herald_queue::{Job, Queue, QueueName};
use std::time::Duration;
use uuid::Uuid;

fn absent(job: &Job) -> [(herald_queue::Lane, Job); 1] {
    [(lane(QueueName::Default), job.clone())]
}

#[tokio::test]
async fn a_job_counts_as_queued_from_enqueue_or_promotion_until_its_copies_are_acknowledged() {
    let redis = TestRedis::connect();
    let queue = Queue::new((*redis).clone());
    queue.ensure_groups().await.unwrap();

    // Two copies of one delivery: one enqueued, one promoted from the delayed set.
    let job = Job::Deliver {
        notification_id: Uuid::now_v7(),
    };
    queue.enqueue(&absent(&job)).await.unwrap();
    queue
        .schedule(&[(lane(QueueName::Default), job.clone(), 0)])
        .await
        .unwrap();
    assert_eq!(
        queue
            .promote_due(lane(QueueName::Default).partition, 1, 10)
            .await
            .unwrap(),
        1
    );
    let read = queue
        .reader(lane(QueueName::Default).partition)
        .read("w", &[QueueName::Default], 10, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(read.len(), 2);
    assert!(read.iter().all(|r| r.deliveries == 1));
    assert_eq!(queue.enqueue_absent(&absent(&job)).await.unwrap(), [false]);

    // The first copy acknowledged, twice (two workers ran it): one copy is left.
    let first = [(read[0].entry_id.clone(), read[0].marker())];
    queue.ack(lane(QueueName::Default), &first).await.unwrap();
    queue.ack(lane(QueueName::Default), &first).await.unwrap();
    assert_eq!(queue.enqueue_absent(&absent(&job)).await.unwrap(), [false]);

    let second = [(read[1].entry_id.clone(), read[1].marker())];
    queue.ack(lane(QueueName::Default), &second).await.unwrap();
    let other = Job::route(Uuid::now_v7());
    let both = [absent(&job)[0].clone(), absent(&other)[0].clone()];
    assert_eq!(queue.enqueue_absent(&both).await.unwrap(), [true, true]);
    assert_eq!(queue.enqueue_absent(&both).await.unwrap(), [false, false]);
    assert_eq!(queue.depths().await.unwrap().default, 2);
}

/// One acknowledgement script covers jobs of several partitions and priorities: each
/// entry leaves its stream and its job's counter, whatever its lane.
#[tokio::test]
async fn one_acknowledgement_covers_jobs_of_several_lanes() {
    let redis = TestRedis::connect();
    let queue = Queue::new((*redis).clone());
    queue.ensure_groups().await.unwrap();
    let partitions = queue.partitions();
    let jobs: Vec<(herald_queue::Lane, Job)> = (0..12)
        .map(|i| {
            let q = if i % 2 == 0 {
                QueueName::Critical
            } else {
                QueueName::Default
            };
            let lane = herald_queue::Lane::new(partitions.of_person(&format!("p{i}")), q);
            let job = Job::Deliver {
                notification_id: Uuid::now_v7(),
            };
            (lane, job)
        })
        .collect();
    queue.enqueue(&jobs).await.unwrap();
    let mut read = Vec::new();
    for mut reader in queue.readers(&partitions.all()) {
        for _ in 0..2 {
            read.extend(
                reader
                    .read("w", &QueueName::ALL, 100, Duration::from_millis(10))
                    .await
                    .unwrap(),
            );
        }
    }
    assert_eq!(read.len(), jobs.len());
    let mut by_lane: std::collections::HashMap<herald_queue::Lane, Vec<herald_queue::Handled>> =
        std::collections::HashMap::new();
    for r in &read {
        by_lane
            .entry(r.lane)
            .or_default()
            .push((r.entry_id.clone(), r.marker()));
    }
    assert!(by_lane.len() > 4, "several lanes: {}", by_lane.len());
    let lanes: Vec<herald_queue::LaneAcks<'_>> = by_lane
        .iter()
        .map(|(lane, entries)| (*lane, entries.as_slice()))
        .collect();
    queue.ack_lanes(&lanes).await.unwrap();
    let depths = queue.depths().await.unwrap();
    assert_eq!(
        (depths.critical, depths.default),
        (0, 0),
        "every entry deleted"
    );
    let again = queue.enqueue_absent(&jobs).await.unwrap();
    assert!(
        again.iter().all(|enqueued| *enqueued),
        "no counter left: {again:?}"
    );
}
