//! When to try a delivery again, and whether an attempt counts as done.
//!
//! contract §6 fixes the policy: a 2xx is a success; a network error, a timeout, a
//! 5xx, a 429 or a 408 is retried with exponential backoff until the channel's
//! `max_attempts`; any other status fails at once. Retry `n` waits
//! `min(initial × multiplier^(n−1), max)` with ±20% jitter, and a `Retry-After`
//! header is honoured (capped at one hour so a hostile receiver cannot park a
//! notification for days).
//!
//! The jitter comes from the `backoff` crate, configured explicitly: its
//! defaults add ±50% jitter and give up after 15 minutes, neither of which is
//! Herald's policy. Herald schedules retries in Redis and Postgres rather than
//! in a sleeping loop, so each delay is computed on its own from the retry
//! number (see [`BackoffPolicy::delay`]) instead of by stepping one long-lived
//! `ExponentialBackoff`.

use std::time::Duration;

use backoff::backoff::Backoff;
use backoff::ExponentialBackoffBuilder;
use chrono::{DateTime, Utc};

/// The jitter contract §5.2 asks for: each delay lies within ±20% of the nominal one.
pub const JITTER: f64 = 0.2;

/// The longest wait a `Retry-After` header may impose.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A channel's `backoff: {initial, multiplier, max}` (contract §5.2).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffPolicy {
    /// Delay before the first retry.
    #[serde(with = "crate::duration::serde_duration")]
    pub initial: Duration,
    /// Growth factor between consecutive retries.
    pub multiplier: f64,
    /// Ceiling of the nominal delay.
    #[serde(with = "crate::duration::serde_duration")]
    pub max: Duration,
}

impl Default for BackoffPolicy {
    /// `{initial: 3s, multiplier: 2, max: 1h}`, as in contract §5.2.
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(3),
            multiplier: 2.0,
            max: Duration::from_secs(3600),
        }
    }
}

/// A backoff policy that cannot describe a sensible schedule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackoffPolicyError {
    #[error("backoff.initial must be greater than 0s")]
    ZeroInitial,
    #[error("backoff.multiplier must be a number of at least 1, got {0}")]
    BadMultiplier(f64),
    #[error("backoff.max ({max}) must not be shorter than backoff.initial ({initial})")]
    MaxBelowInitial { initial: String, max: String },
}

impl BackoffPolicy {
    /// Checks what `serde` cannot: `initial > 0`, a finite `multiplier >= 1` and
    /// `max >= initial`. [`delay`](Self::delay) never panics on a policy that
    /// fails this check, but its schedule would not mean much.
    pub fn validate(&self) -> Result<(), BackoffPolicyError> {
        if self.initial.is_zero() {
            return Err(BackoffPolicyError::ZeroInitial);
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(BackoffPolicyError::BadMultiplier(self.multiplier));
        }
        if self.max < self.initial {
            return Err(BackoffPolicyError::MaxBelowInitial {
                initial: humantime::format_duration(self.initial).to_string(),
                max: humantime::format_duration(self.max).to_string(),
            });
        }
        Ok(())
    }

    /// Delay before retry `retry` (1 is the first retry, i.e. after attempt 1
    /// failed): `min(initial × multiplier^(retry−1), max)` with ±20% jitter.
    /// `retry = 0` is treated as 1.
    #[must_use]
    pub fn delay(&self, retry: u32) -> Duration {
        let nominal = self.nominal_delay(retry);
        let mut backoff = ExponentialBackoffBuilder::new()
            .with_initial_interval(self.initial)
            .with_multiplier(self.multiplier)
            .with_max_interval(self.max)
            .with_randomization_factor(JITTER)
            .with_max_elapsed_time(None)
            .build();
        // `next_backoff` randomises `current_interval`; start it at retry n's
        // nominal delay rather than stepping n times from `initial`.
        backoff.current_interval = nominal;
        // With `max_elapsed_time: None` the crate always returns `Some`; fall
        // back to the nominal delay rather than panic should that ever change.
        let jittered = backoff.next_backoff().unwrap_or(nominal);
        // The crate draws from `[low, high + 1ns]` and truncates to whole
        // nanoseconds; clamp so the ±20% promise holds exactly.
        jittered.clamp(scale(nominal, 1.0 - JITTER), scale(nominal, 1.0 + JITTER))
    }

    /// [`delay`](Self::delay) without jitter, for tests and docs:
    /// `min(initial × multiplier^(retry−1), max)`.
    #[must_use]
    pub fn nominal_delay(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1);
        let exponent = i32::try_from(exponent).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        let max_secs = self.max.as_secs_f64();
        if secs.is_nan() || secs >= max_secs {
            self.max
        } else if secs <= 0.0 {
            Duration::ZERO
        } else {
            // `secs` is finite and within [0, max), so it converts.
            Duration::try_from_secs_f64(secs).unwrap_or(self.max)
        }
    }
}

/// `d × factor` for a non-negative `factor`, saturating instead of panicking
/// where `Duration::mul_f64` would overflow.
fn scale(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

/// How long a `Retry-After` header asks to wait: delta-seconds (`"120"`) or an
/// HTTP-date (`"Wed, 21 Oct 2015 07:28:00 GMT"`, relative to `now`). A date in
/// the past means "now" (zero); anything longer than an hour is capped at
/// [`MAX_RETRY_AFTER`]. `None` when the header is neither form.
#[must_use]
pub fn retry_after_delay(header: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = header.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: too many for a u64 still means "a very long time".
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    let wait = (at - now).to_std().unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The result of one delivery attempt, as stored in `delivery_attempts.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Success,
    Retry,
    PermanentFailure,
}

impl AttemptOutcome {
    /// `"success"`, `"retry"` or `"permanent_failure"` (contract §2).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Retry => "retry",
            Self::PermanentFailure => "permanent_failure",
        }
    }
}

impl std::fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// 2xx is success; 5xx, 429 and 408 are retried; other statuses fail for good.
/// `None` (network error or timeout: no status) is retried.
#[must_use]
pub fn classify_status(status: Option<u16>) -> AttemptOutcome {
    match status {
        None => AttemptOutcome::Retry,
        Some(200..=299) => AttemptOutcome::Success,
        Some(408 | 429 | 500..=599) => AttemptOutcome::Retry,
        Some(_) => AttemptOutcome::PermanentFailure,
    }
}

/// Applies the attempt cap: a `Retry` on attempt `attempt >= max_attempts`
/// (attempts count from 1) becomes `PermanentFailure`.
#[must_use]
pub fn with_cap(outcome: AttemptOutcome, attempt: u32, max_attempts: u32) -> AttemptOutcome {
    match outcome {
        AttemptOutcome::Retry if attempt >= max_attempts => AttemptOutcome::PermanentFailure,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn assert_within_jitter(delay: Duration, nominal: Duration) {
        let low = nominal.mul_f64(0.8);
        let high = nominal.mul_f64(1.2);
        assert!(
            low <= delay && delay <= high,
            "{delay:?} outside [{low:?}, {high:?}] around {nominal:?}"
        );
    }

    #[test]
    fn the_default_policy_is_3s_doubling_up_to_an_hour() {
        let p = BackoffPolicy::default();
        assert_eq!(p.initial, secs(3));
        assert_eq!(p.multiplier, 2.0);
        assert_eq!(p.max, secs(3600));
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn nominal_delays_grow_geometrically_and_stop_at_max() {
        let p = BackoffPolicy::default();
        let got: Vec<u64> = (1..=13).map(|n| p.nominal_delay(n).as_secs()).collect();
        assert_eq!(
            got,
            [3, 6, 12, 24, 48, 96, 192, 384, 768, 1536, 3072, 3600, 3600]
        );
        assert_eq!(p.nominal_delay(u32::MAX), secs(3600));
    }

    #[test]
    fn retry_zero_is_treated_as_the_first_retry() {
        let p = BackoffPolicy::default();
        assert_eq!(p.nominal_delay(0), p.nominal_delay(1));
    }

    #[test]
    fn a_thousand_jittered_delays_stay_within_twenty_percent_of_nominal() {
        let p = BackoffPolicy::default();
        for retry in [1, 2, 3, 5] {
            let nominal = p.nominal_delay(retry);
            let samples: Vec<Duration> = (0..1000).map(|_| p.delay(retry)).collect();
            for d in &samples {
                assert_within_jitter(*d, nominal);
            }
            // The jitter is real and spreads over most of the band.
            let min = samples.iter().min().copied().unwrap_or_default();
            let max = samples.iter().max().copied().unwrap_or_default();
            assert!(min < nominal.mul_f64(0.85), "retry {retry}: min {min:?}");
            assert!(max > nominal.mul_f64(1.15), "retry {retry}: max {max:?}");
        }
    }

    #[test]
    fn delays_clamped_at_max_still_jitter_by_twenty_percent() {
        let p = BackoffPolicy::default();
        for _ in 0..1000 {
            assert_within_jitter(p.delay(30), secs(3600));
        }
    }

    #[test]
    fn a_custom_policy_is_followed() {
        let p = BackoffPolicy {
            initial: Duration::from_millis(500),
            multiplier: 3.0,
            max: secs(10),
        };
        assert_eq!(p.nominal_delay(1), Duration::from_millis(500));
        assert_eq!(p.nominal_delay(2), Duration::from_millis(1500));
        assert_eq!(p.nominal_delay(3), Duration::from_millis(4500));
        assert_eq!(p.nominal_delay(4), secs(10));
        for _ in 0..200 {
            assert_within_jitter(p.delay(3), Duration::from_millis(4500));
        }
    }

    #[test]
    fn odd_policies_never_panic() {
        let odd = [
            BackoffPolicy {
                initial: Duration::ZERO,
                multiplier: 2.0,
                max: secs(1),
            },
            BackoffPolicy {
                initial: secs(1),
                multiplier: f64::NAN,
                max: secs(5),
            },
            BackoffPolicy {
                initial: secs(1),
                multiplier: f64::INFINITY,
                max: secs(5),
            },
            BackoffPolicy {
                initial: secs(1),
                multiplier: -2.0,
                max: secs(5),
            },
            BackoffPolicy {
                initial: secs(10),
                multiplier: 2.0,
                max: secs(1),
            },
            BackoffPolicy {
                initial: Duration::MAX,
                multiplier: 2.0,
                max: Duration::MAX,
            },
        ];
        for p in odd {
            for n in [0, 1, 2, 3, 100] {
                let _ = p.delay(n);
            }
            assert!(p.nominal_delay(5) <= p.max, "{p:?}");
        }
    }

    #[test]
    fn validation_rejects_policies_without_a_sensible_schedule() {
        let base = BackoffPolicy::default();
        let zero = BackoffPolicy {
            initial: Duration::ZERO,
            ..base
        };
        assert_eq!(zero.validate(), Err(BackoffPolicyError::ZeroInitial));
        let shrink = BackoffPolicy {
            multiplier: 0.5,
            ..base
        };
        assert!(matches!(
            shrink.validate(),
            Err(BackoffPolicyError::BadMultiplier(_))
        ));
        let nan = BackoffPolicy {
            multiplier: f64::NAN,
            ..base
        };
        assert!(matches!(
            nan.validate(),
            Err(BackoffPolicyError::BadMultiplier(_))
        ));
        let inverted = BackoffPolicy {
            initial: secs(10),
            max: secs(5),
            ..base
        };
        let err = inverted.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "backoff.max (5s) must not be shorter than backoff.initial (10s)"
        );
    }

    #[test]
    fn the_policy_deserializes_from_config_with_defaults_for_missing_fields() {
        let p: BackoffPolicy =
            serde_json::from_str(r#"{"initial": "3s", "multiplier": 2, "max": "1h"}"#).unwrap();
        assert_eq!(p, BackoffPolicy::default());
        let p: BackoffPolicy = serde_json::from_str(r#"{"initial": 10}"#).unwrap();
        assert_eq!(
            p,
            BackoffPolicy {
                initial: secs(10),
                ..BackoffPolicy::default()
            }
        );
        let p: BackoffPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(p, BackoffPolicy::default());
    }

    #[test]
    fn unknown_policy_fields_are_rejected() {
        let err = serde_json::from_str::<BackoffPolicy>(r#"{"initail": "3s"}"#).unwrap_err();
        assert!(err.to_string().contains("initail"), "{err}");
    }

    #[test]
    fn the_policy_serializes_durations_in_human_form() {
        let json = serde_json::to_string(&BackoffPolicy::default()).unwrap();
        assert_eq!(json, r#"{"initial":"3s","multiplier":2.0,"max":"1h"}"#);
    }

    #[test]
    fn retry_after_in_seconds_is_honoured_up_to_an_hour() {
        let now = Utc::now();
        assert_eq!(retry_after_delay("120", now), Some(secs(120)));
        assert_eq!(retry_after_delay(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(retry_after_delay("86400", now), Some(secs(3600)));
        assert_eq!(
            retry_after_delay("99999999999999999999999", now),
            Some(secs(3600))
        );
    }

    #[test]
    fn retry_after_as_an_http_date_is_relative_to_now() {
        let now = Utc.with_ymd_and_hms(2015, 10, 21, 7, 27, 0).unwrap();
        let header = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(retry_after_delay(header, now), Some(secs(60)));
        let later = Utc.with_ymd_and_hms(2015, 10, 21, 9, 0, 0).unwrap();
        assert_eq!(retry_after_delay(header, later), Some(Duration::ZERO));
        let long_before = Utc.with_ymd_and_hms(2015, 10, 20, 7, 28, 0).unwrap();
        assert_eq!(retry_after_delay(header, long_before), Some(secs(3600)));
    }

    #[test]
    fn unreadable_retry_after_values_are_ignored() {
        let now = Utc::now();
        for bad in [
            "",
            "soon",
            "-5",
            "1.5",
            "12s",
            "Wed, 99 Oct 2015 07:28:00 GMT",
        ] {
            assert_eq!(retry_after_delay(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn statuses_are_classified_per_spec_6() {
        use AttemptOutcome::*;
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(classify_status(Some(s)), Success, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify_status(Some(s)), Retry, "{s}");
        }
        for s in [100, 301, 304, 400, 401, 403, 404, 410, 422, 600] {
            assert_eq!(classify_status(Some(s)), PermanentFailure, "{s}");
        }
        assert_eq!(classify_status(None), Retry);
    }

    #[test]
    fn a_retry_on_the_last_allowed_attempt_becomes_a_permanent_failure() {
        use AttemptOutcome::*;
        assert_eq!(with_cap(Retry, 1, 3), Retry);
        assert_eq!(with_cap(Retry, 2, 3), Retry);
        assert_eq!(with_cap(Retry, 3, 3), PermanentFailure);
        assert_eq!(with_cap(Retry, 4, 3), PermanentFailure);
        assert_eq!(with_cap(Success, 3, 3), Success);
        assert_eq!(with_cap(PermanentFailure, 1, 3), PermanentFailure);
    }

    #[test]
    fn outcomes_have_the_names_stored_in_delivery_attempts() {
        assert_eq!(AttemptOutcome::Success.as_str(), "success");
        assert_eq!(AttemptOutcome::Retry.as_str(), "retry");
        assert_eq!(
            AttemptOutcome::PermanentFailure.to_string(),
            "permanent_failure"
        );
    }
}
