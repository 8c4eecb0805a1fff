//! Which queue work travels on. This is the one place that decides it: the api's
//! ingestion, the worker's routing and delivery, the recovery sweep and a manual
//! retry all ask [`queue_for`].

use crate::severity::Severity;
use serde::{Deserialize, Serialize};

/// Which stream a job travels on. Workers drain `critical` before `default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueName {
    Critical,
    Default,
}

impl QueueName {
    pub const ALL: [QueueName; 2] = [QueueName::Critical, QueueName::Default];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Critical => "critical",
            QueueName::Default => "default",
        }
    }

    pub fn parse(s: &str) -> Option<QueueName> {
        match s {
            "critical" => Some(QueueName::Critical),
            "default" => Some(QueueName::Default),
            _ => None,
        }
    }
}

/// The queue for work of `severity`: critical work overtakes everything else.
pub fn queue_for(severity: Severity) -> QueueName {
    match severity {
        Severity::Critical => QueueName::Critical,
        Severity::Standard => QueueName::Default,
    }
}

/// The queue for a stored severity string (any case, as levels are parsed); an
/// unreadable one travels on the default queue.
pub fn queue_for_stored(severity: &str) -> QueueName {
    queue_for(severity.parse().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_decides_the_queue_in_any_case() {
        let cases = [
            ("critical", QueueName::Critical),
            ("CRITICAL", QueueName::Critical),
            ("Critical", QueueName::Critical),
            ("standard", QueueName::Default),
            ("", QueueName::Default),
            ("urgent", QueueName::Default),
        ];
        for (stored, want) in cases {
            assert_eq!(queue_for_stored(stored), want, "severity {stored:?}");
        }
    }

    #[test]
    fn queue_names_round_trip() {
        for q in QueueName::ALL {
            assert_eq!(QueueName::parse(q.as_str()), Some(q));
        }
        assert_eq!(QueueName::parse("Critical"), None);
    }
}
