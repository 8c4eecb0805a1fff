//! Prometheus metrics. Request and ingestion counters live in this process; the
//! figures about notifications (by status, delivery latency) and queue depths are
//! read from Postgres and Redis at scrape time, because workers deliver and any
//! number of api processes may run: the shared engines hold the whole picture. Those
//! are read at most once per [`SHARED_MAX_AGE`] whatever the scrape rate
//! ([`SharedFigures`]): `/metrics` is open, and must not be a way to load Postgres.

use prometheus::{
    Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use std::time::{Duration, Instant};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub events_accepted: IntCounter,
    /// Accepted events whose type no rule handles (kept as history, notify no one).
    pub events_unrouted: IntCounter,
    /// Live streams open in this process (each holds a Redis connection).
    pub sse_streams: IntGauge,
    /// WAL the primary wrote that the read replica has not replayed (0 without one).
    pub replica_lag_bytes: Gauge,
    /// Age of the replica's last replayed transaction while it has WAL to replay.
    pub replica_lag_seconds: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // Metric definitions are constants: creating and registering them cannot fail
        // except on a programming error, which the unit test below would catch.
        let requests = IntCounterVec::new(
            Opts::new(
                "herald_http_requests_total",
                "HTTP requests by method and status",
            ),
            &["method", "status"],
        )
        .expect("valid metric definition");
        let events_accepted = IntCounter::new(
            "herald_events_accepted_total",
            "Events accepted and committed",
        )
        .expect("valid metric definition");
        let events_unrouted = IntCounter::new(
            "herald_events_unrouted_total",
            "Events accepted whose event_type matches no rule",
        )
        .expect("valid metric definition");
        let sse_streams = IntGauge::new(
            "herald_sse_streams",
            "Live notification streams open in this process",
        )
        .expect("valid metric definition");
        let replica_lag_bytes = Gauge::new(
            "herald_db_replica_lag_bytes",
            "WAL the primary wrote that the read replica has not replayed",
        )
        .expect("valid metric definition");
        let replica_lag_seconds = Gauge::new(
            "herald_db_replica_lag_seconds",
            "Age of the read replica's last replayed transaction while it has WAL to replay",
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(replica_lag_bytes.clone()))
            .expect("registered once");
        registry
            .register(Box::new(replica_lag_seconds.clone()))
            .expect("registered once");
        registry
            .register(Box::new(sse_streams.clone()))
            .expect("registered once");
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(events_accepted.clone()))
            .expect("registered once");
        registry
            .register(Box::new(events_unrouted.clone()))
            .expect("registered once");
        Metrics {
            registry,
            requests,
            events_accepted,
            events_unrouted,
            sse_streams,
            replica_lag_bytes,
            replica_lag_seconds,
        }
    }

    /// The process's own metrics in Prometheus text format.
    pub fn render_local(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// How long the figures read from Postgres and Redis are served before being read
/// again.
pub const SHARED_MAX_AGE: Duration = Duration::from_secs(5);

/// The last figures read from Postgres and Redis. Concurrent scrapes wait for one
/// reading instead of each making their own.
#[derive(Default)]
pub struct SharedFigures {
    last: tokio::sync::Mutex<Option<(Instant, String)>>,
}

impl SharedFigures {
    /// The shared figures in Prometheus text, read anew when older than
    /// [`SHARED_MAX_AGE`].
    pub async fn render(&self, pool: &herald_store::Pool, queue: &herald_queue::Queue) -> String {
        let mut last = self.last.lock().await;
        if let Some((at, text)) = last.as_ref() {
            if at.elapsed() < SHARED_MAX_AGE {
                return text.clone();
            }
        }
        let text = read_shared(pool, queue).await;
        *last = Some((Instant::now(), text.clone()));
        text
    }
}

/// Notifications by status and delivery latency over the last hour (Postgres), and
/// queue depths (Redis); whatever does not answer is left out.
async fn read_shared(pool: &herald_store::Pool, queue: &herald_queue::Queue) -> String {
    let mut text = String::new();
    if let Ok(mut conn) = herald_store::pool::get(pool).await {
        if let Ok(stats) = herald_store::stats::last_hour(&mut conn).await {
            text.push_str(&stats.to_prometheus());
        }
    }
    if let Ok(d) = queue.depths().await {
        text.push_str(
            "# HELP herald_queue_depth Jobs waiting per queue\n# TYPE herald_queue_depth gauge\n",
        );
        for (q, n) in [
            ("critical", d.critical),
            ("default", d.default),
            ("delayed", d.delayed),
        ] {
            text.push_str(&format!("herald_queue_depth{{queue=\"{q}\"}} {n}\n"));
        }
    }
    text
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn metrics_register_and_render() {
        let m = super::Metrics::new();
        m.events_accepted.inc_by(2);
        m.requests.with_label_values(&["POST", "202"]).inc();
        let text = m.render_local();
        assert!(text.contains("herald_events_accepted_total 2"));
        assert!(text.contains("herald_http_requests_total{method=\"POST\",status=\"202\"} 1"));
    }
}
