//! A person's history as the rules engine asks about it: other events in a window
//! (proximity and absence conditions), and notifications already sent in a window
//! (debounce). Debounce counts run under per-person advisory locks taken inside the
//! caller's transaction, so two workers routing events of the same person at the same
//! instant are serialized and a limit of 1 never sends 2.

use crate::pool::StoreError;
use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Bool, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::HashMap;
use uuid::Uuid;

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = Bool)]
    found: bool,
}

/// Whether the person has another event of `event_type` with event time in
/// `[from, to]` (inclusive), other than `except`.
pub async fn has_event(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    event_type: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    except: Uuid,
) -> Result<bool, StoreError> {
    let row: Exists = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM events WHERE user_id = $1 AND event_type = $2
                        AND event_timestamp BETWEEN $3 AND $4 AND id <> $5) AS found",
    )
    .bind::<Text, _>(user_id)
    .bind::<Text, _>(event_type)
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .bind::<SqlUuid, _>(except)
    .get_result(conn)
    .await?;
    Ok(row.found)
}

/// Takes a transaction-scoped advisory lock per person, in a fixed order so that two
/// transactions locking overlapping sets cannot deadlock. Must run in a transaction.
pub async fn lock_people(
    conn: &mut AsyncPgConnection,
    user_ids: &[&str],
) -> Result<(), StoreError> {
    if user_ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = user_ids.iter().map(|s| s.to_string()).collect();
    diesel::sql_query(
        "SELECT pg_advisory_xact_lock(hashtext('herald:person:' || id))
         FROM (SELECT DISTINCT id FROM unnest($1::text[]) AS id ORDER BY id) AS sorted",
    )
    .bind::<Array<Text>, _>(ids)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

pub use herald_core::routing::DebounceWindow;

/// For each window, how many non-suppressed notifications of `notification_type` the
/// person has whose triggering event lies in it (edges inclusive), other than those of
/// event `except` (a re-routed event does not count against itself).
pub async fn debounce_counts(
    conn: &mut AsyncPgConnection,
    notification_type: &str,
    windows: &[DebounceWindow],
    except: Uuid,
) -> Result<HashMap<String, i64>, StoreError> {
    if windows.is_empty() {
        return Ok(HashMap::new());
    }
    let users: Vec<String> = windows.iter().map(|w| w.user_id.clone()).collect();
    let froms: Vec<DateTime<Utc>> = windows.iter().map(|w| w.from).collect();
    let tos: Vec<DateTime<Utc>> = windows.iter().map(|w| w.to).collect();
    let rows: Vec<Count> = diesel::sql_query(
        "SELECT w.user_id, count(n.id) AS n
         FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS w(user_id, t_from, t_to)
         LEFT JOIN (notifications n JOIN events e ON e.id = n.event_id)
           ON n.user_id = w.user_id AND n.notification_type = $4 AND n.status <> 'suppressed'
              AND n.event_id <> $5 AND e.event_timestamp BETWEEN w.t_from AND w.t_to
         GROUP BY w.user_id",
    )
    .bind::<Array<Text>, _>(users)
    .bind::<Array<Timestamptz>, _>(froms)
    .bind::<Array<Timestamptz>, _>(tos)
    .bind::<Text, _>(notification_type)
    .bind::<SqlUuid, _>(except)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.user_id, r.n)).collect())
}
