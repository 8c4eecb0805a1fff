//! Severity of a notification and the level a person chose (seed 002): a `standard`
//! person receives everything, a `critical` person only critical notifications.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A notification's severity. Stored and shown lowercase; parsed case-insensitively,
/// like levels, so a rule's `severity: CRITICAL` means what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Standard,
    Critical,
}

/// A person's preference level. Stored and shown lowercase; parsed case-insensitively
/// because seed 002's clients send `CRITICAL` / `STANDARD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    #[default]
    Standard,
    Critical,
}

/// Why a level or severity string was refused; names the allowed values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {given:?}: expected one of standard, critical (any case)")]
pub struct ParseLevelError {
    pub what: &'static str,
    pub given: String,
}

impl Level {
    /// Whether a person at this level receives a notification of `severity`.
    pub fn admits(self, severity: Severity) -> bool {
        match self {
            Level::Standard => true,
            Level::Critical => severity == Severity::Critical,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Standard => "standard",
            Level::Critical => "critical",
        }
    }
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Standard => "standard",
            Severity::Critical => "critical",
        }
    }
}

fn parse_either(what: &'static str, s: &str) -> Result<bool, ParseLevelError> {
    if s.eq_ignore_ascii_case("critical") {
        Ok(true)
    } else if s.eq_ignore_ascii_case("standard") {
        Ok(false)
    } else {
        Err(ParseLevelError {
            what,
            given: s.to_string(),
        })
    }
}

impl FromStr for Level {
    type Err = ParseLevelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if parse_either("level", s)? {
            Level::Critical
        } else {
            Level::Standard
        })
    }
}

impl FromStr for Severity {
    type Err = ParseLevelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if parse_either("severity", s)? {
            Severity::Critical
        } else {
            Severity::Standard
        })
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standard_person_receives_everything_and_a_critical_one_only_critical() {
        assert!(Level::Standard.admits(Severity::Standard));
        assert!(Level::Standard.admits(Severity::Critical));
        assert!(Level::Critical.admits(Severity::Critical));
        assert!(!Level::Critical.admits(Severity::Standard));
    }

    #[test]
    fn levels_parse_in_any_case_and_print_lowercase() {
        assert_eq!("CRITICAL".parse::<Level>().unwrap(), Level::Critical);
        assert_eq!("Standard".parse::<Level>().unwrap(), Level::Standard);
        assert_eq!(Level::Critical.to_string(), "critical");
        let err = "urgent".parse::<Level>().unwrap_err();
        assert!(err.to_string().contains("standard, critical"));
    }

    #[test]
    fn severities_deserialize_in_any_case() {
        let cases = [
            ("critical", Some(Severity::Critical)),
            ("CRITICAL", Some(Severity::Critical)),
            ("Critical", Some(Severity::Critical)),
            ("STANDARD", Some(Severity::Standard)),
            ("urgent", None),
        ];
        for (text, want) in cases {
            let got = serde_json::from_value::<Severity>(serde_json::json!(text)).ok();
            assert_eq!(got, want, "severity {text:?}");
        }
        assert_eq!(
            serde_json::to_value(Severity::Critical).ok(),
            Some(serde_json::json!("critical"))
        );
    }
}
