//! Durations as people write them in `config/`.
//!
//! Rules, channels and backoff policies all carry durations (`delay: 0s`,
//! `timeout: 5s`, `within: 24h`, `debounce: {period: 86400}`). Operators write them
//! either the human way (`30m`, `1h 30m`, parsed by `humantime`) or as a bare
//! number of seconds, the way seed 004 writes its debounce periods. Both forms go
//! through [`parse_duration`] so every field accepts the same spellings and every
//! mistake gets the same message naming the bad value. [`serde_duration`] plugs
//! the parser into `serde` and writes durations back in the human form.

use std::time::Duration;

/// A duration that is neither a `humantime` string nor a number of seconds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {value:?}: expected e.g. 30s, 5m, 24h or seconds as a number")]
pub struct DurationError {
    /// The text as the operator wrote it.
    pub value: String,
}

impl DurationError {
    fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
        }
    }
}

/// Parses `"0s"`, `"3s"`, `"30m"`, `"24h"`, `"1h 30m"`, `"250ms"` (any `humantime`
/// spelling) or a bare number of seconds (`"86400"`, `"1.5"`). Surrounding
/// whitespace is ignored; negative, empty and unit-less non-numeric values are
/// rejected.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err(DurationError::new(s));
    }
    if is_plain_number(trimmed) {
        return seconds_from_text(trimmed).ok_or_else(|| DurationError::new(s));
    }
    humantime::parse_duration(trimmed).map_err(|_| DurationError::new(s))
}

/// `true` for `123` and `1.5`: digits with at most one inner dot. Leaves out
/// what `f64::from_str` would also take (`inf`, `1e3`, `-1`, `.5`), which no
/// one writes as a duration on purpose.
fn is_plain_number(s: &str) -> bool {
    let mut parts = s.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let is_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    match parts.next() {
        None => is_digits(whole),
        Some(frac) => is_digits(whole) && is_digits(frac),
    }
}

fn seconds_from_text(s: &str) -> Option<Duration> {
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    seconds_from_f64(s.parse::<f64>().ok()?)
}

fn seconds_from_f64(secs: f64) -> Option<Duration> {
    if secs.is_finite() && secs >= 0.0 {
        Duration::try_from_secs_f64(secs).ok()
    } else {
        None
    }
}

/// `serde` adapter for `std::time::Duration` fields:
/// `#[serde(with = "crate::duration::serde_duration")]`.
///
/// Reads a string in any form [`parse_duration`] accepts or a non-negative
/// number of seconds; writes the `humantime` form (`"1h 30m"`, `"0s"`), so a
/// config that is read and written back stays readable.
pub mod serde_duration {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    use super::{parse_duration, seconds_from_f64};

    /// Writes `duration` as a `humantime` string such as `"3s"` or `"1h 30m"`.
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(*duration))
    }

    /// Reads a duration string or a number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as 30s, 5m, 24h or a number of seconds")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom(super::DurationError::new(v.to_string())))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            seconds_from_f64(v).ok_or_else(|| E::custom(super::DurationError::new(v.to_string())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Holder {
        #[serde(with = "crate::duration::serde_duration")]
        d: Duration,
    }

    fn from_json(json: &str) -> Result<Duration, serde_json::Error> {
        serde_json::from_str::<Holder>(json).map(|h| h.d)
    }

    #[test]
    fn humantime_strings_parse_to_their_length() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(30 * 60)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(24 * 3600)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn bare_numbers_are_seconds() {
        assert_eq!(parse_duration("86400"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        assert_eq!(parse_duration("  5m \n"), Ok(Duration::from_secs(300)));
    }

    #[test]
    fn bad_values_are_rejected_with_a_message_naming_them() {
        let err = parse_duration("3x").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid duration "3x": expected e.g. 30s, 5m, 24h or seconds as a number"#
        );
        for bad in [
            "", "  ", "-1", "-5s", "abc", "1e3", "inf", "NaN", ".5", "5.", "1..2",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn serde_accepts_strings_and_integer_seconds() {
        assert_eq!(
            from_json(r#"{"d": "30m"}"#).unwrap(),
            Duration::from_secs(1800)
        );
        assert_eq!(
            from_json(r#"{"d": 86400}"#).unwrap(),
            Duration::from_secs(86_400)
        );
        assert_eq!(
            from_json(r#"{"d": "86400"}"#).unwrap(),
            Duration::from_secs(86_400)
        );
        assert_eq!(
            from_json(r#"{"d": 2.5}"#).unwrap(),
            Duration::from_millis(2500)
        );
    }

    #[test]
    fn serde_rejects_negative_numbers_and_bad_strings_naming_the_value() {
        let err = from_json(r#"{"d": -3}"#).unwrap_err().to_string();
        assert!(err.contains(r#"invalid duration "-3""#), "{err}");
        let err = from_json(r#"{"d": "3x"}"#).unwrap_err().to_string();
        assert!(err.contains(r#"invalid duration "3x""#), "{err}");
        assert!(from_json(r#"{"d": true}"#).is_err());
    }

    #[test]
    fn serde_writes_the_humantime_form_and_reads_it_back() {
        let h = Holder {
            d: Duration::from_secs(5400),
        };
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, r#"{"d":"1h 30m"}"#);
        assert_eq!(serde_json::from_str::<Holder>(&json).unwrap(), h);
        let zero = serde_json::to_string(&Holder { d: Duration::ZERO }).unwrap();
        assert_eq!(zero, r#"{"d":"0s"}"#);
    }
}
