//! Aggregates for health checks and metrics, computed by Postgres.

use crate::pool::{Conn, StoreError};
use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use std::fmt::Write;

/// Upper bounds of the delivery latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0];

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

#[derive(QueryableByName)]
struct Buckets {
    #[diesel(sql_type = diesel::sql_types::Array<BigInt>)]
    counts: Vec<i64>,
    #[diesel(sql_type = BigInt)]
    total: i64,
    #[diesel(sql_type = diesel::sql_types::Double)]
    sum: f64,
}

/// Notifications created in the last hour, by status, and the latency from creation to
/// a provider's 2xx of those sent.
#[derive(Debug, Default)]
pub struct LastHour {
    pub by_status: Vec<(String, i64)>,
    /// Cumulative counts per [`LATENCY_BUCKETS`] bound.
    pub latency_buckets: Vec<i64>,
    pub latency_count: i64,
    pub latency_sum: f64,
}

pub async fn last_hour(conn: &mut Conn) -> Result<LastHour, StoreError> {
    let by_status: Vec<StatusCount> = diesel::sql_query(
        "SELECT status, count(*) AS n FROM notifications
         WHERE created_at > now() - interval '1 hour' GROUP BY status ORDER BY status",
    )
    .load(conn)
    .await?;
    let bounds = LATENCY_BUCKETS
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let buckets: Buckets = diesel::sql_query(format!(
        "WITH l AS (SELECT extract(epoch FROM sent_at - created_at)::float8 AS lat
                    FROM notifications WHERE sent_at > now() - interval '1 hour')
         SELECT ARRAY(SELECT (SELECT count(*) FROM l WHERE lat <= b)
                      FROM unnest(ARRAY[{bounds}]::float8[]) WITH ORDINALITY AS u(b, i)
                      ORDER BY i) AS counts,
                (SELECT count(*) FROM l) AS total,
                (SELECT COALESCE(sum(lat), 0)::float8 FROM l) AS sum"
    ))
    .get_result(conn)
    .await?;
    Ok(LastHour {
        by_status: by_status.into_iter().map(|s| (s.status, s.n)).collect(),
        latency_buckets: buckets.counts,
        latency_count: buckets.total,
        latency_sum: buckets.sum,
    })
}

impl LastHour {
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP herald_notifications Notifications created in the last hour by status\n",
        );
        out.push_str("# TYPE herald_notifications gauge\n");
        for (status, n) in &self.by_status {
            let _ = writeln!(out, "herald_notifications{{status=\"{status}\"}} {n}");
        }
        out.push_str(
            "# HELP herald_delivery_latency_seconds Creation to provider 2xx, last hour\n",
        );
        out.push_str("# TYPE herald_delivery_latency_seconds histogram\n");
        for (bound, n) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(
                out,
                "herald_delivery_latency_seconds_bucket{{le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "herald_delivery_latency_seconds_bucket{{le=\"+Inf\"}} {}",
            self.latency_count
        );
        let _ = writeln!(
            out,
            "herald_delivery_latency_seconds_sum {}",
            self.latency_sum
        );
        let _ = writeln!(
            out,
            "herald_delivery_latency_seconds_count {}",
            self.latency_count
        );
        out
    }
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
