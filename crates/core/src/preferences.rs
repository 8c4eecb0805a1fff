//! Whether a person gets a notification or a `suppressed` row, and the reason a
//! person can read (contract §4 and 5.1). Pure: the worker gathers the facts, this decides.
//!
//! The preferences themselves are checked here too, before they are stored: a level
//! ([`parse_level`]) and per-channel switches ([`check_channel_switches`]), so the
//! rules a person's preferences must follow sit beside the code that reads them.

use crate::channels::Channels;
use crate::event::FieldError;
use crate::severity::{Level, ParseLevelError, Severity};
use serde_json::{Map, Value};

/// Why a preference change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreferenceError {
    /// A level other than standard or critical; seed 002's clients expect a 400.
    #[error(transparent)]
    Level(#[from] ParseLevelError),
    /// A field breaks its rule (a 422 naming it).
    #[error(transparent)]
    Field(#[from] FieldError),
}

/// A preference change that passed its checks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PreferenceChange {
    pub level: Option<Level>,
}

/// Parses a level as people send it: `standard` or `critical`, in any case.
pub fn parse_level(raw: &str) -> Result<Level, ParseLevelError> {
    raw.parse()
}

/// Per-channel switches name configured channels and are `true` or `false`; the first
/// that is not is reported against the `channels` field.
pub fn check_channel_switches(
    switches: &Map<String, Value>,
    channels: &Channels,
) -> Result<(), FieldError> {
    for (name, on) in switches {
        if !channels.contains(name) {
            return Err(FieldError::invalid(
                "channels",
                format!("unknown channel {name:?}"),
            ));
        }
        if !on.is_boolean() {
            return Err(FieldError::invalid(
                "channels",
                format!("{name} must be true or false"),
            ));
        }
    }
    Ok(())
}

/// Checks a change of level and/or channel switches (the level first, as it always
/// was); returns the parsed level.
pub fn check_preferences(
    level: Option<&str>,
    switches: Option<&Map<String, Value>>,
    channels: &Channels,
) -> Result<PreferenceChange, PreferenceError> {
    let level = level.map(parse_level).transpose()?;
    if let Some(switches) = switches {
        check_channel_switches(switches, channels)?;
    }
    Ok(PreferenceChange { level })
}

/// The facts about one recipient that decide delivery.
#[derive(Debug, Clone, Copy)]
pub struct RecipientFacts<'a> {
    pub user_id: &'a str,
    pub level: Level,
    /// False when the person switched the rule's channel off.
    pub channel_enabled: bool,
    /// True when the person disabled their subscription to the event type.
    pub subscription_disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Deliver,
    Suppress(String),
}

/// Decides for one recipient of a `notification_type` notification of `severity` on
/// `channel`, triggered by an `event_type` event.
pub fn decide(
    notification_type: &str,
    event_type: &str,
    channel: &str,
    severity: Severity,
    who: &RecipientFacts<'_>,
) -> Decision {
    if who.subscription_disabled {
        return Decision::Suppress(format!(
            "skipped {notification_type}: {} disabled their subscription to {event_type}",
            who.user_id
        ));
    }
    if !who.level.admits(severity) {
        return Decision::Suppress(format!(
            "skipped {notification_type}: {} receives {} notifications only, this one is {severity}",
            who.user_id, who.level
        ));
    }
    if !who.channel_enabled {
        return Decision::Suppress(format!(
            "skipped {notification_type}: {} switched the {channel} channel off",
            who.user_id
        ));
    }
    Decision::Deliver
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::Channel;
    use serde_json::json;

    /// The channels the checks below know: `email` and `sms`.
    fn channels() -> Channels {
        let spec = |name: &str| {
            serde_norway::from_str(&format!("name: {name}\nurl: http://127.0.0.1:1/{name}\n"))
                .expect("a valid channel spec")
        };
        Channels::new(["email", "sms"].map(|n| Channel::from_spec(spec(n)).expect("valid channel")))
    }

    #[test]
    fn levels_parse_in_any_case_and_name_the_allowed_values_otherwise() {
        for (raw, level) in [
            ("standard", Level::Standard),
            ("STANDARD", Level::Standard),
            ("critical", Level::Critical),
            ("Critical", Level::Critical),
        ] {
            assert_eq!(parse_level(raw), Ok(level), "{raw}");
        }
        for raw in ["", "urgent", "crit", " critical"] {
            let err = parse_level(raw).expect_err("invalid");
            assert!(
                err.to_string().contains("standard, critical"),
                "{raw}: {err}"
            );
        }
    }

    #[test]
    fn channel_switches_name_known_channels_and_are_booleans() {
        for (switches, message) in [
            (json!({}), None),
            (json!({"email": true, "sms": false}), None),
            (
                json!({"fax": true}),
                Some("invalid field channels: unknown channel \"fax\""),
            ),
            (
                json!({"sms": "off"}),
                Some("invalid field channels: sms must be true or false"),
            ),
            (
                json!({"email": null}),
                Some("invalid field channels: email must be true or false"),
            ),
        ] {
            let Value::Object(map) = &switches else {
                unreachable!("objects above")
            };
            let got = check_channel_switches(map, &channels())
                .err()
                .map(|e| e.to_string());
            assert_eq!(got.as_deref(), message, "{switches}");
        }
    }

    #[test]
    fn a_bad_level_is_reported_before_bad_switches() {
        let switches = json!({"fax": 1});
        let Value::Object(map) = &switches else {
            unreachable!("an object")
        };
        for (level, switches, expected) in [
            (Some("URGENT"), Some(map), "level"),
            (None, Some(map), "field"),
            (Some("critical"), None, "ok"),
        ] {
            let got = match check_preferences(level, switches, &channels()) {
                Ok(change) => {
                    assert_eq!(change.level, Some(Level::Critical));
                    "ok"
                }
                Err(PreferenceError::Level(_)) => "level",
                Err(PreferenceError::Field(_)) => "field",
            };
            assert_eq!(got, expected, "{level:?}");
        }
    }

    fn facts(level: Level) -> RecipientFacts<'static> {
        RecipientFacts {
            user_id: "u_1",
            level,
            channel_enabled: true,
            subscription_disabled: false,
        }
    }

    #[test]
    fn a_critical_person_is_skipped_for_a_standard_alert_with_a_reason() {
        let d = decide(
            "SHOP_ALERT",
            "alert",
            "webhook",
            Severity::Standard,
            &facts(Level::Critical),
        );
        assert_eq!(
            d,
            Decision::Suppress(
                "skipped SHOP_ALERT: u_1 receives critical notifications only, this one is standard".into()
            )
        );
        assert_eq!(
            decide(
                "SHOP_ALERT",
                "alert",
                "webhook",
                Severity::Critical,
                &facts(Level::Critical)
            ),
            Decision::Deliver
        );
        assert_eq!(
            decide(
                "SHOP_ALERT",
                "alert",
                "webhook",
                Severity::Standard,
                &facts(Level::Standard)
            ),
            Decision::Deliver
        );
    }

    #[test]
    fn a_switched_off_channel_or_disabled_subscription_suppresses() {
        let off = RecipientFacts {
            channel_enabled: false,
            ..facts(Level::Standard)
        };
        assert!(
            matches!(decide("A", "x", "sms", Severity::Critical, &off), Decision::Suppress(r) if r.contains("sms channel off"))
        );
        let unsub = RecipientFacts {
            subscription_disabled: true,
            ..facts(Level::Standard)
        };
        assert!(
            matches!(decide("A", "x", "sms", Severity::Critical, &unsub), Decision::Suppress(r) if r.contains("subscription to x"))
        );
    }
}
