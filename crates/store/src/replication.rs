//! Where a replica stands against its primary, in WAL positions. Reads that may go to
//! a replica compare the replica's replayed position with the primary's position
//! after a person's last write, so the person reads their own writes
//! (read-your-writes) however far behind the replica is.

use crate::pool::StoreError;
use diesel::sql_types::{Bool, Double, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

#[derive(QueryableByName)]
struct Position {
    #[diesel(sql_type = Text)]
    lsn: String,
}

/// The primary's current WAL position (`pg_current_wal_lsn`), as text: every
/// transaction committed before this call is at or before it.
pub async fn current_position(conn: &mut AsyncPgConnection) -> Result<String, StoreError> {
    let row: Position = diesel::sql_query("SELECT pg_current_wal_lsn()::text AS lsn")
        .get_result(conn)
        .await?;
    Ok(row.lsn)
}

#[derive(QueryableByName)]
struct Reached {
    #[diesel(sql_type = Bool)]
    reached: bool,
}

/// Whether the server `conn` talks to has everything up to `position`: a replica
/// that has replayed that far, or a primary (whose own position counts).
pub async fn has_reached(conn: &mut AsyncPgConnection, position: &str) -> Result<bool, StoreError> {
    let row: Reached = diesel::sql_query(
        "SELECT COALESCE(pg_last_wal_replay_lsn(), pg_current_wal_lsn()) >= $1::pg_lsn AS reached",
    )
    .bind::<Text, _>(position)
    .get_result(conn)
    .await?;
    Ok(row.reached)
}

/// How far a replica is behind, read on the replica and the primary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    /// WAL the primary has written and the replica has not replayed.
    pub bytes: f64,
    /// Age of the last replayed transaction while WAL is still to replay; 0 when the
    /// replica has replayed all it received (an idle primary writes nothing to age).
    pub seconds: f64,
}

#[derive(QueryableByName)]
struct Replayed {
    #[diesel(sql_type = Nullable<Text>)]
    lsn: Option<String>,
    #[diesel(sql_type = Double)]
    seconds: f64,
}

#[derive(QueryableByName)]
struct Behind {
    #[diesel(sql_type = Double)]
    bytes: f64,
}

/// The replica's lag behind the primary. A server that is not a replica has none.
pub async fn lag(
    primary: &mut AsyncPgConnection,
    replica: &mut AsyncPgConnection,
) -> Result<Lag, StoreError> {
    let replayed: Replayed = diesel::sql_query(
        "SELECT pg_last_wal_replay_lsn()::text AS lsn,
                CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                     ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)
                END::float8 AS seconds",
    )
    .get_result(replica)
    .await?;
    let Some(lsn) = replayed.lsn else {
        return Ok(Lag {
            bytes: 0.0,
            seconds: 0.0,
        });
    };
    let behind: Behind = diesel::sql_query(
        "SELECT GREATEST(pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn), 0)::float8 AS bytes",
    )
    .bind::<Text, _>(lsn)
    .get_result(primary)
    .await?;
    Ok(Lag {
        bytes: behind.bytes,
        seconds: replayed.seconds,
    })
}
