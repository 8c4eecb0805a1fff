//! The JSON body every delivery POSTs (contract §5.2). Receivers dedupe on
//! `notification_id`, which is also the `webhook-id` header.

use crate::alert::ALERT_EVENT_TYPE;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

/// What a delivery is about; borrowed from the stored notification and event.
#[derive(Debug, Clone)]
pub struct PayloadInput<'a> {
    pub notification_id: Uuid,
    pub notification_type: &'a str,
    pub channel: &'a str,
    pub user_id: Option<&'a str>,
    /// The person's address on this channel when known (email, phone, webhook).
    pub to: Option<&'a str>,
    pub severity: &'a str,
    pub subject: Option<&'a str>,
    pub text: &'a str,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub event_timestamp: DateTime<Utc>,
    /// The event's properties.
    pub data: &'a Value,
}

/// Builds the envelope. For shop alerts, seed 002's receivers read the alert fields
/// and `target_user_uuid` at top level, so those are lifted out of `data`.
pub fn build_payload(p: &PayloadInput<'_>) -> Value {
    let mut body = json!({
        "notification_id": p.notification_id,
        "notification_type": p.notification_type,
        "channel": p.channel,
        "user_id": p.user_id,
        "to": p.to,
        "severity": p.severity,
        "subject": p.subject,
        "text": p.text,
        "event": {
            "event_id": p.event_id,
            "event_type": p.event_type,
            "event_timestamp": p.event_timestamp.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        },
        "data": p.data,
    });
    if p.event_type == ALERT_EVENT_TYPE {
        if let Some(obj) = body.as_object_mut() {
            obj.insert("target_user_uuid".into(), json!(p.user_id));
            for key in ["url", "alert_uuid", "location", "label"] {
                obj.insert(key.into(), p.data.get(key).cloned().unwrap_or(Value::Null));
            }
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(event_type: &'a str, data: &'a Value) -> PayloadInput<'a> {
        PayloadInput {
            notification_id: Uuid::nil(),
            notification_type: "SHOP_ALERT",
            channel: "webhook",
            user_id: Some("u_1"),
            to: None,
            severity: "critical",
            subject: None,
            text: "theft at Carrefour",
            event_id: Uuid::nil(),
            event_type,
            event_timestamp: "2025-03-20T11:31:00.083Z".parse().unwrap(),
            data,
        }
    }

    #[test]
    fn an_alert_delivery_carries_seed_002s_fields_at_top_level() {
        let data = json!({"url": "https://m/x.mp4", "alert_uuid": "a", "location": "Carrefour", "label": "theft"});
        let body = build_payload(&input("alert", &data));
        assert_eq!(body["target_user_uuid"], "u_1");
        assert_eq!(body["location"], "Carrefour");
        assert_eq!(body["event"]["event_timestamp"], "2025-03-20T11:31:00.083Z");
        assert_eq!(body["data"], data);
    }

    #[test]
    fn other_deliveries_keep_only_the_envelope() {
        let data = json!({"url": "x"});
        let body = build_payload(&input("payment_failed", &data));
        assert!(body.get("target_user_uuid").is_none());
        assert!(body.get("url").is_none());
    }
}
