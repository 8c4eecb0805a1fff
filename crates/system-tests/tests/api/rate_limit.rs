//! The optional rate limit per API key (issue 6): off by default; when set, a key's
//! requests over the limit within a second get 429 with `Retry-After` and a JSON
//! error, counted in Redis (so it holds across api processes), other keys are not
//! affected, and with Redis down the limit fails open.

use crate::helpers::{config_dir, redis_url};
use herald_core::targets::AllowedTargets;
use herald_store::testing::TestDb;

const KEYS: [&str; 2] = ["rate-key-a", "rate-key-b"];

async fn serve(db: &TestDb, redis_url: String, prefix: &str, limit: Option<u32>) -> String {
    let settings = herald_api::Settings {
        database_url: db.url.clone(),
        database_read_url: None,
        redis_url,
        redis_prefix: prefix.to_string(),
        partitions: Default::default(),
        config_dir: config_dir(),
        api_keys: KEYS.iter().map(|k| k.to_string()).collect(),
        allowed_targets: AllowedTargets::parse("127.0.0.0/8").expect("valid CIDR"),
        db_pool_size: 2,
        rate_limit_per_s: limit,
        receipts_secret: None,
        client_ip_header: None,
        streams: Default::default(),
        metrics_key: None,
    };
    let state = herald_api::build_state(&settings).await.expect("api state");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    let address = format!("http://{}", listener.local_addr().expect("bound"));
    tokio::spawn(herald_api::run(state, listener).expect("server"));
    address
}

/// Statuses of `n` requests sent at once with `key`.
async fn burst(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    n: usize,
) -> Vec<reqwest::Response> {
    let sends = (0..n).map(|_| {
        client
            .get(format!("{base}/api/v1/notifications?limit=1"))
            .bearer_auth(key)
            .send()
    });
    futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| r.expect("answer"))
        .collect()
}

/// Waits for the start of a fresh one-second window, so a burst fits in one.
async fn at_window_start() {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    tokio::time::sleep(std::time::Duration::from_millis(1000 - ms % 1000 + 20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limit_a_key_gets_429_with_retry_after_and_other_keys_do_not() {
    let db = TestDb::create().await.expect("db");
    // The guard deletes the run's counters when the test ends.
    let redis = herald_queue::testing::TestRedis::connect();
    let prefix = redis.prefix().to_string();
    // Two api processes on the same Redis share each key's count.
    let first = serve(&db, redis_url(), &prefix, Some(5)).await;
    let second = serve(&db, redis_url(), &prefix, Some(5)).await;
    let client = reqwest::Client::new();

    at_window_start().await;
    let mut answers = burst(&client, &first, KEYS[0], 4).await;
    answers.extend(burst(&client, &second, KEYS[0], 4).await);
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        3,
        "{statuses:?}"
    );

    let limited = answers.into_iter().find(|r| r.status() == 429).unwrap();
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1).contains(&retry_after), "Retry-After {retry_after}");
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("5 requests per second"), "{message}");
    assert!(
        !message.contains(KEYS[0]),
        "the key leaks into the error: {message}"
    );

    // The other key has its own budget; open routes are never limited.
    let other = burst(&client, &first, KEYS[1], 3).await;
    assert!(other.iter().all(|r| r.status() == 200));
    let health = client
        .get(format!("{first}/healthz/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // The next window starts afresh.
    at_window_start().await;
    let again = burst(&client, &first, KEYS[0], 1).await;
    assert_eq!(again[0].status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_limit_or_without_redis_nothing_is_refused() {
    let db = TestDb::create().await.expect("db");
    // The guard deletes the run's counters when the test ends.
    let redis = herald_queue::testing::TestRedis::connect();
    let prefix = redis.prefix().to_string();
    let client = reqwest::Client::new();
    // Off by default.
    let unlimited = serve(&db, redis_url(), &prefix, None).await;
    assert!(burst(&client, &unlimited, KEYS[0], 20)
        .await
        .iter()
        .all(|r| r.status() == 200));
    // Redis unreachable: the limit fails open (ingestion must work without Redis).
    let no_redis = serve(&db, "redis://127.0.0.1:1".into(), &prefix, Some(1)).await;
    let statuses: Vec<u16> = burst(&client, &no_redis, KEYS[0], 5)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(statuses, [200; 5]);
}
