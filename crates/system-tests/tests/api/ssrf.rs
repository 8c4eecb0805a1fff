//! A person's `webhook_url` cannot make Herald reach addresses that are not globally
//! reachable (issue 19): refused with 422 at `PUT` when the URL holds an address, and
//! at delivery when a host name resolves to one. The address policy itself is
//! `herald_core::targets`; these tests check both places use it.

use crate::helpers::{alert, spawn_app, TestApp, WorkerOptions};
use herald_core::targets::{Reachable, IPV4_SPECIAL_PURPOSE, IPV6_SPECIAL_PURPOSE, NOT_UNICAST};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The addresses the issue found getting through with 201.
const ISSUE_ADDRESSES: [&str; 5] = [
    "::10.0.0.1",
    "64:ff9b::a00:1",
    "2002:a00:1::1",
    "198.18.0.1",
    "240.0.0.1",
];

fn url_of(ip: IpAddr, port: Option<u16>) -> String {
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    match port {
        Some(port) => format!("http://{host}:{port}/hook"),
        None => format!("http://{host}/hook"),
    }
}

async fn put_webhook(app: &TestApp, user: &str, url: &str) -> (u16, Value) {
    app.put(
        &format!("/api/v1/users/{user}"),
        json!({"webhook_url": url}),
    )
    .await
}

fn assert_refused_naming_the_field(url: &str, status: u16, body: &Value) {
    assert_eq!(status, 422, "{url}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("webhook_url"), "{url}: {body}");
    assert_eq!(
        body["error"]["details"][0]["field"], "webhook_url",
        "{body}"
    );
}

#[tokio::test]
async fn the_addresses_of_the_issue_are_refused_at_put_with_422() {
    let app = spawn_app().await;
    for addr in ISSUE_ADDRESSES {
        let url = url_of(addr.parse().unwrap(), None);
        let (status, body) = put_webhook(&app, "mallory", &url).await;
        assert_refused_naming_the_field(&url, status, &body);
    }
    let (status, _) = app.get("/api/v1/users/mallory").await;
    assert_eq!(status, 404, "no refused PUT created the person");
}

#[tokio::test]
async fn every_block_that_is_not_globally_reachable_is_refused_at_put() {
    let app = spawn_app().await;
    let refused = IPV4_SPECIAL_PURPOSE
        .iter()
        .chain(IPV6_SPECIAL_PURPOSE)
        .chain(NOT_UNICAST)
        .filter(|b| b.reachable != Reachable::Yes)
        // The test api allows 127.0.0.0/8 for its wiremock servers.
        .filter(|b| b.net.to_string() != "127.0.0.0/8");
    for block in refused {
        for ip in [block.net.network(), block.net.broadcast()] {
            let url = url_of(ip, None);
            let (status, body) = put_webhook(&app, "mallory", &url).await;
            assert_refused_naming_the_field(&url, status, &body);
        }
    }
    // What the registry marks globally reachable, and ordinary addresses, pass.
    for addr in [
        "192.31.196.1",
        "2001:4:112::1",
        "93.184.216.34",
        "2606:2800:220:1::1",
    ] {
        let url = url_of(addr.parse().unwrap(), None);
        let (status, body) = put_webhook(&app, "alice", &url).await;
        assert!(status == 200 || status == 201, "{url}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_resolving_to_a_refused_address_fails_the_delivery_with_a_reason() {
    let mut app = spawn_app().await;
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hook)
        .await;
    let port = hook.address().port();
    // Each issue address behind a name of its own, and a control name resolving to
    // the wiremock server (127.0.0.1, which the test worker allows).
    let mut overrides: Vec<(String, IpAddr)> = ISSUE_ADDRESSES
        .iter()
        .enumerate()
        .map(|(i, addr)| (format!("evil{i}.ssrf.test"), addr.parse().unwrap()))
        .collect();
    overrides.push(("good.ssrf.test".into(), "127.0.0.1".parse().unwrap()));
    app.start_worker(WorkerOptions {
        resolve_overrides: overrides.clone(),
        ..Default::default()
    });
    app.put("/api/v1/topics/Monoprix", json!({})).await;
    for (name, _) in &overrides {
        let user = name.split('.').next().unwrap_or_default();
        let body = json!({
            "topics": ["Monoprix"],
            "level": "standard",
            "webhook_url": format!("http://{name}:{port}/hook"),
        });
        // The api does not resolve names: that is the worker's job, at connect time.
        let (status, resp) = app.put(&format!("/api/v1/users/{user}"), body).await;
        assert_eq!(status, 201, "{resp}");
    }

    let (_, resp) = app
        .post("/webhooks/alerts", alert("Monoprix", "theft"))
        .await;
    let event_id = resp["event_id"].as_str().unwrap();
    let items = app
        .wait_final(event_id, overrides.len(), Duration::from_secs(20))
        .await;

    for (i, addr) in ISSUE_ADDRESSES.iter().enumerate() {
        let user = format!("evil{i}");
        let n = items
            .iter()
            .find(|n| n["user_id"] == user.as_str())
            .unwrap_or_else(|| panic!("no notification for {user}: {items:?}"));
        assert_eq!(n["status"], "failed", "{n}");
        let reason = n["last_error"].as_str().unwrap_or_default();
        let shown = addr.parse::<IpAddr>().unwrap().to_string();
        assert!(
            reason.contains("forbidden webhook target") && reason.contains(&shown),
            "{user}: the reason should name {shown}: {reason}"
        );
        assert!(reason.contains("not globally reachable"), "{reason}");
    }
    let good = items
        .iter()
        .find(|n| n["user_id"] == "good")
        .expect("the control notification");
    assert_eq!(good["status"], "sent", "{good}");
    assert_eq!(hook.received_requests().await.unwrap().len(), 1);
}
