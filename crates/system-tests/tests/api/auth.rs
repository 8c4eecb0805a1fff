//! Authentication under attack and by scope: key scopes (403 naming the scope
//! needed), the limit on requests without a valid key (429 with `Retry-After`, then
//! even a valid key from that address waits), receipts signed with
//! `HERALD_RECEIPTS_SECRET` instead of a key, and the open front door `GET /`.

use crate::helpers::{config_dir, redis_url};
use herald_core::signing::{sign, WebhookSecret};
use herald_core::targets::AllowedTargets;
use herald_store::testing::TestDb;
use serde_json::{json, Value};

const RECEIPTS_SECRET: &str = "whsec_cmVjZWlwdHMtc2VjcmV0LWZvci10ZXN0cw==";

struct Api {
    base: String,
    client: reqwest::Client,
    _db: TestDb,
    /// Deletes the run's keys (the failed-key counts) when the test ends.
    _redis: herald_queue::testing::TestRedis,
}

async fn serve(keys: &[&str], client_ip_header: Option<&str>) -> Api {
    let db = TestDb::create().await.expect("db");
    let redis = herald_queue::testing::TestRedis::connect();
    let settings = herald_api::Settings {
        database_url: db.url.clone(),
        database_read_url: None,
        redis_url: redis_url(),
        redis_prefix: redis.prefix().to_string(),
        partitions: Default::default(),
        config_dir: config_dir(),
        api_keys: keys.iter().map(|k| k.to_string()).collect(),
        allowed_targets: AllowedTargets::parse("127.0.0.0/8").expect("valid CIDR"),
        db_pool_size: 2,
        rate_limit_per_s: None,
        receipts_secret: Some(WebhookSecret::parse(RECEIPTS_SECRET).expect("secret")),
        client_ip_header: client_ip_header.map(String::from),
        streams: Default::default(),
        metrics_key: None,
    };
    let state = herald_api::build_state(&settings).await.expect("api state");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    let base = format!("http://{}", listener.local_addr().expect("bound"));
    tokio::spawn(herald_api::run(state, listener).expect("server"));
    Api {
        base,
        client: reqwest::Client::new(),
        _db: db,
        _redis: redis,
    }
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("answer");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn each_scope_reaches_its_routes_and_gets_403_naming_the_scope_elsewhere() {
    let api = serve(
        &[
            "ingest:k-ingest",
            "read:k-read",
            "receipts:k-rcpt",
            "admin:k-admin",
            "k-legacy",
        ],
        None,
    )
    .await;
    let event =
        json!({"event_type": "nothing.routes.this", "event_timestamp": "2025-10-31T19:00:00Z"});
    let receipt = json!([{"notification_id": uuid::Uuid::new_v4(), "status": "delivered"}]);
    use reqwest::Method as M;
    for (method, path, body, key, want) in [
        (
            M::POST,
            "/api/v1/events",
            Some(event.clone()),
            "k-ingest",
            202,
        ),
        (M::GET, "/api/v1/notifications", None, "k-ingest", 403),
        (
            M::PUT,
            "/api/v1/users/ana",
            Some(json!({})),
            "k-ingest",
            403,
        ),
        (
            M::POST,
            "/webhooks/receipts",
            Some(receipt.clone()),
            "k-ingest",
            403,
        ),
        (M::GET, "/api/v1/notifications", None, "k-read", 200),
        (
            M::POST,
            "/api/v1/events",
            Some(event.clone()),
            "k-read",
            403,
        ),
        (
            M::POST,
            "/webhooks/receipts",
            Some(receipt.clone()),
            "k-rcpt",
            200,
        ),
        (M::GET, "/api/v1/notifications", None, "k-rcpt", 403),
        (M::PUT, "/api/v1/users/ana", Some(json!({})), "k-admin", 201),
        (M::GET, "/api/v1/users/ana", None, "k-legacy", 200),
        (
            M::POST,
            "/api/v1/events",
            Some(event.clone()),
            "k-legacy",
            202,
        ),
    ] {
        let (status, body) = api.call(method.clone(), path, Some(key), body).await;
        assert_eq!(status, want, "{method} {path} with {key}: {body}");
        if status == 403 {
            assert_eq!(body["error"]["code"], "forbidden", "{body}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("it needs a \""), "{message}");
            assert!(!message.contains(key), "the key leaks: {message}");
        }
    }
    let (_, body) = api
        .call(M::GET, "/api/v1/notifications", Some("k-ingest"), None)
        .await;
    assert_eq!(
        body["error"]["message"],
        "this key's scope \"ingest\" does not allow GET /api/v1/notifications: it needs a \"read\" or \"admin\" key"
    );
}

#[tokio::test]
async fn twenty_failures_a_minute_from_one_address_then_429_even_with_a_valid_key() {
    // Each test uses its own client address (through the proxy header) so the count
    // starts at zero whatever else runs.
    let api = serve(&["good-key"], Some("X-Forwarded-For")).await;
    let random = uuid::Uuid::new_v4();
    let [a, b, c, d, ..] = *random.as_bytes();
    let addr = format!("10.9.{a}.{b}");
    let other = format!("10.8.{c}.{d}");
    let get = |key: Option<&'static str>, from: String| {
        let mut req = api
            .client
            .get(format!("{}/api/v1/notifications", api.base))
            .header("X-Forwarded-For", format!("203.0.113.7, {from}"));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        req.send()
    };
    // Near a minute's end the window could roll over mid-test; start in a fresh one.
    let into_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        % 60;
    if into_minute > 50 {
        tokio::time::sleep(std::time::Duration::from_secs(61 - into_minute)).await;
    }
    for i in 0..20 {
        let key = if i % 2 == 0 { Some("wrong-key") } else { None };
        let resp = get(key, addr.clone()).await.expect("answer");
        assert_eq!(resp.status(), 401, "failure {i}");
    }
    let limited = get(Some("wrong-key"), addr.clone()).await.expect("answer");
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let body: Value = limited.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "too_many_failed_keys", "{body}");
    // Now a right guess gets no answer either, while other addresses are unaffected.
    assert_eq!(
        get(Some("good-key"), addr).await.expect("answer").status(),
        429
    );
    assert_eq!(
        get(Some("good-key"), other).await.expect("answer").status(),
        200
    );
    // Open routes stay open.
    let health = api
        .client
        .get(format!("{}/healthz/live", api.base))
        .send()
        .await
        .expect("answer");
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn receipts_signed_with_the_receipts_secret_need_no_key_and_a_bad_signature_is_401() {
    let api = serve(&["admin-key"], None).await;
    let secret = WebhookSecret::parse(RECEIPTS_SECRET).expect("secret");
    let id = uuid::Uuid::new_v4();
    let body = format!(r#"[{{"notification_id": "{id}", "status": "delivered"}}]"#);
    let post = |body: String, signature: String, ts: i64| {
        api.client
            .post(format!("{}/webhooks/receipts", api.base))
            .header("content-type", "application/json")
            .header("webhook-id", "msg_1")
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
    };
    let now = chrono::Utc::now().timestamp();
    let good = post(
        body.clone(),
        sign(&secret, "msg_1", now, body.as_bytes()),
        now,
    )
    .await
    .expect("answer");
    assert_eq!(good.status(), 200);
    let answer: Value = good.json().await.expect("JSON");
    assert_eq!(answer["unknown"], json!([id]), "{answer}");

    let other = WebhookSecret::parse("whsec_b3RoZXI=").expect("secret");
    for (label, signature, ts, sent) in [
        (
            "another secret",
            sign(&other, "msg_1", now, body.as_bytes()),
            now,
            body.clone(),
        ),
        (
            "a tampered body",
            sign(&secret, "msg_1", now, body.as_bytes()),
            now,
            body.replace("delivered", "opened"),
        ),
        (
            "a stale timestamp",
            sign(&secret, "msg_1", now - 600, body.as_bytes()),
            now - 600,
            body.clone(),
        ),
    ] {
        let resp = post(sent, signature, ts).await.expect("answer");
        assert_eq!(resp.status(), 401, "{label}");
        let err: Value = resp.json().await.expect("JSON");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("invalid receipts signature"),
            "{label}: {err}"
        );
    }
    // A signature opens only the receipts route.
    let events = api
        .client
        .post(format!("{}/api/v1/events", api.base))
        .header("webhook-id", "msg_1")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", sign(&secret, "msg_1", now, b"[]"))
        .body("[]")
        .send()
        .await
        .expect("answer");
    assert_eq!(events.status(), 401);
}

#[tokio::test]
async fn the_root_points_to_the_console_and_the_api_document_without_a_key() {
    let api = serve(&["admin-key"], None).await;
    let (status, body) = api.call(reqwest::Method::GET, "/", None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["console"], "/ui/");
    assert_eq!(body["openapi"], "/openapi.json");
}
