//! `spawn_app()`: the api on a random port with a fresh database and Redis prefix;
//! `spawn_app_with_worker()` adds an in-process worker whose providers point at a
//! wiremock server. Everything is torn down when the `TestApp` is dropped.

use herald_core::targets::AllowedTargets;
use herald_queue::{Changes, Circuits, Queue, Redis};
use herald_store::testing::TestDb;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wiremock::MockServer;

pub const API_KEY: &str = "test-key";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: TestDb,
    pub queue: Queue,
    pub circuits: Circuits,
    pub changes: Changes,
    pub provider: MockServer,
    /// The SMTP server the shipped `email` channel sends to (the sink's receiver).
    pub mail: std::sync::Arc<herald_sim::sink::SinkState>,
    pub smtp_port: u16,
    /// The api's shared state, for tests that look inside the process.
    pub state: herald_api::AppState,
    workers: Vec<(CancellationToken, tokio::task::JoinHandle<()>)>,
    prefix: String,
}

pub fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

/// A private copy of config/ with `file` replaced; removed when the process exits
/// is not guaranteed, so it lives under target/ rather than /tmp.
pub fn config_copy_with(file: &str, contents: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/test-config")
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&dir).expect("config copy dir");
    for entry in std::fs::read_dir(config_dir()).expect("config dir") {
        let path = entry.expect("entry").path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, dir.join(name)).expect("config file copied");
        }
    }
    std::fs::write(dir.join(file), contents).expect("config file written");
    dir
}

pub fn redis_url() -> String {
    herald_queue::testing::redis_url()
}

pub async fn spawn_app() -> TestApp {
    spawn(false, config_dir()).await
}

pub async fn spawn_app_with_worker() -> TestApp {
    spawn(true, config_dir()).await
}

/// The api alone, reading its config from `dir` (e.g. a [`config_copy_with`]).
pub async fn spawn_app_with_config(dir: PathBuf) -> TestApp {
    spawn(false, dir).await
}

/// The api's settings for a test: its database and key prefix, the test key, loopback
/// targets allowed, every option at its default. Tests change what they need with
/// `Settings { field: …, ..api_settings(url, prefix) }`.
pub fn api_settings(database_url: &str, redis_prefix: &str) -> herald_api::Settings {
    herald_api::Settings {
        database_url: database_url.to_string(),
        database_read_url: None,
        redis_url: redis_url(),
        redis_prefix: redis_prefix.to_string(),
        partitions: Default::default(),
        config_dir: config_dir(),
        api_keys: vec![API_KEY.to_string()],
        allowed_targets: AllowedTargets::parse("127.0.0.0/8").expect("valid CIDR"),
        db_pool_size: 4,
        rate_limit_per_s: None,
        receipts_secret: None,
        client_ip_header: None,
        metrics_key: None,
        streams: Default::default(),
    }
}

/// The api alone, with its settings changed by `change` first.
pub async fn spawn_app_with_settings(change: impl FnOnce(&mut herald_api::Settings)) -> TestApp {
    spawn_with(false, config_dir(), change).await
}

async fn spawn(with_worker: bool, config_dir: PathBuf) -> TestApp {
    spawn_with(with_worker, config_dir, |_| {}).await
}

async fn spawn_with(
    with_worker: bool,
    config_dir: PathBuf,
    change: impl FnOnce(&mut herald_api::Settings),
) -> TestApp {
    let db = TestDb::create().await.expect("test database");
    spawn_on(with_worker, config_dir, db, change).await
}

/// The api alone on a database of the private primary that `scripts/pg-replica.sh`
/// starts (`make test` does), reading from its streaming replica; returns the app
/// and the replica's URL of the test's database.
pub async fn spawn_app_with_replica() -> (TestApp, String) {
    let (primary, replica) = match (
        std::env::var("HERALD_TEST_PRIMARY_URL"),
        std::env::var("HERALD_TEST_REPLICA_URL"),
    ) {
        (Ok(p), Ok(r)) => (p, r),
        _ => panic!(
            "HERALD_TEST_PRIMARY_URL and HERALD_TEST_REPLICA_URL are not set: run the tests \
             with `make test`, or `eval $(scripts/pg-replica.sh start)` first"
        ),
    };
    let db = TestDb::create_on(&primary)
        .await
        .expect("test database on the primary");
    let read_url = db.url_on(&replica);
    wait_for_replica(&read_url).await;
    let replica_url = read_url.clone();
    let app = spawn_on(false, config_dir(), db, move |s| {
        s.database_read_url = Some(replica_url)
    })
    .await;
    (app, read_url)
}

/// Waits until the replica has replayed the creation and migration of the database.
async fn wait_for_replica(read_url: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(pool) = herald_store::connect(read_url, 1) {
            if let Ok(mut conn) = herald_store::pool::get(&pool).await {
                if herald_store::people::topic_exists(&mut conn, "any")
                    .await
                    .is_ok()
                {
                    return;
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replica has not caught up within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn spawn_on(
    with_worker: bool,
    config_dir: PathBuf,
    db: TestDb,
    change: impl FnOnce(&mut herald_api::Settings),
) -> TestApp {
    let prefix = herald_queue::testing::prefix();
    let provider = MockServer::start().await;
    let mut settings = herald_api::Settings {
        config_dir,
        ..api_settings(&db.url, &prefix)
    };
    change(&mut settings);
    let state = herald_api::build_state(&settings).await.expect("api state");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    let address = format!("http://{}", listener.local_addr().expect("bound"));
    let server = herald_api::run(state.clone(), listener).expect("server");
    tokio::spawn(server);
    let redis = Redis::connect(&redis_url(), &prefix, Default::default()).expect("redis");
    let (mail, smtp_port) = start_smtp_sink().await;
    let mut app = TestApp {
        address,
        client: reqwest::Client::new(),
        queue: Queue::new(redis.clone()),
        circuits: Circuits::new(redis.clone()),
        changes: Changes::new(redis),
        db,
        provider,
        mail,
        smtp_port,
        state,
        workers: Vec::new(),
        prefix,
    };
    if with_worker {
        app.start_worker(WorkerOptions::default());
    }
    app
}

/// The sink's SMTP receiver on a free loopback port; returns its records and port.
pub async fn start_smtp_sink() -> (std::sync::Arc<herald_sim::sink::SinkState>, u16) {
    let behaviour = herald_sim::sink::Behaviour {
        fail_rate: 0.0,
        latency_ms: 0,
        status: None,
        loss: 0.0,
        open: 0.0,
        smtp_reply: None,
    };
    let state = std::sync::Arc::new(herald_sim::sink::SinkState::new(behaviour, None));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("free port");
    let port = listener.local_addr().expect("bound").port();
    tokio::spawn(herald_sim::smtp::serve(listener, state.clone()));
    (state, port)
}

/// How a test's in-process worker runs.
pub struct WorkerOptions {
    pub visibility_timeout: Duration,
    /// Signing secret for every channel (`HERALD_CHANNEL_SECRET` in channels.yml).
    pub channel_secret: Option<String>,
    /// More `${VAR}` values for the config, e.g. a short reminder delay.
    pub config_env: Vec<(String, String)>,
    /// A `bundling.yml` replacing the shipped one (a copy of config/ is used).
    pub bundling_yaml: Option<String>,
    /// Host names the worker's webhook client answers without DNS (testing hook).
    pub resolve_overrides: Vec<(String, std::net::IpAddr)>,
    /// How long a rotated-out webhook secret keeps signing (24 h by default).
    pub webhook_secret_overlap: Duration,
    /// A config directory replacing the shipped one (e.g. a [`config_copy_with`]).
    pub config_dir: Option<PathBuf>,
    /// Where the worker serves `/metrics` (not served by default).
    pub metrics_bind: Option<std::net::SocketAddr>,
    /// The key its `/metrics` asks for.
    pub metrics_key: Option<String>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            visibility_timeout: Duration::from_secs(15),
            channel_secret: None,
            config_env: Vec::new(),
            bundling_yaml: None,
            resolve_overrides: Vec::new(),
            webhook_secret_overlap: herald_core::signing::DEFAULT_ROTATION_OVERLAP,
            config_dir: None,
            metrics_bind: None,
            metrics_key: None,
        }
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Sends JSON with the API key; returns status and parsed body (Null if none).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(API_KEY);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// Polls until `check` returns Some, or panics naming `what` after `timeout`.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The notifications of an event, via the API.
    pub async fn notifications_of(&self, event_id: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!(
                "/api/v1/notifications?event_id={event_id}&limit=500"
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until every notification of `event_id` is final and there are `n` of them.
    pub async fn wait_final(&self, event_id: &str, n: usize, timeout: Duration) -> Vec<Value> {
        self.wait_for(
            &format!("{n} final notifications for {event_id}"),
            timeout,
            || async {
                let items = self.notifications_of(event_id).await;
                let done = items.len() == n
                    && items.iter().all(|i| {
                        matches!(i["status"].as_str(), Some("sent" | "failed" | "suppressed"))
                    });
                done.then_some(items)
            },
        )
        .await
    }

    /// Starts an in-process worker whose providers all point at `self.provider`; call
    /// it again for more workers sharing the queues.
    pub fn start_worker(&mut self, opts: WorkerOptions) {
        let settings = self.worker_settings(opts);
        let token = CancellationToken::new();
        let stop = token.clone();
        let handle = tokio::spawn(async move {
            herald_worker::run(settings, stop)
                .await
                .expect("worker runs");
        });
        self.workers.push((token, handle));
    }

    /// A worker's context on this app's database and Redis, with no loop running:
    /// a test calls routing, flushes and the sweep itself, one step at a time.
    pub async fn worker_context(&self, opts: WorkerOptions) -> herald_worker::Context {
        herald_worker::Context::build(self.worker_settings(opts))
            .await
            .expect("worker context")
    }

    /// A worker on this app's database and Redis, its HTTP channels pointing at
    /// `self.provider` and its SMTP channel at `self.smtp_port`.
    fn worker_settings(&self, opts: WorkerOptions) -> herald_worker::Settings {
        let mut config_env = vec![
            ("HERALD_PROVIDER_URL".to_string(), self.provider.uri()),
            (
                "HERALD_SMTP_URL".to_string(),
                format!("smtp://127.0.0.1:{}", self.smtp_port),
            ),
        ];
        if let Some(secret) = opts.channel_secret {
            config_env.push(("HERALD_CHANNEL_SECRET".into(), secret));
        }
        // The test's own values first: the first of a name wins.
        config_env.splice(0..0, opts.config_env);
        herald_worker::Settings {
            database_url: self.db.url.clone(),
            redis_url: redis_url(),
            redis_prefix: self.prefix.clone(),
            config_dir: match (&opts.config_dir, &opts.bundling_yaml) {
                (Some(dir), _) => dir.clone(),
                (None, Some(yaml)) => config_copy_with("bundling.yml", yaml),
                (None, None) => config_dir(),
            },
            queues: herald_queue::QueueName::ALL.to_vec(),
            partitions: Default::default(),
            served: herald_queue::Partitions::default().all(),
            concurrency: 8,
            visibility_timeout: opts.visibility_timeout,
            sweep_interval: Duration::from_millis(500),
            max_deliveries: 5,
            allowed_targets: AllowedTargets::parse("127.0.0.0/8").expect("valid CIDR"),
            resolve_overrides: opts.resolve_overrides,
            config_env,
            webhook_secret_overlap: opts.webhook_secret_overlap,
            metrics_bind: opts.metrics_bind,
            metrics_key: opts.metrics_key,
        }
    }

    /// Waits until every event in `ids` is routed (all its notification rows exist).
    pub async fn wait_routed(&self, ids: &[Value]) {
        let pool = herald_store::connect(&self.db.url, 1).expect("pool");
        self.wait_for("events routed", Duration::from_secs(20), || async {
            let mut conn = herald_store::pool::get(&pool).await.ok()?;
            for id in ids.iter().filter_map(|v| v.as_str()) {
                let id: uuid::Uuid = id.parse().ok()?;
                let event = herald_store::events::find(&mut conn, id).await.ok()?;
                if event.status != "routed" {
                    return None;
                }
            }
            Some(())
        })
        .await
    }

    /// Stops the workers gracefully and waits for them to drain.
    pub async fn stop_workers(&mut self) {
        for (token, handle) in self.workers.drain(..) {
            token.cancel();
            let _ = handle.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        for (token, _) in &self.workers {
            token.cancel();
        }
        // A worker still running after the purge would put keys back (its next read
        // finds no consumer group and recreates the streams). On a multi-threaded
        // runtime the workers run on while we wait here, so wait for them to stop; on
        // a single-threaded one they cannot run again (this thread is the runtime,
        // and it drops them next).
        let multi_threaded = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_threaded {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while self.workers.iter().any(|(_, handle)| !handle.is_finished())
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Leave nothing behind in the shared Redis.
        herald_queue::testing::purge(&self.prefix);
    }
}

/// A well-formed alert for `location`.
pub fn alert(location: &str, label: &str) -> Value {
    serde_json::json!({
        "alert_uuid": uuid::Uuid::new_v4(),
        "location": location,
        "label": label,
        "url": "https://media.example/b36006d7.mp4",
        "time_spotted": 1742470260.083,
    })
}
