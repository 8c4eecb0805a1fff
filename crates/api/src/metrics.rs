//! Prometheus metrics. Request and ingestion counters live in this process; the
//! figures about notifications (by status, delivery latency) and queue depths are
//! read from Postgres and Redis at scrape time, because workers deliver and any
//! number of api processes may run: the shared engines hold the whole picture.

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub events_accepted: IntCounter,
    /// Live streams open in this process (each holds a Redis connection).
    pub sse_streams: IntGauge,
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
        let sse_streams = IntGauge::new(
            "herald_sse_streams",
            "Live notification streams open in this process",
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(sse_streams.clone()))
            .expect("registered once");
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(events_accepted.clone()))
            .expect("registered once");
        Metrics {
            registry,
            requests,
            events_accepted,
            sse_streams,
        }
    }

    /// The process's own metrics in Prometheus text format.
    pub fn render_local(&self) -> String {
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
