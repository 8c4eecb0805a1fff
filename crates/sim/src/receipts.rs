//! The sink's provider receipts (seed 001): a real provider tells the sender what
//! became of each message it accepted. For every delivery the sink answers with a
//! 2xx, it decides with [`plan`] whether the message was delivered (probability
//! `1 − loss`) and, of those delivered, opened (probability `open`), and queues the
//! matching `delivered` / `opened` receipts for Herald's `POST /webhooks/receipts`.
//!
//! Receipts are batched: the [`Outbox`] is flushed every [`FLUSH_EVERY`] or as soon as
//! [`FLUSH_AT`] receipts wait, at most [`MAX_BATCH`] per request (the API's batch
//! limit). A failed POST (network error, 5xx) keeps the batch for the next flush; a
//! 4xx (bad key, bad body) drops it with an error log, since resending cannot help.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Notify;

/// How often queued receipts are posted.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Queued receipts that trigger a flush before the next tick.
pub const FLUSH_AT: usize = 100;
/// The most receipts one POST carries (Herald's batch limit).
pub const MAX_BATCH: usize = 1000;
/// Receipts kept while the receiver is unreachable; older ones are dropped beyond it.
const MAX_QUEUED: usize = 1_000_000;

/// What becomes of one accepted delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub delivered: bool,
    pub opened: bool,
}

/// Decides a delivery's fate from two uniform rolls in `[0, 1)`: delivered unless the
/// first roll falls under `loss`; opened (only if delivered) when the second falls
/// under `open`. Pure, so the ratios are unit-tested.
pub fn plan(loss: f64, open: f64, roll_delivered: f64, roll_opened: f64) -> Plan {
    let delivered = roll_delivered >= loss;
    Plan {
        delivered,
        opened: delivered && roll_opened < open,
    }
}

/// Where receipts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Herald's `.../webhooks/receipts`.
    pub url: String,
    /// Sent as `Authorization: Bearer`.
    pub api_key: Option<String>,
}

/// Counters shown by `GET /receipts`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Waiting to be posted.
    pub queued: usize,
    /// Accepted by the receiver.
    pub posted: u64,
    /// Dropped after a 4xx (or overflow).
    pub dropped: u64,
    /// Failed POSTs (each retried at the next flush).
    pub failed_posts: u64,
}

/// Receipts waiting to be posted, shared by the delivery handlers and the flusher.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: Mutex<Vec<Value>>,
    target: Mutex<Option<Target>>,
    counters: Mutex<Counters>,
    wake: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Outbox {
    pub fn new(target: Option<Target>) -> Self {
        Self {
            target: Mutex::new(target),
            ..Self::default()
        }
    }

    pub fn target(&self) -> Option<Target> {
        lock(&self.target).clone()
    }

    pub fn set_target(&self, target: Option<Target>) {
        *lock(&self.target) = target;
    }

    pub fn counters(&self) -> Counters {
        Counters {
            queued: lock(&self.queue).len(),
            ..*lock(&self.counters)
        }
    }

    /// Queues the receipts `plan` calls for; nothing when no target is set.
    pub fn record(&self, notification_id: &str, plan: Plan, at: &str) {
        if !plan.delivered || lock(&self.target).is_none() {
            return;
        }
        let mut queue = lock(&self.queue);
        queue.push(json!({"notification_id": notification_id, "status": "delivered", "at": at}));
        if plan.opened {
            queue.push(json!({"notification_id": notification_id, "status": "opened", "at": at}));
        }
        if queue.len() > MAX_QUEUED {
            let excess = queue.len() - MAX_QUEUED;
            queue.drain(..excess);
            lock(&self.counters).dropped += excess as u64;
        }
        if queue.len() >= FLUSH_AT {
            self.wake.notify_one();
        }
    }

    /// The receipts currently queued (tests).
    pub fn queued(&self) -> Vec<Value> {
        lock(&self.queue).clone()
    }

    /// Posts queued receipts every [`FLUSH_EVERY`] (or sooner when many wait), until
    /// the task is dropped.
    pub async fn flush_forever(&self, client: reqwest::Client) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(FLUSH_EVERY) => {}
                () = self.wake.notified() => {}
            }
            while self.flush_once(&client).await {}
        }
    }

    /// Posts one batch; true when a full batch went out and more may wait.
    pub async fn flush_once(&self, client: &reqwest::Client) -> bool {
        let Some(target) = self.target() else {
            return false;
        };
        let batch: Vec<Value> = {
            let mut queue = lock(&self.queue);
            let n = queue.len().min(MAX_BATCH);
            queue.drain(..n).collect()
        };
        if batch.is_empty() {
            return false;
        }
        let full = batch.len() == MAX_BATCH;
        let mut req = client.post(&target.url).json(&batch);
        if let Some(key) = &target.api_key {
            req = req.bearer_auth(key);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                lock(&self.counters).posted += batch.len() as u64;
                full
            }
            Ok(resp) if resp.status().is_client_error() => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                tracing::error!(%status, body = %body.chars().take(500).collect::<String>(),
                    receipts = batch.len(), url = %target.url, "receipts refused; dropped");
                lock(&self.counters).dropped += batch.len() as u64;
                full
            }
            other => {
                let why = match other {
                    Ok(resp) => format!("HTTP {}", resp.status()),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(error = %why, receipts = batch.len(), url = %target.url,
                    "could not post receipts; retrying at the next flush");
                lock(&self.counters).failed_posts += 1;
                let mut queue = lock(&self.queue);
                let rest = std::mem::take(&mut *queue);
                *queue = batch;
                queue.extend(rest);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_follows_loss_then_open() {
        assert_eq!(
            plan(0.1, 0.5, 0.05, 0.0),
            Plan {
                delivered: false,
                opened: false
            }
        );
        assert_eq!(
            plan(0.1, 0.5, 0.1, 0.49),
            Plan {
                delivered: true,
                opened: true
            }
        );
        assert_eq!(
            plan(0.1, 0.5, 0.9, 0.5),
            Plan {
                delivered: true,
                opened: false
            }
        );
        assert_eq!(
            plan(0.0, 0.0, 0.0, 0.0),
            Plan {
                delivered: true,
                opened: false
            }
        );
        assert_eq!(
            plan(1.0, 1.0, 0.999, 0.0),
            Plan {
                delivered: false,
                opened: false
            }
        );
    }

    #[test]
    fn plan_gives_the_ratios_over_many_rolls() {
        let n = 100_000;
        let (mut delivered, mut opened) = (0, 0);
        for _ in 0..n {
            let p = plan(0.1, 0.5, rand::random(), rand::random());
            delivered += usize::from(p.delivered);
            opened += usize::from(p.opened);
        }
        let (d, o) = (delivered as f64 / n as f64, opened as f64 / n as f64);
        assert!((d - 0.9).abs() < 0.01, "delivered {d}");
        assert!((o - 0.45).abs() < 0.01, "opened {o}");
    }

    #[test]
    fn receipts_are_queued_only_with_a_target() {
        let outbox = Outbox::new(None);
        let yes = Plan {
            delivered: true,
            opened: true,
        };
        outbox.record("n1", yes, "2025-11-20T10:00:00Z");
        assert!(outbox.queued().is_empty());
        outbox.set_target(Some(Target {
            url: "http://x/webhooks/receipts".into(),
            api_key: None,
        }));
        outbox.record("n1", yes, "2025-11-20T10:00:00Z");
        outbox.record(
            "n2",
            Plan {
                delivered: true,
                opened: false,
            },
            "2025-11-20T10:00:01Z",
        );
        outbox.record(
            "n3",
            Plan {
                delivered: false,
                opened: false,
            },
            "2025-11-20T10:00:02Z",
        );
        let statuses: Vec<(String, String)> = outbox
            .queued()
            .iter()
            .map(|r| (r["notification_id"].to_string(), r["status"].to_string()))
            .collect();
        assert_eq!(
            statuses,
            [
                ("\"n1\"".into(), "\"delivered\"".into()),
                ("\"n1\"".into(), "\"opened\"".into()),
                ("\"n2\"".into(), "\"delivered\"".into()),
            ]
        );
        assert_eq!(outbox.counters().queued, 3);
    }
}
