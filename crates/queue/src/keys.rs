//! Redis key names. Everything Herald writes lives under one prefix, so tests (and
//! several deployments) can share a Redis without seeing each other's keys.

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
}
