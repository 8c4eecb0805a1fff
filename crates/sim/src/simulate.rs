//! `herald-sim simulate`: the delivery simulation against a running Herald.
//!
//! 1. registers `--users` people through `PUT /api/v1/users/{id}`, each a member of a
//!    topic of the run's own (`sim_<run id>`);
//! 2. publishes `--messages` `simulation_message` events to that topic (one batch),
//!    which the shipped SIMULATION rule sends to its members on the `push` channel;
//! 3. waits, with a progress bar on stderr, until every message's notifications are
//!    final and the receipts have stopped arriving;
//! 4. prints per message: sent, received (delivered receipts), opened, read back from
//!    `GET /api/v1/events/{id}/stats`, and checks that each message reached exactly
//!    the people it registered.
//!
//! So a run reaches only the people it created, whatever else the database holds.
//! `--yes-broadcast-to-everyone` publishes `broadcast` events instead (the shipped
//! BROADCAST rule: everyone in Herald, people registered before the run included);
//! the ratios are then per message sent to anyone.
//!
//! The provider must be `herald-sim sink` posting receipts to the API
//! (`--receipts-url .../webhooks/receipts`) with the same `--loss` and `--open`. With
//! `--sink URL` this command sets them itself through the sink's `POST /control`
//! (and puts the previous values back at the end), so one sink serves any run.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::{stream, StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Settings of `herald-sim simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateConfig {
    /// Herald's API base URL.
    #[arg(long, env = "HERALD_API_URL", default_value = "http://127.0.0.1:8000")]
    pub api: String,
    /// Herald API key.
    #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// People to register.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Broadcast messages to publish.
    #[arg(long, default_value_t = 5)]
    pub messages: usize,
    /// Loss ratio the sink applies (set on the sink with --sink; otherwise only
    /// printed as the expectation).
    #[arg(long, default_value_t = 0.1)]
    pub loss: f64,
    /// Open ratio of delivered messages the sink applies (as --loss).
    #[arg(long, default_value_t = 0.5)]
    pub open: f64,
    /// The sink's base URL: loss, open and the receipts URL are set through its
    /// `POST /control` for the run.
    #[arg(long)]
    pub sink: Option<String>,
    /// Where the sink posts receipts (default: <api>/webhooks/receipts); differs when
    /// the sink reaches the api by another name (e.g. inside docker compose).
    #[arg(long)]
    pub receipts_url: Option<String>,
    /// Prefix of the registered user ids (`<prefix>0000`, ...).
    #[arg(long, default_value = "sim_")]
    pub user_prefix: String,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Print the results as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Send the messages to everyone in Herald (`broadcast` events), not only to the
    /// people this run registers: people who are not part of the simulation get them too.
    #[arg(long)]
    pub yes_broadcast_to_everyone: bool,
}

/// Who a run's messages reach.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Audience {
    /// The members of the run's own topic: the people it registered.
    Topic(String),
    /// Everyone in Herald.
    Everyone,
}

impl Audience {
    fn of(config: &SimulateConfig, run: uuid::Uuid) -> Audience {
        if config.yes_broadcast_to_everyone {
            Audience::Everyone
        } else {
            Audience::Topic(format!("sim_{}", run.simple()))
        }
    }

    /// The body of `PUT /api/v1/users/{id}` for a simulated person.
    fn person(&self) -> Value {
        match self {
            Audience::Topic(topic) => json!({"traits": {"simulated": true}, "topics": [topic]}),
            Audience::Everyone => json!({"traits": {"simulated": true}}),
        }
    }

    /// Message `i` of `messages` as an event.
    fn message(&self, run: uuid::Uuid, i: usize, messages: usize, now: &str) -> Value {
        let mut event = json!({
            "event_type": "broadcast",
            "event_timestamp": now,
            "event_id": format!("sim-{run}-{i}"),
            "properties": {"title": format!("Message {i}"),
                           "text": format!("Simulated message {i} of {messages}"),
                           "simulation": run.to_string(), "message": i},
        });
        if let Audience::Topic(topic) = self {
            event["event_type"] = json!(SIMULATION_EVENT);
            event["topic"] = json!(topic);
        }
        event
    }
}

/// The event type of the shipped SIMULATION rule (`recipients: topic`).
const SIMULATION_EVENT: &str = "simulation_message";

/// Counts of one message, as `GET /api/v1/events/{id}/stats` gives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Stats {
    pub recipients: u64,
    pub sent: u64,
    pub delivered: u64,
    pub opened: u64,
    pub failed: u64,
    pub suppressed: u64,
    pub pending: u64,
}

impl Stats {
    fn add(self, o: Stats) -> Stats {
        Stats {
            recipients: self.recipients + o.recipients,
            sent: self.sent + o.sent,
            delivered: self.delivered + o.delivered,
            opened: self.opened + o.opened,
            failed: self.failed + o.failed,
            suppressed: self.suppressed + o.suppressed,
            pending: self.pending + o.pending,
        }
    }
}

/// One message's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct MessageReport {
    pub message: usize,
    pub event_id: String,
    pub recipients: u64,
    pub sent: u64,
    pub received: u64,
    pub opened: u64,
    pub failed: u64,
    pub suppressed: u64,
}

impl MessageReport {
    fn new(message: usize, event_id: String, s: Stats) -> Self {
        MessageReport {
            message,
            event_id,
            recipients: s.recipients,
            sent: s.sent,
            received: s.delivered,
            opened: s.opened,
            failed: s.failed,
            suppressed: s.suppressed,
        }
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub users: usize,
    pub loss: f64,
    pub open: f64,
    pub messages: Vec<MessageReport>,
    pub total: MessageReport,
    /// received / sent and opened / sent over all messages.
    pub received_ratio: f64,
    pub opened_ratio: f64,
    pub seconds: f64,
}

/// Polls that must see unchanged counts before the run counts as settled: with the
/// 250 ms poll this is 1.5 s, well over the sink's 100 ms receipt flush.
const QUIET_POLLS: u32 = 6;
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Concurrent requests while registering people.
const REGISTER_CONCURRENCY: usize = 32;

struct Api {
    base: String,
    key: Option<String>,
    client: reqwest::Client,
}

impl Api {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.client.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.request(method.clone(), path);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!(
                "{method} {path}: HTTP {status}: {}",
                text.chars().take(500).collect::<String>()
            );
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// Runs the simulation and prints its report on stdout.
///
/// # Errors
/// When the API or the sink refuses a request, or the run does not settle in time.
pub async fn run(config: SimulateConfig) -> anyhow::Result<()> {
    for (name, p) in [("loss", config.loss), ("open", config.open)] {
        if !(0.0..=1.0).contains(&p) {
            bail!("--{name} must be within 0..=1, got {p}");
        }
    }
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = config.api.trim_end_matches('/').to_string();
    let api = Api {
        base: base.clone(),
        key: config.api_key.clone(),
        client: client.clone(),
    };
    let sink = config
        .sink
        .as_deref()
        .map(|s| s.trim_end_matches('/').to_string());
    let previous = match &sink {
        Some(sink) => {
            let receipts_url = config
                .receipts_url
                .clone()
                .unwrap_or_else(|| format!("{base}/webhooks/receipts"));
            Some(configure_sink(&client, sink, &config, &receipts_url).await?)
        }
        None => None,
    };
    let result = simulate(&api, &config).await;
    if let (Some(sink), Some(previous)) = (&sink, previous) {
        if let Err(e) = restore_sink(&client, sink, previous).await {
            eprintln!("warning: could not restore the sink's settings: {e:#}");
        }
    }
    let (messages, total) = result?;
    let ratio = |n: u64| {
        if total.sent == 0 {
            0.0
        } else {
            n as f64 / total.sent as f64
        }
    };
    let report = Report {
        users: config.users,
        loss: config.loss,
        open: config.open,
        received_ratio: ratio(total.delivered),
        opened_ratio: ratio(total.opened),
        total: MessageReport::new(0, "total".into(), total),
        messages,
        seconds: started.elapsed().as_secs_f64(),
    };
    if config.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_table(&report));
    }
    Ok(())
}

async fn simulate(
    api: &Api,
    config: &SimulateConfig,
) -> anyhow::Result<(Vec<MessageReport>, Stats)> {
    let run = uuid::Uuid::now_v7();
    let audience = Audience::of(config, run);
    register_users(api, config, &audience).await?;
    let event_ids = publish(api, config.messages, run, &audience).await?;
    let stats = wait_settled(api, &event_ids, Duration::from_secs(config.timeout)).await?;
    if audience != Audience::Everyone {
        check_reached_exactly(&stats, config.users)?;
    }
    let total = stats.iter().fold(Stats::default(), |acc, s| acc.add(*s));
    let reports = event_ids
        .into_iter()
        .zip(stats)
        .enumerate()
        .map(|(i, (id, s))| MessageReport::new(i + 1, id, s))
        .collect();
    Ok((reports, total))
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Each message of a topic run must reach exactly the people the run registered: no
/// one else is a member of its topic.
fn check_reached_exactly(stats: &[Stats], users: usize) -> anyhow::Result<()> {
    for (i, s) in stats.iter().enumerate() {
        if s.recipients != users as u64 {
            bail!(
                "message {} reached {} people, but the run registered {users}",
                i + 1,
                s.recipients
            );
        }
    }
    Ok(())
}

async fn register_users(
    api: &Api,
    config: &SimulateConfig,
    audience: &Audience,
) -> anyhow::Result<()> {
    let pb = bar(config.users as u64, "registering");
    let width = config.users.saturating_sub(1).to_string().len().max(4);
    let body = audience.person();
    stream::iter(0..config.users)
        .map(|i| {
            let path = format!("/api/v1/users/{}{i:0width$}", config.user_prefix);
            let (pb, body) = (&pb, &body);
            async move {
                api.call(reqwest::Method::PUT, &path, Some(body)).await?;
                pb.inc(1);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(REGISTER_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    pb.finish_and_clear();
    match audience {
        Audience::Topic(topic) => {
            eprintln!("registered {} people in topic {topic}", config.users)
        }
        Audience::Everyone => eprintln!(
            "registered {} people; the messages go to everyone in Herald",
            config.users
        ),
    }
    Ok(())
}

async fn publish(
    api: &Api,
    messages: usize,
    run: uuid::Uuid,
    audience: &Audience,
) -> anyhow::Result<Vec<String>> {
    let now = chrono::Utc::now().to_rfc3339();
    let events: Vec<Value> = (1..=messages)
        .map(|i| audience.message(run, i, messages, &now))
        .collect();
    let body = api
        .call(
            reqwest::Method::POST,
            "/api/v1/events",
            Some(&json!(events)),
        )
        .await?;
    let ids: Vec<String> = body["event_ids"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|i| i.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if ids.len() != messages {
        bail!(
            "the API accepted {} of {messages} messages: {body}",
            ids.len()
        );
    }
    eprintln!("published {messages} messages");
    Ok(ids)
}

/// Polls the stats of every message until nothing is pending and no count has changed
/// for [`QUIET_POLLS`] polls.
async fn wait_settled(
    api: &Api,
    event_ids: &[String],
    timeout: Duration,
) -> anyhow::Result<Vec<Stats>> {
    let pb = bar(0, "delivering");
    let deadline = Instant::now() + timeout;
    let mut last: Vec<Stats> = Vec::new();
    let mut quiet = 0;
    loop {
        let mut current = Vec::with_capacity(event_ids.len());
        for id in event_ids {
            let body = api
                .call(
                    reqwest::Method::GET,
                    &format!("/api/v1/events/{id}/stats"),
                    None,
                )
                .await?;
            current.push(serde_json::from_value::<Stats>(body).context("reading stats")?);
        }
        let total = current.iter().fold(Stats::default(), |a, s| a.add(*s));
        pb.set_length(total.recipients.max(1));
        pb.set_position(total.recipients.saturating_sub(total.pending));
        if total.pending == 0 && total.sent > 0 {
            pb.set_message("receipts");
        }
        let settled_now = total.pending == 0 && total.recipients > 0 && current == last;
        quiet = if settled_now { quiet + 1 } else { 0 };
        if quiet >= QUIET_POLLS {
            pb.finish_and_clear();
            return Ok(current);
        }
        if Instant::now() >= deadline {
            pb.abandon();
            bail!(
                "not settled after {}s: {} pending, counts still changing ({total:?})",
                timeout.as_secs(),
                total.pending
            );
        }
        last = current;
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Sets loss, open and the receipts URL on the sink; returns its previous settings.
async fn configure_sink(
    client: &reqwest::Client,
    sink: &str,
    config: &SimulateConfig,
    receipts_url: &str,
) -> anyhow::Result<Value> {
    let url = format!("{sink}/control");
    let previous: Value = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .json()
        .await
        .context("reading the sink's settings")?;
    let mut update =
        json!({"loss": config.loss, "open": config.open, "receipts_url": receipts_url});
    if let Some(key) = &config.api_key {
        update["api_key"] = json!(key);
    }
    let resp = client.post(&url).json(&update).send().await?;
    if !resp.status().is_success() {
        bail!(
            "POST {url}: HTTP {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    eprintln!(
        "sink {sink}: loss {}, open {}, receipts to {receipts_url}",
        config.loss, config.open
    );
    Ok(previous)
}

async fn restore_sink(client: &reqwest::Client, sink: &str, previous: Value) -> anyhow::Result<()> {
    let restore = json!({
        "loss": previous["loss"].as_f64().unwrap_or(0.0),
        "open": previous["open"].as_f64().unwrap_or(0.0),
        "receipts_url": previous["receipts_url"],
    });
    let resp = client
        .post(format!("{sink}/control"))
        .json(&restore)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("HTTP {}", resp.status());
    }
    Ok(())
}

fn pct(n: u64, of: u64) -> String {
    if of == 0 {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * n as f64 / of as f64)
    }
}

/// The report as a plain-text table: one line per message, then the total.
pub fn render_table(r: &Report) -> String {
    let mut out = format!(
        "{:<8} {:<36} {:>8} {:>9} {:>8} {:>10} {:>8}\n",
        "message", "event_id", "sent", "received", "opened", "received%", "opened%"
    );
    for m in r.messages.iter().chain(std::iter::once(&r.total)) {
        let label = if m.message == 0 {
            "total".to_string()
        } else {
            m.message.to_string()
        };
        let id = if m.message == 0 {
            ""
        } else {
            m.event_id.as_str()
        };
        out.push_str(&format!(
            "{label:<8} {id:<36} {:>8} {:>9} {:>8} {:>10} {:>8}\n",
            m.sent,
            m.received,
            m.opened,
            pct(m.received, m.sent),
            pct(m.opened, m.sent)
        ));
    }
    out.push_str(&format!(
        "expected received {:.1}% and opened {:.1}% of sent (loss {}, open {}); {:.1}s\n",
        100.0 * (1.0 - r.loss),
        100.0 * (1.0 - r.loss) * r.open,
        r.loss,
        r.open,
        r.seconds
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_reaches_its_own_topic_unless_told_to_broadcast() {
        let run = uuid::Uuid::now_v7();
        let mut config = SimulateConfig {
            api: "http://127.0.0.1:8000".into(),
            api_key: None,
            users: 3,
            messages: 2,
            loss: 0.1,
            open: 0.5,
            sink: None,
            receipts_url: None,
            user_prefix: "sim_".into(),
            timeout: 10,
            json: false,
            yes_broadcast_to_everyone: false,
        };
        let topic = format!("sim_{}", run.simple());
        let audience = Audience::of(&config, run);
        assert_eq!(audience, Audience::Topic(topic.clone()));
        assert_eq!(audience.person()["topics"], json!([topic]));
        let message = audience.message(run, 1, 2, "2026-01-01T00:00:00Z");
        assert_eq!(
            (&message["event_type"], &message["topic"]),
            (&json!(SIMULATION_EVENT), &json!(topic))
        );

        config.yes_broadcast_to_everyone = true;
        let everyone = Audience::of(&config, run);
        assert_eq!(everyone, Audience::Everyone);
        assert_eq!(everyone.person().get("topics"), None);
        let message = everyone.message(run, 1, 2, "2026-01-01T00:00:00Z");
        assert_eq!(
            (&message["event_type"], message.get("topic")),
            (&json!("broadcast"), None)
        );
    }

    #[test]
    fn a_topic_run_must_reach_exactly_the_people_it_registered() {
        let reached = |n| Stats {
            recipients: n,
            ..Stats::default()
        };
        assert!(check_reached_exactly(&[reached(3), reached(3)], 3).is_ok());
        let err = check_reached_exactly(&[reached(3), reached(5)], 3).expect_err("5 is not 3");
        assert_eq!(
            err.to_string(),
            "message 2 reached 5 people, but the run registered 3"
        );
    }

    #[test]
    fn the_table_shows_each_message_and_the_total_with_ratios() {
        let s = Stats {
            recipients: 1000,
            sent: 1000,
            delivered: 900,
            opened: 450,
            ..Stats::default()
        };
        let report = Report {
            users: 1000,
            loss: 0.1,
            open: 0.5,
            messages: vec![MessageReport::new(1, "e1".into(), s)],
            total: MessageReport::new(0, "total".into(), s),
            received_ratio: 0.9,
            opened_ratio: 0.45,
            seconds: 1.0,
        };
        let table = render_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(
            lines[1].starts_with("1 ") && lines[1].contains("e1"),
            "{table}"
        );
        assert!(
            lines[1].contains("90.0%") && lines[1].contains("45.0%"),
            "{table}"
        );
        assert!(lines[2].starts_with("total"), "{table}");
        assert!(
            lines[3].contains("received 90.0% and opened 45.0%"),
            "{table}"
        );
    }
}
