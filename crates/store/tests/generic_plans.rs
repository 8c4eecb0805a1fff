//! The statements a [`Plans::Once`] session runs are planned once, on whatever the
//! tables hold when the session first runs them, and that plan is kept as they grow.
//! So each such statement must read `events` by key, whether it was planned on a new
//! database, on one whose partitions were analysed while empty (a new day's partition,
//! once something ran `ANALYZE`), or on a grown one: the worker's event loads, its
//! `routed` marks and its notifications' insert.

use chrono::Utc;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use herald_core::event::NewEvent;
use herald_store::events;
use herald_store::notifications;
use herald_store::people::{self, PersonPatch};
use herald_store::pool::{connect_for_batches, get, Commits, Plans};
use herald_store::testing::{new_event, pending_notification, TestDb};
use uuid::Uuid;

/// A statement of a `Plans::Once` session: its SQL, its parameters' types, and
/// arguments for one row received now.
struct Probe {
    name: &'static str,
    sql: String,
    types: &'static str,
    args: String,
}

/// A window of two hours around now, as the worker gives it.
const WINDOW: &str = "now() - interval '1 hour', now() + interval '1 hour'";

fn probes() -> anyhow::Result<Vec<Probe>> {
    let id = Uuid::now_v7();
    Ok(vec![
        Probe {
            name: "the events load",
            sql: events::find_many_sql()?,
            types: "uuid[], timestamptz, timestamptz",
            args: format!("'{{{id}}}', {WINDOW}"),
        },
        Probe {
            name: "the routed marks",
            sql: events::mark_routed_sql()?,
            types: "uuid[], timestamptz, timestamptz",
            args: format!("'{{{id}}}', {WINDOW}"),
        },
        Probe {
            name: "the notifications' insert",
            sql: notifications::insert_sql()?,
            types: "uuid[], uuid[], text[], text[], text[], text[], text[], text[], bool[], \
                    text[], text[], timestamptz[], timestamptz[], uuid[], text[], \
                    timestamptz, timestamptz",
            args: format!(
                "'{{{}}}', '{{{id}}}', '{{ann}}', '{{t}}', '{{webhook}}', '{{pending}}', \
                 '{{NULL}}', '{{standard}}', '{{f}}', '{{NULL}}', '{{hello}}', \
                 '{{2026-12-04T00:00:00Z}}', '{{NULL}}', '{{NULL}}', '{{NULL}}', {WINDOW}",
                Uuid::now_v7()
            ),
        },
    ])
}

/// The generic plan a new `Plans::Once` session makes of `probe` (for a statement
/// that writes, `EXPLAIN` alone: nothing runs).
async fn generic_plan(db: &TestDb, probe: &Probe) -> anyhow::Result<String> {
    #[derive(QueryableByName)]
    struct Line {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }
    let once = connect_for_batches(&db.url, 1, Commits::Lazy, Plans::Once)?;
    let mut conn = get(&once).await?;
    let (sql, types, args) = (&probe.sql, probe.types, &probe.args);
    diesel::sql_query(format!("PREPARE probe({types}) AS {sql}"))
        .execute(&mut conn)
        .await?;
    let lines: Vec<Line> = diesel::sql_query(format!("EXPLAIN EXECUTE probe({args})"))
        .load(&mut conn)
        .await?;
    let plan = lines.into_iter().map(|l| l.line).collect::<Vec<_>>();
    Ok(plan.join("\n"))
}

/// Every probe reads `events` through a primary key, and scans nothing whole.
async fn assert_reads_by_key(db: &TestDb, state: &str) -> anyhow::Result<()> {
    for probe in probes()? {
        let plan = generic_plan(db, &probe).await?;
        let name = probe.name;
        assert!(
            !plan.contains("Seq Scan"),
            "{state}: {name} scans a table:\n{plan}"
        );
        assert!(
            plan.lines()
                .any(|l| l.contains("Index") && l.contains("_pkey on events_")),
            "{state}: {name} does not find events by key:\n{plan}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn statements_planned_once_read_events_by_key_on_a_new_an_analysed_empty_and_a_grown_database(
) -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    assert_reads_by_key(&db, "a new database").await?;

    let plain = herald_store::connect(&db.url, 1)?;
    let mut conn = get(&plain).await?;
    diesel::sql_query("ANALYZE").execute(&mut conn).await?;
    assert_reads_by_key(&db, "analysed while empty").await?;

    for _ in 0..10 {
        let batch: Vec<NewEvent> = (0..500)
            .map(|_| new_event("broadcast", Utc::now()))
            .collect();
        events::insert_batch(&mut conn, &batch).await?;
    }
    diesel::sql_query("ANALYZE").execute(&mut conn).await?;
    assert_reads_by_key(&db, "5,000 events").await?;
    Ok(())
}

/// The foreign key to `users` is still checked in a session that plans once.
#[tokio::test]
async fn a_session_that_plans_once_still_refuses_a_row_for_a_person_who_does_not_exist(
) -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let once = connect_for_batches(&db.url, 1, Commits::Durable, Plans::Once)?;
    let mut conn = get(&once).await?;
    people::upsert(&mut conn, "ann", &PersonPatch::default()).await?;
    let event_id =
        events::insert_batch(&mut conn, &[new_event("broadcast", Utc::now())]).await?[0].id;
    // Several runs: the check runs from the session's kept plan, not only its first.
    for k in 0..7 {
        let rows = vec![pending_notification(
            event_id,
            Some("ann"),
            &format!("T{k}"),
        )];
        let inserted = notifications::insert_chunks(&mut conn, &[rows]).await?;
        assert_eq!(inserted[0].len(), 1, "ann exists: her row goes in");
    }
    let refused = notifications::insert_chunks(
        &mut conn,
        &[vec![pending_notification(event_id, Some("nobody"), "T0")]],
    )
    .await;
    let message = format!("{:?}", refused.expect_err("nobody's row must be refused"));
    assert!(
        message.contains("notifications_user_id_fkey"),
        "refused for the wrong reason: {message}"
    );
    Ok(())
}
