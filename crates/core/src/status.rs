//! A notification's status: the one vocabulary the store writes, the api shows and
//! the worker decides on. Stored and shown lowercase.
//!
//! `pending` waits for its due time or a retry; `bundled` is an item held in a
//! pending bundle; `sent`, `failed` and `suppressed` are final.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationStatus {
    Pending,
    Bundled,
    Sent,
    Failed,
    Suppressed,
}

impl NotificationStatus {
    pub const ALL: [NotificationStatus; 5] = [
        NotificationStatus::Pending,
        NotificationStatus::Bundled,
        NotificationStatus::Sent,
        NotificationStatus::Failed,
        NotificationStatus::Suppressed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Pending => "pending",
            NotificationStatus::Bundled => "bundled",
            NotificationStatus::Sent => "sent",
            NotificationStatus::Failed => "failed",
            NotificationStatus::Suppressed => "suppressed",
        }
    }

    /// Whether nothing will change the notification any more (a receipt aside).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            NotificationStatus::Sent | NotificationStatus::Failed | NotificationStatus::Suppressed
        )
    }
}

/// A status string that is none of the five; names the allowed values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid status {0:?}: expected one of pending, bundled, sent, failed, suppressed")]
pub struct ParseStatusError(pub String);

impl FromStr for NotificationStatus {
    type Err = ParseStatusError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NotificationStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| ParseStatusError(s.to_string()))
    }
}

impl fmt::Display for NotificationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<NotificationStatus> for str {
    fn eq(&self, other: &NotificationStatus) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<NotificationStatus> for String {
    fn eq(&self, other: &NotificationStatus) -> bool {
        self.as_str() == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_string() {
        for status in NotificationStatus::ALL {
            assert_eq!(status.as_str().parse::<NotificationStatus>(), Ok(status));
            assert_eq!(status.to_string(), status.as_str());
        }
        assert!("Sent".parse::<NotificationStatus>().is_err());
        assert!("".parse::<NotificationStatus>().is_err());
    }

    #[test]
    fn only_sent_failed_and_suppressed_are_final() {
        let finals: Vec<_> = NotificationStatus::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(
            finals,
            [
                NotificationStatus::Sent,
                NotificationStatus::Failed,
                NotificationStatus::Suppressed
            ]
        );
    }
}
