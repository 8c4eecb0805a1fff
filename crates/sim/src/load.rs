//! `herald-sim load`: the load generator behind `make bench` (issue 7, contract §11).
//!
//! Each figure is its own subcommand, so a benchmark driver can run it several times
//! and print the exact command next to the number. Every run prints a human summary on
//! stderr and one JSON object on stdout (the driver parses the last stdout line).
//!
//! | figure | what it measures |
//! |---|---|
//! | `batched` | events/s accepted (202: committed and enqueued) in batches of `--batch` |
//! | `single` | one event per request at `--concurrency`: requests/s, p50/p99 latency |
//! | `e2e` | a fixed offered load (`--rate` events/s, one request each, open loop), each event producing one webhook delivery: event→webhook latency p50/p99 |
//! | `drain` | the maximum sustained rate: `--events` events submitted at once; events/s from the first request to the last delivery |
//! | `fanout` | one alert to a `--members`-member topic: seconds until the last delivery at the sink |
//! | `ceiling` | a plain loop of multi-row inserts into `events` plus pipelined XADDs, straight to Postgres and Redis: the machine's own limit for ingestion |
//! | `rss` | peak resident memory (`VmHWM`) of processes by pid |
//!
//! # Measuring event→webhook latency
//! `e2e` and `drain` send `alert` events to a topic with one member, so the shipped
//! SHOP_ALERT rule turns each into exactly one webhook POST to the sink. Each event
//! carries its send time in `properties.sent_us` (epoch microseconds, taken just before
//! the request leaves); Herald copies properties into the delivery's `data`, and the
//! sink records `received_at` on arrival. Latency = `received_at − sent_us`, both read
//! from the same machine's clock. Closed-loop figures count requests completed inside
//! the measuring window (after `--warmup`), so a slow tail is never left out.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::{BufMut, BytesMut};
use chrono::{SecondsFormat, Utc};
use futures::stream::FuturesUnordered;
use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::{json, Value};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use uuid::Uuid;

/// Settings of `herald-sim load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadConfig {
    #[command(subcommand)]
    pub figure: Figure,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Figure {
    /// Ingestion in batches: events/s accepted (committed in Postgres and enqueued).
    Batched(BatchedArgs),
    /// Ingestion one event per request: requests/s and p50/p99 latency.
    Single(SingleArgs),
    /// End to end at a fixed offered load: event→webhook latency p50/p99.
    E2e(E2eArgs),
    /// End to end flat out: events routed and delivered per second with a backlog.
    Drain(DrainArgs),
    /// One alert to a large topic: seconds until the last delivery.
    Fanout(FanoutArgs),
    /// The machine's ceiling: multi-row inserts and pipelined XADDs in a plain loop.
    Ceiling(CeilingArgs),
    /// Peak resident memory (VmHWM) of processes.
    Rss(RssArgs),
}

/// Where Herald's API is.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// Herald's API base URL.
    #[arg(long, env = "HERALD_API_URL", default_value = "http://127.0.0.1:8000")]
    pub api: String,
    /// Herald API key.
    #[arg(
        long,
        env = "HERALD_API_KEY",
        hide_env_values = true,
        default_value = ""
    )]
    pub api_key: String,
}

/// How long a closed-loop figure runs.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Window {
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds run before measuring starts (connections open, caches warm).
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BatchedArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub window: Window,
    /// Events per request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SingleArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub window: Window,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

/// The one-member topic whose alerts make exactly one webhook delivery each.
#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs {
    /// The sink's base URL (`herald-sim sink`, Herald's HERALD_PROVIDER_URL). Its
    /// records are cleared at the start.
    #[arg(long, default_value = "http://127.0.0.1:5000")]
    pub sink: String,
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 300.0)]
    pub timeout: f64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct E2eArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub sink: SinkArgs,
    /// Offered load, events/s (one event per request, sent on schedule whatever the
    /// answers: an open loop).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of offered load.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[command(flatten)]
    pub to: RecipientArgs,
}

/// Who the `e2e` and `drain` events reach: topics of one member each, taken in turn,
/// so each event makes one delivery and the load spreads over many people. (All to
/// one person would measure that person's change log instead, which serialises the
/// changes of one person by design.)
#[derive(Debug, Clone, clap::Args)]
pub struct RecipientArgs {
    /// Topics (people) the events are spread over; created when missing.
    #[arg(long, default_value_t = 1000)]
    pub recipients: usize,
    /// Prefix of those topics (`<prefix>-0000`, member `<prefix>-0000-u`).
    #[arg(long, default_value = "bench-e2e")]
    pub topic: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DrainArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub sink: SinkArgs,
    /// Events submitted (each makes one delivery).
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Events per submitting request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    #[command(flatten)]
    pub to: RecipientArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub sink: SinkArgs,
    /// Members of the topic (added 1,000 per call with the bulk membership route;
    /// existing ones are kept, so repeated runs reuse them).
    #[arg(long, default_value_t = 10_000)]
    pub members: usize,
    /// The topic.
    #[arg(long, default_value = "bench-fanout")]
    pub topic: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CeilingArgs {
    #[command(flatten)]
    pub window: Window,
    /// The database Herald uses (rows go into its `events` table).
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/herald"
    )]
    pub database_url: String,
    #[arg(
        long,
        env = "REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// Redis key prefix; the loop XADDs to `<prefix>bench:ceiling` and deletes it
    /// afterwards.
    #[arg(long, env = "HERALD_REDIS_PREFIX", default_value = "herald:")]
    pub redis_prefix: String,
    /// Rows per insert statement (and XADDs per pipeline).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Loops running at once, each with its own connections.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Insert with one statement over eight arrays (`SELECT * FROM unnest(...)`, the
    /// api's statement) instead of a VALUES list of `--batch` rows.
    #[arg(long)]
    pub unnest: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RssArgs {
    /// `name=pid`, repeatable.
    #[arg(long = "pid", value_parser = parse_named_pid, required = true)]
    pub pids: Vec<(String, u32)>,
}

fn parse_named_pid(s: &str) -> Result<(String, u32), String> {
    let (name, pid) = s
        .split_once('=')
        .ok_or_else(|| format!("expected name=pid, got {s:?}"))?;
    let pid = pid.parse().map_err(|e| format!("bad pid {pid:?}: {e}"))?;
    Ok((name.to_string(), pid))
}

pub async fn run(config: LoadConfig) -> anyhow::Result<()> {
    let result = match config.figure {
        Figure::Batched(a) => batched(a).await?,
        Figure::Single(a) => single(a).await?,
        Figure::E2e(a) => e2e(a).await?,
        Figure::Drain(a) => drain(a).await?,
        Figure::Fanout(a) => fanout(a).await?,
        Figure::Ceiling(a) => ceiling(a).await?,
        Figure::Rss(a) => rss(a)?,
    };
    println!("{result}");
    Ok(())
}

// ------------------------------------------------------------------ helpers

/// A client that keeps connections open (one per request in flight).
fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")
}

fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

fn run_tag() -> String {
    Uuid::new_v4().simple().to_string()[..10].to_string()
}

/// The `q`-quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// p50, p99 and max in milliseconds of microsecond samples.
fn latency_json(mut samples: Vec<u64>) -> Value {
    samples.sort_unstable();
    json!({
        "p50_ms": ms(quantile(&samples, 0.50)),
        "p99_ms": ms(quantile(&samples, 0.99)),
        "max_ms": ms(samples.last().copied().unwrap_or(0)),
        "samples": samples.len(),
    })
}

/// One ingestion event, the same for the api figures and the ceiling: a realistic
/// size with a client idempotency key, an event type no rule matches.
#[derive(Debug, Clone)]
pub struct BenchEvent {
    pub event_type: &'static str,
    pub user_id: String,
    pub event_timestamp: chrono::DateTime<Utc>,
    pub properties: Value,
    pub idempotency_key: String,
}

impl BenchEvent {
    pub fn new(tag: &str, n: u64) -> BenchEvent {
        BenchEvent {
            event_type: "bench.ingest",
            user_id: format!("bench-u{}", n % 10_000),
            event_timestamp: Utc::now(),
            properties: json!({
                "n": n,
                "amount": 12.5,
                "currency": "EUR",
                "source": "herald-sim load",
                "tags": ["bench", "ingest"],
            }),
            idempotency_key: format!("bench-{tag}-{n}"),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "event_type": self.event_type,
            "event_timestamp": self.event_timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
            "user_id": self.user_id,
            "event_id": self.idempotency_key,
            "properties": self.properties,
        })
    }
}

/// What a closed loop saw inside its measuring window.
#[derive(Debug, Default)]
struct LoopStats {
    requests: u64,
    items: u64,
    /// Items completed over the whole run, warm-up included: what the processes'
    /// CPU time bought (`make bench` prints CPU µs per item).
    items_total: u64,
    errors: u64,
    first_error: Option<String>,
    latencies_us: Vec<u64>,
    window_s: f64,
}

/// Runs `concurrency` loops calling `op(seq)` back to back for warm-up + duration.
/// `op` returns how many items (events, rows) the call completed. Calls completing
/// inside the measuring window count, with their latency.
async fn closed_loop<F, Fut>(concurrency: usize, window: Window, op: F) -> LoopStats
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = anyhow::Result<u64>>,
{
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(window.warmup);
    let end = measure_from + Duration::from_secs_f64(window.duration);
    let op = Rc::new(op);
    let tasks = (0..concurrency).map(|task| {
        let op = Rc::clone(&op);
        async move {
            let mut stats = LoopStats::default();
            let mut seq = task as u64;
            while Instant::now() < end {
                let t = Instant::now();
                let result = op(seq).await;
                let done = Instant::now();
                seq += concurrency as u64;
                if let Ok(items) = &result {
                    stats.items_total += items;
                }
                if done < measure_from || done > end {
                    continue;
                }
                match result {
                    Ok(items) => {
                        stats.requests += 1;
                        stats.items += items;
                        stats.latencies_us.push((done - t).as_micros() as u64);
                    }
                    Err(e) => {
                        stats.errors += 1;
                        stats.first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            stats
        }
    });
    let mut total = LoopStats {
        window_s: window.duration,
        ..Default::default()
    };
    for s in futures::future::join_all(tasks).await {
        total.requests += s.requests;
        total.items += s.items;
        total.items_total += s.items_total;
        total.errors += s.errors;
        if total.first_error.is_none() {
            total.first_error = s.first_error;
        }
        total.latencies_us.extend(s.latencies_us);
    }
    total
}

/// POSTs events; succeeds with the number accepted when the answer is a 202 that
/// accounts for every item.
async fn post_events(
    client: &reqwest::Client,
    api: &ApiArgs,
    body: String,
    expected: usize,
) -> anyhow::Result<u64> {
    let resp = client
        .post(format!("{}/api/v1/events", api.api))
        .bearer_auth(&api.api_key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if status.as_u16() != 202 {
        bail!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        );
    }
    let answer: Value = serde_json::from_slice(&bytes)?;
    let accepted = answer["accepted"].as_u64().unwrap_or(0);
    let duplicates = answer["duplicates"].as_u64().unwrap_or(0);
    if (accepted + duplicates) as usize != expected {
        bail!("{expected} sent, answer {answer}");
    }
    Ok(accepted)
}

fn report_errors(stats: &LoopStats) {
    if let Some(e) = &stats.first_error {
        eprintln!("  {} failed requests; first: {e}", stats.errors);
    }
}

// ------------------------------------------------------------------ figures

async fn batched(args: BatchedArgs) -> anyhow::Result<Value> {
    let client = client()?;
    let tag = run_tag();
    let batch = args.batch as u64;
    let stats = closed_loop(args.concurrency, args.window, |seq| {
        let events: Vec<Value> = (0..batch)
            .map(|i| BenchEvent::new(&tag, seq * batch + i).to_json())
            .collect();
        let body = serde_json::to_string(&events).unwrap_or_default();
        let (client, api) = (&client, &args.api);
        async move { post_events(client, api, body, batch as usize).await }
    })
    .await;
    report_errors(&stats);
    let rate = stats.items as f64 / stats.window_s;
    eprintln!(
        "batched ingestion: {rate:.0} events/s accepted ({} requests of {batch}, concurrency {})",
        stats.requests, args.concurrency
    );
    Ok(json!({
        "figure": "batched",
        "events_per_s": rate,
        "requests": stats.requests,
        "items_total": stats.items_total,
        "errors": stats.errors,
        "batch": batch,
        "concurrency": args.concurrency,
        "request_latency": latency_json(stats.latencies_us),
    }))
}

async fn single(args: SingleArgs) -> anyhow::Result<Value> {
    let client = client()?;
    let tag = run_tag();
    let stats = closed_loop(args.concurrency, args.window, |seq| {
        let body = BenchEvent::new(&tag, seq).to_json().to_string();
        let (client, api) = (&client, &args.api);
        async move { post_events(client, api, body, 1).await }
    })
    .await;
    report_errors(&stats);
    let rate = stats.requests as f64 / stats.window_s;
    let latency = latency_json(stats.latencies_us);
    eprintln!(
        "single-event ingestion: {rate:.0} requests/s at concurrency {}, p50 {} ms, p99 {} ms",
        args.concurrency, latency["p50_ms"], latency["p99_ms"]
    );
    Ok(json!({
        "figure": "single",
        "requests_per_s": rate,
        "items_total": stats.items_total,
        "errors": stats.errors,
        "concurrency": args.concurrency,
        "latency": latency,
    }))
}

/// Makes sure `topic` exists with these members (bulk route, 1,000 per call).
async fn ensure_topic(
    client: &reqwest::Client,
    api: &ApiArgs,
    topic: &str,
    members: &[String],
) -> anyhow::Result<()> {
    let resp = client
        .put(format!("{}/api/v1/topics/{topic}", api.api))
        .bearer_auth(&api.api_key)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("PUT topic {topic}: HTTP {}", resp.status());
    }
    for chunk in members.chunks(1000) {
        let resp = client
            .put(format!("{}/api/v1/topics/{topic}/members", api.api))
            .bearer_auth(&api.api_key)
            .json(&json!({"user_ids": chunk}))
            .send()
            .await?;
        if !resp.status().is_success() {
            let status = resp.status();
            bail!(
                "PUT {topic} members: HTTP {status}: {}",
                resp.text().await.unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Makes sure the one-member topics of `to` exist; returns their names.
async fn ensure_recipients(
    client: &reqwest::Client,
    api: &ApiArgs,
    to: &RecipientArgs,
) -> anyhow::Result<Vec<String>> {
    let topics: Vec<String> = (0..to.recipients.max(1))
        .map(|i| format!("{}-{i:04}", to.topic))
        .collect();
    futures::stream::iter(&topics)
        .map(|t| async move { ensure_topic(client, api, t, &[format!("{t}-u")]).await })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(topics)
}

/// The alert event whose single delivery carries its send time.
fn timed_alert(topic: &str) -> Value {
    json!({
        "event_type": "alert",
        "topic": topic,
        "event_timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        "properties": {
            "label": "normal",
            "location": topic,
            "url": "https://bench.invalid/clip.mp4",
            "alert_uuid": Uuid::new_v4(),
            "sent_us": now_us(),
        },
    })
}

async fn clear_sink(client: &reqwest::Client, sink: &str) -> anyhow::Result<()> {
    let resp = client.delete(format!("{sink}/received")).send().await?;
    if !resp.status().is_success() {
        bail!("DELETE {sink}/received: HTTP {}", resp.status());
    }
    Ok(())
}

async fn sink_ok_count(client: &reqwest::Client, sink: &str) -> anyhow::Result<u64> {
    let count: Value = client
        .get(format!("{sink}/received/count"))
        .send()
        .await?
        .json()
        .await?;
    Ok(count["ok"].as_u64().unwrap_or(0))
}

/// Polls the sink until `want` deliveries were answered 2xx or the timeout passes;
/// returns the count reached.
async fn wait_for_sink(
    client: &reqwest::Client,
    sink: &SinkArgs,
    want: u64,
    every: Duration,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs_f64(sink.timeout);
    loop {
        let got = sink_ok_count(client, &sink.sink).await?;
        if got >= want || Instant::now() >= deadline {
            return Ok(got);
        }
        tokio::time::sleep(every).await;
    }
}

/// One delivery as the sink recorded it.
struct Arrival {
    received_us: i64,
    body: Value,
}

async fn sink_arrivals(client: &reqwest::Client, sink: &str) -> anyhow::Result<Vec<Arrival>> {
    let records: Vec<Value> = client
        .get(format!("{sink}/received?status=200"))
        .send()
        .await?
        .json()
        .await
        .context("reading the sink's records")?;
    Ok(records
        .into_iter()
        .filter_map(|mut r| {
            let at = chrono::DateTime::parse_from_rfc3339(r["received_at"].as_str()?).ok()?;
            Some(Arrival {
                received_us: at.timestamp_micros(),
                body: r["body"].take(),
            })
        })
        .collect())
}

async fn e2e(args: E2eArgs) -> anyhow::Result<Value> {
    let client = client()?;
    let topics = ensure_recipients(&client, &args.api, &args.to).await?;
    clear_sink(&client, &args.sink.sink).await?;
    let total = (args.rate * args.duration).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let mut accepted = 0u64;
    let mut failures: Vec<String> = Vec::new();
    let mut ingest_us: Vec<u64> = Vec::with_capacity(total as usize);
    let start = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        // Send on schedule; collect answers that arrived meanwhile.
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => break,
                Some(done) = in_flight.next() => {
                    record_answer(done, &mut ingest_us, &mut failures, &mut accepted);
                }
            }
        }
        let body = timed_alert(&topics[i as usize % topics.len()]).to_string();
        let (client, api) = (client.clone(), args.api.clone());
        in_flight.push(async move {
            let t = Instant::now();
            let r = post_events(&client, &api, body, 1).await;
            (r, t.elapsed().as_micros() as u64)
        });
    }
    let offered_s = start.elapsed().as_secs_f64();
    while let Some(done) = in_flight.next().await {
        record_answer(done, &mut ingest_us, &mut failures, &mut accepted);
    }
    if let Some(first) = failures.first() {
        eprintln!("  {} failed requests; first: {first}", failures.len());
    }
    let want = accepted;
    let got = wait_for_sink(&client, &args.sink, want, Duration::from_millis(200)).await?;
    let arrivals = sink_arrivals(&client, &args.sink.sink).await?;
    let mut latencies: Vec<u64> = arrivals
        .iter()
        .filter_map(|a| {
            let sent = a.body["data"]["sent_us"].as_i64()?;
            Some((a.received_us - sent).max(0) as u64)
        })
        .collect();
    latencies.sort_unstable();
    let first = arrivals.iter().map(|a| a.received_us).min().unwrap_or(0);
    let last = arrivals.iter().map(|a| a.received_us).max().unwrap_or(0);
    let delivered_rate = if last > first {
        arrivals.len() as f64 / ((last - first) as f64 / 1e6)
    } else {
        0.0
    };
    let latency = latency_json(latencies);
    eprintln!(
        "end to end at {:.0} events/s offered for {offered_s:.1} s: {got}/{want} delivered, \
         event→webhook p50 {} ms, p99 {} ms (max {} ms)",
        args.rate, latency["p50_ms"], latency["p99_ms"], latency["max_ms"]
    );
    Ok(json!({
        "figure": "e2e",
        "offered_per_s": args.rate,
        "offered_s": offered_s,
        "accepted": want,
        "delivered": got,
        "failed_requests": failures.len(),
        "delivered_per_s": delivered_rate,
        "latency": latency,
        "ingest_latency": latency_json(ingest_us),
    }))
}

fn record_answer(
    (result, us): (anyhow::Result<u64>, u64),
    ingest_us: &mut Vec<u64>,
    failures: &mut Vec<String>,
    accepted: &mut u64,
) {
    match result {
        Ok(n) => {
            *accepted += n;
            ingest_us.push(us);
        }
        Err(e) => failures.push(format!("{e:#}")),
    }
}

async fn drain(args: DrainArgs) -> anyhow::Result<Value> {
    let client = client()?;
    let topics = ensure_recipients(&client, &args.api, &args.to).await?;
    clear_sink(&client, &args.sink.sink).await?;
    let start_us = now_us();
    let start = Instant::now();
    // Submit everything up front, 8 requests in flight, so the worker always has a
    // backlog: what arrives at the sink is then the worker's own pace.
    let batches: Vec<(usize, usize)> = (0..args.events)
        .step_by(args.batch)
        .map(|i| (i, args.batch.min(args.events - i)))
        .collect();
    let accepted: u64 = futures::stream::iter(batches)
        .map(|(first, n)| {
            let events: Vec<Value> = (first..first + n)
                .map(|i| timed_alert(&topics[i % topics.len()]))
                .collect();
            let body = serde_json::to_string(&events).unwrap_or_default();
            let (client, api) = (&client, &args.api);
            async move { post_events(client, api, body, n).await }
        })
        .buffer_unordered(8)
        .try_fold(0u64, |acc, n| async move { Ok(acc + n) })
        .await?;
    let submitted_s = start.elapsed().as_secs_f64();
    let got = wait_for_sink(&client, &args.sink, accepted, Duration::from_millis(250)).await?;
    let mut times: Vec<i64> = sink_arrivals(&client, &args.sink.sink)
        .await?
        .iter()
        .map(|a| a.received_us)
        .collect();
    times.sort_unstable();
    let n = times.len();
    // The figure: every event routed and delivered, from the first request to the
    // last arrival. (Route jobs queue ahead of the deliveries they create, so the
    // arrivals bunch up at the end; their own pace is reported apart.)
    let overall = match times.last() {
        Some(&last) if last > start_us => n as f64 / ((last - start_us) as f64 / 1e6),
        _ => 0.0,
    };
    let (lo, hi) = (n / 10, (n * 9 / 10).saturating_sub(1));
    let arrival_pace = if n >= 10 && times[hi] > times[lo] {
        (hi - lo) as f64 / ((times[hi] - times[lo]) as f64 / 1e6)
    } else {
        0.0
    };
    eprintln!(
        "drain: {got}/{accepted} routed and delivered at {overall:.0} events/s (first request \
         to last delivery; submitted in {submitted_s:.1} s); arrivals' own pace {arrival_pace:.0}/s"
    );
    Ok(json!({
        "figure": "drain",
        "events": accepted,
        "delivered": got,
        "submitted_s": submitted_s,
        "deliveries_per_s": overall,
        "arrival_pace_per_s": arrival_pace,
    }))
}

async fn fanout(args: FanoutArgs) -> anyhow::Result<Value> {
    let client = client()?;
    let members: Vec<String> = (0..args.members)
        .map(|i| format!("{}-m{i:06}", args.topic))
        .collect();
    let setup = Instant::now();
    ensure_topic(&client, &args.api, &args.topic, &members).await?;
    eprintln!(
        "  {} members in topic {} ({:.1} s)",
        members.len(),
        args.topic,
        setup.elapsed().as_secs_f64()
    );
    clear_sink(&client, &args.sink.sink).await?;
    let alert_uuid = Uuid::new_v4();
    let start_us = now_us();
    let start = Instant::now();
    let resp = client
        .post(format!("{}/webhooks/alerts", args.api.api))
        .bearer_auth(&args.api.api_key)
        .json(&json!({
            "alert_uuid": alert_uuid,
            "location": args.topic,
            "label": "normal",
            "url": "https://bench.invalid/clip.mp4",
            "time_spotted": Utc::now().timestamp_millis() as f64 / 1000.0,
        }))
        .send()
        .await?;
    if resp.status().as_u16() != 202 {
        let status = resp.status();
        bail!(
            "POST /webhooks/alerts: HTTP {status}: {}",
            resp.text().await.unwrap_or_default()
        );
    }
    let accepted_ms = start.elapsed().as_secs_f64() * 1000.0;
    let want = members.len() as u64;
    let got = wait_for_sink(&client, &args.sink, want, Duration::from_millis(50)).await?;
    let ours = alert_uuid.to_string();
    let arrivals: Vec<i64> = sink_arrivals(&client, &args.sink.sink)
        .await?
        .iter()
        .filter(|a| a.body["alert_uuid"].as_str() == Some(ours.as_str()))
        .map(|a| a.received_us)
        .collect();
    let last = arrivals.iter().copied().max().unwrap_or(start_us);
    let first = arrivals.iter().copied().min().unwrap_or(start_us);
    let seconds = (last - start_us) as f64 / 1e6;
    eprintln!(
        "fan-out to {want}: last of {} deliveries {seconds:.2} s after the alert \
         (first after {:.0} ms; alert accepted in {accepted_ms:.0} ms)",
        arrivals.len(),
        (first - start_us) as f64 / 1e3
    );
    if got < want {
        eprintln!(
            "  only {got} of {want} arrived within {} s",
            args.sink.timeout
        );
    }
    Ok(json!({
        "figure": "fanout",
        "members": want,
        "delivered": arrivals.len(),
        "seconds_to_last": seconds,
        "seconds_to_first": (first - start_us) as f64 / 1e6,
        "complete": got >= want,
    }))
}

// ------------------------------------------------------------------ ceiling

/// Binary encodings for tokio-postgres without enabling its optional type features
/// (which would rebuild diesel-async's copy of it for the whole workspace).
#[derive(Debug)]
struct PgUuid(Uuid);
#[derive(Debug)]
struct PgTimestamptz(chrono::DateTime<Utc>);
#[derive(Debug)]
struct PgJsonb(String);

type SqlResult = Result<IsNull, Box<dyn StdError + Sync + Send>>;

impl ToSql for PgUuid {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> SqlResult {
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::UUID
    }
    to_sql_checked!();
}

/// Microseconds since 2000-01-01T00:00:00Z, Postgres's epoch.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

impl ToSql for PgTimestamptz {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> SqlResult {
        out.put_i64(self.0.timestamp_micros() - PG_EPOCH_US);
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }
    to_sql_checked!();
}

impl ToSql for PgJsonb {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> SqlResult {
        out.put_u8(1); // jsonb binary format version
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }
    to_sql_checked!();
}

/// The api's statement, with the same columns, conflict clause and RETURNING.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "WITH input (id, event_type, user_id, topic, event_timestamp, properties, user_traits, \
         idempotency_key) AS (VALUES ",
    );
    for r in 0..rows {
        let b = r * 8;
        if r > 0 {
            sql.push(',');
        }
        sql.push_str(&format!(
            "(${}::uuid,${}::text,${}::text,${}::text,${}::timestamptz,${}::jsonb,${}::jsonb,${}::text)",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8
        ));
    }
    sql.push(')');
    sql.push_str(KEYED_INSERT);
    sql
}

/// After the rows (`input`): claim the keys in `event_keys`, store the events whose key
/// was new, as the api does (events are partitioned, so the keys have a table of their own).
const KEYED_INSERT: &str = ", keyed AS (INSERT INTO event_keys (key, event_id) \
     SELECT idempotency_key, id FROM input WHERE idempotency_key IS NOT NULL \
     ORDER BY idempotency_key ON CONFLICT (key) DO NOTHING RETURNING event_id) \
     INSERT INTO events (id, event_type, user_id, topic, event_timestamp, properties, \
     user_traits, idempotency_key) SELECT * FROM input \
     WHERE idempotency_key IS NULL OR id IN (SELECT event_id FROM keyed) RETURNING id";

/// The api's statement: eight arrays, whatever the row count.
fn unnest_sql() -> String {
    format!(
        "WITH input AS MATERIALIZED (SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], \
         $4::text[], $5::timestamptz[], $6::jsonb[], $7::jsonb[], $8::text[]) AS i(id, \
         event_type, user_id, topic, event_timestamp, properties, user_traits, \
         idempotency_key)){KEYED_INSERT}"
    )
}

struct CeilingLoop {
    pg: tokio_postgres::Client,
    statement: tokio_postgres::Statement,
    redis: redis::aio::MultiplexedConnection,
}

async fn ceiling(args: CeilingArgs) -> anyhow::Result<Value> {
    let tag = run_tag();
    let stream = format!("{}bench:ceiling", args.redis_prefix);
    let redis_client = redis::Client::open(args.redis_url.as_str())?;
    let unnest = args.unnest;
    let sql = if unnest {
        unnest_sql()
    } else {
        insert_sql(args.batch)
    };
    let mut loops = Vec::with_capacity(args.concurrency);
    let mut backends: Vec<u32> = Vec::new();
    for _ in 0..args.concurrency {
        let (pg, connection) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls)
            .await
            .context("connecting to Postgres")?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "postgres connection ended");
            }
        });
        let statement = pg.prepare(&sql).await.context("preparing the insert")?;
        let redis = redis_client
            .get_multiplexed_async_connection()
            .await
            .context("connecting to Redis")?;
        let backend: i32 = pg.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
        backends.push(backend as u32);
        loops.push(CeilingLoop {
            pg,
            statement,
            redis,
        });
    }
    // Postgres's own CPU for these connections (when it runs on this machine): read
    // here, since the backends exit with the connections.
    let backend_cpu_before: Option<f64> = backends.iter().map(|&p| cpu_seconds(p)).sum();
    let loops: Vec<tokio::sync::Mutex<CeilingLoop>> =
        loops.into_iter().map(tokio::sync::Mutex::new).collect();
    let empty = PgJsonb("{}".to_string());
    let batch = args.batch as u64;
    let stats = closed_loop(args.concurrency, args.window, |seq| {
        let slot = &loops[seq as usize % args.concurrency];
        let (tag, stream, empty) = (&tag, &stream, &empty);
        async move {
            let mut l = slot.lock().await;
            // The same work the api does per row: a v7 id, the event's fields.
            let events: Vec<BenchEvent> = (0..batch)
                .map(|i| BenchEvent::new(tag, seq * batch + i))
                .collect();
            let ids: Vec<PgUuid> = events.iter().map(|_| PgUuid(Uuid::now_v7())).collect();
            let times: Vec<PgTimestamptz> = events
                .iter()
                .map(|e| PgTimestamptz(e.event_timestamp))
                .collect();
            let props: Vec<PgJsonb> = events
                .iter()
                .map(|e| PgJsonb(e.properties.to_string()))
                .collect();
            let topic: Option<&str> = None;
            let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(events.len() * 8);
            for (i, e) in events.iter().enumerate() {
                params.push(&ids[i]);
                params.push(&e.event_type);
                params.push(&e.user_id);
                params.push(&topic);
                params.push(&times[i]);
                params.push(&props[i]);
                params.push(empty);
                params.push(&e.idempotency_key);
            }
            let CeilingLoop {
                pg,
                statement,
                redis,
            } = &mut *l;
            let rows = if unnest {
                let column = |f: fn(&BenchEvent) -> &str| events.iter().map(f).collect::<Vec<_>>();
                let types = column(|e| e.event_type);
                let users = column(|e| &e.user_id);
                let keys = column(|e| &e.idempotency_key);
                let topics: Vec<Option<&str>> = vec![None; events.len()];
                let traits: Vec<&PgJsonb> = vec![empty; events.len()];
                pg.query(
                    &*statement,
                    &[
                        &ids, &types, &users, &topics, &times, &props, &traits, &keys,
                    ],
                )
                .await?
            } else {
                pg.query(&*statement, &params).await?
            };
            let mut pipe = redis::pipe();
            for row in &rows {
                let id: &[u8] = row.try_get::<_, PgRawUuid>(0)?.0;
                let id = Uuid::from_slice(id)?;
                pipe.cmd("XADD")
                    .arg(stream)
                    .arg("*")
                    .arg("job")
                    .arg(format!(r#"{{"kind":"route","event_id":"{id}"}}"#))
                    .ignore();
            }
            pipe.query_async::<()>(redis).await?;
            Ok(rows.len() as u64)
        }
    })
    .await;
    let backend_cpu_after: Option<f64> = backends.iter().map(|&p| cpu_seconds(p)).sum();
    report_errors(&stats);
    if let Ok(mut c) = redis_client.get_multiplexed_async_connection().await {
        let _: Result<(), _> = redis::cmd("DEL").arg(&stream).query_async(&mut c).await;
    }
    let rate = stats.items as f64 / stats.window_s;
    eprintln!(
        "ceiling: {rate:.0} rows/s inserted ({} per {} statement) and XADDed, {} loops",
        args.batch,
        if unnest { "unnest" } else { "VALUES" },
        args.concurrency
    );
    Ok(json!({
        "figure": "ceiling",
        "rows_per_s": rate,
        "statements": stats.requests,
        "errors": stats.errors,
        "batch": args.batch,
        "concurrency": args.concurrency,
        "unnest": unnest,
        "statement_latency": latency_json(stats.latencies_us),
        // Over warm-up and measuring window both.
        "postgres_backend_cpu_s": backend_cpu_after.zip(backend_cpu_before).map(|(a, b)| a - b),
    }))
}

/// A uuid column read back as its 16 raw bytes.
struct PgRawUuid<'a>(&'a [u8]);

impl<'a> tokio_postgres::types::FromSql<'a> for PgRawUuid<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(PgRawUuid(raw))
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::UUID
    }
}

// ------------------------------------------------------------------ rss

/// CPU seconds (user + system) a local process has used; None when it is not ours to
/// see (Postgres on another machine). Assumes the usual 100 clock ticks per second.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// `VmHWM` and `VmRSS` of a process, in KiB.
fn memory_of(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmHWM:"), field("VmRSS:")))
}

fn rss(args: RssArgs) -> anyhow::Result<Value> {
    let mut out: HashMap<String, Value> = HashMap::new();
    for (name, pid) in &args.pids {
        let (hwm, now) = memory_of(*pid)?;
        eprintln!(
            "{name} (pid {pid}): peak RSS {:.1} MB, now {:.1} MB",
            hwm as f64 / 1024.0,
            now as f64 / 1024.0
        );
        out.insert(
            name.clone(),
            json!({"pid": pid, "peak_mb": hwm as f64 / 1024.0, "now_mb": now as f64 / 1024.0}),
        );
    }
    Ok(json!({"figure": "rss", "processes": out}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }

    #[test]
    fn the_ceiling_statement_numbers_every_parameter() {
        let sql = insert_sql(2);
        let row = |b: usize| {
            format!(
                "(${}::uuid,${}::text,${}::text,${}::text,${}::timestamptz,${}::jsonb,${}::jsonb,${}::text)",
                b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8
            )
        };
        assert!(
            sql.contains(&format!("(VALUES {},{})", row(0), row(8))),
            "{sql}"
        );
        assert!(!sql.contains("$17"), "{sql}");
    }

    #[test]
    fn named_pids_parse() {
        assert_eq!(parse_named_pid("api=12"), Ok(("api".to_string(), 12)));
        assert!(parse_named_pid("api").is_err());
    }
}
