//! Time-partitioned history (migration `*_partitioned_history`, module `partitions`),
//! each test on its own database: a fresh install and an upgrade of a populated
//! database both end partitioned, retention drops old partitions but keeps live
//! notifications, client keys stay unique across partitions, and creating partitions
//! is idempotent under concurrent callers.

use chrono::{DateTime, Duration, Utc};
use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use herald_core::event::NewEvent;
use herald_store::notifications::{self, NewNotification};
use herald_store::people::{self, PersonPatch};
use herald_store::testing::TestDb;
use herald_store::{events, partitions, Pool};
use std::time::Duration as StdDuration;
use uuid::Uuid;

const DAY: StdDuration = StdDuration::from_secs(86_400);
const TABLES: [&str; 4] = [
    "events",
    "notifications",
    "delivery_attempts",
    "person_changes",
];

async fn database() -> (TestDb, Pool) {
    let db = TestDb::create().await.expect("test database");
    let pool = herald_store::connect(&db.url, 4).expect("pool");
    (db, pool)
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn names(pool: &Pool, sql: &str) -> Vec<String> {
    let mut conn = pool.get().await.expect("connection");
    let rows: Vec<Name> = diesel::sql_query(sql).load(&mut conn).await.expect(sql);
    rows.into_iter().map(|r| r.name).collect()
}

async fn count(pool: &Pool, sql: &str) -> i64 {
    let mut conn = pool.get().await.expect("connection");
    let row: Count = diesel::sql_query(sql)
        .get_result(&mut conn)
        .await
        .expect(sql);
    row.n
}

async fn exec(pool: &Pool, sql: &str) {
    let mut conn = pool.get().await.expect("connection");
    conn.batch_execute(sql).await.expect(sql);
}

async fn partitioned_tables(pool: &Pool) -> Vec<String> {
    let mut tables = names(
        pool,
        "SELECT partrelid::regclass::text AS name FROM pg_partitioned_table",
    )
    .await;
    tables.sort();
    tables
}

fn sorted(tables: [&str; 4]) -> Vec<String> {
    let mut t: Vec<String> = tables.iter().map(|s| s.to_string()).collect();
    t.sort();
    t
}

fn event(key: Option<&str>) -> NewEvent {
    NewEvent {
        id: Uuid::now_v7(),
        event_type: "friend_joined".into(),
        user_id: None,
        topic: None,
        event_timestamp: Utc::now(),
        properties: serde_json::json!({}),
        user_traits: serde_json::json!({}),
        idempotency_key: key.map(str::to_string),
        deliver_at: None,
    }
}

/// Stores the person `ann` and one event (about nobody); returns the event's id.
async fn ann_with_an_event(conn: &mut herald_store::Conn) -> Uuid {
    people::upsert(conn, "ann", &PersonPatch::default())
        .await
        .expect("person");
    events::insert_batch(conn, &[event(None)])
        .await
        .expect("event")[0]
        .id
}

fn row(event_id: Uuid, user_id: &str, channel: &str, status: &'static str) -> NewNotification {
    NewNotification {
        id: Uuid::now_v7(),
        event_id,
        user_id: Some(user_id.into()),
        notification_type: "friend_joined".into(),
        channel: channel.into(),
        status,
        suppression_reason: None,
        severity: "standard",
        private: false,
        subject: None,
        text: "Ann joined".into(),
        due_at: Utc::now(),
        sent_at: None,
        bundle_id: None,
        hold_reason: None,
    }
}

/// Daily partitions of every table over the last `days` days (older history than the
/// migration made), as a long-running installation has them.
async fn partitions_back(pool: &Pool, days: i32) {
    for table in TABLES {
        exec(
            pool,
            &format!(
                "SELECT herald_ensure_partitions('{table}', now() - interval '{days} days', \
                 now(), interval '1 day')"
            ),
        )
        .await;
    }
}

/// The partition (table name) a row lives in.
async fn partition_of(pool: &Pool, table: &str, id: Uuid) -> String {
    names(
        pool,
        &format!("SELECT tableoid::regclass::text AS name FROM {table} WHERE id = '{id}'"),
    )
    .await
    .pop()
    .unwrap_or_default()
}

#[tokio::test]
async fn a_fresh_install_has_the_four_history_tables_partitioned_with_partitions_ahead() {
    let (_db, pool) = database().await;
    assert_eq!(partitioned_tables(&pool).await, sorted(TABLES));
    let mut conn = pool.get().await.expect("connection");
    for table in TABLES {
        let parts = partitions::list(&mut conn, table).await.expect("list");
        let covered_to = parts.last().map(|p| p.to_at).expect("partitions");
        assert!(parts[0].from_at <= Utc::now(), "{table}: now is covered");
        assert!(
            covered_to >= Utc::now() + Duration::days(3),
            "{table}: 3 days ahead"
        );
    }
    // Rows land in a dated partition, not the default one.
    let stored = events::insert_batch(&mut conn, &[event(None)])
        .await
        .expect("event");
    drop(conn);
    let part = partition_of(&pool, "events", stored[0].id).await;
    assert!(part.starts_with("events_p"), "{part}");
}

#[tokio::test]
async fn an_upgrade_keeps_every_row_and_ends_partitioned() {
    let db = TestDb::create_migrated_before("2026-12-02-000400")
        .await
        .expect("database at the previous migration");
    let pool = herald_store::connect(&db.url, 4).expect("pool");
    assert!(partitioned_tables(&pool).await.is_empty());
    // Ten days of history, written as the old schema had it: events with client keys,
    // notifications (the triggers log their changes), attempts.
    exec(
        &pool,
        "INSERT INTO users (user_id) VALUES ('ann');
         INSERT INTO events (id, event_type, user_id, event_timestamp, received_at,
                             idempotency_key, status)
         SELECT gen_random_uuid(), 'friend_joined', 'ann', now() - d * interval '1 day',
                now() - d * interval '1 day', 'client-' || d, 'routed'
         FROM generate_series(0, 9) d;
         INSERT INTO notifications (id, event_id, user_id, notification_type, channel,
                                    status, severity, created_at)
         SELECT gen_random_uuid(), id, 'ann', 'friend_joined', 'in_app',
                CASE WHEN received_at < now() - interval '5 days' THEN 'sent' ELSE 'pending' END,
                'standard', received_at + interval '1 second'
         FROM events;
         UPDATE notifications SET read_at = now() WHERE status = 'sent';
         INSERT INTO delivery_attempts (notification_id, attempt, started_at, duration_ms, outcome)
         SELECT id, 1, created_at, 12, 'success' FROM notifications;",
    )
    .await;
    let before: Vec<i64> = {
        let mut counts = Vec::new();
        for table in TABLES {
            counts.push(count(&pool, &format!("SELECT count(*) AS n FROM {table}")).await);
        }
        counts
    };
    assert_eq!(before, vec![10, 10, 10, 14]);

    herald_store::migrate::run(&db.url).await.expect("upgrade");

    assert_eq!(partitioned_tables(&pool).await, sorted(TABLES));
    for (table, n) in TABLES.iter().zip(&before) {
        let after = count(&pool, &format!("SELECT count(*) AS n FROM {table}")).await;
        assert_eq!(after, *n, "{table} keeps its rows");
        let outside = count(
            &pool,
            &format!("SELECT count(*) AS n FROM ONLY {table}_default"),
        )
        .await;
        assert_eq!(outside, 0, "{table}: every row is in a dated partition");
    }
    // Notifications are dated by their event, and join it in its partition.
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) AS n FROM notifications n JOIN events e
             ON e.id = n.event_id AND e.received_at = n.created_at"
        )
        .await,
        10
    );
    assert_eq!(
        count(&pool, "SELECT count(*) AS n FROM event_keys").await,
        10
    );
    // The old keys are still duplicates; the change log goes on numbering.
    let mut conn = pool.get().await.expect("connection");
    let again = events::insert_batch(&mut conn, &[event(Some("client-7"))])
        .await
        .expect("insert");
    assert!(again[0].duplicate);
    drop(conn);
    exec(
        &pool,
        "UPDATE notifications SET read_at = now() WHERE status = 'pending'",
    )
    .await;
    assert_eq!(
        count(&pool, "SELECT max(seq) AS n FROM person_changes").await,
        20
    );
}

#[tokio::test]
async fn retention_drops_old_partitions_but_a_pending_notification_survives() {
    let (_db, pool) = database().await;
    partitions_back(&pool, 45).await;
    let mut conn = pool.get().await.expect("connection");
    people::upsert(&mut conn, "ann", &PersonPatch::default())
        .await
        .expect("person");
    // Microseconds, as Postgres stores it.
    let old = DateTime::from_timestamp_micros((Utc::now() - Duration::days(40)).timestamp_micros())
        .expect("a timestamp");
    let stored = events::insert_batch(&mut conn, &[event(Some("old-key")), event(None)])
        .await
        .expect("events");
    let (old_event, new_event) = (stored[0].id, stored[1].id);
    drop(conn);
    exec(
        &pool,
        &format!(
            "UPDATE events SET received_at = '{old}' WHERE id = '{old_event}';
             UPDATE event_keys SET received_at = '{old}' WHERE event_id = '{old_event}';"
        ),
    )
    .await;
    let mut conn = pool.get().await.expect("connection");
    let pending = row(old_event, "ann", "in_app", "pending");
    let sent = row(old_event, "ann", "email", "sent");
    let fresh = row(new_event, "ann", "in_app", "sent");
    notifications::insert_batch(&mut conn, &[pending.clone(), sent.clone(), fresh.clone()])
        .await
        .expect("notifications");
    drop(conn);
    exec(
        &pool,
        &format!(
            "INSERT INTO delivery_attempts (notification_id, attempt, started_at, duration_ms, outcome)
             VALUES ('{}', 1, '{old}', 5, 'retry'), ('{}', 1, now(), 5, 'success')",
            pending.id, fresh.id
        ),
    )
    .await;
    let old_part = partition_of(&pool, "notifications", pending.id).await;
    assert!(old_part.starts_with("notifications_p"), "{old_part}");
    assert_eq!(
        partition_of(&pool, "notifications", sent.id).await,
        old_part,
        "a notification is dated by its event"
    );

    let mut conn = pool.get().await.expect("connection");
    let dropped = partitions::drop_older_than(&mut conn, Utc::now() - Duration::days(30))
        .await
        .expect("retention");
    assert!(dropped.contains(&old_part), "{dropped:?}");
    for table in TABLES {
        let left = partitions::list(&mut conn, table).await.expect("list");
        assert!(
            left.iter()
                .all(|p| p.to_at > Utc::now() - Duration::days(30)),
            "{table}: nothing older than the retention is left"
        );
    }
    // The pending notification and its event live on in the default partitions; the
    // finished one went with its partition, the recent one is untouched.
    assert_eq!(
        partition_of(&pool, "notifications", pending.id).await,
        "notifications_default"
    );
    assert_eq!(partition_of(&pool, "notifications", sent.id).await, "");
    assert!(partition_of(&pool, "notifications", fresh.id)
        .await
        .starts_with("notifications_p"));
    assert_eq!(
        partition_of(&pool, "events", old_event).await,
        "events_default"
    );
    let delivery = notifications::for_delivery(&mut conn, &[pending.id])
        .await
        .expect("delivery rows");
    assert_eq!(delivery.len(), 1, "the worker can still deliver it");
    assert_eq!(delivery[0].created_at, old);
    // The old attempt and the old key are gone: past the retention the key is new.
    assert_eq!(
        count(&pool, "SELECT count(*) AS n FROM delivery_attempts").await,
        1
    );
    let again = events::insert_batch(&mut conn, &[event(Some("old-key"))])
        .await
        .expect("insert");
    assert!(!again[0].duplicate);
    // Running it again changes nothing and keeps the live row.
    let twice = partitions::drop_older_than(&mut conn, Utc::now() - Duration::days(30))
        .await
        .expect("retention again");
    assert!(twice.is_empty(), "{twice:?}");
    assert_eq!(
        partition_of(&pool, "notifications", pending.id).await,
        "notifications_default"
    );
}

#[tokio::test]
async fn a_duplicate_client_key_is_refused_across_a_partition_boundary() {
    let (_db, pool) = database().await;
    partitions_back(&pool, 3).await;
    let mut conn = pool.get().await.expect("connection");
    let first = events::insert_batch(&mut conn, &[event(Some("alert-1"))])
        .await
        .expect("first")[0];
    assert!(!first.duplicate);
    drop(conn);
    // The original now sits in yesterday's partition.
    let yesterday = Utc::now() - Duration::days(1);
    exec(
        &pool,
        &format!(
            "UPDATE events SET received_at = '{yesterday}' WHERE id = '{}'",
            first.id
        ),
    )
    .await;
    let part = partition_of(&pool, "events", first.id).await;
    let mut conn = pool.get().await.expect("connection");
    let again = events::insert_batch(&mut conn, &[event(Some("alert-1")), event(Some("alert-2"))])
        .await
        .expect("again");
    drop(conn);
    assert_ne!(part, partition_of(&pool, "events", again[1].id).await);
    assert!(again[0].duplicate);
    assert_eq!(again[0].id, first.id, "the original's id");
    assert!(!again[1].duplicate);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) AS n FROM events WHERE idempotency_key = 'alert-1'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn routing_an_event_twice_stores_its_notifications_once() {
    let (_db, pool) = database().await;
    let mut conn = pool.get().await.expect("connection");
    let event_id = ann_with_an_event(&mut conn).await;
    let first =
        notifications::insert_batch(&mut conn, &[row(event_id, "ann", "in_app", "pending")])
            .await
            .expect("first");
    assert_eq!(first.len(), 1);
    // A later run (a reclaimed route job): same keys, new ids, another instant.
    tokio::time::sleep(StdDuration::from_millis(20)).await;
    let second =
        notifications::insert_batch(&mut conn, &[row(event_id, "ann", "in_app", "pending")])
            .await
            .expect("second");
    assert!(second.is_empty(), "{second:?}");
    drop(conn);
    assert_eq!(
        count(&pool, "SELECT count(*) AS n FROM notifications").await,
        1
    );
}

#[tokio::test]
async fn creating_partitions_is_idempotent_and_safe_under_concurrent_callers() {
    let (db, pool) = database().await;
    // A row written while no partition covered its time waits in the default one.
    let later: DateTime<Utc> = Utc::now() + Duration::days(5);
    let mut conn = pool.get().await.expect("connection");
    let id = events::insert_batch(&mut conn, &[event(None)])
        .await
        .expect("event")[0]
        .id;
    drop(conn);
    exec(
        &pool,
        &format!("UPDATE events SET received_at = '{later}' WHERE id = '{id}'"),
    )
    .await;
    assert_eq!(partition_of(&pool, "events", id).await, "events_default");

    // Two workers at once, hourly partitions six days ahead.
    let call = |url: String| async move {
        let pool = herald_store::connect(&url, 1).expect("pool");
        let mut conn = pool.get().await.expect("connection");
        partitions::ensure(&mut conn, StdDuration::from_secs(3600), DAY * 6).await
    };
    let (a, b) = tokio::join!(call(db.url.clone()), call(db.url.clone()));
    let (a, b) = (a.expect("first caller"), b.expect("second caller"));
    let mut all: Vec<&String> = a.iter().chain(&b).collect();
    let created = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), created, "no partition created twice");
    assert!(created > 0);
    let mut conn = pool.get().await.expect("connection");
    let third = partitions::ensure(&mut conn, StdDuration::from_secs(3600), DAY * 6)
        .await
        .expect("third");
    assert!(third.is_empty(), "{third:?}");
    // No gaps and no overlaps from now to six days ahead.
    for table in TABLES {
        let parts = partitions::list(&mut conn, table).await.expect("list");
        for pair in parts.windows(2) {
            assert_eq!(pair[0].to_at, pair[1].from_at, "{table}: contiguous");
        }
        assert!(
            parts.last().map(|p| p.to_at).unwrap_or_default() >= Utc::now() + Duration::days(6)
        );
    }
    drop(conn);
    // The waiting row moved into its new partition.
    let part = partition_of(&pool, "events", id).await;
    assert!(part.starts_with("events_p"), "{part}");
}

#[tokio::test]
async fn deleting_a_person_still_deletes_their_attempts() {
    let (_db, pool) = database().await;
    let mut conn = pool.get().await.expect("connection");
    let event_id = ann_with_an_event(&mut conn).await;
    let n = row(event_id, "ann", "in_app", "pending");
    notifications::insert_batch(&mut conn, std::slice::from_ref(&n))
        .await
        .expect("notification");
    drop(conn);
    exec(
        &pool,
        &format!(
            "INSERT INTO delivery_attempts (notification_id, attempt, started_at, duration_ms, outcome)
             VALUES ('{}', 1, now(), 5, 'success')",
            n.id
        ),
    )
    .await;
    let mut conn = pool.get().await.expect("connection");
    assert!(people::delete(&mut conn, "ann").await.expect("delete"));
    drop(conn);
    assert_eq!(
        count(&pool, "SELECT count(*) AS n FROM delivery_attempts").await,
        0
    );
    assert_eq!(count(&pool, "SELECT count(*) AS n FROM events").await, 1);
}

#[tokio::test]
async fn lookups_by_id_find_rows_whose_time_lies_far_from_the_time_in_their_id() {
    // Lookups by id read the partitions around the time in the (v7) id first; a row
    // elsewhere (here: moved two days back, or with a v4 id that carries no time) must
    // still be found, routed, delivered and recorded exactly once.
    let (_db, pool) = database().await;
    partitions_back(&pool, 3).await;
    let mut conn = pool.get().await.expect("connection");
    let near = ann_with_an_event(&mut conn).await;
    let far = events::insert_batch(&mut conn, &[event(None)])
        .await
        .expect("far event")[0]
        .id;
    let untimed = events::insert_batch(
        &mut conn,
        &[NewEvent {
            id: Uuid::new_v4(),
            ..event(None)
        }],
    )
    .await
    .expect("v4 event")[0]
        .id;
    drop(conn);
    exec(
        &pool,
        &format!(
            "UPDATE events SET received_at = received_at - interval '2 days' WHERE id = '{far}'"
        ),
    )
    .await;
    assert_ne!(
        partition_of(&pool, "events", far).await,
        partition_of(&pool, "events", near).await
    );

    let mut conn = pool.get().await.expect("connection");
    let mut found: Vec<Uuid> = events::find_many(&mut conn, &[near, far, untimed, near])
        .await
        .expect("find_many")
        .into_iter()
        .map(|e| e.id)
        .collect();
    found.sort();
    let mut all = vec![near, far, untimed];
    all.sort();
    assert_eq!(found, all);
    assert_eq!(events::find(&mut conn, far).await.expect("find").id, far);

    // Notifications take their event's received_at, wherever the event lies.
    let rows = [
        row(near, "ann", "in_app", "pending"),
        row(far, "ann", "in_app", "pending"),
        row(untimed, "ann", "in_app", "pending"),
    ];
    let inserted = notifications::insert_chunks(&mut conn, &[rows.to_vec()])
        .await
        .expect("insert");
    assert_eq!(inserted[0].len(), 3);
    drop(conn);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) AS n FROM notifications n JOIN events e ON e.id = n.event_id \
             WHERE n.created_at = e.received_at"
        )
        .await,
        3
    );

    let mut conn = pool.get().await.expect("connection");
    events::mark_routed(&mut conn, &[near, far, untimed])
        .await
        .expect("routed");
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let delivery = notifications::for_delivery(&mut conn, &ids)
        .await
        .expect("delivery rows");
    assert_eq!(delivery.len(), 3);
    let tries: Vec<notifications::AttemptRecord> = ids
        .iter()
        .map(|&id| notifications::AttemptRecord {
            notification_id: id,
            started_at: Utc::now(),
            duration_ms: 5,
            http_status: Some(200),
            error: None,
            outcome: herald_core::retry::AttemptOutcome::Success,
            next_due: None,
        })
        .collect();
    notifications::record_attempts(&mut conn, &tries)
        .await
        .expect("attempts");
    drop(conn);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) AS n FROM events WHERE status = 'routed'"
        )
        .await,
        3
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) AS n FROM notifications WHERE status = 'sent' AND attempts = 1"
        )
        .await,
        3
    );
    assert_eq!(
        count(&pool, "SELECT count(*) AS n FROM delivery_attempts").await,
        3
    );
}
