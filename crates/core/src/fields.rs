//! Unknown fields. A body that names a field Herald does not read is refused rather
//! than stored without it: `{"user_Id": "ana"}` would otherwise become an event about
//! nobody. The error names the field and, when one is close, the field that was
//! probably meant: `unknown field "user_Id"; did you mean "user_id"?`.

use crate::ids::FieldError;
use serde_json::{Map, Value};

/// Refuses the first key of `obj` that is not in `known`.
pub fn check_known_fields(obj: &Map<String, Value>, known: &[&str]) -> Result<(), FieldError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(name) => Err(unknown_field(name, known)),
        None => Ok(()),
    }
}

/// The error for `name`, which is not one of `known`.
pub fn unknown_field(name: &str, known: &[&str]) -> FieldError {
    // The name is client input: escaped, so control characters stay visible, and cut,
    // so the message stays bounded. `field` holds the same text the message quotes.
    let shown: String = name
        .chars()
        .take(64)
        .collect::<String>()
        .escape_debug()
        .to_string();
    let message = match closest(name, known) {
        Some(meant) => format!("unknown field \"{shown}\"; did you mean \"{meant}\"?"),
        None => format!(
            "unknown field \"{shown}\"; expected one of {}",
            known.join(", ")
        ),
    };
    // An empty key still needs a name clients can see in `field`.
    let field = if shown.is_empty() { "\"\"" } else { &shown };
    FieldError::unknown(field, message)
}

/// The known field closest to `name`, when it is close enough to be a slip: the same
/// letters in another case, or at most a third of the letters wrong (at least 2).
pub fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    let allowed = (name.chars().count() / 3).max(2);
    known
        .iter()
        .map(|k| (strsim::levenshtein(&lower, &k.to_ascii_lowercase()), *k))
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EVENT: &[&str] = crate::event::EVENT_FIELDS;

    #[test]
    fn slips_get_the_field_that_was_meant() {
        for (typed, meant) in [
            ("user_Id", Some("user_id")),
            ("propertys", Some("properties")),
            ("USER_TRAITS", Some("user_traits")),
            ("event_typ", Some("event_type")),
            ("eventtimestamp", Some("event_timestamp")),
            ("colour", None),
            ("x", None),
        ] {
            assert_eq!(closest(typed, EVENT), meant, "{typed}");
        }
    }

    #[test]
    fn the_message_names_the_field_and_the_suggestion() {
        let e = unknown_field("user_Id", EVENT);
        assert_eq!(e.field, "user_Id");
        assert_eq!(
            e.to_string(),
            r#"unknown field "user_Id"; did you mean "user_id"?"#
        );
        let e = unknown_field("colour", &["level", "channels"]);
        assert_eq!(
            e.to_string(),
            r#"unknown field "colour"; expected one of level, channels"#
        );
    }

    #[test]
    fn known_fields_pass_and_the_first_unknown_is_named() {
        let Value::Object(ok) = json!({"user_id": "a", "topic": "t"}) else {
            unreachable!("an object literal")
        };
        assert_eq!(check_known_fields(&ok, EVENT), Ok(()));
        let Value::Object(bad) = json!({"user_id": "a", "propertys": {}}) else {
            unreachable!("an object literal")
        };
        assert_eq!(
            check_known_fields(&bad, EVENT).map_err(|e| e.field),
            Err("propertys".to_string())
        );
    }

    #[test]
    fn a_hostile_name_is_quoted_and_cut() {
        let long = format!("a\u{0}{}", "b".repeat(500));
        let message = unknown_field(&long, EVENT).to_string();
        assert!(message.contains("\\0"), "{message}");
        assert!(message.len() < 400, "{message}");
        assert_eq!(unknown_field("", EVENT).field, "\"\"");
    }
}
