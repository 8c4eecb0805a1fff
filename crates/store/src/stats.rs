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
        "SELECT ARRAY(SELECT count(*) FILTER (WHERE lat <= b) FROM unnest(ARRAY[{bounds}]::float8[]) AS b)
                  AS counts,
                count(*) AS total, COALESCE(sum(lat), 0)::float8 AS sum
         FROM (SELECT extract(epoch FROM sent_at - created_at)::float8 AS lat FROM notifications
               WHERE sent_at > now() - interval '1 hour') AS l
         GROUP BY ()"
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
