//! Prometheus metrics of this api process, every definition in this file.
//!
//! Everything is recorded in memory as it happens (a request answered, a group
//! committed, events accepted) and a scrape only encodes what is there: `/metrics`
//! touches no table and runs no SQL, however large the database and however often it
//! is scraped. The one figure from outside, the queues' backlog, is sampled from Redis
//! by a background task every [`QUEUE_SAMPLE_EVERY`], not per scrape. Notification
//! figures (by status and channel, delivery latency, attempts) are the workers', on
//! their own `/metrics`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `herald_http_requests_total` | counter | `method`, `status` |
//! | `herald_events_accepted_total` | counter | |
//! | `herald_events_duplicate_total` | counter | |
//! | `herald_events_rejected_total` | counter | |
//! | `herald_events_unrouted_total` | counter | |
//! | `herald_sse_streams` | gauge | |
//! | `herald_group_commit_batch_size` | histogram | `batcher` (`ingest`) |
//! | `herald_group_commit_seconds` | histogram | `batcher` (`ingest`) |
//! | `herald_queue_depth` | gauge | `queue` (`critical`, `default`, `delayed`) |
//! | `herald_queue_pending` | gauge | `queue` (`critical`, `default`) |

use herald_core::access::MetricsKey;
use herald_queue::Backlogs;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::time::Duration;

/// How often the queues' backlog is read from Redis.
pub const QUEUE_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Bounds of the group-commit size histogram (items per batch).
pub const BATCH_SIZE_BUCKETS: [f64; 11] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0,
];
/// Bounds of the group-commit latency histogram (seconds).
pub const COMMIT_SECONDS_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    /// New events committed (events and alerts alike).
    pub events_accepted: IntCounter,
    /// Events refused as repeats of an `event_id` (or `alert_uuid`) already stored.
    pub events_duplicate: IntCounter,
    /// Items of a batch refused for their content (listed in `rejected`).
    pub events_rejected: IntCounter,
    /// Accepted events whose type no rule handles (kept as history, notify no one).
    pub events_unrouted: IntCounter,
    /// Live streams open in this process (each holds a Redis connection).
    pub sse_streams: IntGauge,
    /// Items per group commit, by batcher.
    pub batch_size: HistogramVec,
    /// Time to write one group (connection, statement, commit), by batcher.
    pub commit_seconds: HistogramVec,
    /// Jobs per stream (waiting or held by a worker) and in the delayed set.
    pub queue_depth: IntGaugeVec,
    /// Jobs per stream read by a worker and not yet acknowledged.
    pub queue_pending: IntGaugeVec,
    /// WAL the primary wrote that the read replica has not replayed (0 without one).
    pub replica_lag_bytes: Gauge,
    /// Age of the replica's last replayed transaction while it has WAL to replay.
    pub replica_lag_seconds: Gauge,
}

/// What the ingestor records about each group it writes.
#[derive(Clone)]
pub struct IngestFigures {
    pub accepted: IntCounter,
    pub duplicate: IntCounter,
    pub batch_size: Histogram,
    pub commit_seconds: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str| register(&registry, IntCounter::new(name, help).expect(VALID));
        let requests = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "herald_http_requests_total",
                    "HTTP requests by method and status",
                ),
                &["method", "status"],
            )
            .expect(VALID),
        );
        Metrics {
            requests,
            events_accepted: counter(
                "herald_events_accepted_total",
                "Events accepted and committed",
            ),
            events_duplicate: counter(
                "herald_events_duplicate_total",
                "Events refused as repeats of an event_id or alert_uuid already stored",
            ),
            events_rejected: counter(
                "herald_events_rejected_total",
                "Items of event batches refused for their content",
            ),
            events_unrouted: counter(
                "herald_events_unrouted_total",
                "Events accepted whose event_type matches no rule",
            ),
            sse_streams: register(
                &registry,
                IntGauge::new(
                    "herald_sse_streams",
                    "Live notification streams open in this process",
                )
                .expect(VALID),
            ),
            batch_size: register(&registry, batch_size_histogram()),
            commit_seconds: register(&registry, commit_seconds_histogram()),
            queue_depth: register(&registry, queue_depth_gauge()),
            queue_pending: register(&registry, queue_pending_gauge()),
            replica_lag_bytes: register(
                &registry,
                Gauge::new(
                    "herald_db_replica_lag_bytes",
                    "WAL the primary wrote that the read replica has not replayed",
                )
                .expect(VALID),
            ),
            replica_lag_seconds: register(
                &registry,
                Gauge::new(
                    "herald_db_replica_lag_seconds",
                    "Age of the read replica's last replayed transaction while it has WAL to replay",
                )
                .expect(VALID),
            ),
            registry,
        }
    }

    /// The ingestor's share: its counters and the `ingest` batcher's histograms.
    pub fn ingest(&self) -> IngestFigures {
        IngestFigures {
            accepted: self.events_accepted.clone(),
            duplicate: self.events_duplicate.clone(),
            batch_size: self.batch_size.with_label_values(&["ingest"]),
            commit_seconds: self.commit_seconds.with_label_values(&["ingest"]),
        }
    }

    /// Everything in Prometheus text format. Reads memory only.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Metric definitions are constants: creating and registering them cannot fail except
/// on a programming error, which the unit test below would catch.
const VALID: &str = "valid metric definition";

fn register<T: Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("each metric registered once");
    metric
}

fn batch_size_histogram() -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(
            "herald_group_commit_batch_size",
            "Items written by one group commit, by batcher",
        )
        .buckets(BATCH_SIZE_BUCKETS.to_vec()),
        &["batcher"],
    )
    .expect(VALID)
}

fn commit_seconds_histogram() -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(
            "herald_group_commit_seconds",
            "Time one group commit takes (connection, statement and commit), by batcher",
        )
        .buckets(COMMIT_SECONDS_BUCKETS.to_vec()),
        &["batcher"],
    )
    .expect(VALID)
}

fn queue_depth_gauge() -> IntGaugeVec {
    IntGaugeVec::new(
        Opts::new(
            "herald_queue_depth",
            "Jobs per stream (waiting or being handled) and in the delayed set, sampled from Redis",
        ),
        &["queue"],
    )
    .expect(VALID)
}

fn queue_pending_gauge() -> IntGaugeVec {
    IntGaugeVec::new(
        Opts::new(
            "herald_queue_pending",
            "Jobs per stream read by a worker and not yet acknowledged, sampled from Redis",
        ),
        &["queue"],
    )
    .expect(VALID)
}

/// Reads the queues' backlog into the gauges every [`QUEUE_SAMPLE_EVERY`], for as
/// long as the process runs. A failed read leaves the last figures (Redis being down
/// shows in `/healthz/ready`).
pub async fn sample_queues(backlogs: Backlogs, depth: IntGaugeVec, pending: IntGaugeVec) {
    let mut every = tokio::time::interval(QUEUE_SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match backlogs.sample().await {
            Ok(b) => {
                for s in &b.streams {
                    let q = s.queue.as_str();
                    depth.with_label_values(&[q]).set(gauge_value(s.length));
                    pending.with_label_values(&[q]).set(gauge_value(s.pending));
                }
                depth
                    .with_label_values(&["delayed"])
                    .set(gauge_value(b.delayed));
            }
            Err(e) => tracing::debug!(error = %e, "could not sample the queues"),
        }
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Whether a scrape with this `Authorization` header may read `/metrics`.
pub fn scrape_allowed(key: &MetricsKey, req: &actix_web::HttpRequest) -> bool {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    key.allows(header)
}

#[cfg(test)]
mod tests {
    #[test]
    fn metrics_register_and_render() {
        let m = super::Metrics::new();
        m.events_accepted.inc_by(2);
        m.requests.with_label_values(&["POST", "202"]).inc();
        let ingest = m.ingest();
        ingest.batch_size.observe(3.0);
        ingest.commit_seconds.observe(0.002);
        m.queue_depth.with_label_values(&["delayed"]).set(4);
        let text = m.render();
        assert!(text.contains("herald_events_accepted_total 2"), "{text}");
        assert!(text.contains("herald_http_requests_total{method=\"POST\",status=\"202\"} 1"));
        assert!(text.contains("herald_group_commit_batch_size_count{batcher=\"ingest\"} 1"));
        assert!(text.contains("herald_group_commit_seconds_sum{batcher=\"ingest\"} 0.002"));
        assert!(text.contains("herald_queue_depth{queue=\"delayed\"} 4"));
    }
}
