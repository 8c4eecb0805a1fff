//! Rule conditions (contract §5.1): predicates on the event and the person, proximity to
//! other events, and absence of events.
//!
//! ```yaml
//! conditions:                       # all must hold
//!   - {property: properties.failure_reason, op: EQ, value: INSUFFICIENT_FUNDS}
//!   - {property: user_traits.plan, op: IN, value: [gold, silver], case_insensitive: true}
//!   - event_within: {event_type: signup_completed, within: 24h}     # before this event
//!   - no_event_within: {event_type: link_bank_success, within: 1h}  # either side
//!   - any: [{property: properties.amount, op: GT, value: 1000}, {all: [...]}]
//! ```
//!
//! Evaluation is pure. Conditions on other events need the person's history, which
//! only the store can read, so [`Condition::history_needs`] lists the questions (does
//! an event of type T lie in window W?) and the caller answers them in a [`History`]
//! before [`Condition::evaluate`]. Everything uses event time, so a replay gives the
//! same answers.
//!
//! Comparison rules: numbers compare as numbers (a numeric string counts as a number),
//! strings case-sensitively unless `case_insensitive: true`, and `true`/`"true"` alike.
//! A condition on a missing path is false, except `EXISTS`, which tests for it.

use crate::duration::parse_duration;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use std::collections::HashMap;

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Eq,
    Neq,
    In,
    Nin,
    Gt,
    Gte,
    Lt,
    Lte,
    Exists,
    Contains,
}

const OPS: [(&str, Op); 10] = [
    ("EQ", Op::Eq),
    ("NEQ", Op::Neq),
    ("IN", Op::In),
    ("NIN", Op::Nin),
    ("GT", Op::Gt),
    ("GTE", Op::Gte),
    ("LT", Op::Lt),
    ("LTE", Op::Lte),
    ("EXISTS", Op::Exists),
    ("CONTAINS", Op::Contains),
];

impl Op {
    pub fn parse(s: &str) -> Option<Op> {
        OPS.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|(_, op)| *op)
    }
}

/// The longest `within` a proximity or absence condition may name: a century. Longer
/// windows reach past what Postgres stores (and past 1970, where events begin).
pub const MAX_WITHIN_DAYS: i64 = 36_525;

/// Where a window lies relative to the event being routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// `[t − within, t]`: the other event came first (proximity).
    Before,
    /// `[t − within, t + within]`: absence checks look both ways, so the outcome
    /// does not depend on which event was processed first.
    Around,
}

/// A question about the person's other events.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HistoryNeed {
    pub event_type: String,
    pub within: Duration,
    pub side: Side,
}

impl HistoryNeed {
    /// The inclusive event-time window around `t`. Saturates rather than overflowing
    /// (parsing caps `within` at [`MAX_WITHIN_DAYS`], so it never has to).
    pub fn window(&self, t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let from = t
            .checked_sub_signed(self.within)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        match self.side {
            Side::Before => (from, t),
            Side::Around => (
                from,
                t.checked_add_signed(self.within)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC),
            ),
        }
    }
}

/// Answers to [`HistoryNeed`]s: whether another event of the person matched.
pub type History = HashMap<HistoryNeed, bool>;

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Property {
        path: String,
        op: Op,
        value: Value,
        case_insensitive: bool,
    },
    EventWithin(HistoryNeed),
    NoEventWithin(HistoryNeed),
    Any(Vec<Condition>),
    All(Vec<Condition>),
}

/// What conditions look at: the event and the stored person.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub properties: &'a Value,
    /// The event's `user_traits`.
    pub user_traits: &'a Value,
    /// The stored person (`user.*`), with their merged `traits`; Null when none.
    pub user: &'a Value,
}

impl Facts<'_> {
    /// Resolves a dotted path. `user_traits.*` falls back to the stored person's traits,
    /// which hold what earlier events said.
    pub fn lookup(&self, path: &str) -> Option<&Value> {
        let (root, rest) = path.split_once('.').unwrap_or((path, ""));
        match root {
            "properties" => walk(self.properties, rest),
            "user_traits" => walk(self.user_traits, rest)
                .filter(|v| !v.is_null())
                .or_else(|| self.user.get("traits").and_then(|t| walk(t, rest))),
            "user" => walk(self.user, rest),
            _ => None,
        }
    }
}

fn walk<'v>(mut v: &'v Value, path: &str) -> Option<&'v Value> {
    if path.is_empty() {
        return Some(v);
    }
    for key in path.split('.') {
        v = match v {
            Value::Object(map) => map.get(key)?,
            Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

impl Condition {
    /// Every history question this condition (and its children) asks.
    pub fn history_needs(&self, out: &mut Vec<HistoryNeed>) {
        match self {
            Condition::EventWithin(n) | Condition::NoEventWithin(n) => {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
            Condition::Any(cs) | Condition::All(cs) => cs.iter().for_each(|c| c.history_needs(out)),
            Condition::Property { .. } => {}
        }
    }

    /// Whether the condition holds. A history question left unanswered counts as "no
    /// such event".
    pub fn evaluate(&self, facts: &Facts<'_>, history: &History) -> bool {
        match self {
            Condition::Property {
                path,
                op,
                value,
                case_insensitive,
            } => compare(facts.lookup(path), *op, value, *case_insensitive),
            Condition::EventWithin(n) => history.get(n).copied().unwrap_or(false),
            Condition::NoEventWithin(n) => !history.get(n).copied().unwrap_or(false),
            Condition::Any(cs) => cs.iter().any(|c| c.evaluate(facts, history)),
            Condition::All(cs) => cs.iter().all(|c| c.evaluate(facts, history)),
        }
    }

    /// Why the condition does not hold (its first failing part), for a suppression
    /// reason; None when it holds.
    pub fn explain_failure(&self, facts: &Facts<'_>, history: &History) -> Option<String> {
        if self.evaluate(facts, history) {
            return None;
        }
        let span =
            |d: &Duration| humantime::format_duration(d.to_std().unwrap_or_default()).to_string();
        Some(match self {
            Condition::All(cs) => return cs.iter().find_map(|c| c.explain_failure(facts, history)),
            Condition::Any(cs) => format!("none of {} alternatives held", cs.len()),
            Condition::Property {
                path, op, value, ..
            } => format!("{path} {op:?} {value} does not hold"),
            Condition::EventWithin(n) => {
                format!("no {} within {} before", n.event_type, span(&n.within))
            }
            Condition::NoEventWithin(n) => {
                format!("{} happened within {}", n.event_type, span(&n.within))
            }
        })
    }
}

/// A JSON value as a number, when it is one or a numeric string.
fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Equality with Herald's loose typing: numbers by value, booleans and their strings
/// alike, strings optionally case-insensitively.
pub fn loosely_equal(a: &Value, b: &Value, case_insensitive: bool) -> bool {
    if let (Some(x), Some(y)) = (as_number(a), as_number(b)) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (as_bool(a), as_bool(b)) {
        return x == y;
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) if case_insensitive => {
            x.to_lowercase() == y.to_lowercase()
        }
        _ => a == b,
    }
}

fn ordered(a: &Value, b: &Value, case_insensitive: bool) -> Option<std::cmp::Ordering> {
    if let (Some(x), Some(y)) = (as_number(a), as_number(b)) {
        return x.partial_cmp(&y);
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) if case_insensitive => {
            Some(x.to_lowercase().cmp(&y.to_lowercase()))
        }
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn compare(actual: Option<&Value>, op: Op, expected: &Value, ci: bool) -> bool {
    use std::cmp::Ordering::*;
    let actual = match (op, actual) {
        (Op::Exists, found) => {
            let present = found.is_some_and(|v| !v.is_null());
            return present == as_bool(expected).unwrap_or(true);
        }
        (_, None | Some(Value::Null)) => return false,
        (_, Some(v)) => v,
    };
    let list = || {
        expected
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(std::slice::from_ref(expected))
    };
    match op {
        Op::Eq => loosely_equal(actual, expected, ci),
        Op::Neq => !loosely_equal(actual, expected, ci),
        Op::In => list().iter().any(|e| loosely_equal(actual, e, ci)),
        Op::Nin => !list().iter().any(|e| loosely_equal(actual, e, ci)),
        Op::Gt => ordered(actual, expected, ci) == Some(Greater),
        Op::Gte => matches!(ordered(actual, expected, ci), Some(Greater | Equal)),
        Op::Lt => ordered(actual, expected, ci) == Some(Less),
        Op::Lte => matches!(ordered(actual, expected, ci), Some(Less | Equal)),
        Op::Contains => match actual {
            Value::String(s) => expected.as_str().is_some_and(|e| {
                if ci {
                    s.to_lowercase().contains(&e.to_lowercase())
                } else {
                    s.contains(e)
                }
            }),
            Value::Array(items) => items.iter().any(|i| loosely_equal(i, expected, ci)),
            Value::Object(map) => expected.as_str().is_some_and(|k| map.contains_key(k)),
            _ => false,
        },
        Op::Exists => unreachable!("handled above"),
    }
}

/// Parses the `conditions:` of a rule (a list: all must hold). Every problem is
/// reported, each with its path, e.g. `conditions[1].op: unknown operator "EQUALS"`.
pub fn parse_conditions(value: &Value) -> Result<Condition, Vec<String>> {
    let mut errors = Vec::new();
    let cond = match value {
        Value::Null => Condition::All(Vec::new()),
        Value::Array(items) => Condition::All(parse_list(items, "conditions", &mut errors)),
        _ => {
            errors.push("conditions: must be a list".into());
            Condition::All(Vec::new())
        }
    };
    if errors.is_empty() {
        Ok(cond)
    } else {
        Err(errors)
    }
}

fn parse_list(items: &[Value], path: &str, errors: &mut Vec<String>) -> Vec<Condition> {
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| parse_one(item, &format!("{path}[{i}]"), errors))
        .collect()
}

fn parse_one(item: &Value, path: &str, errors: &mut Vec<String>) -> Option<Condition> {
    let Some(obj) = item.as_object() else {
        errors.push(format!("{path}: must be a mapping"));
        return None;
    };
    let allowed: &[&str] = if obj.contains_key("property") {
        &["property", "op", "value", "case_insensitive"]
    } else {
        &["event_within", "no_event_within", "any", "all"]
    };
    let mut ok = true;
    for key in obj.keys().filter(|k| !allowed.contains(&k.as_str())) {
        errors.push(format!("{path}: unknown field {key:?}"));
        ok = false;
    }
    if let Some(prop) = obj.get("property") {
        let Some(p) = prop.as_str() else {
            errors.push(format!(
                "{path}.property: must be a dotted path such as properties.amount"
            ));
            return None;
        };
        let roots = ["properties", "user_traits", "user"];
        if !roots.contains(&p.split('.').next().unwrap_or_default()) {
            errors.push(format!(
                "{path}.property: {p:?} must start with properties., user_traits. or user."
            ));
            ok = false;
        }
        let op = match obj.get("op").and_then(Value::as_str) {
            Some(name) => Op::parse(name).or_else(|| {
                let names: Vec<&str> = OPS.iter().map(|(n, _)| *n).collect();
                errors.push(format!(
                    "{path}.op: unknown operator {name:?}; expected one of {}",
                    names.join(" ")
                ));
                None
            }),
            None => {
                errors.push(format!("{path}.op: required"));
                None
            }
        };
        let value = obj.get("value").cloned().unwrap_or(Value::Null);
        if matches!(op, Some(op) if op != Op::Exists) && value.is_null() {
            errors.push(format!("{path}.value: required for this operator"));
            ok = false;
        }
        let case_insensitive = match obj.get("case_insensitive") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                errors.push(format!("{path}.case_insensitive: must be true or false"));
                false
            }
        };
        return match (ok, op) {
            (true, Some(op)) => Some(Condition::Property {
                path: p.to_string(),
                op,
                value,
                case_insensitive,
            }),
            _ => None,
        };
    }
    if obj.len() != 1 {
        errors.push(format!(
            "{path}: expected one of property, event_within, no_event_within, any, all"
        ));
        return None;
    }
    let (key, inner) = obj.iter().next()?;
    let inner_path = format!("{path}.{key}");
    match key.as_str() {
        "any" | "all" => {
            let Some(items) = inner.as_array() else {
                errors.push(format!("{inner_path}: must be a list of conditions"));
                return None;
            };
            let cs = parse_list(items, &inner_path, errors);
            Some(if key == "any" {
                Condition::Any(cs)
            } else {
                Condition::All(cs)
            })
        }
        "event_within" => {
            parse_need(inner, &inner_path, Side::Before, errors).map(Condition::EventWithin)
        }
        "no_event_within" => {
            parse_need(inner, &inner_path, Side::Around, errors).map(Condition::NoEventWithin)
        }
        _ => None,
    }
}

fn parse_need(v: &Value, path: &str, side: Side, errors: &mut Vec<String>) -> Option<HistoryNeed> {
    let event_type = v.get("event_type").and_then(Value::as_str);
    let within = v.get("within").map(|w| match w {
        Value::String(s) => parse_duration(s).map_err(|e| e.to_string()),
        Value::Number(n) => n
            .as_u64()
            .map(std::time::Duration::from_secs)
            .ok_or_else(|| format!("invalid duration {n}")),
        other => Err(format!("invalid duration {other}")),
    });
    if let Some(obj) = v.as_object() {
        for key in obj
            .keys()
            .filter(|k| !["event_type", "within"].contains(&k.as_str()))
        {
            errors.push(format!("{path}: unknown field {key:?}"));
        }
    }
    let within = within.map(|w| {
        w.and_then(|d| {
            Duration::from_std(d)
                .ok()
                .filter(|d| *d <= Duration::days(MAX_WITHIN_DAYS))
                .ok_or_else(|| format!("must be at most {MAX_WITHIN_DAYS} days (a century)"))
        })
    });
    match (event_type, within) {
        (Some(t), Some(Ok(within))) => Some(HistoryNeed {
            event_type: t.to_string(),
            within,
            side,
        }),
        (t, w) => {
            if t.is_none() {
                errors.push(format!("{path}.event_type: required"));
            }
            match w {
                None => errors.push(format!("{path}.within: required, e.g. 24h")),
                Some(Err(e)) => errors.push(format!("{path}.within: {e}")),
                Some(Ok(_)) => {}
            }
            None
        }
    }
}

#[cfg(test)]
mod tests;
