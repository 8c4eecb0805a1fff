//! No job lives forever (issue 15), against the real Redis and Postgres:
//!
//! * a job that fails every time it runs is dead-lettered after `max_deliveries`
//!   runs: its event ends `failed_routing`, a dead letter says why, and nothing of it
//!   is left on the streams;
//! * the recovery sweep never adds a second copy of a job already on a stream, read
//!   and unacknowledged or not;
//! * a running job keeps its claim: another consumer's reclaim does not take it.

use diesel::sql_types::BigInt;
use diesel::QueryableByName;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use herald_core::targets::AllowedTargets;
use herald_queue::{Job, Lane, Partitions, Queue, QueueName};
use herald_store::testing::{insert_event, TestDb};
use herald_worker::{claims, maintenance, Context, Settings};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const VISIBILITY: Duration = Duration::from_millis(400);
const MAX_DELIVERIES: u32 = 2;

fn redis_url() -> String {
    std::env::var("HERALD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn settings(db: &TestDb, prefix: &str) -> Settings {
    Settings {
        database_url: db.url.clone(),
        redis_url: redis_url(),
        redis_prefix: prefix.to_string(),
        config_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../../config").into(),
        queues: QueueName::ALL.to_vec(),
        partitions: Partitions::default(),
        served: Partitions::default().all(),
        concurrency: 4,
        visibility_timeout: VISIBILITY,
        sweep_interval: Duration::from_millis(300),
        max_deliveries: MAX_DELIVERIES,
        allowed_targets: AllowedTargets::parse("127.0.0.0/8").unwrap(),
        resolve_overrides: Vec::new(),
        config_env: Vec::new(),
        webhook_secret_overlap: Duration::from_secs(24 * 3600),
        metrics_bind: None,
        metrics_key: None,
    }
}

/// Where the api and the sweep put an event's route job.
fn route_lane(event_id: uuid::Uuid) -> Lane {
    herald_queue::testing::route_lane(event_id, QueueName::Default)
}

/// Any one lane, for a job no sweep looks at.
fn lane() -> Lane {
    Lane::new(Partitions::default().all()[0], QueueName::Default)
}

async fn stream_len(queue: &Queue) -> u64 {
    let d = queue.depths().await.unwrap();
    d.critical + d.default
}

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Routing the event fails every time: its `routed` update raises, after counting the
/// try in a sequence (which no rollback takes back).
const POISON: &str = "
CREATE SEQUENCE poison_runs;
CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM nextval('poison_runs');
  RAISE EXCEPTION 'poisoned event';
END $$;
CREATE TRIGGER poison BEFORE UPDATE ON events FOR EACH ROW
  WHEN (NEW.status = 'routed') EXECUTE FUNCTION poison();
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_always_fails_is_dead_lettered_after_max_deliveries() {
    let db = TestDb::create().await.unwrap();
    let prefix = herald_queue::testing::prefix();
    let pool = herald_store::connect(&db.url, 2).unwrap();
    let mut conn = pool.get().await.unwrap();
    conn.batch_execute(POISON).await.unwrap();
    let event_id = insert_event(&pool, "poison_test", chrono::Utc::now()).await;
    let ctx = Context::build(settings(&db, &prefix)).await.unwrap();
    ctx.queue.ensure_groups().await.unwrap();
    ctx.queue
        .enqueue(&[(route_lane(event_id), Job::route(event_id))])
        .await
        .unwrap();

    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(herald_worker::run(settings(&db, &prefix), shutdown.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        let event = herald_store::events::find(&mut conn, event_id)
            .await
            .unwrap();
        if event.status != "received" || tokio::time::Instant::now() > deadline {
            break event.status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Some more reclaim and sweep passes: nothing may run it again.
    tokio::time::sleep(VISIBILITY * 4).await;
    shutdown.cancel();
    worker.await.unwrap().unwrap();

    assert_eq!(status, "failed_routing");
    let runs: Value = diesel::sql_query("SELECT last_value AS n FROM poison_runs")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        runs.n,
        i64::from(MAX_DELIVERIES),
        "ran max_deliveries times"
    );
    let letters = herald_store::dead_letters::list(&mut conn, None, 10)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(
        (letter.kind.as_str(), letter.event_id, letter.deliveries),
        ("route", Some(event_id), MAX_DELIVERIES as i32)
    );
    assert!(
        letter
            .reason
            .starts_with("dead-lettered after 2 deliveries: ")
            && letter.reason.contains("poisoned event"),
        "{}",
        letter.reason
    );
    assert_eq!(
        stream_len(&ctx.queue).await,
        0,
        "acknowledged off the stream"
    );
    // Its "queued" counter went with it: a new copy would be enqueued again.
    let again = ctx
        .queue
        .enqueue_absent(&[(route_lane(event_id), Job::route(event_id))])
        .await
        .unwrap();
    assert_eq!(again, vec![true]);
    ctx.queue.purge().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_adds_no_copy_of_a_job_read_and_not_acknowledged() {
    let db = TestDb::create().await.unwrap();
    let prefix = herald_queue::testing::prefix();
    let pool = herald_store::connect(&db.url, 2).unwrap();
    let event_id = insert_event(&pool, "sweep_test", chrono::Utc::now()).await;
    let ctx = Context::build(settings(&db, &prefix)).await.unwrap();
    ctx.queue.ensure_groups().await.unwrap();
    ctx.queue
        .enqueue(&[(route_lane(event_id), Job::route(event_id))])
        .await
        .unwrap();
    // Read by a worker that keeps failing it (or died): pending, past the timeout.
    let read = ctx
        .queue
        .reader(route_lane(event_id).partition)
        .read("failing-worker", &[QueueName::Default], 10, VISIBILITY)
        .await
        .unwrap();
    assert_eq!(read.len(), 1);
    tokio::time::sleep(VISIBILITY * 2).await;

    for _ in 0..3 {
        assert_eq!(maintenance::sweep(&ctx).await.unwrap(), (0, 0));
    }
    assert_eq!(stream_len(&ctx.queue).await, 1, "no second copy");

    // Acknowledged while the event is still `received` (a copy lost after all): the
    // next pass enqueues it again, once.
    let entry = &read[0];
    ctx.queue
        .ack(entry.lane, &[(entry.entry_id.clone(), entry.marker())])
        .await
        .unwrap();
    assert_eq!(maintenance::sweep(&ctx).await.unwrap(), (1, 0));
    assert_eq!(maintenance::sweep(&ctx).await.unwrap(), (0, 0));
    assert_eq!(stream_len(&ctx.queue).await, 1);
    ctx.queue.purge().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_keeps_its_claim() {
    let redis = herald_queue::testing::TestRedis::connect();
    let queue = Queue::new((*redis).clone());
    queue.ensure_groups().await.unwrap();
    let job = Job::route(uuid::Uuid::now_v7());
    queue.enqueue(&[(lane(), job)]).await.unwrap();
    let read = queue
        .reader(lane().partition)
        .read("slow-worker", &[QueueName::Default], 10, VISIBILITY)
        .await
        .unwrap();
    assert_eq!(read.len(), 1);
    let entry = read[0].entry_id.clone();
    let min_idle = Duration::from_millis(300);

    let keeper = claims::keep(
        queue.clone(),
        lane(),
        "slow-worker".into(),
        entry.clone(),
        claims::interval(min_idle),
    );
    for _ in 0..5 {
        tokio::time::sleep(min_idle).await;
        let taken = queue
            .reclaim("other-worker", lane().partition, min_idle, 10)
            .await
            .unwrap();
        assert!(taken.is_empty(), "taken over while running: {taken:?}");
    }

    // The job ended without an acknowledgement (its worker died): now it is taken over.
    drop(keeper);
    tokio::time::sleep(min_idle + Duration::from_millis(100)).await;
    let taken = queue
        .reclaim("other-worker", lane().partition, min_idle, 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].entry_id, entry);
    assert_eq!(
        taken[0].deliveries, 2,
        "keeping the claim counted no delivery"
    );
    // The old holder's keeper may not take it back.
    let kept = queue
        .keep_claim(lane(), "slow-worker", &entry)
        .await
        .unwrap();
    assert!(!kept);
    assert!(queue
        .keep_claim(lane(), "other-worker", &entry)
        .await
        .unwrap());
}
