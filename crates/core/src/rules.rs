//! Notification rules (`config/rules.yml`, contract §5.1): which event types produce which
//! notification, for whom, on which channel, rendered with which template.
//!
//! The rule type grows with the engine: fields are added here and validated in
//! [`crate::config`]; unknown fields are refused so that a typo in a rule file stops
//! the process instead of silently doing nothing.

use crate::conditions::{parse_conditions, Condition, Facts, History, HistoryNeed};
use crate::debounce::Debounce;
use crate::duration::serde_duration;
use crate::schedule::SendWindow;
use crate::severity::Severity;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// Who receives a rule's notification (contract §5.1, "Recipients").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recipients {
    /// The event's `user_id`; nobody when the event has none.
    Subject,
    /// People with an enabled subscription to the event type (within the topic, if any).
    Subscribers,
    /// Members of the event's `topic`; nobody when the event has none.
    Topic,
    /// Everyone.
    All,
    /// One private notification to the operators' channel about the subject.
    Internal,
}

impl Recipients {
    /// Whether the rule reaches a set of people that must be paged through in chunks.
    pub fn is_fan_out(self) -> bool {
        matches!(
            self,
            Recipients::Subscribers | Recipients::Topic | Recipients::All
        )
    }
}

/// A rule as written in `rules.yml`, before its conditions are parsed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    notification_type: String,
    event_type: String,
    recipients: Recipients,
    channel: String,
    template: String,
    #[serde(default)]
    severity: Option<Severity>,
    #[serde(default, with = "serde_duration")]
    delay: Duration,
    #[serde(default)]
    recheck: bool,
    #[serde(default)]
    debounce: Option<Debounce>,
    #[serde(default)]
    bundle: Option<Value>,
    #[serde(default)]
    send_window: Option<Value>,
}

/// The keys a rule may have; anything else is a mistake worth reporting.
pub const RULE_FIELDS: [&str; 13] = [
    "notification_type",
    "event_type",
    "recipients",
    "channel",
    "template",
    "severity",
    "delay",
    "recheck",
    "debounce",
    "conditions",
    "bundle",
    "send_window",
    "description",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Names the notification everywhere: rows, inbox, audit, templates. Unique.
    pub notification_type: String,
    pub event_type: String,
    pub recipients: Recipients,
    /// A channel of `channels.yml`.
    pub channel: String,
    /// A template of `templates.yml`.
    pub template: String,
    /// Fixed severity. When absent, the event's `properties.severity` decides (alerts
    /// set it from their label), else `standard`.
    pub severity: Option<Severity>,
    /// Hold before sending (due = received_at + delay).
    pub delay: Duration,
    /// Re-evaluate the conditions when the delay ends; a failed recheck suppresses.
    pub recheck: bool,
    pub debounce: Option<Debounce>,
    /// All must hold (an empty `All` always holds).
    pub conditions: Condition,
    /// Bundling (contract §8): hold notifications in one pending bundle per person
    /// (and key) and send them as one digest.
    pub bundle: Option<BundleSpec>,
    /// Only send inside this local window (contract §5.3).
    pub send_window: Option<SendWindow>,
}

/// A rule's `bundle:` block (contract §8). The ranker's weights and threshold come
/// from `bundling.yml` unless the rule's `ranker:` block overrides some of them.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSpec {
    /// Bundles per person per local calendar day; `bundling.yml`'s when absent.
    #[serde(default)]
    pub max_per_day: Option<u32>,
    /// What groups items besides the person and the notification type: a path into
    /// the event (`properties.post_id`). Absent: one bundle per person and type.
    #[serde(default)]
    pub key: Option<String>,
    /// The template of the digest's message (`templates.yml`), rendered with
    /// [`crate::bundle::digest`]'s variables. Absent: the first item's text, with
    /// `(+N more)` when there are more.
    #[serde(default)]
    pub template: Option<String>,
    /// The path whose distinct values are the digest's `actors`
    /// (`properties.author`).
    #[serde(default)]
    pub actor: Option<String>,
    /// Overrides of `bundling.yml` for this rule's ranker (same keys); resolved by
    /// the config loader ([`crate::config::Config::bundling_for`]).
    #[serde(default)]
    pub ranker: Option<Value>,
}

/// The event paths a bundle's `key` and `actor` may name.
const BUNDLE_PATH_ROOTS: [&str; 2] = ["properties.", "user_traits."];

impl Rule {
    /// Parses one rule from its raw YAML/JSON value. Every problem is returned, each as
    /// (field, message); the rule's name is `name_of(raw)`.
    pub fn parse(raw: &Value) -> Result<Rule, Vec<(String, String)>> {
        let Some(obj) = raw.as_object() else {
            return Err(vec![("rule".into(), "must be a mapping".into())]);
        };
        let mut errors: Vec<(String, String)> = obj
            .keys()
            .filter(|k| !RULE_FIELDS.contains(&k.as_str()))
            .map(|k| (k.clone(), "unknown field".to_string()))
            .collect();
        // Check the known fields even when unknown ones are present, so one run of
        // check-config lists everything.
        let known: serde_json::Map<String, Value> = obj
            .iter()
            .filter(|(k, _)| {
                RULE_FIELDS.contains(&k.as_str())
                    && !matches!(k.as_str(), "description" | "conditions")
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let spec = match serde_json::from_value::<RuleSpec>(Value::Object(known)) {
            Ok(spec) => Some(spec),
            Err(e) => {
                errors.push((field_of(&e.to_string()), e.to_string()));
                None
            }
        };
        let conditions = match parse_conditions(obj.get("conditions").unwrap_or(&Value::Null)) {
            Ok(c) => Some(c),
            Err(es) => {
                errors.extend(es.into_iter().map(|e| ("conditions".to_string(), e)));
                None
            }
        };
        let (Some(spec), Some(conditions), true) = (spec, conditions, errors.is_empty()) else {
            return Err(errors);
        };
        let bundle = match spec.bundle.map(serde_json::from_value::<BundleSpec>) {
            None => None,
            Some(Ok(b)) => Some(b),
            Some(Err(e)) => return Err(vec![("bundle".into(), e.to_string())]),
        };
        let send_window = match spec.send_window.as_ref().map(SendWindow::parse) {
            None => None,
            Some(Ok(w)) => Some(w),
            Some(Err(e)) => return Err(vec![(e.field, e.message)]),
        };
        let rule = Rule {
            notification_type: spec.notification_type,
            event_type: spec.event_type,
            recipients: spec.recipients,
            channel: spec.channel,
            template: spec.template,
            severity: spec.severity,
            delay: spec.delay,
            recheck: spec.recheck,
            debounce: spec.debounce,
            conditions,
            bundle,
            send_window,
        };
        rule.check().map(|()| rule)
    }

    /// Cross-field rules that serde cannot express.
    fn check(&self) -> Result<(), Vec<(String, String)>> {
        let mut errors = Vec::new();
        if self.recheck && self.delay.is_zero() {
            errors.push((
                "recheck".into(),
                "needs a delay: conditions are rechecked when the delay ends".into(),
            ));
        }
        if let Some(b) = &self.bundle {
            if b.max_per_day == Some(0) {
                errors.push(("bundle.max_per_day".into(), "must be at least 1".into()));
            }
            for (field, path) in [("bundle.key", &b.key), ("bundle.actor", &b.actor)] {
                let Some(path) = path else { continue };
                let rooted = BUNDLE_PATH_ROOTS
                    .iter()
                    .any(|root| path.len() > root.len() && path.starts_with(root));
                if !rooted {
                    errors.push((
                        field.into(),
                        format!("{path:?} must be a path under properties. or user_traits."),
                    ));
                }
            }
        }
        if self.debounce.is_some_and(|d| d.limit == 0) {
            errors.push(("debounce.limit".into(), "must be at least 1".into()));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The rule's name for messages, before it is parsed.
    pub fn name_of(raw: &Value, index: usize) -> String {
        raw.get("notification_type")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("#{}", index + 1))
    }

    /// The severity a notification of this rule gets for an event with `properties`.
    pub fn severity_for(&self, properties: &Value) -> Severity {
        self.severity.unwrap_or_else(|| {
            properties
                .get("severity")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .unwrap_or_default()
        })
    }

    /// The history questions this rule's conditions ask.
    pub fn history_needs(&self) -> Vec<HistoryNeed> {
        let mut needs = Vec::new();
        self.conditions.history_needs(&mut needs);
        needs
    }
}

/// Picks the field a serde message is about (`missing field `x``, `unknown variant` …).
fn field_of(message: &str) -> String {
    message
        .split('`')
        .nth(1)
        .filter(|_| message.starts_with("missing field"))
        .unwrap_or("rule")
        .to_string()
}

/// All rules, indexed by the event type that triggers them.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    by_event_type: HashMap<String, Vec<usize>>,
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>) -> Self {
        let mut by_event_type: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            by_event_type
                .entry(rule.event_type.clone())
                .or_default()
                .push(i);
        }
        RuleSet {
            rules,
            by_event_type,
        }
    }

    /// The rules an event of `event_type` triggers, in file order.
    pub fn matching<'a>(&'a self, event_type: &str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.by_event_type
            .get(event_type)
            .into_iter()
            .flatten()
            .map(|&i| &self.rules[i])
    }

    /// The severity of the work an event makes, known before routing: critical when a
    /// rule it triggers makes a critical notification and that rule's conditions
    /// already hold on the event itself, so its route job travels with the critical
    /// notifications it will make. What only routing can answer (the stored person,
    /// the person's history) counts as not known: a rule that depends on it does not
    /// make the route critical.
    pub fn event_severity(
        &self,
        event_type: &str,
        properties: &Value,
        user_traits: &Value,
    ) -> Severity {
        let facts = Facts {
            properties,
            user_traits,
            user: &Value::Null,
        };
        let critical = self.matching(event_type).any(|rule| {
            rule.severity_for(properties) == Severity::Critical
                && rule.conditions.evaluate(&facts, &History::new())
        });
        if critical {
            Severity::Critical
        } else {
            Severity::Standard
        }
    }

    pub fn by_notification_type(&self, notification_type: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| r.notification_type == notification_type)
    }

    pub fn all(&self) -> &[Rule] {
        &self.rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(yaml: &str) -> Rule {
        Rule::parse(&serde_norway::from_str::<Value>(yaml).unwrap()).unwrap()
    }

    #[test]
    fn a_rule_without_severity_takes_the_events_severity() {
        let r = rule("{notification_type: A, event_type: alert, recipients: topic, channel: webhook, template: A}");
        assert_eq!(
            r.severity_for(&json!({"severity": "critical"})),
            Severity::Critical
        );
        assert_eq!(r.severity_for(&json!({})), Severity::Standard);
        let fixed = rule("{notification_type: A, event_type: alert, recipients: topic, channel: webhook, template: A, severity: standard}");
        assert_eq!(
            fixed.severity_for(&json!({"severity": "critical"})),
            Severity::Standard
        );
    }

    #[test]
    fn an_event_is_critical_work_when_a_critical_rule_already_holds_on_it() {
        let set = RuleSet::new(vec![
            rule("{notification_type: A, event_type: pay, recipients: subject, channel: email, template: A}"),
            rule("{notification_type: B, event_type: pay, recipients: internal, channel: internal, template: B, severity: critical, conditions: [{property: properties.attempt, op: GTE, value: 3}]}"),
            rule("{notification_type: C, event_type: vip, recipients: internal, channel: internal, template: C, severity: critical, conditions: [{property: user.traits.vip, op: EQ, value: true}]}"),
            rule("{notification_type: D, event_type: alert, recipients: topic, channel: webhook, template: D}"),
        ]);
        let cases = [
            (
                "pay",
                json!({"attempt": 1}),
                Severity::Standard,
                "conditional critical rule not met",
            ),
            (
                "pay",
                json!({"attempt": 3}),
                Severity::Critical,
                "conditional critical rule met",
            ),
            (
                "vip",
                json!({}),
                Severity::Standard,
                "depends on the stored person: not known yet",
            ),
            (
                "alert",
                json!({"severity": "CRITICAL"}),
                Severity::Critical,
                "the event's own severity",
            ),
            (
                "alert",
                json!({"severity": "standard"}),
                Severity::Standard,
                "standard alert",
            ),
            (
                "unknown",
                json!({"severity": "critical"}),
                Severity::Standard,
                "no rule: nothing to route",
            ),
        ];
        for (event_type, properties, want, why) in cases {
            let severity = set.event_severity(event_type, &properties, &Value::Null);
            assert_eq!(severity, want, "{why}");
        }
    }

    #[test]
    fn an_event_whose_rule_says_critical_in_any_case_travels_on_the_critical_queue() {
        use crate::queues::{queue_for, QueueName};
        let cases = [
            ("severity: CRITICAL", json!({}), QueueName::Critical),
            ("severity: Critical", json!({}), QueueName::Critical),
            ("severity: critical", json!({}), QueueName::Critical),
            (
                "severity: STANDARD",
                json!({"severity": "critical"}),
                QueueName::Default,
            ),
            (
                "delay: 0s",
                json!({"severity": "CRITICAL"}),
                QueueName::Critical,
            ),
            ("delay: 0s", json!({}), QueueName::Default),
        ];
        for (field, properties, want) in cases {
            let set = RuleSet::new(vec![
                rule("{notification_type: A, event_type: x, recipients: subject, channel: email, template: A, severity: standard}"),
                rule(&format!("{{notification_type: B, event_type: x, recipients: subject, channel: email, template: B, {field}}}")),
            ]);
            let severity = set.event_severity("x", &properties, &Value::Null);
            assert_eq!(queue_for(severity), want, "{field} with {properties}");
        }
        assert_eq!(
            queue_for(RuleSet::default().event_severity("x", &json!({}), &Value::Null)),
            QueueName::Default
        );
    }

    #[test]
    fn matching_returns_the_rules_of_an_event_type_in_file_order() {
        let set = RuleSet::new(vec![
            rule("{notification_type: A, event_type: x, recipients: subject, channel: email, template: A}"),
            rule("{notification_type: B, event_type: y, recipients: subject, channel: email, template: B}"),
            rule("{notification_type: C, event_type: x, recipients: internal, channel: internal, template: C}"),
        ]);
        let names: Vec<_> = set
            .matching("x")
            .map(|r| r.notification_type.as_str())
            .collect();
        assert_eq!(names, ["A", "C"]);
        assert_eq!(set.matching("z").count(), 0);
    }

    #[test]
    fn every_mistake_in_a_rule_is_reported_at_once() {
        let raw: Value = serde_norway::from_str(
            "{notification_type: A, event_type: x, recipients: subject, channel: email, template: A, chanel: sms,
              conditions: [{property: properties.a, op: EQUALS, value: 1}], recheck: true}",
        )
        .unwrap();
        let errors = Rule::parse(&raw).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["chanel", "conditions"], "{errors:?}");
        let bad_delay: Value = serde_norway::from_str(
            "{notification_type: A, event_type: x, recipients: subject, channel: email, template: A, delay: soon}",
        )
        .unwrap();
        assert!(Rule::parse(&bad_delay).unwrap_err()[0].1.contains("soon"));
        let recheck: Value = serde_norway::from_str(
            "{notification_type: A, event_type: x, recipients: subject, channel: email, template: A, recheck: true}",
        )
        .unwrap();
        assert_eq!(Rule::parse(&recheck).unwrap_err()[0].0, "recheck");
    }
}
