//! Notification rules (`config/rules.yml`, SPEC 5.1): which event types produce which
//! notification, for whom, on which channel, rendered with which template.
//!
//! The rule type grows with the engine: fields are added here and validated in
//! [`crate::config`]; unknown fields are refused so that a typo in a rule file stops
//! the process instead of silently doing nothing.

use crate::duration::serde_duration;
use crate::severity::Severity;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// Who receives a rule's notification (SPEC 5.1, "Recipients").
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
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
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Hold before sending (due = received_at + delay).
    #[serde(default, with = "serde_duration")]
    pub delay: Duration,
}

impl Rule {
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
        serde_norway::from_str(yaml).unwrap()
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
    fn an_unknown_field_is_refused() {
        let err = serde_norway::from_str::<Rule>(
            "{notification_type: A, event_type: x, recipients: subject, channel: email, template: A, chanel: sms}",
        )
        .unwrap_err();
        assert!(err.to_string().contains("chanel"), "{err}");
    }
}
