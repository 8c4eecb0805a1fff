//! Redis key names, all in one place. Everything Herald writes lives under one
//! prefix, so tests (and several deployments) can share a Redis without seeing each
//! other's keys.

use crate::job::QueueName;

/// The consumer group every worker joins.
pub const GROUP: &str = "workers";

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// `prefix` is used as given; `herald:` is the default in production.
    pub fn new(prefix: impl Into<String>) -> Self {
        Keys {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The prefix of both streams; the scheduler script appends the queue name.
    pub fn stream_prefix(&self) -> String {
        format!("{}queue:", self.prefix)
    }

    pub fn stream(&self, queue: QueueName) -> String {
        format!("{}queue:{}", self.prefix, queue.as_str())
    }

    pub fn delayed(&self) -> String {
        format!("{}delayed", self.prefix)
    }

    pub fn lock(&self, name: &str) -> String {
        format!("{}lock:{name}", self.prefix)
    }

    pub fn heartbeat(&self, worker_id: &str) -> String {
        format!("{}worker:{worker_id}", self.prefix)
    }

    pub fn heartbeat_pattern(&self) -> String {
        format!("{}worker:*", self.prefix)
    }

    /// The prefix of the per-job "copies queued" counters; the scripts append the
    /// job's marker (`Job::marker`).
    pub fn queued_prefix(&self) -> String {
        format!("{}queued:", self.prefix)
    }

    /// How many copies of the job named `marker` are on a stream (see `Queue`).
    pub fn queued(&self, marker: &str) -> String {
        format!("{}queued:{marker}", self.prefix)
    }

    /// The last error of a stream entry's failed run, for its dead letter.
    pub fn failure(&self, queue: QueueName, entry_id: &str) -> String {
        format!("{}failure:{}:{entry_id}", self.prefix, queue.as_str())
    }

    /// A hit counter (see `Counters`); the caller's name is used as given.
    pub fn counter(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A destination host's circuit: its streak hash and the set of notification ids
    /// in the streak. Named under `lock:` as they always were, so workers of the
    /// previous release share them during a rolling deploy.
    pub fn circuit(&self, host: &str) -> (String, String) {
        let base = self.lock(&format!("circuit:{host}"));
        let ids = format!("{base}:ids");
        (base, ids)
    }

    /// A channel's shared token bucket (see `RateLimits`).
    pub fn rate(&self, channel: &str) -> String {
        format!("{}rate:{channel}", self.prefix)
    }

    /// A person's friend counters for one notification type and local day.
    pub fn friend_counts(&self, notification_type: &str, day: i64, user_id: &str) -> String {
        format!("{}friends:{notification_type}:{day}:{user_id}", self.prefix)
    }

    /// A person's last write position (see `RecentWrites`).
    pub fn recent_write(&self, user_id: &str) -> String {
        format!("{}wrote:{user_id}", self.prefix)
    }

    /// The pub/sub channel announcing changes to a person's notifications.
    pub fn changes(&self, user_id: &str) -> String {
        format!("{}changes:{user_id}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Workers of two releases share Redis during a deploy: the names must not drift.
    #[test]
    fn key_names_are_stable() {
        let k = Keys::new("h:");
        let (circuit, circuit_ids) = k.circuit("example.com");
        let cases = [
            (k.stream(QueueName::Critical), "h:queue:critical"),
            (k.stream(QueueName::Default), "h:queue:default"),
            (k.stream_prefix(), "h:queue:"),
            (k.delayed(), "h:delayed"),
            (k.lock("sweep"), "h:lock:sweep"),
            (k.heartbeat("w1"), "h:worker:w1"),
            (k.heartbeat_pattern(), "h:worker:*"),
            (k.queued("deliver:1"), "h:queued:deliver:1"),
            (k.queued_prefix(), "h:queued:"),
            (
                k.failure(QueueName::Default, "1-0"),
                "h:failure:default:1-0",
            ),
            (k.counter("rate:ab:7"), "h:rate:ab:7"),
            (circuit, "h:lock:circuit:example.com"),
            (circuit_ids, "h:lock:circuit:example.com:ids"),
            (k.friend_counts("FT", 17, "u1"), "h:friends:FT:17:u1"),
            (k.changes("u1"), "h:changes:u1"),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }
}
