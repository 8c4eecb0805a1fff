//! The rules a person's fields follow (contract §4), checked before `PUT
//! /api/v1/users/{id}` stores them: a level, an IANA time zone, a webhook address
//! Herald may call, at most [`MAX_TOPICS`] valid topic names and per-channel switches
//! naming configured channels.
//!
//! The api deserializes the body into its own request type (so unknown fields and
//! wrong JSON types are refused by serde, naming the field); the decisions about the
//! values live here, beside the event and alert parsing, with the messages clients
//! read. `email` and `phone` are free text: nothing checks them beyond being strings.

use crate::channels::Channels;
use crate::event::FieldError;
use crate::ids::validate_id;
use crate::preferences::{check_channel_switches, parse_level, PreferenceError};
use crate::severity::Level;
use crate::targets::{check_webhook_url, AllowedTargets};
use serde_json::{Map, Value};

/// The most topics one `PUT` may set.
pub const MAX_TOPICS: usize = 1000;

/// The fields of a person change that have rules, as given (absent: unchanged).
#[derive(Debug, Clone, Copy, Default)]
pub struct PersonFields<'a> {
    pub level: Option<&'a str>,
    pub timezone: Option<&'a str>,
    /// `""` clears the address and is always allowed.
    pub webhook_url: Option<&'a str>,
    pub topics: Option<&'a [String]>,
    pub channels: Option<&'a Map<String, Value>>,
}

/// What the checks decided, beyond "valid": the parsed level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckedPerson {
    pub level: Option<Level>,
}

/// What a person change must be checked against: the configured channels and the
/// addresses webhooks may point at.
#[derive(Debug, Clone, Copy)]
pub struct PersonRules<'a> {
    pub channels: &'a Channels,
    pub allowed_targets: &'a AllowedTargets,
}

/// Checks a person change in the order clients have always seen the errors: level
/// (a 400), then time zone, webhook address, topics and channel switches (422s).
pub fn check_person(
    fields: &PersonFields<'_>,
    rules: &PersonRules<'_>,
) -> Result<CheckedPerson, PreferenceError> {
    let level = fields.level.map(parse_level).transpose()?;
    if let Some(tz) = fields.timezone {
        check_timezone(tz)?;
    }
    if let Some(url) = fields.webhook_url {
        check_webhook(url, rules.allowed_targets)?;
    }
    if let Some(topics) = fields.topics {
        check_topics(topics)?;
    }
    if let Some(switches) = fields.channels {
        check_channel_switches(switches, rules.channels)?;
    }
    Ok(CheckedPerson { level })
}

/// A time zone is an IANA name such as `Europe/Paris`: the debounce periods follow
/// the person's calendar.
pub fn check_timezone(tz: &str) -> Result<(), FieldError> {
    tz.parse::<chrono_tz::Tz>().map(|_| ()).map_err(|_| {
        FieldError::invalid(
            "timezone",
            format!("{tz:?} is not an IANA time zone such as Europe/Paris"),
        )
    })
}

/// A person's webhook address must be one Herald may call (see
/// [`crate::targets`]); the empty string clears it.
pub fn check_webhook(url: &str, allowed: &AllowedTargets) -> Result<(), FieldError> {
    if url.is_empty() {
        return Ok(());
    }
    check_webhook_url(url, allowed)
        .map(|_| ())
        .map_err(|e| FieldError::invalid("webhook_url", e.to_string()))
}

/// At most [`MAX_TOPICS`] topics, each a valid id.
pub fn check_topics(topics: &[String]) -> Result<(), FieldError> {
    if topics.len() > MAX_TOPICS {
        return Err(FieldError::invalid("topics", "at most 1000 topics"));
    }
    topics.iter().try_for_each(|t| validate_id("topics", t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::Channel;
    use serde_json::json;

    fn channels() -> Channels {
        let spec = serde_norway::from_str("name: email\nurl: http://127.0.0.1:1/email\n")
            .expect("a valid channel spec");
        Channels::new([Channel::from_spec(spec).expect("a valid channel")])
    }

    /// Checks `fields` with the default targets; `Ok("ok")`, or the error's text.
    fn check(fields: PersonFields<'_>) -> Result<&'static str, String> {
        let channels = channels();
        let allowed = AllowedTargets::default();
        let rules = PersonRules {
            channels: &channels,
            allowed_targets: &allowed,
        };
        check_person(&fields, &rules)
            .map(|_| "ok")
            .map_err(|e| e.to_string())
    }

    #[test]
    fn valid_fields_pass_and_the_level_is_parsed() {
        let channels = channels();
        let allowed = AllowedTargets::default();
        let rules = PersonRules {
            channels: &channels,
            allowed_targets: &allowed,
        };
        let topics = vec!["shop".to_string(), "Carrefour Paris".to_string()];
        let switches = json!({"email": false});
        let Value::Object(switches) = switches else {
            unreachable!("an object literal")
        };
        for (fields, level) in [
            (PersonFields::default(), None),
            (
                PersonFields {
                    level: Some("CRITICAL"),
                    timezone: Some("Europe/Paris"),
                    webhook_url: Some("https://hooks.example.com/x"),
                    topics: Some(&topics),
                    channels: Some(&switches),
                },
                Some(Level::Critical),
            ),
            (
                PersonFields {
                    webhook_url: Some(""),
                    ..Default::default()
                },
                None,
            ),
        ] {
            let checked = check_person(&fields, &rules).expect("valid");
            assert_eq!(checked.level, level, "{fields:?}");
        }
    }

    #[test]
    fn each_bad_field_is_named_with_its_rule() {
        let many: Vec<String> = (0..=MAX_TOPICS).map(|i| format!("t{i}")).collect();
        let empty_topic = vec![String::new()];
        let fax = json!({"fax": true});
        let Value::Object(fax) = fax else {
            unreachable!("an object literal")
        };
        for (fields, message) in [
            (
                PersonFields {
                    level: Some("urgent"),
                    ..Default::default()
                },
                "invalid level \"urgent\": expected one of standard, critical (any case)",
            ),
            (
                PersonFields {
                    timezone: Some("Mars/Olympus"),
                    ..Default::default()
                },
                "invalid field timezone: \"Mars/Olympus\" is not an IANA time zone such as Europe/Paris",
            ),
            (
                PersonFields {
                    webhook_url: Some("ftp://x"),
                    ..Default::default()
                },
                "invalid field webhook_url: must use http or https",
            ),
            (
                PersonFields {
                    webhook_url: Some("http://169.254.169.254/latest"),
                    ..Default::default()
                },
                "invalid field webhook_url: must point at a globally reachable address: 169.254.169.254 is in 169.254.0.0/16 (Link Local, RFC 3927), not globally reachable",
            ),
            (
                PersonFields {
                    topics: Some(&many),
                    ..Default::default()
                },
                "invalid field topics: at most 1000 topics",
            ),
            (
                PersonFields {
                    topics: Some(&empty_topic),
                    ..Default::default()
                },
                "invalid field topics: must not be empty",
            ),
            (
                PersonFields {
                    channels: Some(&fax),
                    ..Default::default()
                },
                "invalid field channels: unknown channel \"fax\"",
            ),
        ] {
            assert_eq!(check(fields), Err(message.to_string()), "{fields:?}");
        }
    }

    #[test]
    fn the_level_is_reported_first_as_it_always_was() {
        let got = check(PersonFields {
            level: Some("urgent"),
            timezone: Some("Mars/Olympus"),
            ..Default::default()
        });
        assert!(got.is_err_and(|e| e.starts_with("invalid level")));
    }
}
