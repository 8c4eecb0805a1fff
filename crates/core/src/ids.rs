//! Identifier rules. People, topics and client event ids travel in URL paths and
//! log lines, so they are bounded (128 characters, contract §3) and may not hold control
//! characters or `/`, which would make a path ambiguous.
//!
//! [`FieldError`], the error of every field validator, lives here rather than in
//! `event` because ids are the lowest rule: events, alerts, people and topics all
//! check their ids with [`validate_id`], so the error type sits below all of them.

use std::fmt;

/// The longest id Herald accepts, in characters.
pub const MAX_ID_CHARS: usize = 128;

/// A problem with one field of one item. `Display` gives the text clients see, e.g.
/// `missing field: event_timestamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
    kind: FieldErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldErrorKind {
    Missing,
    Invalid,
    /// A field Herald does not know; `message` is the whole text (with a suggestion).
    Unknown,
}

impl FieldError {
    pub fn missing(field: &str) -> Self {
        FieldError {
            field: field.to_string(),
            message: "is required".into(),
            kind: FieldErrorKind::Missing,
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_string(),
            message: message.into(),
            kind: FieldErrorKind::Invalid,
        }
    }

    /// A field no one reads: `message` is shown as it is (see [`crate::fields`]).
    pub fn unknown(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_string(),
            message: message.into(),
            kind: FieldErrorKind::Unknown,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FieldErrorKind::Missing => write!(f, "missing field: {}", self.field),
            FieldErrorKind::Invalid => write!(f, "invalid field {}: {}", self.field, self.message),
            FieldErrorKind::Unknown => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for FieldError {}

/// Checks an id given in field `field`; the error names the field.
pub fn validate_id(field: &str, id: &str) -> Result<(), FieldError> {
    if id.is_empty() {
        return Err(FieldError::invalid(field, "must not be empty"));
    }
    if id.chars().count() > MAX_ID_CHARS {
        return Err(FieldError::invalid(field, "must be at most 128 characters"));
    }
    if id.chars().any(|c| c.is_control() || c == '/') {
        return Err(FieldError::invalid(
            field,
            "must not contain control characters or '/'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_of_128_characters_is_accepted_and_129_is_not() {
        assert!(validate_id("user_id", &"é".repeat(128)).is_ok());
        let err = validate_id("user_id", &"a".repeat(129)).unwrap_err();
        assert_eq!(err.field, "user_id");
    }

    #[test]
    fn ids_with_slashes_or_control_characters_are_refused() {
        for bad in ["a/b", "a\nb", "", "\u{0}"] {
            assert!(validate_id("topic", bad).is_err(), "{bad:?} was accepted");
        }
    }
}
