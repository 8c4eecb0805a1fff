//! Whether a person gets a notification or a `suppressed` row, and the reason a
//! person can read (SPEC 4 and 5.1). Pure: the worker gathers the facts, this decides.

use crate::severity::{Level, Severity};

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
