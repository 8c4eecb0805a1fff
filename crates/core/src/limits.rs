//! Bounds on the free-form JSON a client stores with an event or a person
//! (`properties`, `user_traits`, `traits`): it is kept for the audit trail and
//! rendered into every notification, so one client cannot make every row huge or
//! every template walk a thousand levels deep.

use crate::ids::FieldError;
use serde::Serialize;
use serde_json::{Map, Value};

/// The most bytes one such value may take, written as compact JSON.
pub const MAX_JSON_BYTES: usize = 64 * 1024;
/// The deepest nesting of objects and arrays one such value may have (`{}` is 1).
pub const MAX_JSON_DEPTH: usize = 32;

/// Refuses `value` when it is deeper than [`MAX_JSON_DEPTH`] or larger than
/// [`MAX_JSON_BYTES`], naming `field`.
pub fn check_json_bounds(field: &str, value: &Value) -> Result<(), FieldError> {
    check_bounds(field, depth(value), value)
}

/// [`check_json_bounds`] for an object held as a map (a person's traits).
pub fn check_object_bounds(field: &str, map: &Map<String, Value>) -> Result<(), FieldError> {
    check_bounds(field, 1 + map.values().map(depth).max().unwrap_or(0), map)
}

fn check_bounds(field: &str, depth: usize, value: &impl Serialize) -> Result<(), FieldError> {
    if depth > MAX_JSON_DEPTH {
        return Err(FieldError::invalid(
            field,
            format!("must be nested at most {MAX_JSON_DEPTH} levels deep"),
        ));
    }
    let mut size = ByteCount(0);
    // Writing to a counter cannot fail (`ByteCount::write` always succeeds) and JSON
    // values always serialize, so the result carries nothing to handle.
    let _ = serde_json::to_writer(&mut size, value);
    if size.0 > MAX_JSON_BYTES {
        return Err(FieldError::invalid(
            field,
            format!(
                "must be at most {} KiB as JSON, this is {} bytes",
                MAX_JSON_BYTES / 1024,
                size.0
            ),
        ));
    }
    Ok(())
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Counts what is written, keeping nothing.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        (1..levels).fold(json!({}), |inner, _| json!({ "a": inner }))
    }

    #[test]
    fn depth_and_size_are_bounded_at_their_limits() {
        let just_big = json!({ "s": "x".repeat(MAX_JSON_BYTES - 8) });
        let too_big = json!({ "s": "x".repeat(MAX_JSON_BYTES - 7) });
        for (value, verdict) in [
            (json!({}), Ok(())),
            (nested(MAX_JSON_DEPTH), Ok(())),
            (just_big, Ok(())),
            (nested(MAX_JSON_DEPTH + 1), Err("nested at most 32")),
            (too_big, Err("at most 64 KiB")),
        ] {
            let got = check_json_bounds("properties", &value).map_err(|e| e.to_string());
            match verdict {
                Ok(()) => assert_eq!(got, Ok(())),
                Err(text) => {
                    let message = got.expect_err("refused");
                    assert!(message.contains(text), "{message}");
                    assert!(message.starts_with("invalid field properties"), "{message}");
                }
            }
        }
    }
}
