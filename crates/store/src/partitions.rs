//! Time partitions of the history tables (migration `*_partitioned_history`).
//!
//! `events`, `notifications`, `delivery_attempts` and `person_changes` are partitioned
//! by RANGE on their time column. [`ensure`] creates the partitions ahead of time (the
//! SQL function `herald_ensure_partitions` does the work, the same one the migration
//! used); [`drop_older_than`] is the retention: it drops whole partitions, never
//! deletes rows from big tables. Both take one advisory lock, so any number of workers
//! may call them: the second waits for the first and then finds nothing to do.
//!
//! Retention keeps what is still alive. Before a `notifications` partition goes, its
//! rows still `pending` or `bundled` move to the DEFAULT partition (with their
//! `created_at` unchanged; the default partition takes any time no partition covers),
//! and before an `events` partition goes, its events still `received` (not routed yet)
//! and the events of live notifications in the default partition move there too, so the
//! worker can still route and deliver them. The default partitions stay small (only
//! such rows, and rows written while no partition existed); their rows past the
//! retention that are no longer alive are deleted.

use crate::pool::{Conn, StoreError};
use crate::schema::{events, notifications};
use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Double, Text, Timestamptz};
use diesel::{ExpressionMethods, QueryableByName};
use diesel_async::{AsyncConnection, RunQueryDsl};
use std::time::Duration;

/// The partitioned tables and their partition key, in the order retention visits
/// them (notifications before the events they point at).
pub const TABLES: [(&str, &str); 4] = [
    ("notifications", "created_at"),
    ("events", "received_at"),
    ("delivery_attempts", "started_at"),
    ("person_changes", "at"),
];

/// The advisory lock that serialises partition maintenance ("herldpt" in ASCII; the
/// SQL function `herald_ensure_partitions` takes the same one).
const LOCK_KEY: i64 = 0x0068_6572_6c64_7074;

/// How long partition DDL may wait for its table locks before giving up until the next
/// run (creating and dropping a partition briefly locks the parent table; a long wait
/// would stall every insert queued behind it).
const LOCK_TIMEOUT: &str = "5s";

/// Keys of `event_keys` deleted per statement.
const KEYS_BATCH: i64 = 10_000;

/// Notification statuses that are not final: such rows outlive their partition.
const LIVE_NOTIFICATIONS: &str = "('pending', 'bundled')";

/// One range partition.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Partition {
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Timestamptz)]
    pub from_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub to_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct Created {
    #[diesel(sql_type = Text)]
    name: String,
}

/// The join condition of a notification and its event. Besides the id it says that
/// the event's `received_at` is the notification's `created_at` (true by construction,
/// see `notifications::insert_batch`), which lets Postgres read one partition of
/// `events` per notification instead of probing them all.
pub fn event_of_notification() -> diesel::dsl::And<
    diesel::dsl::Eq<events::id, notifications::event_id>,
    diesel::dsl::Eq<events::received_at, notifications::created_at>,
> {
    use diesel::BoolExpressionMethods;
    events::id
        .eq(notifications::event_id)
        .and(events::received_at.eq(notifications::created_at))
}

/// How far around the time in a row's id its partition key is looked for first.
///
/// Ids are UUIDv7 (time-ordered), made where the row is born: an event's by the api
/// just before the insert whose `now()` becomes its `received_at`; a notification's by
/// the worker that routes the event, so just after the event's `received_at`, which is
/// the notification's `created_at`. The key thus lies within milliseconds (an event) or
/// the routing delay (a notification) of the id's time. Lookups by id read only the
/// partitions of [`id_window`] first and then, for ids not found there (an id that is
/// not v7, an event routed after a longer backlog, a skewed clock), every partition:
/// the window decides how much is read, never what is found.
pub const ID_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// The span of the partition keys of the rows with these ids, as far as their ids
/// tell: from the earliest id's time less [`ID_WINDOW`] to the latest one's plus it.
/// None when no id carries a time (not v7).
pub fn id_window(ids: &[uuid::Uuid]) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let mut times = ids.iter().filter_map(|id| {
        let (secs, nanos) = id.get_timestamp()?.to_unix();
        DateTime::<Utc>::from_timestamp(i64::try_from(secs).ok()?, nanos)
    });
    let first = times.next()?;
    let (from, to) = times.fold((first, first), |(lo, hi), t| (lo.min(t), hi.max(t)));
    Some((from - ID_WINDOW, to + ID_WINDOW))
}

/// The distinct ids of `asked` that are not among `found`: those a lookup within
/// [`id_window`] missed, to look for everywhere.
pub fn not_found(
    asked: &[uuid::Uuid],
    found: impl IntoIterator<Item = uuid::Uuid>,
) -> Vec<uuid::Uuid> {
    let found: std::collections::HashSet<uuid::Uuid> = found.into_iter().collect();
    let mut missing: Vec<uuid::Uuid> = asked
        .iter()
        .filter(|id| !found.contains(id))
        .copied()
        .collect();
    missing.sort_unstable();
    missing.dedup();
    missing
}

/// Makes sure every table has partitions from now to `now + ahead`, `step` long each
/// (aligned on the Unix epoch: daily partitions run from midnight UTC). Returns the
/// partitions created; none when they all exist. Safe to call concurrently.
pub async fn ensure(
    conn: &mut Conn,
    step: Duration,
    ahead: Duration,
) -> Result<Vec<String>, StoreError> {
    conn.transaction(async move |tx| {
        lock(tx).await?;
        let mut created = Vec::new();
        for (table, _) in TABLES {
            let names: Vec<Created> = diesel::sql_query(
                "SELECT name FROM herald_ensure_partitions($1::regclass, now(),
                   now() + $2 * interval '1 second', $3 * interval '1 second') AS name",
            )
            .bind::<Text, _>(table)
            .bind::<Double, _>(ahead.as_secs_f64())
            .bind::<Double, _>(step.as_secs_f64())
            .load(tx)
            .await?;
            created.extend(names.into_iter().map(|c| c.name));
        }
        Ok::<_, StoreError>(created)
    })
    .await
}

/// The range partitions of `table`, oldest first (the default partition left out).
pub async fn list(conn: &mut Conn, table: &str) -> Result<Vec<Partition>, StoreError> {
    Ok(
        diesel::sql_query("SELECT name, from_at, to_at FROM herald_partitions($1::regclass)")
            .bind::<Text, _>(table)
            .load(conn)
            .await?,
    )
}

/// Retention: drops every partition whose whole range lies before `before` (keeping
/// live rows, see the module comment), prunes the idempotency keys received before it
/// and the default partitions' rows that are past it and no longer alive. Returns the
/// partitions dropped. One transaction per partition, so the parent tables are locked
/// only briefly each.
pub async fn drop_older_than(
    conn: &mut Conn,
    before: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let mut dropped = Vec::new();
    for (table, _) in TABLES {
        for partition in list(conn, table).await? {
            if partition.to_at > before {
                continue;
            }
            drop_partition(conn, table, &partition.name).await?;
            dropped.push(partition.name);
        }
    }
    prune_keys(conn, before).await?;
    prune_defaults(conn, before).await?;
    Ok(dropped)
}

/// Detaches one partition, moves its live rows into the default partition, drops it.
async fn drop_partition(conn: &mut Conn, table: &str, partition: &str) -> Result<(), StoreError> {
    let detach = format!("ALTER TABLE {table} DETACH PARTITION \"{partition}\"");
    let keep = match table {
        "notifications" => Some(format!(
            "INSERT INTO notifications_default SELECT * FROM \"{partition}\"
             WHERE status IN {LIVE_NOTIFICATIONS}"
        )),
        "events" => Some(format!(
            "INSERT INTO events_default SELECT * FROM \"{partition}\" e
             WHERE e.status = 'received' OR e.id IN (
               SELECT event_id FROM notifications_default WHERE status IN {LIVE_NOTIFICATIONS})"
        )),
        _ => None,
    };
    let drop = format!("DROP TABLE \"{partition}\"");
    conn.transaction(async move |tx| {
        lock(tx).await?;
        diesel::sql_query(detach).execute(tx).await?;
        if let Some(keep) = keep {
            diesel::sql_query(keep).execute(tx).await?;
        }
        diesel::sql_query(drop).execute(tx).await?;
        Ok::<_, StoreError>(())
    })
    .await
}

/// Forgets client keys received before `before`, a batch per statement: past the
/// retention the same `event_id` is a new event.
async fn prune_keys(conn: &mut Conn, before: DateTime<Utc>) -> Result<(), StoreError> {
    loop {
        let n = diesel::sql_query(
            "DELETE FROM event_keys WHERE key IN (
               SELECT key FROM event_keys WHERE received_at < $1 LIMIT $2)",
        )
        .bind::<Timestamptz, _>(before)
        .bind::<BigInt, _>(KEYS_BATCH)
        .execute(conn)
        .await?;
        if n < KEYS_BATCH as usize {
            return Ok(());
        }
    }
}

/// The default partitions hold few rows; those past the retention go unless alive.
async fn prune_defaults(conn: &mut Conn, before: DateTime<Utc>) -> Result<(), StoreError> {
    let statements = [
        format!(
            "DELETE FROM notifications_default
             WHERE created_at < $1 AND status NOT IN {LIVE_NOTIFICATIONS}"
        ),
        format!(
            "DELETE FROM events_default e WHERE e.received_at < $1 AND e.status <> 'received'
             AND NOT EXISTS (SELECT 1 FROM notifications_default n
                             WHERE n.event_id = e.id AND n.status IN {LIVE_NOTIFICATIONS})"
        ),
        "DELETE FROM delivery_attempts_default WHERE started_at < $1".to_string(),
        "DELETE FROM person_changes_default WHERE at < $1".to_string(),
    ];
    for sql in statements {
        diesel::sql_query(sql)
            .bind::<Timestamptz, _>(before)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Takes the maintenance lock for the rest of the transaction, then bounds how long
/// the DDL that follows may wait for table locks.
async fn lock(tx: &mut diesel_async::AsyncPgConnection) -> Result<(), diesel::result::Error> {
    diesel::sql_query(format!("SELECT pg_advisory_xact_lock({LOCK_KEY})"))
        .execute(tx)
        .await?;
    diesel::sql_query(format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .execute(tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{id_window, not_found, ID_WINDOW};
    use chrono::{DateTime, Utc};
    use uuid::{NoContext, Timestamp, Uuid};

    fn v7_at(secs: u64) -> Uuid {
        Uuid::new_v7(Timestamp::from_unix(NoContext, secs, 0))
    }

    #[test]
    fn the_window_spans_the_ids_times_and_an_hour_either_side() {
        let (a, b) = (v7_at(1_800_000_000), v7_at(1_800_000_600));
        let at = |s| DateTime::<Utc>::from_timestamp(s, 0).unwrap_or_default();
        assert_eq!(
            id_window(&[b, Uuid::new_v4(), a]),
            Some((at(1_800_000_000) - ID_WINDOW, at(1_800_000_600) + ID_WINDOW))
        );
        assert_eq!(id_window(&[Uuid::new_v4()]), None);
        assert_eq!(id_window(&[]), None);
    }

    #[test]
    fn ids_not_found_are_listed_once() {
        let (a, b, c) = (v7_at(1), v7_at(2), v7_at(3));
        let mut expected = vec![a, c];
        expected.sort();
        assert_eq!(not_found(&[a, b, c, a], [b]), expected);
    }
}
