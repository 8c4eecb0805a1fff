//! Redis key names, all in one place. Everything Herald writes lives under one
//! prefix, so tests (and several deployments) can share a Redis without seeing each
//! other's keys.

use crate::job::Lane;
use herald_core::partitions::Partition;

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

    /// The hash tag every key of `partition` starts with after the prefix: `{p7}`. Keys
    /// sharing it live in one cluster slot, so a script or pipeline over a partition's
    /// streams, delayed set and "queued" counters stays on one node, while different
    /// partitions spread over the nodes.
    fn partition(&self, partition: Partition) -> String {
        format!("{}{{p{}}}:", self.prefix, partition.index())
    }

    /// The prefix of a partition's streams; the scripts append the queue name.
    pub fn stream_prefix(&self, partition: Partition) -> String {
        format!("{}queue:", self.partition(partition))
    }

    /// The stream of one lane: a partition's queue.
    pub fn stream(&self, lane: Lane) -> String {
        format!(
            "{}queue:{}",
            self.partition(lane.partition),
            lane.queue.as_str()
        )
    }

    /// A partition's delayed set.
    pub fn delayed(&self, partition: Partition) -> String {
        format!("{}delayed", self.partition(partition))
    }

    /// How many partitions the deployment was started with (see `Queue::claim_layout`).
    pub fn partition_count(&self) -> String {
        format!("{}partitions", self.prefix)
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

    /// The prefix of a partition's per-job "copies queued" counters; the scripts append
    /// the job's marker (`Job::marker`).
    pub fn queued_prefix(&self, partition: Partition) -> String {
        format!("{}queued:", self.partition(partition))
    }

    /// How many copies of the job named `marker` are on a stream of `partition` (see
    /// `Queue`).
    pub fn queued(&self, partition: Partition, marker: &str) -> String {
        format!("{}{marker}", self.queued_prefix(partition))
    }

    /// The last error of a stream entry's failed run, for its dead letter.
    pub fn failure(&self, lane: Lane, entry_id: &str) -> String {
        format!(
            "{}failure:{}:{entry_id}",
            self.partition(lane.partition),
            lane.queue.as_str()
        )
    }

    /// A hit counter (see `Counters`); the caller's name is used as given.
    pub fn counter(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A destination host's circuit: its streak hash and the set of notification ids
    /// in the streak, which one script updates together: the host is their hash tag,
    /// so both live in one cluster slot.
    pub fn circuit(&self, host: &str) -> (String, String) {
        let base = self.lock(&format!("circuit:{{{host}}}"));
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
    use crate::job::QueueName;
    use herald_core::partitions::Partitions;

    /// Workers of two releases share Redis during a deploy: the names must not drift.
    #[test]
    fn key_names_are_stable() {
        let k = Keys::new("h:");
        let p7 = Partitions::default().all()[7];
        let lane = |queue| Lane::new(p7, queue);
        let (circuit, circuit_ids) = k.circuit("example.com");
        let cases = [
            (k.stream(lane(QueueName::Critical)), "h:{p7}:queue:critical"),
            (k.stream(lane(QueueName::Default)), "h:{p7}:queue:default"),
            (k.stream_prefix(p7), "h:{p7}:queue:"),
            (k.delayed(p7), "h:{p7}:delayed"),
            (k.partition_count(), "h:partitions"),
            (k.lock("sweep"), "h:lock:sweep"),
            (k.heartbeat("w1"), "h:worker:w1"),
            (k.heartbeat_pattern(), "h:worker:*"),
            (k.queued(p7, "deliver:1"), "h:{p7}:queued:deliver:1"),
            (k.queued_prefix(p7), "h:{p7}:queued:"),
            (
                k.failure(lane(QueueName::Default), "1-0"),
                "h:{p7}:failure:default:1-0",
            ),
            (k.counter("rate:ab:7"), "h:rate:ab:7"),
            (circuit, "h:lock:circuit:{example.com}"),
            (circuit_ids, "h:lock:circuit:{example.com}:ids"),
            (k.friend_counts("FT", 17, "u1"), "h:friends:FT:17:u1"),
            (k.changes("u1"), "h:changes:u1"),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }
}
