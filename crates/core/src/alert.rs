//! Shop alerts (seed 002, contract §3.2). An alert is validated here and turned into an
//! ordinary event (`event_type: alert`, `topic` = the location) so it travels the same
//! pipeline as everything else; the shipped SHOP_ALERT rule fans it out.

use crate::event::{timestamp_from_epoch, FieldError, NewEvent, ALERT_KEY_PREFIX};
use crate::ids::validate_id;
use crate::severity::Severity;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The event type alerts become; rules match on it.
pub const ALERT_EVENT_TYPE: &str = "alert";

/// Label → severity (`alerts.labels` in `rules.yml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct AlertLabels(pub BTreeMap<String, Severity>);

impl Default for AlertLabels {
    /// Seed 002's labels: a theft is critical, everything else standard.
    fn default() -> Self {
        AlertLabels(BTreeMap::from([
            ("theft".to_string(), Severity::Critical),
            ("suspicious".to_string(), Severity::Standard),
            ("normal".to_string(), Severity::Standard),
        ]))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub alert_uuid: Uuid,
    pub location: String,
    pub label: String,
    pub severity: Severity,
    pub url: String,
    pub time_spotted: f64,
    pub spotted_at: DateTime<Utc>,
}

/// Validates an alert body, reporting every bad field at once (a 422 lists them).
/// Whether `location` names an existing topic is the caller's check: it needs the store.
pub fn parse_alert(
    body: &Value,
    labels: &AlertLabels,
    now: DateTime<Utc>,
) -> Result<Alert, Vec<FieldError>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::invalid("body", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    let alert_uuid = field_str(obj, "alert_uuid", &mut errors).and_then(|s| {
        Uuid::parse_str(s)
            .map_err(|_| errors.push(FieldError::invalid("alert_uuid", "must be a UUID")))
            .ok()
    });
    let location = field_str(obj, "location", &mut errors).and_then(|s| {
        validate_id("location", s)
            .map_err(|e| errors.push(e))
            .ok()
            .map(|_| s.to_string())
    });
    let label = field_str(obj, "label", &mut errors).and_then(|s| match labels.0.get(s) {
        Some(sev) => Some((s.to_string(), *sev)),
        None => {
            let known: Vec<&str> = labels.0.keys().map(String::as_str).collect();
            errors.push(FieldError::invalid(
                "label",
                format!("unknown label {s:?}; known labels: {}", known.join(", ")),
            ));
            None
        }
    });
    let url = field_str(obj, "url", &mut errors).and_then(|u| {
        if u.contains('\0') {
            errors.push(FieldError::invalid("url", crate::event::nul_message("")));
            None
        } else {
            Some(u.to_string())
        }
    });
    let time_spotted = match obj.get("time_spotted") {
        None | Some(Value::Null) => {
            errors.push(FieldError::missing("time_spotted"));
            None
        }
        Some(Value::Number(n)) => n.as_f64().and_then(|secs| {
            timestamp_from_epoch("time_spotted", secs, now)
                .map_err(|e| errors.push(e))
                .ok()
                .map(|at| (secs, at))
        }),
        Some(_) => {
            errors.push(FieldError::invalid(
                "time_spotted",
                "must be epoch seconds (a number)",
            ));
            None
        }
    };
    match (alert_uuid, location, label, url, time_spotted) {
        (Some(alert_uuid), Some(location), Some((label, severity)), Some(url), Some((t, at)))
            if errors.is_empty() =>
        {
            Ok(Alert {
                alert_uuid,
                location,
                label,
                severity,
                url,
                time_spotted: t,
                spotted_at: at,
            })
        }
        _ => Err(errors),
    }
}

fn field_str<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<&'a str> {
    match obj.get(field) {
        None | Some(Value::Null) => {
            errors.push(FieldError::missing(field));
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            errors.push(FieldError::invalid(field, "must be a string"));
            None
        }
    }
}

impl Alert {
    /// The dedupe key: the same alert posted twice is one event.
    pub fn idempotency_key(&self) -> String {
        format!("{ALERT_KEY_PREFIX}{}", self.alert_uuid)
    }

    /// The event this alert becomes. Its properties are the alert itself plus the
    /// severity its label maps to, which the SHOP_ALERT rule takes over.
    pub fn into_event(self) -> NewEvent {
        let idempotency_key = Some(self.idempotency_key());
        NewEvent {
            id: Uuid::now_v7(),
            event_type: ALERT_EVENT_TYPE.to_string(),
            user_id: None,
            topic: Some(self.location.clone()),
            event_timestamp: self.spotted_at,
            properties: json!({
                "alert_uuid": self.alert_uuid,
                "location": self.location,
                "label": self.label,
                "url": self.url,
                "time_spotted": self.time_spotted,
                "severity": self.severity,
            }),
            user_traits: json!({}),
            idempotency_key,
            deliver_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2025-11-01T00:00:00Z".parse().unwrap()
    }

    fn theft() -> Value {
        json!({"alert_uuid": "33cbb18c-3e9d-4acc-9667-2fbe7bf29137", "location": "Carrefour",
               "label": "theft", "url": "https://media.example/b36006d7.mp4",
               "time_spotted": 1742470260.083})
    }

    #[test]
    fn a_theft_alert_becomes_a_critical_event_on_its_location_topic() {
        let alert = parse_alert(&theft(), &AlertLabels::default(), now()).unwrap();
        assert_eq!(alert.severity, Severity::Critical);
        let event = alert.into_event();
        assert_eq!(event.event_type, "alert");
        assert_eq!(event.topic.as_deref(), Some("Carrefour"));
        assert_eq!(event.properties["severity"], "critical");
        assert_eq!(
            event.idempotency_key.as_deref(),
            Some("alert:33cbb18c-3e9d-4acc-9667-2fbe7bf29137")
        );
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let body = json!({"alert_uuid": "nope", "label": "fire", "time_spotted": "noon"});
        let errors = parse_alert(&body, &AlertLabels::default(), now()).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["alert_uuid", "location", "label", "url", "time_spotted"]
        );
        assert!(
            errors[2].to_string().contains("theft"),
            "lists the known labels"
        );
    }
}
