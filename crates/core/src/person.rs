//! The rules a person's fields follow (contract §4), checked before `PUT
//! /api/v1/users/{id}` stores them: a level, an IANA time zone, a webhook address
//! Herald may call, at most [`MAX_TOPICS`] valid topic names and per-channel switches
//! naming configured channels.
//!
//! The api deserializes the body into its own request type (so unknown fields and
//! wrong JSON types are refused by serde, naming the field); the decisions about the
//! values live here, beside the event and alert parsing, with the messages clients
//! read. `email` must be a valid address of at most 254 characters, `phone` an E.164
//! number, and `traits` bounded like every free-form JSON value ([`crate::limits`]).

use crate::channels::Channels;
use crate::event::FieldError;
use crate::ids::validate_id;
use crate::limits::check_object_bounds;
use crate::preferences::{check_channel_switches, parse_level, PreferenceError};
use crate::severity::Level;
use crate::targets::{check_webhook_url, AllowedTargets};
use serde_json::{Map, Value};

/// The most topics one `PUT` may set.
pub const MAX_TOPICS: usize = 1000;

/// The fields of a person change that have rules, as given (absent: unchanged).
#[derive(Debug, Clone, Copy, Default)]
pub struct PersonFields<'a> {
    /// `""` clears the address.
    pub email: Option<&'a str>,
    /// `""` clears the number.
    pub phone: Option<&'a str>,
    pub traits: Option<&'a Map<String, Value>>,
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
    if let Some(email) = fields.email {
        check_email(email)?;
    }
    if let Some(phone) = fields.phone {
        check_phone(phone)?;
    }
    if let Some(traits) = fields.traits {
        check_traits(traits)?;
    }
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

/// The longest address SMTP can carry (RFC 5321's path limit less the brackets).
pub const MAX_EMAIL_CHARS: usize = 254;

/// An email address is syntactically valid (RFC 5322's addr-spec, as the
/// `email_address` crate reads it) and at most [`MAX_EMAIL_CHARS`]; `""` clears it.
pub fn check_email(email: &str) -> Result<(), FieldError> {
    if email.is_empty() {
        return Ok(());
    }
    if email.chars().count() > MAX_EMAIL_CHARS {
        return Err(FieldError::invalid(
            "email",
            format!("must be at most {MAX_EMAIL_CHARS} characters"),
        ));
    }
    if !email_address::EmailAddress::is_valid(email) {
        return Err(FieldError::invalid(
            "email",
            "must be an email address such as maria@example.com",
        ));
    }
    Ok(())
}

/// A phone number is E.164: `+`, a country code and at most 15 digits in all, no
/// spaces (SMS providers take it as it is); `""` clears it.
pub fn check_phone(phone: &str) -> Result<(), FieldError> {
    if phone.is_empty() {
        return Ok(());
    }
    let digits = phone.strip_prefix('+').unwrap_or("");
    let e164 = (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if !e164 {
        return Err(FieldError::invalid(
            "phone",
            "must be an E.164 number such as +4915112345678 (a +, then 2 to 15 digits)",
        ));
    }
    Ok(())
}

/// Traits are free-form but bounded in size and depth.
pub fn check_traits(traits: &Map<String, Value>) -> Result<(), FieldError> {
    check_object_bounds("traits", traits)
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
                    email: Some("maria@example.com"),
                    phone: Some("+4915112345678"),
                    traits: Some(&switches),
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
    fn emails_and_phones_follow_their_formats() {
        let long_email = format!("{}@example.com", "a".repeat(MAX_EMAIL_CHARS));
        for (email, ok) in [
            ("maria@example.com", true),
            ("first.last+tag@sub.example.co", true),
            ("", true),
            ("maria", false),
            ("maria@", false),
            ("@example.com", false),
            ("two@@example.com", false),
            (long_email.as_str(), false),
        ] {
            assert_eq!(check_email(email).is_ok(), ok, "{email}");
        }
        for (phone, ok) in [
            ("+4915112345678", true),
            ("+12", true),
            ("", true),
            ("+1234567890123456", false),
            ("004915112345678", false),
            ("+49 151 1234", false),
            ("+0123", false),
            ("+", false),
            ("phone", false),
        ] {
            assert_eq!(check_phone(phone).is_ok(), ok, "{phone}");
        }
    }

    #[test]
    fn traits_are_bounded_and_each_refusal_names_its_field() {
        let Value::Object(huge) = json!({"bio": "x".repeat(70_000)}) else {
            unreachable!("an object literal")
        };
        for (fields, field) in [
            (
                PersonFields {
                    email: Some("nope"),
                    ..Default::default()
                },
                "email",
            ),
            (
                PersonFields {
                    phone: Some("12345"),
                    ..Default::default()
                },
                "phone",
            ),
            (
                PersonFields {
                    traits: Some(&huge),
                    ..Default::default()
                },
                "traits",
            ),
        ] {
            let got = check(fields).expect_err("refused");
            assert!(got.starts_with(&format!("invalid field {field}:")), "{got}");
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
