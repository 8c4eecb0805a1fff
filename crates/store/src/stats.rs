//! Aggregates for health checks and the operations overview, computed by Postgres.
//! (`/metrics` reads none of them: its figures are counted in process.)

use crate::pool::{Conn, StoreError};
use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;

pub async fn ping(conn: &mut Conn) -> Result<(), StoreError> {
    diesel::sql_query("SELECT 1").execute(conn).await?;
    Ok(())
}

#[derive(QueryableByName)]
struct StatusCount {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Notifications created in the last hour, by status (the operations overview).
#[derive(Debug, Default)]
pub struct LastHour {
    pub by_status: Vec<(String, i64)>,
}

pub async fn last_hour(conn: &mut Conn) -> Result<LastHour, StoreError> {
    let by_status: Vec<StatusCount> = diesel::sql_query(
        "SELECT status, count(*) AS n FROM notifications
         WHERE created_at > now() - interval '1 hour' GROUP BY status ORDER BY status",
    )
    .load(conn)
    .await?;
    Ok(LastHour {
        by_status: by_status.into_iter().map(|s| (s.status, s.n)).collect(),
    })
}

/// What became of one event's notifications (`GET /api/v1/events/{id}/stats`,
/// contract §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, QueryableByName, serde::Serialize)]
pub struct EventStats {
    /// Distinct people with a row (suppressed ones included).
    #[diesel(sql_type = BigInt)]
    pub recipients: i64,
    /// Rows a provider accepted (`sent_at` set), including those later delivered,
    /// opened or bounced.
    #[diesel(sql_type = BigInt)]
    pub sent: i64,
    /// Rows with a `delivered` (or `opened`) receipt.
    #[diesel(sql_type = BigInt)]
    pub delivered: i64,
    /// Rows with an `opened` receipt.
    #[diesel(sql_type = BigInt)]
    pub opened: i64,
    #[diesel(sql_type = BigInt)]
    pub failed: i64,
    #[diesel(sql_type = BigInt)]
    pub suppressed: i64,
    /// Not final yet: `pending` and `bundled`.
    #[diesel(sql_type = BigInt)]
    pub pending: i64,
}

#[derive(QueryableByName)]
struct Known {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    known: bool,
}

/// One event's counts, in one pass over its rows; `None` for an unknown event.
pub async fn event_stats(
    conn: &mut Conn,
    event_id: uuid::Uuid,
) -> Result<Option<EventStats>, StoreError> {
    use diesel::sql_types::Uuid as SqlUuid;
    let known: Known =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM events WHERE id = $1) AS known")
            .bind::<SqlUuid, _>(event_id)
            .get_result(conn)
            .await?;
    if !known.known {
        return Ok(None);
    }
    let stats: EventStats = diesel::sql_query(
        "SELECT count(DISTINCT user_id) AS recipients,
                count(*) FILTER (WHERE sent_at IS NOT NULL) AS sent,
                count(*) FILTER (WHERE delivered_at IS NOT NULL) AS delivered,
                count(*) FILTER (WHERE opened_at IS NOT NULL) AS opened,
                count(*) FILTER (WHERE status = 'failed') AS failed,
                count(*) FILTER (WHERE status = 'suppressed') AS suppressed,
                count(*) FILTER (WHERE status IN ('pending', 'bundled')) AS pending
         FROM notifications WHERE event_id = $1",
    )
    .bind::<SqlUuid, _>(event_id)
    .get_result(conn)
    .await?;
    Ok(Some(stats))
}
