//! Receipts and delivery attempts racing for the same notification rows (issue 18).
//!
//! A provider can report `delivered` before the worker has recorded the attempt that
//! handed it the message, so the api's receipts UPDATE and the worker's batched
//! attempts UPDATE lock overlapping rows at the same moment. Both must take their row
//! locks in one order (by id), or Postgres aborts one of them with a deadlock. Each
//! iteration here runs one attempts batch and two receipt batches over the same rows,
//! each in its own shuffled order, started together; none may fail, and every row
//! must end `sent` with the receipts' times kept.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use herald_core::retry::AttemptOutcome;
use herald_store::notifications::{self, AttemptRecord, NewNotification};
use herald_store::people::{self, PersonPatch};
use herald_store::receipts::{self, Receipt, ReceiptKind};
use herald_store::schema::notifications as n;
use herald_store::testing::{insert_event, pending_notification, TestDb};
use herald_store::Pool;
use rand::seq::SliceRandom;
use std::sync::Arc;
use tokio::sync::Barrier;
use uuid::Uuid;

const ITERATIONS: usize = 100;
const PEOPLE: [&str; 4] = ["ann", "bob", "cy", "dee"];
/// Rows per person per iteration.
const PER_PERSON: usize = 8;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("test timestamp")
}

async fn add_event(pool: &Pool) -> Uuid {
    insert_event(pool, "broadcast", at("2026-03-10T12:00:00Z")).await
}

/// `PER_PERSON` pending push rows for each of [`PEOPLE`] from one new event.
async fn pending_rows(pool: &Pool) -> Vec<Uuid> {
    pending_rows_of(pool, &PEOPLE, PER_PERSON).await
}

/// `per_person` pending push rows for each of `people` from one new event.
async fn pending_rows_of(pool: &Pool, people: &[&str], per_person: usize) -> Vec<Uuid> {
    let event_id = add_event(pool).await;
    let rows: Vec<NewNotification> = people
        .iter()
        .flat_map(|person| {
            (0..per_person).map(move |k| NewNotification {
                due_at: at("2026-03-10T12:00:00Z"),
                ..pending_notification(event_id, Some(person), &format!("T{k}"))
            })
        })
        .collect();
    let mut conn = pool.get().await.expect("connection");
    notifications::insert_batch(&mut conn, &rows)
        .await
        .expect("rows inserted");
    rows.into_iter().map(|r| r.id).collect()
}

fn shuffled<T: Clone>(items: &[T]) -> Vec<T> {
    let mut items = items.to_vec();
    items.shuffle(&mut rand::rng());
    items
}

fn success(id: Uuid) -> AttemptRecord {
    AttemptRecord {
        notification_id: id,
        started_at: Utc::now(),
        duration_ms: 3,
        http_status: Some(200),
        error: None,
        outcome: AttemptOutcome::Success,
        next_due: None,
    }
}

fn receipt(id: Uuid, kind: ReceiptKind, when: &str) -> Receipt {
    Receipt {
        notification_id: id,
        kind,
        at: at(when),
    }
}

const DELIVERED_AT: &str = "2026-03-10T12:00:01Z";
const OPENED_AT: &str = "2026-03-10T12:00:02Z";

/// `(status, attempts, sent_at set, delivered_at, opened_at)` of each row of `ids`.
type Final = (
    String,
    i32,
    bool,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

async fn final_state(pool: &Pool, ids: &[Uuid]) -> Vec<(Uuid, Final)> {
    let mut conn = pool.get().await.expect("connection");
    type Row = (
        Uuid,
        String,
        i32,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    );
    let rows: Vec<Row> = n::table
        .filter(n::id.eq_any(ids))
        .order(n::id)
        .select((
            n::id,
            n::status,
            n::attempts,
            n::sent_at,
            n::delivered_at,
            n::opened_at,
        ))
        .load(&mut conn)
        .await
        .expect("rows");
    rows.into_iter()
        .map(|(id, status, attempts, sent, delivered, opened)| {
            (id, (status, attempts, sent.is_some(), delivered, opened))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receipts_and_attempts_on_the_same_rows_never_deadlock_and_both_count() {
    let db = TestDb::create().await.expect("test database");
    let pool = herald_store::connect(&db.url, 4).expect("pool");
    {
        let mut conn = pool.get().await.expect("connection");
        for person in PEOPLE {
            people::upsert(&mut conn, person, &PersonPatch::default())
                .await
                .expect("person");
        }
    }
    for iteration in 0..ITERATIONS {
        // Arrange: pending rows whose deliveries are in flight; every one gets a
        // `delivered` receipt, every other one an `opened` receipt too, in two
        // batches of their own.
        let ids = pending_rows(&pool).await;
        let attempts: Vec<AttemptRecord> = shuffled(&ids).into_iter().map(success).collect();
        let delivered: Vec<Receipt> = shuffled(&ids)
            .into_iter()
            .map(|id| receipt(id, ReceiptKind::Delivered, DELIVERED_AT))
            .collect();
        let opened_ids: Vec<Uuid> = ids.iter().step_by(2).copied().collect();
        let opened: Vec<Receipt> = shuffled(&opened_ids)
            .into_iter()
            .map(|id| receipt(id, ReceiptKind::Opened, OPENED_AT))
            .collect();

        // Act: the three batches start together, each on its own connection.
        let start = Arc::new(Barrier::new(3));
        let worker = {
            let (pool, start) = (pool.clone(), start.clone());
            tokio::spawn(async move {
                let mut conn = pool.get().await.expect("connection");
                start.wait().await;
                notifications::record_attempts(&mut conn, &attempts)
                    .await
                    .map_err(|e| format!("attempts: {e}"))
            })
        };
        let provider = |batch: Vec<Receipt>| {
            let (pool, start) = (pool.clone(), start.clone());
            tokio::spawn(async move {
                let mut conn = pool.get().await.expect("connection");
                start.wait().await;
                receipts::apply(&mut conn, &batch)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("receipts: {e}"))
            })
        };
        let (delivered, opened) = (provider(delivered), provider(opened));
        for task in [worker, delivered, opened] {
            let outcome = task.await.expect("the task ran to its end");
            assert_eq!(outcome, Ok(()), "iteration {iteration}");
        }

        // Assert: the attempt sent every row, and kept the receipts' times.
        for (id, state) in final_state(&pool, &ids).await {
            let opened = opened_ids.contains(&id);
            let expected: Final = (
                "sent".into(),
                1,
                true,
                Some(at(DELIVERED_AT)),
                opened.then(|| at(OPENED_AT)),
            );
            assert_eq!(state, expected, "iteration {iteration}, row {id}");
        }
    }
}

/// The plan Postgres chooses for `sql` with these parameter types and values, on a
/// table holding `rows` notifications (so the planner uses its indexes as in use).
async fn plan(pool: &Pool, sql: &str, types: &str, args: &str) -> String {
    let mut conn = pool.get().await.expect("connection");
    diesel::sql_query(format!("PREPARE probe({types}) AS {sql}"))
        .execute(&mut conn)
        .await
        .expect("prepared");
    #[derive(QueryableByName)]
    struct Line {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }
    let lines: Vec<Line> = diesel::sql_query(format!("EXPLAIN EXECUTE probe({args})"))
        .load(&mut conn)
        .await
        .expect("explained");
    diesel::sql_query("DEALLOCATE probe")
        .execute(&mut conn)
        .await
        .expect("deallocated");
    lines
        .into_iter()
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The UPDATE on `notifications` in `plan` and what is below it: it must be gated by
/// a one-time filter on the InitPlan that reads the `locked` CTE to its end (every
/// lock taken in id order before the UPDATE's scan yields a row).
fn assert_locks_first(plan: &str, what: &str) {
    let update = plan
        .find("Update on notifications")
        .unwrap_or_else(|| panic!("{what}: no UPDATE in\n{plan}"));
    let below = &plan[update..];
    let init = below
        .find("InitPlan")
        .unwrap_or_else(|| panic!("{what}: no InitPlan under the UPDATE in\n{plan}"));
    let filter = below
        .find("One-Time Filter")
        .unwrap_or_else(|| panic!("{what}: no one-time filter under the UPDATE in\n{plan}"));
    assert!(
        below[init..filter].contains("CTE Scan on locked"),
        "{what}: the InitPlan must read `locked`:\n{plan}"
    );
    // The filter's node holds the UPDATE's scans: the lines after the filter that are
    // indented at least as deep as it (a node's children align with its details).
    let line_start = below[..filter].rfind('\n').map_or(0, |i| i + 1);
    let filter_indent = filter - line_start;
    let indent = |line: &str| line.len() - line.trim_start().len();
    let scans_below = below[filter..]
        .lines()
        .skip(1)
        .take_while(|line| indent(line) >= filter_indent)
        .any(|line| line.contains("Scan") && line.contains("on notifications"));
    assert!(
        scans_below,
        "{what}: the one-time filter must sit above the UPDATE's scan:\n{plan}"
    );
}

#[tokio::test]
async fn every_batched_update_takes_its_locks_before_it_changes_a_row() {
    let db = TestDb::create().await.expect("test database");
    let pool = herald_store::connect(&db.url, 2).expect("pool");
    {
        let mut conn = pool.get().await.expect("connection");
        people::upsert(&mut conn, "ann", &PersonPatch::default())
            .await
            .expect("person");
    }
    for _ in 0..20 {
        pending_rows_of(&pool, &["ann"], 50).await;
    }
    diesel::sql_query("ANALYZE notifications")
        .execute(&mut pool.get().await.expect("connection"))
        .await
        .expect("analyzed");
    let ids = "'{01a235ff-7a94-7784-b15e-48a691c59e8e,01a235ff-7a94-7784-b15e-48a691c59e8f}'";
    for kind in ReceiptKind::ALL {
        let plan = plan(
            &pool,
            &receipts::statement(kind),
            "uuid[], timestamptz[], text[]",
            &format!("{ids}, '{{2026-03-10T12:00:00Z,2026-03-10T12:00:00Z}}', '{{sent}}'"),
        )
        .await;
        assert_locks_first(&plan, kind.as_str());
    }
    let attempts = notifications::record_attempts_sql().expect("the attempts SQL");
    let plan = plan(
        &pool,
        &attempts,
        "uuid[], text[], timestamptz[], text[], timestamptz[], int4[], int4[], text[], \
         timestamptz, timestamptz, timestamptz, timestamptz",
        &format!(
            "{ids}, '{{sent,sent}}', '{{NULL,NULL}}', '{{NULL,NULL}}', \
             '{{2026-03-10T12:00:00Z,2026-03-10T12:00:00Z}}', '{{1,1}}', '{{200,200}}', \
             '{{success,success}}', NULL, NULL, NULL, NULL"
        ),
    )
    .await;
    assert_locks_first(&plan, "attempts");
}
