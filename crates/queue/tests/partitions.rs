//! Partitioned work (issue 17): a person's jobs share one partition and are handed out
//! in the order they were enqueued; processes disagreeing on the number of partitions
//! refuse to start; and every queue operation works on a Redis Cluster, whose slots
//! refuse any script or pipeline spanning two partitions.
//!
//! Needs the Redis of `make test`; the cluster test needs the cluster `make test`
//! starts (`scripts/redis-cluster.sh`, `HERALD_TEST_REDIS_CLUSTER_URL`).

use herald_queue::testing::{prefix, redis_url, TestRedis};
use herald_queue::{
    Backlogs, Circuits, Job, Lane, Partitions, Queue, QueueError, QueueName, Redis,
};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// Each job names its person and its place in that person's sequence.
fn job_for(partitions: Partitions, person: &str, queue: QueueName) -> (Lane, Job) {
    let lane = Lane::new(partitions.of_person(person), queue);
    let job = Job::Deliver {
        notification_id: Uuid::now_v7(),
    };
    (lane, job)
}

/// Enqueues 40 people's jobs interleaved, in several batches, and reads every
/// partition: each person's jobs come out of their own partition, in enqueue order.
async fn a_persons_jobs_come_out_in_order(queue: &Queue) {
    queue.ensure_groups().await.expect("groups");
    let partitions = queue.partitions();
    let people: Vec<String> = (0..40).map(|i| format!("person_{i}")).collect();
    let mut sent: HashMap<String, Vec<Uuid>> = HashMap::new();
    for round in 0..5 {
        let batch: Vec<(Lane, Job)> = (0..people.len() * 2)
            .map(|i| &people[(i * 7 + round) % people.len()])
            .map(|p| {
                let (lane, job) = job_for(partitions, p, QueueName::Default);
                if let Job::Deliver { notification_id } = &job {
                    sent.entry(p.clone()).or_default().push(*notification_id);
                }
                (lane, job)
            })
            .collect();
        queue.enqueue(&batch).await.expect("enqueued");
    }
    let owner: HashMap<Uuid, String> = sent
        .iter()
        .flat_map(|(p, ids)| ids.iter().map(move |id| (*id, p.clone())))
        .collect();
    let mut got: HashMap<String, Vec<Uuid>> = HashMap::new();
    let mut partitions_used = std::collections::HashSet::new();
    let mut handled: HashMap<Lane, Vec<(String, Option<String>)>> = HashMap::new();
    let served = partitions.all();
    for mut reader in queue.readers(&served) {
        loop {
            let read = reader
                .read("w", &[QueueName::Default], 1000, Duration::from_millis(10))
                .await
                .expect("read");
            if read.is_empty() {
                break;
            }
            for r in read {
                let Some(Job::Deliver { notification_id }) = r.job else {
                    panic!("not a delivery: {r:?}");
                };
                let person = &owner[&notification_id];
                assert_eq!(r.lane.partition, partitions.of_person(person));
                assert!(reader.partitions().contains(&r.lane.partition));
                partitions_used.insert(r.lane.partition);
                got.entry(person.clone()).or_default().push(notification_id);
                handled
                    .entry(r.lane)
                    .or_default()
                    .push((r.entry_id.clone(), r.marker()));
            }
        }
    }
    for (lane, entries) in handled {
        queue.ack(lane, &entries).await.expect("acked");
    }
    assert_eq!(got, sent, "every person's jobs, each in enqueue order");
    assert!(partitions_used.len() > 8, "{partitions_used:?}");
}

#[tokio::test]
async fn a_persons_jobs_stay_in_order_within_their_partition() {
    let redis = TestRedis::connect();
    a_persons_jobs_come_out_in_order(&Queue::new((*redis).clone())).await;
}

/// On one Redis a worker reads all its partitions with one reader: critical jobs of
/// every partition first, then the rest, and each stream gives its share of the count.
#[tokio::test]
async fn one_reader_takes_every_partition_critical_first_on_one_redis() {
    let redis = TestRedis::connect();
    let queue = Queue::new((*redis).clone());
    queue.ensure_groups().await.expect("groups");
    let partitions = queue.partitions();
    let served = partitions.all();
    let mut readers = queue.readers(&served);
    assert_eq!(readers.len(), 1, "one reader for all 16 partitions");
    let reader = &mut readers[0];
    let people: Vec<String> = (0..24).map(|i| format!("person_{i}")).collect();
    let jobs = |queue_name| -> Vec<(Lane, Job)> {
        people
            .iter()
            .map(|p| job_for(partitions, p, queue_name))
            .collect()
    };
    queue
        .enqueue(&jobs(QueueName::Default))
        .await
        .expect("default");
    queue
        .enqueue(&jobs(QueueName::Critical))
        .await
        .expect("critical");
    let block = Duration::from_millis(10);
    let mut lanes = std::collections::HashSet::new();
    // Every critical job at once, then every default one.
    for queue_name in [QueueName::Critical, QueueName::Default] {
        let read = reader
            .read("w", &QueueName::ALL, 1000, block)
            .await
            .expect("read");
        assert_eq!(read.len(), people.len(), "{queue_name:?}");
        assert!(read.iter().all(|r| r.lane.queue == queue_name));
        lanes.extend(read.iter().map(|r| r.lane));
    }
    assert!(lanes.len() > 16, "jobs of many partitions: {}", lanes.len());

    // One person's 40 jobs: a read of 32 over 16 partitions takes 2 from that stream.
    let busy: Vec<(Lane, Job)> = (0..40)
        .map(|_| job_for(partitions, "busy", QueueName::Default))
        .collect();
    queue.enqueue(&busy).await.expect("busy");
    let read = reader
        .read("w", &QueueName::ALL, 32, block)
        .await
        .expect("read");
    assert_eq!(read.len(), 2);
}

#[tokio::test]
async fn processes_configured_with_another_number_of_partitions_refuse_to_start() {
    let redis = TestRedis::connect();
    let sixteen = Queue::new((*redis).clone());
    sixteen
        .claim_layout()
        .await
        .expect("the first process records 16");
    sixteen.claim_layout().await.expect("16 again is fine");
    let eight = Redis::connect(&redis_url(), redis.prefix(), Partitions::new(8).expect("8"))
        .expect("lazy connect");
    match Queue::new(eight).claim_layout().await {
        Err(QueueError::Layout(message)) => assert!(
            message.contains("HERALD_PARTITIONS is 8") && message.contains("HERALD_PARTITIONS=16"),
            "{message}"
        ),
        other => panic!("8 partitions accepted beside 16: {other:?}"),
    }
}

/// The cluster `make test` starts; required there (it sets `HERALD_TEST_RUN`), so that
/// a run without it fails rather than passing unchecked.
fn cluster_url() -> Option<String> {
    match std::env::var("HERALD_TEST_REDIS_CLUSTER_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("HERALD_TEST_RUN").is_err(),
                "make test runs the cluster tests: HERALD_TEST_REDIS_CLUSTER_URL is missing"
            );
            eprintln!("no HERALD_TEST_REDIS_CLUSTER_URL: cluster test skipped");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queue_operation_works_on_a_redis_cluster() {
    let Some(url) = cluster_url() else { return };
    let prefix = prefix();
    let redis = Redis::connect(&url, &prefix, Partitions::default()).expect("cluster URL");
    assert!(redis.is_cluster());
    let queue = Queue::new(redis.clone());
    queue.ping().await.expect("every master answers");
    queue.claim_layout().await.expect("layout");

    // Enqueue across all partitions, read, acknowledge: nothing crosses a slot.
    a_persons_jobs_come_out_in_order(&queue).await;

    let partitions = queue.partitions();
    let jobs: Vec<(Lane, Job)> = (0..32)
        .map(|i| job_for(partitions, &format!("p{i}"), QueueName::Critical))
        .collect();
    assert!(queue
        .enqueue_absent(&jobs)
        .await
        .expect("absent")
        .iter()
        .all(|a| *a));
    assert!(queue
        .enqueue_absent(&jobs)
        .await
        .expect("again")
        .iter()
        .all(|a| !*a));
    let due: Vec<(Lane, Job, i64)> = (0..32)
        .map(|i| {
            let (lane, job) = job_for(partitions, &format!("d{i}"), QueueName::Default);
            (lane, job, 0)
        })
        .collect();
    queue.schedule(&due).await.expect("scheduled");
    let mut promoted = 0;
    for p in partitions.all() {
        promoted += queue.promote_due(p, 1, 100).await.expect("promoted");
    }
    assert_eq!(promoted, 32);
    let depths = queue.depths().await.expect("depths");
    assert_eq!(
        (depths.critical, depths.default, depths.delayed),
        (32, 32, 0)
    );
    assert!(queue.oldest_unread_ms().await.expect("oldest").is_some());
    let backlog = Backlogs::new(redis.clone()).sample().await.expect("sample");
    assert_eq!(backlog.streams.iter().map(|s| s.length).sum::<u64>(), 64);

    // Read, hold and acknowledge one job per partition; reclaim another worker's.
    for p in partitions.all() {
        // Critical first: a second read takes the default queue's jobs.
        let mut reader = queue.reader(p);
        let mut read = Vec::new();
        for _ in 0..2 {
            read.extend(
                reader
                    .read("w2", &QueueName::ALL, 1000, Duration::from_millis(10))
                    .await
                    .expect("read"),
            );
        }
        let Some((first, rest)) = read.split_first() else {
            continue;
        };
        assert!(queue
            .keep_claim(first.lane, "w2", &first.entry_id)
            .await
            .expect("kept"));
        queue
            .record_failure(first.lane, &first.entry_id, "boom", Duration::from_secs(5))
            .await
            .expect("failure");
        assert_eq!(
            queue
                .last_failure(first.lane, &first.entry_id)
                .await
                .expect("last")
                .as_deref(),
            Some("boom")
        );
        let taken = queue
            .reclaim("w3", p, Duration::ZERO, 10)
            .await
            .expect("reclaimed");
        assert!(taken.iter().any(|t| t.entry_id == first.entry_id));
        let mut by_lane: HashMap<Lane, Vec<(String, Option<String>)>> = HashMap::new();
        for r in std::iter::once(first).chain(rest) {
            by_lane
                .entry(r.lane)
                .or_default()
                .push((r.entry_id.clone(), r.marker()));
        }
        for (lane, entries) in by_lane {
            queue.ack(lane, &entries).await.expect("acked");
        }
    }
    let depths = queue.depths().await.expect("depths");
    assert_eq!((depths.critical, depths.default), (0, 0));

    // A circuit's two keys share the host's slot.
    let circuits = Circuits::new(redis.clone());
    let policy = herald_core::circuit::CircuitPolicy::default();
    circuits
        .record_failure("example.com", "n1", &policy, 1)
        .await
        .expect("circuit failure");
    assert_eq!(
        circuits.state("example.com").await.expect("state").failures,
        1
    );

    queue.purge().await.expect("purged");
    assert_eq!(queue.depths().await.expect("depths").default, 0);
}
