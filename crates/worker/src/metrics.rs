//! Prometheus metrics of this worker process, every definition in this file, and the
//! small HTTP server that serves them (`--metrics-bind`, off by default).
//!
//! Everything is counted in memory where it happens: a notification entering a
//! status (at routing, at delivery), an attempt and its outcome, a retry, a circuit
//! opening, a group commit. A scrape only encodes what is there: it touches no table
//! and runs no SQL. The queues' backlog is sampled from Redis every
//! [`QUEUE_SAMPLE_EVERY`] by a background task, not per scrape.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `herald_notifications_total` | counter | `channel`, `status` |
//! | `herald_delivery_attempts_total` | counter | `channel`, `outcome`, `class` |
//! | `herald_delivery_retries_total` | counter | `channel` |
//! | `herald_delivery_latency_seconds` | histogram | `channel` |
//! | `herald_circuit_opens_total` | counter | `channel` |
//! | `herald_dead_letters_total` | counter | `kind` (`route`, `deliver`, `flush_bundle`) |
//! | `herald_group_commit_batch_size` | histogram | `batcher` |
//! | `herald_group_commit_seconds` | histogram | `batcher` |
//! | `herald_queue_depth` | gauge | `queue` (`critical`, `default`, `delayed`) |
//! | `herald_queue_pending` | gauge | `queue` (`critical`, `default`) |
//!
//! A notification's statuses are counted as it enters them: `pending`, `bundled` or
//! `suppressed` when routing creates it (a bundle's carrier `pending` when flushed),
//! `held` each time an open circuit holds it back, and `sent`, `failed` or
//! `suppressed` when a delivery settles it.

use chrono::{DateTime, Utc};
use herald_core::access::MetricsKey;
use herald_core::delivery::{AttemptVerdict, HttpTry};
use herald_core::retry::AttemptOutcome;
use herald_queue::Backlogs;
use herald_store::notifications::Inserted;
use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::time::Duration;

/// How often the queues' backlog is read from Redis.
pub const QUEUE_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Bounds of the delivery latency histogram (seconds from the event's receipt to the
/// provider's 2xx). Rule delays, quiet hours and bundling windows count too, hence
/// the long tail.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
    86400.0,
];
/// Bounds of the group-commit size histogram (items per batch).
pub const BATCH_SIZE_BUCKETS: [f64; 11] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0,
];
/// Bounds of the group-commit latency histogram (seconds).
pub const COMMIT_SECONDS_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The worker's metrics; cheap to clone (every part is shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    notifications: IntCounterVec,
    attempts: IntCounterVec,
    retries: IntCounterVec,
    latency: HistogramVec,
    circuit_opens: IntCounterVec,
    dead_letters: IntCounterVec,
    batch_size: HistogramVec,
    commit_seconds: HistogramVec,
    queue_depth: IntGaugeVec,
    queue_pending: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect(VALID);
            register(&registry, metric)
        };
        let histogram = |name: &str, help: &str, buckets: &[f64], labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            register(&registry, HistogramVec::new(opts, labels).expect(VALID))
        };
        let gauge = |name: &str, help: &str| {
            let metric = IntGaugeVec::new(Opts::new(name, help), &["queue"]).expect(VALID);
            register(&registry, metric)
        };
        Metrics {
            notifications: counter(
                "herald_notifications_total",
                "Notifications entering a status, by channel and status",
                &["channel", "status"],
            ),
            attempts: counter(
                "herald_delivery_attempts_total",
                "Delivery attempts by channel, outcome (success, retry, permanent_failure) \
                 and class of answer (2xx, 4xx, 5xx..., or error without one)",
                &["channel", "outcome", "class"],
            ),
            retries: counter(
                "herald_delivery_retries_total",
                "Retries scheduled after a failed attempt, by channel",
                &["channel"],
            ),
            latency: histogram(
                "herald_delivery_latency_seconds",
                "From the event's receipt by the api to the provider's 2xx, by channel",
                &LATENCY_BUCKETS,
                &["channel"],
            ),
            circuit_opens: counter(
                "herald_circuit_opens_total",
                "Circuits opened on a failing destination host, by channel",
                &["channel"],
            ),
            dead_letters: counter(
                "herald_dead_letters_total",
                "Jobs dead-lettered after HERALD_MAX_DELIVERIES deliveries, by kind of job",
                &["kind"],
            ),
            batch_size: histogram(
                "herald_group_commit_batch_size",
                "Items written or read by one group commit, by batcher",
                &BATCH_SIZE_BUCKETS,
                &["batcher"],
            ),
            commit_seconds: histogram(
                "herald_group_commit_seconds",
                "Time one group commit takes (connection, statement and commit), by batcher",
                &COMMIT_SECONDS_BUCKETS,
                &["batcher"],
            ),
            queue_depth: gauge(
                "herald_queue_depth",
                "Jobs per stream (waiting or being handled) and in the delayed set, sampled from Redis",
            ),
            queue_pending: gauge(
                "herald_queue_pending",
                "Jobs per stream read by a worker and not yet acknowledged, sampled from Redis",
            ),
            registry,
        }
    }

    /// Creates the per-channel retry, circuit and latency series at zero, so that they
    /// exist (and `increase()` sees their first step) before anything happens.
    pub fn start_at_zero<'a>(&self, channels: impl IntoIterator<Item = &'a str>) {
        for channel in channels {
            self.retries.with_label_values(&[channel]);
            self.circuit_opens.with_label_values(&[channel]);
            self.latency.with_label_values(&[channel]);
        }
    }

    /// A job of `kind` was dead-lettered.
    pub fn dead_lettered(&self, kind: &str) {
        self.dead_letters.with_label_values(&[kind]).inc();
    }

    /// A notification entered `status` on `channel`.
    pub fn notification(&self, channel: &str, status: &str) {
        self.notifications
            .with_label_values(&[channel, status])
            .inc();
    }

    /// Rows routing created on `channel` (those that already existed are not in
    /// `inserted`, so a repeated route job counts nothing twice).
    pub fn created(&self, channel: &str, inserted: &[Inserted]) {
        for row in inserted {
            self.notification(channel, &row.status);
        }
    }

    /// One attempt and what it decided: its outcome, a retry, and for a success the
    /// latency since `received_at`; a success or a permanent failure settles the
    /// notification.
    pub fn attempt(
        &self,
        channel: &str,
        http: &HttpTry,
        verdict: &AttemptVerdict,
        received_at: DateTime<Utc>,
    ) {
        let outcome = verdict.outcome.as_str();
        self.attempts
            .with_label_values(&[channel, outcome, &answer_class(http.status)])
            .inc();
        match verdict.outcome {
            AttemptOutcome::Success => {
                let latency = (Utc::now() - received_at).num_milliseconds().max(0) as f64;
                self.latency
                    .with_label_values(&[channel])
                    .observe(latency / 1000.0);
                self.notification(channel, "sent");
            }
            AttemptOutcome::Retry => self.retries.with_label_values(&[channel]).inc(),
            AttemptOutcome::PermanentFailure => self.notification(channel, "failed"),
        }
    }

    pub fn circuit_opened(&self, channel: &str) {
        self.circuit_opens.with_label_values(&[channel]).inc();
    }

    /// One group commit of `batcher`: how many items, how long.
    pub fn batch(&self, batcher: &str, items: usize, took: Duration) {
        self.batch_size
            .with_label_values(&[batcher])
            .observe(items as f64);
        self.commit_seconds
            .with_label_values(&[batcher])
            .observe(took.as_secs_f64());
    }

    /// Everything in Prometheus text format. Reads memory only.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Reads the queues' backlog into the gauges every [`QUEUE_SAMPLE_EVERY`] until
    /// `stop`. A failed read leaves the last figures.
    pub async fn sample_queues(
        &self,
        backlogs: Backlogs,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut every = tokio::time::interval(QUEUE_SAMPLE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            match backlogs.sample().await {
                Ok(b) => {
                    for s in &b.streams {
                        let q = s.queue.as_str();
                        self.queue_depth
                            .with_label_values(&[q])
                            .set(gauge_value(s.length));
                        self.queue_pending
                            .with_label_values(&[q])
                            .set(gauge_value(s.pending));
                    }
                    self.queue_depth
                        .with_label_values(&["delayed"])
                        .set(gauge_value(b.delayed));
                }
                Err(e) => tracing::debug!(error = %e, "could not sample the queues"),
            }
        }
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

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `2xx`, `4xx`, `5xx`… from the answer's code (SMTP replies too: 250 is `2xx`), or
/// `error` when there was none (network error, timeout, refused target).
fn answer_class(status: Option<u16>) -> String {
    match status {
        Some(code @ 100..=599) => format!("{}xx", code / 100),
        Some(_) => "other".into(),
        None => "error".into(),
    }
}

/// Serves `GET /metrics` on `listener` (one thread; SIGTERM stays the worker's own).
/// With `key` set, a scrape needs `Authorization: Bearer <key>`, else 401 JSON.
pub fn serve(
    listener: std::net::TcpListener,
    metrics: Metrics,
    key: MetricsKey,
) -> std::io::Result<actix_web::dev::Server> {
    use actix_web::{web, App, HttpServer};
    let shared = web::Data::new((metrics, key));
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .route("/metrics", web::get().to(scrape))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run())
}

async fn scrape(
    req: actix_web::HttpRequest,
    shared: actix_web::web::Data<(Metrics, MetricsKey)>,
) -> actix_web::HttpResponse {
    let (metrics, key) = shared.get_ref();
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !key.allows(header) {
        // The api's error shape (contract §4).
        return actix_web::HttpResponse::Unauthorized().json(serde_json::json!({"error": {
            "code": "unauthorized",
            "message": "missing or invalid metrics key: send Authorization: Bearer <key>",
            "details": [],
        }}));
    }
    actix_web::HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_register_and_render() {
        let m = Metrics::new();
        m.notification("webhook", "held");
        m.circuit_opened("webhook");
        m.batch("attempts", 3, Duration::from_millis(2));
        let text = m.render();
        for line in [
            "herald_notifications_total{channel=\"webhook\",status=\"held\"} 1",
            "herald_circuit_opens_total{channel=\"webhook\"} 1",
            "herald_group_commit_batch_size_sum{batcher=\"attempts\"} 3",
            "herald_group_commit_seconds_count{batcher=\"attempts\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn answers_are_classed_by_their_first_digit() {
        assert_eq!(answer_class(Some(204)), "2xx");
        assert_eq!(answer_class(Some(250)), "2xx");
        assert_eq!(answer_class(Some(429)), "4xx");
        assert_eq!(answer_class(Some(503)), "5xx");
        assert_eq!(answer_class(Some(42)), "other");
        assert_eq!(answer_class(None), "error");
    }
}
