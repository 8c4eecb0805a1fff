//! Debounce (contract §5.1): at most `limit` notifications of a type per person per
//! period. The count covers the person's non-suppressed notifications of that type
//! whose *triggering event* lies in the window around this event's time:
//!
//! * `calendar_day`: the same local day, in the person's time zone;
//! * a duration `p`: within `p` before or after (edges inclusive);
//! * `forever`: ever.
//!
//! Using event time on both sides makes the outcome independent of processing order
//! and the same on replay. The caller counts under a per-person lock, so concurrent
//! workers never exceed the limit.

use crate::duration::parse_duration;
use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    CalendarDay,
    Forever,
    Window(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Debounce {
    pub limit: u32,
    pub period: Period,
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        // A century at most: longer windows overflow the calendar (and `Duration::seconds`
        // panics past i64::MAX / 1000); `forever` says it better.
        let max = Duration::days(crate::conditions::MAX_WITHIN_DAYS);
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => i64::try_from(s)
                .ok()
                .and_then(Duration::try_seconds)
                .filter(|p| *p <= max)
                .map(Period::Window)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "invalid debounce period {s}: at most a century of seconds; use forever"
                    ))
                }),
            Raw::Text(t) if t == "calendar_day" => Ok(Period::CalendarDay),
            Raw::Text(t) if t == "forever" => Ok(Period::Forever),
            Raw::Text(t) => parse_duration(&t)
                .ok()
                .and_then(|d| Duration::from_std(d).ok())
                .filter(|p| *p <= max)
                .map(Period::Window)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "invalid debounce period {t:?}: expected calendar_day, forever, a duration such as 24h (at most a century), or seconds"
                    ))
                }),
        }
    }
}

/// The earliest and latest time Postgres stores comfortably; "forever" spans them.
fn beginning() -> DateTime<Utc> {
    DateTime::UNIX_EPOCH
}

fn end_of_time() -> DateTime<Utc> {
    // 9999-12-31T00:00:00Z is a valid timestamp; the fallback is never taken.
    Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The first instant of `date` in `tz` (midnight, or the first valid time after a DST
/// gap that swallows midnight).
pub fn local_day_start(date: chrono::NaiveDate, tz: Tz) -> DateTime<Utc> {
    (0..=180)
        .find_map(|minutes| {
            let t = NaiveTime::MIN + Duration::minutes(minutes);
            tz.from_local_datetime(&date.and_time(t)).earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| date.and_time(NaiveTime::MIN).and_utc())
}

impl Debounce {
    /// The inclusive event-time window in which earlier notifications count.
    pub fn window(&self, event_time: DateTime<Utc>, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        match self.period {
            Period::Forever => (beginning(), end_of_time()),
            Period::Window(p) => (
                event_time.checked_sub_signed(p).unwrap_or_else(beginning),
                event_time.checked_add_signed(p).unwrap_or_else(end_of_time),
            ),
            Period::CalendarDay => {
                let day = event_time.with_timezone(&tz).date_naive();
                let start = local_day_start(day, tz);
                let next = day
                    .succ_opt()
                    .map(|d| local_day_start(d, tz))
                    .unwrap_or_else(end_of_time);
                (start, next - Duration::microseconds(1))
            }
        }
    }

    /// Whether `already` notifications leave room for another.
    pub fn allows(&self, already: i64) -> bool {
        already < i64::from(self.limit)
    }

    /// The suppression reason a person reads.
    pub fn reason(&self, notification_type: &str, already: i64) -> String {
        let when = match self.period {
            Period::CalendarDay => "today".to_string(),
            Period::Forever => "before".to_string(),
            Period::Window(p) => format!(
                "within {}",
                humantime::format_duration(p.to_std().unwrap_or_default())
            ),
        };
        format!(
            "skipped {notification_type}: already sent {already} {when} (limit {})",
            self.limit
        )
    }
}

/// Parses a person's time zone, UTC when unset or unknown.
pub fn timezone(name: &str) -> Tz {
    name.parse().unwrap_or(Tz::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn daily() -> Debounce {
        Debounce {
            limit: 1,
            period: Period::CalendarDay,
        }
    }

    #[test]
    fn periods_parse_from_names_durations_and_seconds() {
        let p = |y: &str| serde_norway::from_str::<Debounce>(y).map(|d| d.period);
        assert_eq!(
            p("{limit: 1, period: calendar_day}").unwrap(),
            Period::CalendarDay
        );
        assert_eq!(p("{limit: 1, period: forever}").unwrap(), Period::Forever);
        assert_eq!(
            p("{limit: 1, period: 24h}").unwrap(),
            Period::Window(Duration::hours(24))
        );
        assert_eq!(
            p("{limit: 1, period: 30m}").unwrap(),
            Period::Window(Duration::minutes(30))
        );
        assert_eq!(
            p("{limit: 1, period: 86400}").unwrap(),
            Period::Window(Duration::days(1))
        );
        assert!(p("{limit: 1, period: fortnightly}")
            .unwrap_err()
            .to_string()
            .contains("calendar_day"));
    }

    #[test]
    fn a_calendar_day_in_utc_runs_from_midnight_to_the_last_microsecond() {
        let (from, to) = daily().window(at("2025-10-31T19:30:00Z"), Tz::UTC);
        assert_eq!(from, at("2025-10-31T00:00:00Z"));
        assert_eq!(to, at("2025-10-31T23:59:59.999999Z"));
    }

    #[test]
    fn a_calendar_day_follows_the_persons_time_zone_across_midnight() {
        // 23:30 UTC on Oct 31 is already Nov 1 in Paris (UTC+1 in winter).
        let (from, to) = daily().window(at("2025-10-31T23:30:00Z"), Tz::Europe__Paris);
        assert_eq!(from, at("2025-10-31T23:00:00Z"));
        assert_eq!(to, at("2025-11-01T22:59:59.999999Z"));
    }

    #[test]
    fn a_calendar_day_with_a_dst_change_is_23_or_25_hours_long() {
        // Paris leaves summer time on 2025-10-26: that day lasts 25 hours.
        let (from, to) = daily().window(at("2025-10-26T12:00:00Z"), Tz::Europe__Paris);
        assert_eq!(from, at("2025-10-25T22:00:00Z"));
        assert_eq!(to - from + Duration::microseconds(1), Duration::hours(25));
        // New York enters summer time on 2025-03-09: 23 hours.
        let (from, to) = daily().window(at("2025-03-09T15:00:00Z"), Tz::America__New_York);
        assert_eq!(to - from + Duration::microseconds(1), Duration::hours(23));
    }

    #[test]
    fn a_day_whose_midnight_does_not_exist_starts_at_the_first_valid_instant() {
        // Santiago skipped from 00:00 to 01:00 on 2025-09-07.
        let start = local_day_start(
            chrono::NaiveDate::from_ymd_opt(2025, 9, 7).unwrap(),
            Tz::America__Santiago,
        );
        assert_eq!(start, at("2025-09-07T04:00:00Z"));
    }

    #[test]
    fn a_duration_window_includes_exactly_its_edges_on_both_sides() {
        let d = Debounce {
            limit: 2,
            period: Period::Window(Duration::hours(24)),
        };
        let (from, to) = d.window(at("2025-10-31T19:00:00Z"), Tz::UTC);
        assert_eq!(
            (from, to),
            (at("2025-10-30T19:00:00Z"), at("2025-11-01T19:00:00Z"))
        );
        assert!(d.allows(1) && !d.allows(2));
    }

    #[test]
    fn the_reason_says_what_was_already_sent() {
        assert_eq!(
            daily().reason("INSUFFICIENT_FUNDS_EMAIL", 1),
            "skipped INSUFFICIENT_FUNDS_EMAIL: already sent 1 today (limit 1)"
        );
        let ever = Debounce {
            limit: 1,
            period: Period::Forever,
        };
        assert_eq!(
            ever.reason("WELCOME_EMAIL", 1),
            "skipped WELCOME_EMAIL: already sent 1 before (limit 1)"
        );
    }
}
