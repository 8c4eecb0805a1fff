//! `/metrics` on the api and the worker: figures counted in process as things happen,
//! a scrape that sends Postgres nothing at all, and the optional `HERALD_METRICS_KEY`.

use crate::helpers::{alert, spawn_app, TestApp, WorkerOptions};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

const METRICS_KEY: &str = "metrics-key";

fn event(id: &str) -> Value {
    json!({"event_id": id, "user_id": "u_1", "event_type": "payment_failed",
           "event_timestamp": "2025-10-31T19:30:00Z", "properties": {"amount": 1425.0}})
}

/// The sum of the samples of `metric` whose labels contain every one of `labels`.
pub(crate) fn sum(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(name, _)| {
            let bare = name.split('{').next().unwrap_or_default();
            bare == metric && labels.iter().all(|want| name.contains(want))
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

pub(crate) async fn scrape(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
) -> (u16, String) {
    let mut req = client.get(url);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.expect("scrape sent");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test]
async fn the_api_counts_accepted_duplicate_and_rejected_events_and_its_group_commits() {
    let app = spawn_app().await;
    let bad = json!({"user_id": "u_1", "event_type": "payment_failed"});
    let (status, body) = app
        .post("/api/v1/events", json!([event("m-1"), event("m-2"), bad]))
        .await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = app.post("/api/v1/events", json!([event("m-1")])).await;
    assert_eq!((status, body["duplicates"].as_u64()), (202, Some(1)));

    let text = app
        .wait_for("the queue sample", Duration::from_secs(15), || async {
            let (_, text) = scrape(&app.client, &app.url("/metrics"), None).await;
            (sum(&text, "herald_queue_depth", &["queue=\"default\""]) == 2.0).then_some(text)
        })
        .await;

    assert_eq!(
        sum(&text, "herald_events_accepted_total", &[]),
        2.0,
        "{text}"
    );
    assert_eq!(
        sum(&text, "herald_events_duplicate_total", &[]),
        1.0,
        "{text}"
    );
    assert_eq!(
        sum(&text, "herald_events_rejected_total", &[]),
        1.0,
        "{text}"
    );
    let ingest = ["batcher=\"ingest\""];
    assert_eq!(
        sum(&text, "herald_group_commit_batch_size_count", &ingest),
        2.0,
        "one group per request here: {text}"
    );
    assert_eq!(
        sum(&text, "herald_group_commit_batch_size_sum", &ingest),
        3.0,
        "2 + 1 valid events: {text}"
    );
    assert_eq!(
        sum(&text, "herald_group_commit_seconds_count", &ingest),
        2.0
    );
    assert_eq!(
        sum(&text, "herald_queue_pending", &["queue=\"default\""]),
        0.0
    );
}

/// A TCP relay in front of Postgres that counts the bytes clients send through it.
struct CountingRelay {
    addr: std::net::SocketAddr,
    sent: Arc<AtomicU64>,
}

impl CountingRelay {
    async fn start(upstream: String) -> CountingRelay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("free port");
        let addr = listener.local_addr().expect("bound");
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, counter) = (upstream.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client_rx, mut client_tx) = client.into_split();
                    let (mut server_rx, mut server_tx) = server.into_split();
                    let up = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            use tokio::io::{AsyncReadExt, AsyncWriteExt};
                            let n = match client_rx.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            counter.fetch_add(n as u64, Ordering::SeqCst);
                            if server_tx.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    let down = tokio::io::copy(&mut server_rx, &mut client_tx);
                    tokio::select! { _ = up => {}, _ = down => {} }
                });
            }
        });
        CountingRelay { addr, sent }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

/// `postgres://user@host:port/db` with `host:port` replaced; and the `host:port`.
fn through(url: &str, addr: std::net::SocketAddr) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_once('/').expect("a database name");
    let (user, host) = match authority.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), authority),
    };
    (format!("{scheme}://{user}{addr}/{path}"), host.to_string())
}

#[tokio::test]
async fn a_scrape_sends_postgres_nothing() {
    let db = herald_store::testing::TestDb::create()
        .await
        .expect("test database");
    let placeholder: std::net::SocketAddr = "127.0.0.1:1".parse().expect("an address");
    let (_, upstream) = through(&db.url, placeholder);
    let relay = CountingRelay::start(upstream).await;
    let (relayed_url, _) = through(&db.url, relay.addr);
    let prefix = herald_queue::testing::prefix();
    let settings = crate::helpers::api_settings(&relayed_url, &prefix);
    let state = herald_api::build_state(&settings).await.expect("api state");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    let base = format!("http://{}", listener.local_addr().expect("bound"));
    tokio::spawn(herald_api::run(state, listener).expect("server"));
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{base}/api/v1/events"))
        .bearer_auth(crate::helpers::API_KEY)
        .json(&json!([event("q-1"), event("q-2")]))
        .send()
        .await
        .expect("events posted");
    assert_eq!(resp.status().as_u16(), 202);
    assert!(relay.sent() > 0, "the api's SQL goes through the relay");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = relay.sent();
    for _ in 0..50 {
        let (status, text) = scrape(&client, &format!("{base}/metrics"), None).await;
        assert_eq!(status, 200);
        assert_eq!(
            sum(&text, "herald_events_accepted_total", &[]),
            2.0,
            "{text}"
        );
    }
    assert_eq!(relay.sent(), before, "scraping sent Postgres something");

    // The relay does see a route that reads Postgres: the check above can fail.
    let resp = client
        .get(format!("{base}/api/v1/ops/summary"))
        .bearer_auth(crate::helpers::API_KEY)
        .send()
        .await
        .expect("summary");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(relay.sent() > before, "the overview's SQL is relayed");
    herald_queue::testing::purge(&prefix);
}

#[tokio::test]
async fn the_api_asks_for_the_metrics_key_when_one_is_set() {
    let db = herald_store::testing::TestDb::create()
        .await
        .expect("test database");
    let prefix = herald_queue::testing::prefix();
    let settings = herald_api::Settings {
        metrics_key: Some(METRICS_KEY.into()),
        ..crate::helpers::api_settings(&db.url, &prefix)
    };
    let state = herald_api::build_state(&settings).await.expect("api state");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    let url = format!("http://{}/metrics", listener.local_addr().expect("bound"));
    tokio::spawn(herald_api::run(state, listener).expect("server"));

    assert_refused_without_the_key(&url).await;
    herald_queue::testing::purge(&prefix);
}

/// 401 JSON without the key, with a wrong one or with an API key; 200 with it.
async fn assert_refused_without_the_key(url: &str) {
    let client = reqwest::Client::new();
    for wrong in [None, Some("nope"), Some(crate::helpers::API_KEY)] {
        let (status, body) = scrape(&client, url, wrong).await;
        assert_eq!(status, 401, "{wrong:?}: {body}");
        let body: Value = serde_json::from_str(&body).expect("a JSON error");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let (status, text) = scrape(&client, url, Some(METRICS_KEY)).await;
    assert_eq!(status, 200);
    assert!(text.contains("herald_queue_depth"), "{text}");
}

fn free_port() -> std::net::SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    probe.local_addr().expect("bound")
}

async fn worker_with_metrics(app: &mut TestApp) -> String {
    let bind = free_port();
    app.start_worker(WorkerOptions {
        metrics_bind: Some(bind),
        metrics_key: Some(METRICS_KEY.into()),
        ..WorkerOptions::default()
    });
    let url = format!("http://{bind}/metrics");
    let client = reqwest::Client::new();
    app.wait_for("the worker's /metrics", Duration::from_secs(10), || async {
        client.get(&url).send().await.ok().map(|_| ())
    })
    .await;
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_counts_notifications_attempts_latency_and_its_batches() {
    let mut app = spawn_app().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&app.provider)
        .await;
    app.put("/api/v1/topics/Carrefour", json!({})).await;
    for (user, level) in [("crit", "CRITICAL"), ("std", "standard")] {
        let body = json!({"topics": ["Carrefour"], "level": level});
        let (status, resp) = app.put(&format!("/api/v1/users/{user}"), body).await;
        assert!(status == 200 || status == 201, "{resp}");
    }
    let url = worker_with_metrics(&mut app).await;
    assert_refused_without_the_key(&url).await;

    let (_, resp) = app
        .post("/webhooks/alerts", alert("Carrefour", "theft"))
        .await;
    app.wait_final(
        resp["event_id"].as_str().expect("an event id"),
        2,
        Duration::from_secs(20),
    )
    .await;

    let client = reqwest::Client::new();
    let (status, text) = scrape(&client, &url, Some(METRICS_KEY)).await;
    assert_eq!(status, 200);
    let notifications = "herald_notifications_total";
    assert_eq!(
        sum(&text, notifications, &["status=\"pending\""]),
        2.0,
        "{text}"
    );
    assert_eq!(
        sum(&text, notifications, &["status=\"sent\""]),
        2.0,
        "{text}"
    );
    assert_eq!(
        sum(
            &text,
            "herald_delivery_attempts_total",
            &["outcome=\"success\"", "class=\"2xx\""]
        ),
        2.0,
        "{text}"
    );
    assert_eq!(sum(&text, "herald_delivery_retries_total", &[]), 0.0);
    assert_eq!(
        sum(&text, "herald_delivery_latency_seconds_count", &[]),
        2.0
    );
    let latency = sum(&text, "herald_delivery_latency_seconds_sum", &[]);
    assert!(latency > 0.0 && latency < 40.0, "{latency}");
    // Routing handed both deliveries to the worker's free slots with their rows
    // (`hand_off`), so the delivery rows' batcher, which loads a stream job's row, had
    // nothing to load.
    assert_eq!(
        sum(
            &text,
            "herald_group_commit_batch_size_count",
            &["batcher=\"deliveries\""]
        ),
        0.0,
        "{text}"
    );
    for batcher in ["events", "notifications", "attempts"] {
        let label = format!("batcher=\"{batcher}\"");
        assert!(
            sum(&text, "herald_group_commit_batch_size_count", &[&label]) >= 1.0,
            "{batcher}: {text}"
        );
        assert!(sum(&text, "herald_group_commit_seconds_count", &[&label]) >= 1.0);
    }
    assert!(
        text.contains("herald_queue_depth{queue=\"delayed\"}"),
        "{text}"
    );
    let (_, api_text) = scrape(&client, &app.url("/metrics"), None).await;
    dashboard_names_exist(&format!("{api_text}{text}"));
}

/// Every metric the shipped Grafana dashboard queries is one the processes export.
fn dashboard_names_exist(scraped: &str) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/grafana-dashboard.json"
    );
    let dashboard = std::fs::read_to_string(path).expect("docs/grafana-dashboard.json");
    let exported: std::collections::HashSet<&str> = scraped
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let mut queried = 0;
    for (i, _) in dashboard.match_indices("herald_") {
        let name: String = dashboard[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        assert!(exported.contains(base), "the dashboard queries {name}");
        queried += 1;
    }
    assert!(queried >= 10, "{queried} queries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_counts_retries_and_circuit_opens() {
    let mut app = spawn_app().await;
    let hook = wiremock::MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&hook)
        .await;
    app.put("/api/v1/topics/Intermarche", json!({})).await;
    // The circuit opens at the 20th failure across at least 5 notifications.
    for i in 0..10 {
        let body = json!({"topics": ["Intermarche"], "level": "standard",
                          "webhook_url": format!("{}/hook/{i}", hook.uri())});
        app.put(&format!("/api/v1/users/m{i}"), body).await;
    }
    let url = worker_with_metrics(&mut app).await;

    app.post("/webhooks/alerts", alert("Intermarche", "theft"))
        .await;

    let client = reqwest::Client::new();
    let text = app
        .wait_for(
            "the circuit opening counted",
            Duration::from_secs(30),
            || async {
                let (_, text) = scrape(&client, &url, Some(METRICS_KEY)).await;
                (sum(&text, "herald_circuit_opens_total", &[]) >= 1.0).then_some(text)
            },
        )
        .await;
    assert!(
        sum(&text, "herald_delivery_retries_total", &[]) >= 10.0,
        "every notification was retried once at least: {text}"
    );
    assert!(
        sum(
            &text,
            "herald_delivery_attempts_total",
            &["outcome=\"retry\"", "class=\"5xx\""]
        ) >= 10.0,
        "{text}"
    );
    assert_eq!(
        sum(&text, "herald_delivery_latency_seconds_count", &[]),
        0.0
    );
    assert_eq!(
        sum(&text, "herald_notifications_total", &["status=\"sent\""]),
        0.0
    );
}
