//! Routing as a plan (contract §5.1): what notifications one rule makes for one page of
//! recipients, decided here once and stored by the worker as it is.
//!
//! The worker gathers the facts (the event, the rule, the recipients with their
//! preferences and subscriptions, the templates) and asks [`plan`]; every decision
//! about a row lives in this module:
//!
//! * who gets a row: one per recipient, or one private row about the subject for an
//!   `internal` rule, which ignores the subject's preferences;
//! * whether a recipient's row is suppressed ([`crate::preferences::decide`]), with a
//!   stored level that no longer parses counting as `standard` ([`parse_level`]);
//! * the row's severity and the queue its delivery travels on ([`queue_for`]);
//! * its due time (`received_at + delay`, or the event's `deliver_at`, moved into the
//!   rule's send window and out of the person's quiet hours by [`crate::schedule::due`],
//!   with the reason kept for the audit trail) and whether it is sent at once: an
//!   in-app notification due now needs no HTTP call, unless its rule bundles
//!   ([`sent_at_once`]);
//! * a bundled rule's deliverable rows become bundle items (`bundled`);
//! * the rendered subject and text, from [`template_vars`].
//!
//! Debounce needs what the person already got, which only the store can count under
//! a lock: the store asks [`debounce_windows`] what to count and [`apply_debounce`]
//! what the counts mean, inside its transaction.
//!
//! Nothing here does I/O or reads the clock: `now` is a fact like the others, so
//! every decision is a table-driven unit test.

use crate::channels::IN_APP;
use crate::config::{Config, TemplateMeta};
use crate::debounce::{timezone, Debounce};
use crate::preferences::{decide, Decision, RecipientFacts};
use crate::queues::{queue_for, QueueName};
use crate::rules::{Recipients, Rule};
use crate::schedule::{self, QuietHours, Timing};
use crate::severity::{Level, Severity};
use crate::status::NotificationStatus;
use crate::template::Templates;
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};
use std::collections::HashMap;
use uuid::Uuid;

/// Recipients handled by one route job (contract §5.1: fan-out jobs of at most 500); a
/// larger set continues in further jobs, paged by user id.
pub const FAN_OUT_CHUNK: i64 = 500;

/// The event being routed, as stored.
#[derive(Debug, Clone, Copy)]
pub struct EventFacts<'a> {
    pub id: Uuid,
    pub event_type: &'a str,
    pub user_id: Option<&'a str>,
    pub topic: Option<&'a str>,
    pub event_timestamp: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub properties: &'a Value,
    pub user_traits: &'a Value,
    /// The instant the event asked its notifications to go at (contract §3.1).
    pub deliver_at: Option<DateTime<Utc>>,
}

/// A stored person as conditions and templates see them (`user.*`).
#[derive(Debug, Clone, Copy)]
pub struct PersonFacts<'a> {
    pub user_id: &'a str,
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    /// An IANA name as stored; an unknown one means UTC.
    pub timezone: &'a str,
    pub traits: &'a Value,
    /// The preference level as stored (`standard`, `critical`, any case).
    pub level: &'a str,
    /// The person's quiet hours as stored (contract §4); one that no longer parses
    /// holds nothing.
    pub quiet_hours: Option<&'a Value>,
}

impl PersonFacts<'_> {
    /// The `user` object of conditions and templates.
    pub fn to_json(&self) -> Value {
        json!({"user_id": self.user_id, "email": self.email, "phone": self.phone,
               "timezone": self.timezone, "traits": self.traits, "level": self.level})
    }
}

/// The `user` object for an optional person: null when the event has nobody.
pub fn person_json(person: Option<&PersonFacts<'_>>) -> Value {
    person.map_or(Value::Null, PersonFacts::to_json)
}

/// One recipient of a rule and what they chose.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    pub person: PersonFacts<'a>,
    /// False when the person switched the rule's channel off.
    pub channel_enabled: bool,
    /// True when the person disabled their subscription to the event type.
    pub subscription_disabled: bool,
}

/// The templates and what each declares (whether it is private).
#[derive(Debug, Clone, Copy)]
pub struct Templating<'a> {
    pub templates: &'a Templates,
    pub meta: &'a HashMap<String, TemplateMeta>,
}

impl<'a> From<&'a Config> for Templating<'a> {
    fn from(config: &'a Config) -> Self {
        Templating {
            templates: &config.templates,
            meta: &config.template_meta,
        }
    }
}

/// One notification row as routing decided it; the store adds its id.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedNotification {
    pub event_id: Uuid,
    pub user_id: Option<String>,
    pub notification_type: String,
    pub channel: String,
    pub status: NotificationStatus,
    pub suppression_reason: Option<String>,
    pub severity: Severity,
    /// Where its delivery job travels.
    pub queue: QueueName,
    /// Kept out of the person's inbox (operators' alerts).
    pub private: bool,
    pub subject: Option<String>,
    pub text: String,
    pub due_at: DateTime<Utc>,
    /// Why the due time is later than the event asked for (quiet hours, the send
    /// window, `deliver_at`), for the audit trail.
    pub hold_reason: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    /// The recipient's calendar, for debounce windows and bundle days. UTC for an
    /// internal row: it goes to the operators, not to the person.
    pub timezone: Tz,
}

impl PlannedNotification {
    /// Turns the row into a `suppressed` one that a person can read the reason of.
    pub fn suppress(&mut self, reason: String) {
        self.status = NotificationStatus::Suppressed;
        self.suppression_reason = Some(reason);
        self.sent_at = None;
    }

    fn is_suppressed(&self) -> bool {
        self.status == NotificationStatus::Suppressed
    }
}

/// What [`plan`] returns: the rows, and the render errors to report (a row whose
/// template fails keeps an empty text rather than being lost).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub notifications: Vec<PlannedNotification>,
    pub render_errors: Vec<String>,
}

/// Plans the notifications `rule` makes for `event` and one page of `recipients`.
/// `subject` is the event's person: an internal rule's row is about them.
pub fn plan(
    event: &EventFacts<'_>,
    rule: &Rule,
    subject: Option<&PersonFacts<'_>>,
    recipients: &[Recipient<'_>],
    templating: &Templating<'_>,
    now: DateTime<Utc>,
) -> Plan {
    let planner = Planner {
        event,
        rule,
        severity: rule.severity_for(event.properties),
        templating,
        now,
    };
    let mut out = Plan::default();
    if rule.recipients == Recipients::Internal {
        // Operators hear about the subject whatever the subject chose.
        let user_id = subject.map(|p| p.user_id).or(event.user_id);
        let row = planner.row(user_id, subject, true, None, &mut out.render_errors);
        out.notifications.push(row);
        return out;
    }
    let private = is_private(rule, templating.meta);
    for recipient in recipients {
        let person = &recipient.person;
        let quiet = QuietHours::from_stored(person.quiet_hours);
        let mut row = planner.row(
            Some(person.user_id),
            Some(person),
            private,
            quiet.as_ref(),
            &mut out.render_errors,
        );
        if let Decision::Suppress(reason) = decision(event, rule, planner.severity, recipient) {
            row.suppress(reason);
        }
        out.notifications.push(row);
    }
    out
}

/// What every row of one plan shares.
struct Planner<'a> {
    event: &'a EventFacts<'a>,
    rule: &'a Rule,
    severity: Severity,
    templating: &'a Templating<'a>,
    now: DateTime<Utc>,
}

impl Planner<'_> {
    /// One row before the recipient's preferences are applied, due when
    /// [`schedule::due`] says. An internal row keeps UTC and no quiet hours: it goes
    /// to the operators.
    fn row(
        &self,
        user_id: Option<&str>,
        person: Option<&PersonFacts<'_>>,
        private: bool,
        quiet: Option<&QuietHours>,
        render_errors: &mut Vec<String>,
    ) -> PlannedNotification {
        let (subject, text) = self.render(person).unwrap_or_else(|e| {
            render_errors.push(e);
            (None, String::new())
        });
        let rule = self.rule;
        let tz = match person {
            Some(p) if rule.recipients != Recipients::Internal => timezone(p.timezone),
            _ => Tz::UTC,
        };
        let due = schedule::due(&Timing {
            base: self.event.received_at + rule.delay,
            deliver_at: self.event.deliver_at,
            send_window: rule.send_window.as_ref(),
            quiet_hours: quiet,
            tz,
            channel: &rule.channel,
            severity: self.severity,
        });
        let due_at = due.at;
        let sent_now = sent_at_once(rule, due_at, self.now);
        PlannedNotification {
            event_id: self.event.id,
            user_id: user_id.map(str::to_string),
            notification_type: rule.notification_type.clone(),
            channel: rule.channel.clone(),
            status: initial_status(rule, user_id.is_some(), sent_now),
            suppression_reason: None,
            severity: self.severity,
            queue: queue_for(self.severity),
            private,
            subject,
            text,
            due_at,
            hold_reason: due.reason,
            sent_at: sent_now.then_some(self.now),
            timezone: tz,
        }
    }

    /// The rule's template rendered for `person`, or why it failed.
    fn render(&self, person: Option<&PersonFacts<'_>>) -> Result<(Option<String>, String), String> {
        let vars = template_vars(self.event, person);
        self.templating
            .templates
            .render(&self.rule.template, &vars)
            .map(|r| (r.subject, r.text))
            .map_err(|e| e.to_string())
    }
}

/// A row's status before preferences and debounce: a bundled rule's rows for a person
/// are items of their bundle; otherwise sent at once or pending.
pub fn initial_status(rule: &Rule, has_person: bool, sent_now: bool) -> NotificationStatus {
    if rule.bundle.is_some() && has_person {
        NotificationStatus::Bundled
    } else if sent_now {
        NotificationStatus::Sent
    } else {
        NotificationStatus::Pending
    }
}

/// The preference decision for one recipient.
fn decision(
    event: &EventFacts<'_>,
    rule: &Rule,
    severity: Severity,
    recipient: &Recipient<'_>,
) -> Decision {
    let facts = RecipientFacts {
        user_id: recipient.person.user_id,
        level: parse_level(recipient.person.level),
        channel_enabled: recipient.channel_enabled,
        subscription_disabled: recipient.subscription_disabled,
    };
    decide(
        &rule.notification_type,
        event.event_type,
        &rule.channel,
        severity,
        &facts,
    )
}

/// A stored preference level; one that no longer parses counts as `standard` (the
/// person then receives everything rather than nothing).
pub fn parse_level(stored: &str) -> Level {
    stored.parse().unwrap_or(Level::Standard)
}

/// Whether a row due at `due_at` is sent when it is stored: the inbox channel needs
/// no HTTP call. Bundled rules hold their rows instead.
pub fn sent_at_once(rule: &Rule, due_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    rule.channel == IN_APP && due_at <= now && rule.bundle.is_none()
}

/// Whether the rule's template is private (kept out of the person's inbox).
pub fn is_private(rule: &Rule, meta: &HashMap<String, TemplateMeta>) -> bool {
    meta.get(&rule.template).is_some_and(|m| m.private)
}

/// What templates see (contract §5.2): the event and the stored person.
pub fn template_vars(event: &EventFacts<'_>, person: Option<&PersonFacts<'_>>) -> Value {
    json!({
        "event_id": event.id,
        "event_type": event.event_type,
        "event_timestamp": event.event_timestamp.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        "topic": event.topic,
        "properties": event.properties,
        "user_traits": event.user_traits,
        "user": person_json(person),
    })
}

/// One person's debounce question: the window of triggering-event times in which
/// their earlier notifications count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebounceWindow {
    pub user_id: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The windows to count for `rows` of an event at `event_time`: one per person whose
/// row is not suppressed already, in their own calendar.
pub fn debounce_windows(
    rows: &[PlannedNotification],
    debounce: Debounce,
    event_time: DateTime<Utc>,
) -> Vec<DebounceWindow> {
    rows.iter()
        .filter(|r| !r.is_suppressed())
        .filter_map(|r| {
            let user_id = r.user_id.as_deref()?;
            let (from, to) = debounce.window(event_time, r.timezone);
            Some(DebounceWindow {
                user_id: user_id.to_string(),
                from,
                to,
            })
        })
        .collect()
}

/// Suppresses the rows whose person already got `debounce.limit` notifications of
/// `notification_type` in their window (`counts_by_user`, counted under the person's
/// lock), with the reason they can read.
pub fn apply_debounce(
    rows: &mut [PlannedNotification],
    counts_by_user: &HashMap<String, i64>,
    debounce: Debounce,
    notification_type: &str,
) {
    for row in rows.iter_mut().filter(|r| !r.is_suppressed()) {
        let already = row
            .user_id
            .as_deref()
            .and_then(|u| counts_by_user.get(u))
            .copied()
            .unwrap_or(0);
        if !debounce.allows(already) {
            row.suppress(debounce.reason(notification_type, already));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::TemplateSource;

    fn rule(yaml: &str) -> Rule {
        let raw: Value = serde_norway::from_str(yaml).expect("rule yaml");
        Rule::parse(&raw).expect("valid rule")
    }

    /// A rule named A of event type `x` on `channel`, plus `extra` YAML fields.
    fn rule_on(channel: &str, recipients: &str, extra: &str) -> Rule {
        rule(&format!(
            "{{notification_type: A, event_type: x, recipients: {recipients}, channel: {channel}, template: T{extra}}}"
        ))
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("timestamp")
    }

    fn templates() -> Templates {
        Templates::compile(&[TemplateSource {
            name: "T".into(),
            subject: Some("Hi {{ user.user_id }}".into()),
            text: "{{ event_type }} for {{ user.user_id }}: {{ properties.what }}".into(),
        }])
        .expect("templates compile")
    }

    fn meta(private: bool) -> HashMap<String, TemplateMeta> {
        HashMap::from([(
            "T".to_string(),
            TemplateMeta {
                channel: "webhook".into(),
                private,
            },
        )])
    }

    fn event(properties: &Value) -> EventFacts<'_> {
        EventFacts {
            id: Uuid::nil(),
            event_type: "x",
            user_id: Some("subject"),
            topic: None,
            event_timestamp: at("2025-10-31T10:00:00Z"),
            received_at: at("2025-10-31T10:00:01Z"),
            properties,
            user_traits: &Value::Null,
            deliver_at: None,
        }
    }

    fn person<'a>(user_id: &'a str, level: &'a str) -> PersonFacts<'a> {
        PersonFacts {
            user_id,
            email: None,
            phone: None,
            timezone: "Europe/Paris",
            traits: &Value::Null,
            level,
            quiet_hours: None,
        }
    }

    fn recipient<'a>(user_id: &'a str, level: &'a str) -> Recipient<'a> {
        Recipient {
            person: person(user_id, level),
            channel_enabled: true,
            subscription_disabled: false,
        }
    }

    const NOW: &str = "2025-10-31T10:00:02Z";

    fn plan_for(rule: &Rule, recipients: &[Recipient<'_>], private: bool) -> Plan {
        let props = json!({"what": "w", "severity": "critical"});
        let (templates, meta) = (templates(), meta(private));
        let templating = Templating {
            templates: &templates,
            meta: &meta,
        };
        let subject = person("subject", "standard");
        plan(
            &event(&props),
            rule,
            Some(&subject),
            recipients,
            &templating,
            at(NOW),
        )
    }

    #[test]
    fn a_bad_stored_level_counts_as_standard() {
        let cases = [
            ("standard", Level::Standard),
            ("critical", Level::Critical),
            ("CRITICAL", Level::Critical),
            ("Standard", Level::Standard),
            ("urgent", Level::Standard),
            ("", Level::Standard),
        ];
        for (stored, want) in cases {
            assert_eq!(parse_level(stored), want, "level {stored:?}");
        }
    }

    #[test]
    fn only_an_in_app_notification_due_now_of_an_unbundled_rule_is_sent_at_once() {
        let now = at(NOW);
        let cases = [
            ("in_app", "", now, true),
            ("in_app", "", now - chrono::Duration::seconds(1), true),
            ("in_app", "", now + chrono::Duration::seconds(1), false),
            ("in_app", ", bundle: {}", now, false),
            ("webhook", "", now, false),
            ("email", "", now - chrono::Duration::hours(1), false),
        ];
        for (channel, extra, due, want) in cases {
            let r = rule_on(channel, "subject", extra);
            assert_eq!(
                sent_at_once(&r, due, now),
                want,
                "{channel}{extra} due {due}"
            );
        }
    }

    #[test]
    fn the_initial_status_follows_bundle_person_and_send() {
        let bundled = rule_on("in_app", "subject", ", bundle: {}");
        let plain = rule_on("in_app", "subject", "");
        let cases = [
            (&bundled, true, false, NotificationStatus::Bundled),
            (&bundled, false, false, NotificationStatus::Pending),
            (&plain, true, true, NotificationStatus::Sent),
            (&plain, true, false, NotificationStatus::Pending),
            (&plain, false, true, NotificationStatus::Sent),
        ];
        for (r, has_person, sent_now, want) in cases {
            assert_eq!(
                initial_status(r, has_person, sent_now),
                want,
                "bundle {:?} person {has_person} sent_now {sent_now}",
                r.bundle
            );
        }
    }

    #[test]
    fn a_template_is_private_only_when_it_says_so() {
        let r = rule_on("webhook", "subject", "");
        assert!(is_private(&r, &meta(true)));
        assert!(!is_private(&r, &meta(false)));
        assert!(!is_private(&r, &HashMap::new()));
    }

    #[test]
    fn each_recipient_gets_a_row_decided_by_their_preferences() {
        let r = rule_on("webhook", "topic", ", severity: standard");
        let off = Recipient {
            channel_enabled: false,
            ..recipient("off", "standard")
        };
        let unsubscribed = Recipient {
            subscription_disabled: true,
            ..recipient("unsub", "standard")
        };
        let recipients = [
            recipient("ok", "standard"),
            recipient("crit", "critical"),
            recipient("bad_level", "urgent"),
            off,
            unsubscribed,
        ];
        let rows = plan_for(&r, &recipients, false).notifications;
        let cases = [
            ("ok", NotificationStatus::Pending, None),
            (
                "crit",
                NotificationStatus::Suppressed,
                Some("receives critical notifications only"),
            ),
            ("bad_level", NotificationStatus::Pending, None),
            (
                "off",
                NotificationStatus::Suppressed,
                Some("switched the webhook channel off"),
            ),
            (
                "unsub",
                NotificationStatus::Suppressed,
                Some("disabled their subscription to x"),
            ),
        ];
        assert_eq!(rows.len(), cases.len());
        for ((user, status, reason), row) in cases.into_iter().zip(&rows) {
            assert_eq!(row.user_id.as_deref(), Some(user));
            assert_eq!(row.status, status, "{user}");
            match reason {
                Some(part) => assert!(
                    row.suppression_reason
                        .as_deref()
                        .is_some_and(|r| r.contains(part)),
                    "{user}: {:?}",
                    row.suppression_reason
                ),
                None => assert_eq!(row.suppression_reason, None, "{user}"),
            }
            assert_eq!(row.timezone, Tz::Europe__Paris);
            assert!(!row.private);
        }
    }

    #[test]
    fn severity_queue_due_time_and_text_come_with_every_row() {
        let cases = [
            ("", Severity::Critical, QueueName::Critical),
            (
                ", severity: standard",
                Severity::Standard,
                QueueName::Default,
            ),
            (
                ", severity: CRITICAL",
                Severity::Critical,
                QueueName::Critical,
            ),
        ];
        for (extra, severity, queue) in cases {
            let r = rule_on("webhook", "subject", &format!("{extra}, delay: 1h"));
            let plan = plan_for(&r, &[recipient("u", "standard")], true);
            let row = &plan.notifications[0];
            assert_eq!((row.severity, row.queue), (severity, queue), "{extra}");
            assert_eq!(row.due_at, at("2025-10-31T11:00:01Z"));
            assert_eq!(
                (row.status, row.sent_at),
                (NotificationStatus::Pending, None)
            );
            assert_eq!(row.subject.as_deref(), Some("Hi u"));
            assert_eq!(row.text, "x for u: w");
            assert!(row.private);
            assert!(plan.render_errors.is_empty());
        }
    }

    #[test]
    fn quiet_hours_send_windows_and_deliver_at_move_the_due_time_with_a_reason() {
        // NOW is 2025-10-31T10:00:02Z, 11:00:02 in Paris (a Friday).
        let quiet = json!({"start": "10:30", "end": "11:30"});
        let holding_critical = json!({"start": "10:30", "end": "11:30", "hold_critical": true});
        let in_quiet = |q: &'static Value| Recipient {
            person: PersonFacts {
                quiet_hours: Some(q),
                ..person("q", "standard")
            },
            channel_enabled: true,
            subscription_disabled: false,
        };
        let quiet: &'static Value = Box::leak(Box::new(quiet));
        let holding_critical: &'static Value = Box::leak(Box::new(holding_critical));
        let held = Some("held for quiet hours until 11:30 Europe/Paris");
        let cases = [
            // (rule extras, recipient, channel, due, reason)
            (
                ", severity: standard",
                in_quiet(quiet),
                "in_app",
                "2025-10-31T10:30:00Z",
                held,
            ),
            (
                ", severity: critical",
                in_quiet(quiet),
                "in_app",
                "2025-10-31T10:00:01Z",
                None,
            ),
            (
                ", severity: critical",
                in_quiet(holding_critical),
                "in_app",
                "2025-10-31T10:30:00Z",
                held,
            ),
            (
                ", severity: standard",
                recipient("u", "standard"),
                "in_app",
                "2025-10-31T10:00:01Z",
                None,
            ),
            (
                ", severity: standard, send_window: {start: '14:00', end: '18:00', days: [fri]}",
                recipient("u", "standard"),
                "webhook",
                "2025-10-31T13:00:00Z",
                Some("held for the send window 14:00–18:00 until 14:00 Europe/Paris"),
            ),
        ];
        for (extra, r, channel, due, reason) in cases {
            let rule = rule_on(channel, "topic", extra);
            let row = &plan_for(&rule, &[r], false).notifications[0];
            assert_eq!(row.due_at, at(due), "{extra}");
            assert_eq!(row.hold_reason.as_deref(), reason, "{extra}");
            // A held in-app row is not sent at once: it waits in the delayed set.
            let held = row.due_at > at(NOW);
            assert_eq!(
                row.status == NotificationStatus::Pending,
                held || channel != "in_app",
                "{extra}"
            );
        }
        // deliver_at.
        let props = json!({});
        let mut e = event(&props);
        e.deliver_at = Some(at("2025-11-02T08:00:00Z"));
        let (templates, meta) = (templates(), meta(false));
        let templating = Templating {
            templates: &templates,
            meta: &meta,
        };
        let r = rule_on("webhook", "topic", "");
        let plan = plan(
            &e,
            &r,
            None,
            &[recipient("u", "standard")],
            &templating,
            at(NOW),
        );
        assert_eq!(plan.notifications[0].due_at, at("2025-11-02T08:00:00Z"));
    }

    #[test]
    fn an_in_app_row_due_now_is_planned_sent() {
        let r = rule_on("in_app", "subject", "");
        let row = &plan_for(&r, &[recipient("u", "standard")], false).notifications[0];
        assert_eq!(row.status, NotificationStatus::Sent);
        assert_eq!(row.sent_at, Some(at(NOW)));
    }

    #[test]
    fn an_internal_rule_makes_one_private_row_about_the_subject_whatever_they_chose() {
        let r = rule_on("webhook", "internal", ", severity: standard");
        // The recipients page is ignored: operators hear about the subject.
        let plan = plan_for(&r, &[recipient("other", "critical")], false);
        assert_eq!(plan.notifications.len(), 1);
        let row = &plan.notifications[0];
        assert_eq!(row.user_id.as_deref(), Some("subject"));
        assert_eq!(row.status, NotificationStatus::Pending);
        assert!(row.private);
        assert_eq!(row.timezone, Tz::UTC);
        assert_eq!(row.text, "x for subject: w");
    }

    #[test]
    fn an_internal_rule_without_a_stored_subject_names_the_events_person() {
        let r = rule_on("webhook", "internal", "");
        let props = json!({});
        let (templates, meta) = (templates(), meta(false));
        let templating = Templating {
            templates: &templates,
            meta: &meta,
        };
        let plan = plan(&event(&props), &r, None, &[], &templating, at(NOW));
        assert_eq!(plan.notifications[0].user_id.as_deref(), Some("subject"));
        assert_eq!(plan.notifications[0].text, "x for : ");
    }

    #[test]
    fn a_template_that_fails_leaves_the_text_empty_and_is_reported() {
        let r = rule(
            "{notification_type: A, event_type: x, recipients: subject, channel: webhook, template: missing}",
        );
        let plan = plan_for(&r, &[recipient("u", "standard")], false);
        assert_eq!(plan.notifications.len(), 1);
        assert_eq!(plan.notifications[0].text, "");
        assert_eq!(plan.notifications[0].subject, None);
        assert_eq!(plan.render_errors.len(), 1);
    }

    #[test]
    fn template_vars_show_the_event_and_the_person() {
        let props = json!({"a": 1});
        let vars = template_vars(&event(&props), Some(&person("u", "critical")));
        assert_eq!(vars["event_type"], "x");
        assert_eq!(vars["event_timestamp"], "2025-10-31T10:00:00Z");
        assert_eq!(vars["properties"]["a"], 1);
        assert_eq!(vars["user"]["user_id"], "u");
        assert_eq!(vars["user"]["level"], "critical");
        assert_eq!(template_vars(&event(&props), None)["user"], Value::Null);
    }

    fn daily(limit: u32) -> Debounce {
        Debounce {
            limit,
            period: crate::debounce::Period::CalendarDay,
        }
    }

    fn debounced_rows() -> Vec<PlannedNotification> {
        let r = rule_on("webhook", "topic", ", severity: standard");
        let recipients = [
            recipient("fresh", "standard"),
            recipient("once", "standard"),
            recipient("twice", "standard"),
            recipient("crit", "critical"),
        ];
        plan_for(&r, &recipients, false).notifications
    }

    #[test]
    fn debounce_suppresses_the_rows_over_the_limit_with_the_reason() {
        let counts = HashMap::from([
            ("once".to_string(), 1),
            ("twice".to_string(), 2),
            ("crit".to_string(), 5),
        ]);
        let cases: [(u32, [bool; 4]); 3] = [
            // limit: which of fresh, once, twice, crit end up suppressed
            (1, [false, true, true, true]),
            (2, [false, false, true, true]),
            (3, [false, false, false, true]),
        ];
        for (limit, want) in cases {
            let mut rows = debounced_rows();
            apply_debounce(&mut rows, &counts, daily(limit), "A");
            let got: Vec<bool> = rows
                .iter()
                .map(|r| r.status == NotificationStatus::Suppressed)
                .collect();
            assert_eq!(got, want, "limit {limit}");
            for row in rows
                .iter()
                .filter(|r| r.status == NotificationStatus::Suppressed)
            {
                assert_eq!(row.sent_at, None);
                assert!(row.suppression_reason.is_some());
            }
        }
        let mut rows = debounced_rows();
        apply_debounce(&mut rows, &counts, daily(1), "A");
        assert_eq!(
            rows[1].suppression_reason.as_deref(),
            Some("skipped A: already sent 1 today (limit 1)")
        );
        // A row suppressed by preferences keeps its own reason.
        assert!(rows[3]
            .suppression_reason
            .as_deref()
            .is_some_and(|r| r.contains("critical notifications only")));
    }

    #[test]
    fn debounce_windows_are_asked_for_deliverable_rows_in_each_persons_calendar() {
        let rows = debounced_rows();
        let windows = debounce_windows(&rows, daily(1), at("2025-10-31T23:30:00Z"));
        let users: Vec<&str> = windows.iter().map(|w| w.user_id.as_str()).collect();
        assert_eq!(users, ["fresh", "once", "twice"]);
        // 23:30 UTC is already Nov 1 in Paris.
        assert_eq!(windows[0].from, at("2025-10-31T23:00:00Z"));
        assert_eq!(windows[0].to, at("2025-11-01T22:59:59.999999Z"));
    }
}
