//! When a notification may go out (contract §5.3): a person's quiet hours, a rule's
//! send window and an event's `deliver_at`. All three only move a notification's due
//! time; the delayed set (and, after a Redis loss, the recovery sweep reading the due
//! time back from Postgres) does the waiting, so nothing here polls.
//!
//! Windows are local wall-clock times in the person's time zone, half-open
//! (`[start, end)`), and cross midnight when `end` is not after `start`
//! (`22:00`–`07:00`). Local times are resolved to instants the way a person's clock
//! reads them: at a DST fold the earlier of the two instants, in a DST gap the first
//! instant after it (a window ending at 02:30 on the night clocks jump from 02:00 to
//! 03:00 ends at 03:00).
//!
//! Pure: the instant to decide for is always an argument.

use crate::event::FieldError;
use crate::severity::Severity;
use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone,
    Timelike, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A daily window of local wall-clock time, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalWindow {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl LocalWindow {
    /// Parses `start` and `end` (`HH:MM` or `HH:MM:SS`); `field` prefixes the names in
    /// errors (`quiet_hours` → `quiet_hours.start`). Equal times are refused: such a
    /// window would be either empty or the whole day, and neither is worth a setting.
    pub fn parse(field: &str, start: &str, end: &str) -> Result<LocalWindow, FieldError> {
        let start = parse_time(&format!("{field}.start"), start)?;
        let end = parse_time(&format!("{field}.end"), end)?;
        if start == end {
            return Err(FieldError::invalid(
                &format!("{field}.end"),
                "must differ from start",
            ));
        }
        Ok(LocalWindow { start, end })
    }

    /// The occurrence that opens on local day `day`, as local wall-clock times.
    fn opening_on(&self, day: NaiveDate) -> (NaiveDateTime, NaiveDateTime) {
        let end_day = if self.end <= self.start {
            day.succ_opt().unwrap_or(day)
        } else {
            day
        };
        (day.and_time(self.start), end_day.and_time(self.end))
    }

    /// The occurrence (opening the day before or the same day) that holds `local`.
    fn holding(&self, local: NaiveDateTime) -> Option<(NaiveDateTime, NaiveDateTime)> {
        let today = local.date();
        [today.pred_opt().unwrap_or(today), today]
            .into_iter()
            .map(|d| self.opening_on(d))
            .find(|(s, e)| *s <= local && local < *e)
    }

    /// `HH:MM–HH:MM` for messages.
    fn describe(&self) -> String {
        format!("{}–{}", clock(self.start), clock(self.end))
    }
}

/// `HH:MM` or `HH:MM:SS`, two digits each, 24-hour clock.
pub fn parse_time(field: &str, raw: &str) -> Result<NaiveTime, FieldError> {
    let well_formed = matches!(raw.len(), 5 | 8)
        && raw.bytes().enumerate().all(|(i, b)| match i {
            2 | 5 => b == b':',
            _ => b.is_ascii_digit(),
        });
    // Built from the numbers rather than parsed with a format: chrono's parser takes
    // second 60 for a leap second, which a clock setting has no use for.
    let number = |at: usize| raw.get(at..at + 2).and_then(|d| d.parse::<u32>().ok());
    well_formed
        .then(|| {
            let seconds = if raw.len() == 8 { number(6)? } else { 0 };
            NaiveTime::from_hms_opt(number(0)?, number(3)?, seconds)
        })
        .flatten()
        .ok_or_else(|| {
            FieldError::invalid(
                field,
                format!("{raw:?} is not a time of day as HH:MM or HH:MM:SS (24-hour clock)"),
            )
        })
}

/// A time of day as people read it: `07:00`, or `07:00:30` when the seconds matter.
fn clock(t: NaiveTime) -> String {
    if t.second() == 0 {
        t.format("%H:%M").to_string()
    } else {
        t.format("%H:%M:%S").to_string()
    }
}

/// The instant local wall-clock time `local` names in `tz`: the earlier one at a fold,
/// the first one after a gap.
pub fn instant_of(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(earlier, _) => earlier.with_timezone(&Utc),
        LocalResult::None => {
            // Inside a gap. Transitions fall on whole minutes, so the first valid
            // minute after `local` is where the clock jumped to.
            let mut probe = local.with_second(0).unwrap_or(local);
            for _ in 0..24 * 60 {
                probe += Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
            local.and_utc()
        }
    }
}

fn local_of(at: DateTime<Utc>, tz: Tz) -> NaiveDateTime {
    at.with_timezone(&tz).naive_local()
}

/// A person's quiet hours as given and stored (`PUT /api/v1/users/{id}`):
/// `{"start": "22:00", "end": "07:00", "hold_critical": false, "channels": ["push"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursSpec {
    pub start: String,
    pub end: String,
    /// Hold critical notifications too (by default they go at once).
    #[serde(default)]
    pub hold_critical: bool,
    /// Only these channels are held; absent: every channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
}

/// Quiet hours, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuietHours {
    pub window: LocalWindow,
    pub hold_critical: bool,
    pub channels: Option<Vec<String>>,
}

impl QuietHours {
    /// Checks a `quiet_hours` value; errors name the field (`quiet_hours.start` …).
    pub fn parse(value: &Value) -> Result<QuietHours, FieldError> {
        let spec: QuietHoursSpec = serde_json::from_value(value.clone()).map_err(|e| {
            FieldError::invalid(
                "quiet_hours",
                format!("must be {{\"start\": \"HH:MM\", \"end\": \"HH:MM\", \"hold_critical\"?: bool, \"channels\"?: [..]}}: {e}"),
            )
        })?;
        QuietHours::from_spec(&spec)
    }

    pub fn from_spec(spec: &QuietHoursSpec) -> Result<QuietHours, FieldError> {
        Ok(QuietHours {
            window: LocalWindow::parse("quiet_hours", &spec.start, &spec.end)?,
            hold_critical: spec.hold_critical,
            channels: spec.channels.clone(),
        })
    }

    /// Stored quiet hours; a value that no longer parses holds nothing (a person
    /// rather gets a notification than loses it to a setting that cannot be read).
    pub fn from_stored(value: Option<&Value>) -> Option<QuietHours> {
        value
            .filter(|v| !v.is_null())
            .and_then(|v| QuietHours::parse(v).ok())
    }

    /// Whether these quiet hours hold a notification on `channel` of `severity`.
    pub fn applies_to(&self, channel: &str, severity: Severity) -> bool {
        (severity != Severity::Critical || self.hold_critical)
            && self
                .channels
                .as_ref()
                .is_none_or(|cs| cs.iter().any(|c| c == channel))
    }

    /// When the quiet hours holding instant `at` end, or `None` when `at` is outside.
    pub fn end_after(&self, tz: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (_, end) = self.window.holding(local_of(at, tz))?;
        Some(instant_of(end, tz)).filter(|e| *e > at)
    }
}

/// A rule's `send_window: {start: "09:00", end: "18:00", days: [mon, …]}`, in the
/// person's time zone; `days` are the days a window opens on (absent: every day).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow {
    pub window: LocalWindow,
    /// Indexed by `Weekday::num_days_from_monday`.
    pub days: [bool; 7],
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendWindowSpec {
    start: String,
    end: String,
    #[serde(default)]
    days: Option<Vec<String>>,
}

impl SendWindow {
    /// Parses a rule's `send_window` block; errors name the field.
    pub fn parse(value: &Value) -> Result<SendWindow, FieldError> {
        let spec: SendWindowSpec = serde_json::from_value(value.clone())
            .map_err(|e| FieldError::invalid("send_window", e.to_string()))?;
        let window = LocalWindow::parse("send_window", &spec.start, &spec.end)?;
        let days = match spec.days {
            None => [true; 7],
            Some(names) if names.is_empty() => {
                return Err(FieldError::invalid(
                    "send_window.days",
                    "must name at least one day",
                ))
            }
            Some(names) => {
                let mut days = [false; 7];
                for name in names {
                    let day: Weekday = name.parse().map_err(|_| {
                        FieldError::invalid(
                            "send_window.days",
                            format!("{name:?} is not a day (mon, tue, wed, thu, fri, sat, sun)"),
                        )
                    })?;
                    days[day.num_days_from_monday() as usize] = true;
                }
                days
            }
        };
        Ok(SendWindow { window, days })
    }

    fn opens_on(&self, day: NaiveDate) -> bool {
        self.days[day.weekday().num_days_from_monday() as usize]
    }

    /// The first instant at or after `at` inside the window.
    pub fn next_open(&self, tz: Tz, at: DateTime<Utc>) -> DateTime<Utc> {
        let local = local_of(at, tz);
        let first = local.date().pred_opt().unwrap_or(local.date());
        let opening = first
            .iter_days()
            .take(9)
            .filter(|d| self.opens_on(*d))
            .map(|d| self.window.opening_on(d))
            .find(|(_, end)| *end > local);
        match opening {
            Some((start, _)) if start > local => instant_of(start, tz).max(at),
            _ => at,
        }
    }
}

/// Everything that decides a notification's due time.
#[derive(Debug, Clone, Copy)]
pub struct Timing<'a> {
    /// When it would go otherwise: received + the rule's delay.
    pub base: DateTime<Utc>,
    /// The event's `deliver_at`: the instant it must go (the rule's send window then
    /// does not apply; the person's quiet hours still do).
    pub deliver_at: Option<DateTime<Utc>>,
    pub send_window: Option<&'a SendWindow>,
    pub quiet_hours: Option<&'a QuietHours>,
    /// The person's time zone.
    pub tz: Tz,
    pub channel: &'a str,
    pub severity: Severity,
}

/// A due time and, when something moved it, why (shown in the audit trail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
}

/// The due time: `deliver_at` or the base, then moved into the send window and out
/// of the quiet hours (repeatedly, since leaving one can land in the other).
pub fn due(t: &Timing<'_>) -> Due {
    let mut at = t.base;
    let mut reason = None;
    if let Some(d) = t.deliver_at.filter(|d| *d > t.base) {
        at = d;
        reason = Some(format!(
            "scheduled by the event's deliver_at for {}",
            d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    let window = t.send_window.filter(|_| t.deliver_at.is_none());
    let quiet = t
        .quiet_hours
        .filter(|q| q.applies_to(t.channel, t.severity));
    // A window open at least once a week and quiet hours shorter than a day settle
    // within a few rounds; the bound only guards against a pathological pair.
    for _ in 0..8 {
        let mut moved = false;
        if let Some(w) = window {
            let open = w.next_open(t.tz, at);
            if open > at {
                at = open;
                reason = Some(format!(
                    "held for the send window {} until {} {}",
                    w.window.describe(),
                    clock(local_of(at, t.tz).time()),
                    t.tz
                ));
                moved = true;
            }
        }
        if let Some(end) = quiet.and_then(|q| q.end_after(t.tz, at)) {
            at = end;
            reason = Some(format!(
                "held for quiet hours until {} {}",
                clock(local_of(at, t.tz).time()),
                t.tz
            ));
            moved = true;
        }
        if !moved {
            break;
        }
    }
    Due { at, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("timestamp")
    }

    fn quiet(start: &str, end: &str) -> QuietHours {
        QuietHours::parse(&json!({"start": start, "end": end})).expect("valid quiet hours")
    }

    const BERLIN: Tz = Tz::Europe__Berlin;

    #[test]
    fn times_are_hh_mm_or_hh_mm_ss() {
        let cases = [
            ("07:00", Some((7, 0, 0))),
            ("23:59:59", Some((23, 59, 59))),
            ("00:00", Some((0, 0, 0))),
            ("7:00", None),
            ("07:0", None),
            ("24:00", None),
            ("07:60", None),
            ("07:00:60", None),
            ("07-00", None),
            ("07:00 ", None),
            ("", None),
            ("+7:00", None),
        ];
        for (raw, want) in cases {
            let got = parse_time("f", raw)
                .ok()
                .map(|t| (t.hour(), t.minute(), t.second()));
            assert_eq!(got, want, "{raw:?}");
        }
        let err = parse_time("quiet_hours.start", "25:00").unwrap_err();
        assert_eq!(err.field, "quiet_hours.start");
    }

    #[test]
    fn quiet_hours_are_checked_naming_the_field() {
        let cases = [
            (json!({"start": "22:00", "end": "07:00"}), None),
            (
                json!({"start": "22:00", "end": "07:00", "hold_critical": true, "channels": ["sms"]}),
                None,
            ),
            (json!({"start": "22:00"}), Some("quiet_hours")),
            (
                json!({"start": "22:00", "end": "7"}),
                Some("quiet_hours.end"),
            ),
            (
                json!({"start": "x", "end": "07:00"}),
                Some("quiet_hours.start"),
            ),
            (
                json!({"start": "07:00", "end": "07:00"}),
                Some("quiet_hours.end"),
            ),
            (
                json!({"start": "22:00", "end": "07:00", "mute": true}),
                Some("quiet_hours"),
            ),
            (json!("22:00-07:00"), Some("quiet_hours")),
        ];
        for (value, want) in cases {
            let got = QuietHours::parse(&value).err().map(|e| e.field);
            assert_eq!(got.as_deref(), want, "{value}");
        }
        assert_eq!(QuietHours::from_stored(Some(&json!({"start": 1}))), None);
        assert_eq!(QuietHours::from_stored(Some(&Value::Null)), None);
        assert!(
            QuietHours::from_stored(Some(&json!({"start": "22:00", "end": "07:00"}))).is_some()
        );
    }

    #[test]
    fn quiet_hours_end_where_the_persons_clock_says() {
        // (window, instant, end of the quiet hours holding it)
        let cases = [
            // Crossing midnight, Berlin in winter (UTC+1).
            (
                ("22:00", "07:00"),
                "2026-01-14T22:00:00Z",
                Some("2026-01-15T06:00:00Z"),
            ),
            (
                ("22:00", "07:00"),
                "2026-01-14T21:00:00Z",
                Some("2026-01-15T06:00:00Z"),
            ),
            (("22:00", "07:00"), "2026-01-14T20:59:59Z", None),
            (
                ("22:00", "07:00"),
                "2026-01-15T05:59:59Z",
                Some("2026-01-15T06:00:00Z"),
            ),
            (("22:00", "07:00"), "2026-01-15T06:00:00Z", None),
            (("22:00", "07:00"), "2026-01-15T11:00:00Z", None),
            // Within one day.
            (
                ("13:00", "14:00"),
                "2026-01-15T12:30:00Z",
                Some("2026-01-15T13:00:00Z"),
            ),
            (("13:00", "14:00"), "2026-01-15T13:00:00Z", None),
            (("13:00", "14:00"), "2026-01-15T11:59:59Z", None),
            // Seconds count.
            (
                ("10:00:05", "10:00:30"),
                "2026-01-15T09:00:10Z",
                Some("2026-01-15T09:00:30Z"),
            ),
            (("10:00:05", "10:00:30"), "2026-01-15T09:00:04Z", None),
            // Summer (UTC+2).
            (
                ("22:00", "07:00"),
                "2026-07-01T21:00:00Z",
                Some("2026-07-02T05:00:00Z"),
            ),
            // Spring forward, 2026-03-29: 02:00 CET jumps to 03:00 CEST.
            // An end inside the gap is the first instant after it (03:00 CEST).
            (
                ("22:00", "02:30"),
                "2026-03-28T22:30:00Z",
                Some("2026-03-29T01:00:00Z"),
            ),
            // A window across the jump lasts an hour less.
            (
                ("01:00", "07:00"),
                "2026-03-29T00:30:00Z",
                Some("2026-03-29T05:00:00Z"),
            ),
            (
                ("22:00", "07:00"),
                "2026-03-28T21:00:00Z",
                Some("2026-03-29T05:00:00Z"),
            ),
            // Fall back, 2026-10-25: 03:00 CEST returns to 02:00 CET.
            // An end inside the fold is its earlier reading (02:30 CEST).
            (
                ("22:00", "02:30"),
                "2026-10-24T21:00:00Z",
                Some("2026-10-25T00:30:00Z"),
            ),
            // A window across the fold lasts an hour more.
            (
                ("01:00", "07:00"),
                "2026-10-25T00:30:00Z",
                Some("2026-10-25T06:00:00Z"),
            ),
            (
                ("22:00", "07:00"),
                "2026-10-24T20:00:00Z",
                Some("2026-10-25T06:00:00Z"),
            ),
            // During the repeated hour (second 02:15, CET) the hours still hold.
            (
                ("01:00", "07:00"),
                "2026-10-25T01:15:00Z",
                Some("2026-10-25T06:00:00Z"),
            ),
        ];
        for ((start, end), instant, want) in cases {
            let got = quiet(start, end).end_after(BERLIN, at(instant));
            assert_eq!(got, want.map(at), "{start}-{end} at {instant}");
        }
    }

    #[test]
    fn critical_notifications_and_other_channels_are_not_held_unless_asked() {
        let mut q = quiet("22:00", "07:00");
        let cases = [
            (false, None, "push", Severity::Standard, true),
            (false, None, "push", Severity::Critical, false),
            (true, None, "push", Severity::Critical, true),
            (false, Some(vec!["sms"]), "push", Severity::Standard, false),
            (false, Some(vec!["sms"]), "sms", Severity::Standard, true),
            (true, Some(vec!["sms"]), "push", Severity::Critical, false),
        ];
        for (hold_critical, channels, channel, severity, want) in cases {
            q.hold_critical = hold_critical;
            q.channels = channels
                .clone()
                .map(|cs| cs.into_iter().map(String::from).collect());
            assert_eq!(
                q.applies_to(channel, severity),
                want,
                "hold_critical {hold_critical} channels {channels:?} {channel} {severity:?}"
            );
        }
    }

    fn weekdays_9_to_18() -> SendWindow {
        SendWindow::parse(
            &json!({"start": "09:00", "end": "18:00", "days": ["mon", "tue", "wed", "thu", "fri"]}),
        )
        .expect("valid send window")
    }

    #[test]
    fn a_send_window_opens_on_its_days_in_the_persons_zone() {
        let office = weekdays_9_to_18();
        let friday_nights =
            SendWindow::parse(&json!({"start": "22:00", "end": "02:00", "days": ["fri"]}))
                .expect("valid send window");
        // 2026-01-14 is a Wednesday; Berlin is UTC+1 in January.
        let cases = [
            (office, "2026-01-14T10:00:00Z", "2026-01-14T10:00:00Z"), // inside
            (office, "2026-01-14T07:00:00Z", "2026-01-14T08:00:00Z"), // 08:00 → 09:00
            (office, "2026-01-14T17:00:00Z", "2026-01-15T08:00:00Z"), // 18:00 is closed
            (office, "2026-01-16T18:00:00Z", "2026-01-19T08:00:00Z"), // Friday night → Monday
            (office, "2026-01-17T12:00:00Z", "2026-01-19T08:00:00Z"), // Saturday → Monday
            // Opened on Friday, still open early on Saturday.
            (
                friday_nights,
                "2026-01-17T00:30:00Z",
                "2026-01-17T00:30:00Z",
            ),
            (
                friday_nights,
                "2026-01-17T02:00:00Z",
                "2026-01-23T21:00:00Z",
            ),
            (
                friday_nights,
                "2026-01-16T20:00:00Z",
                "2026-01-16T21:00:00Z",
            ),
            // Spring forward (Sunday 2026-03-29) then Monday 09:00 CEST.
            (office, "2026-03-28T12:00:00Z", "2026-03-30T07:00:00Z"),
        ];
        for (window, instant, want) in cases {
            assert_eq!(
                window.next_open(BERLIN, at(instant)),
                at(want),
                "{:?} at {instant}",
                window.window
            );
        }
    }

    #[test]
    fn send_windows_are_checked_naming_the_field() {
        let cases = [
            (json!({"start": "09:00", "end": "18:00"}), None),
            (
                json!({"start": "09:00", "end": "18:00", "days": ["Mon", "sunday"]}),
                None,
            ),
            (
                json!({"start": "09:00", "end": "18:00", "days": []}),
                Some("send_window.days"),
            ),
            (
                json!({"start": "09:00", "end": "18:00", "days": ["someday"]}),
                Some("send_window.days"),
            ),
            (
                json!({"start": "9", "end": "18:00"}),
                Some("send_window.start"),
            ),
            (json!({"start": "09:00"}), Some("send_window")),
            (
                json!({"start": "09:00", "end": "18:00", "tz": "UTC"}),
                Some("send_window"),
            ),
        ];
        for (value, want) in cases {
            let got = SendWindow::parse(&value).err().map(|e| e.field);
            assert_eq!(got.as_deref(), want, "{value}");
        }
    }

    fn timing<'a>(base: &str, channel: &'a str, severity: Severity) -> Timing<'a> {
        Timing {
            base: at(base),
            deliver_at: None,
            send_window: None,
            quiet_hours: None,
            tz: BERLIN,
            channel,
            severity,
        }
    }

    #[test]
    fn the_due_time_honours_deliver_at_the_send_window_and_quiet_hours() {
        let q = quiet("22:00", "07:00");
        let office = weekdays_9_to_18();
        let early = SendWindow::parse(&json!({"start": "06:00", "end": "23:00"})).expect("valid");
        let base = "2026-01-14T22:30:00Z"; // Wednesday 23:30 in Berlin
        let cases: Vec<(Timing<'_>, &str, Option<&str>)> = vec![
            (timing(base, "push", Severity::Standard), base, None),
            (
                Timing {
                    quiet_hours: Some(&q),
                    ..timing(base, "push", Severity::Standard)
                },
                "2026-01-15T06:00:00Z",
                Some("held for quiet hours until 07:00 Europe/Berlin"),
            ),
            (
                Timing {
                    quiet_hours: Some(&q),
                    ..timing(base, "push", Severity::Critical)
                },
                base,
                None,
            ),
            (
                Timing {
                    send_window: Some(&office),
                    ..timing(base, "push", Severity::Standard)
                },
                "2026-01-15T08:00:00Z",
                Some("held for the send window 09:00–18:00 until 09:00 Europe/Berlin"),
            ),
            // The window opens at 06:00, inside the quiet hours: quiet hours win.
            (
                Timing {
                    send_window: Some(&early),
                    quiet_hours: Some(&q),
                    ..timing(base, "push", Severity::Standard)
                },
                "2026-01-15T06:00:00Z",
                Some("held for quiet hours until 07:00 Europe/Berlin"),
            ),
            // deliver_at sets the instant; the send window yields, quiet hours do not.
            (
                Timing {
                    deliver_at: Some(at("2026-01-15T10:00:00Z")),
                    send_window: Some(&office),
                    ..timing(base, "push", Severity::Standard)
                },
                "2026-01-15T10:00:00Z",
                Some("scheduled by the event's deliver_at for 2026-01-15T10:00:00Z"),
            ),
            (
                Timing {
                    deliver_at: Some(at("2026-01-15T04:00:00Z")),
                    quiet_hours: Some(&q),
                    ..timing(base, "push", Severity::Standard)
                },
                "2026-01-15T06:00:00Z",
                Some("held for quiet hours until 07:00 Europe/Berlin"),
            ),
            // A deliver_at already past changes nothing.
            (
                Timing {
                    deliver_at: Some(at("2026-01-14T10:00:00Z")),
                    ..timing(base, "push", Severity::Standard)
                },
                base,
                None,
            ),
        ];
        for (i, (t, want_at, want_reason)) in cases.into_iter().enumerate() {
            let got = due(&t);
            assert_eq!(got.at, at(want_at), "case {i}");
            assert_eq!(got.reason.as_deref(), want_reason, "case {i}");
        }
    }
}
