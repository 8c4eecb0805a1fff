//! The circuit breaker per destination host (contract §6). When a host keeps failing,
//! hammering it helps nobody and burns every notification's attempts, so:
//!
//! * after [`CircuitPolicy::failures_to_open`] consecutive failures spread over at
//!   least [`CircuitPolicy::min_notifications`] different notifications, the circuit
//!   opens (one broken notification alone never opens it);
//! * while open, deliveries to the host wait without spending attempts, and one probe
//!   goes out every [`CircuitPolicy::probe_every`]; its success closes the circuit;
//! * a notification held longer than [`CircuitPolicy::max_hold`] fails with reason
//!   `circuit_open`.
//!
//! The state lives in Redis (shared by every worker); this module only decides.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitPolicy {
    pub failures_to_open: u32,
    pub min_notifications: u32,
    pub probe_every: Duration,
    pub max_hold: Duration,
}

impl Default for CircuitPolicy {
    fn default() -> Self {
        CircuitPolicy {
            failures_to_open: 20,
            min_notifications: 5,
            probe_every: Duration::from_secs(30),
            max_hold: Duration::from_secs(15 * 60),
        }
    }
}

/// A host's circuit as stored: consecutive failures, distinct notifications among them,
/// and when it opened (epoch ms), if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CircuitState {
    pub failures: u32,
    pub notifications: u32,
    pub opened_at_ms: Option<i64>,
}

/// What to do with a delivery to a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The circuit is closed: deliver.
    Pass,
    /// Open, and this delivery may be the probe (if it wins the probe lock).
    Probe,
    /// Open: wait until `until_ms` without spending an attempt.
    Hold { until_ms: i64 },
    /// Held too long: fail with reason `circuit_open`.
    GiveUp,
}

impl CircuitPolicy {
    /// Whether a state should be open.
    pub fn should_open(&self, s: &CircuitState) -> bool {
        s.failures >= self.failures_to_open && s.notifications >= self.min_notifications
    }

    /// Decides for a delivery due since `due_ms`, at `now_ms`. `probe_due` says whether
    /// the probe interval has passed since the last probe.
    pub fn gate(&self, s: &CircuitState, due_ms: i64, now_ms: i64, probe_due: bool) -> Gate {
        let Some(opened) = s.opened_at_ms else {
            return Gate::Pass;
        };
        let held_since = due_ms.max(opened);
        if now_ms - held_since > self.max_hold.as_millis() as i64 {
            return Gate::GiveUp;
        }
        if probe_due {
            return Gate::Probe;
        }
        Gate::Hold {
            until_ms: now_ms + self.probe_every.as_millis() as i64,
        }
    }
}

/// The host a URL delivers to (the circuit's key); None for unparsable URLs.
pub fn host_of(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let host = u.host_str()?;
    Some(match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_opens_after_20_failures_across_5_notifications_only() {
        let p = CircuitPolicy::default();
        assert!(!p.should_open(&CircuitState {
            failures: 19,
            notifications: 5,
            opened_at_ms: None
        }));
        assert!(!p.should_open(&CircuitState {
            failures: 40,
            notifications: 4,
            opened_at_ms: None
        }));
        assert!(p.should_open(&CircuitState {
            failures: 20,
            notifications: 5,
            opened_at_ms: None
        }));
    }

    #[test]
    fn an_open_circuit_holds_probes_and_gives_up_after_15_minutes() {
        let p = CircuitPolicy::default();
        let open = CircuitState {
            failures: 20,
            notifications: 5,
            opened_at_ms: Some(1_000),
        };
        assert_eq!(
            p.gate(&CircuitState::default(), 0, 5_000, false),
            Gate::Pass
        );
        assert_eq!(
            p.gate(&open, 0, 5_000, false),
            Gate::Hold { until_ms: 35_000 }
        );
        assert_eq!(p.gate(&open, 0, 5_000, true), Gate::Probe);
        let fifteen_min = 15 * 60 * 1000;
        assert_eq!(
            p.gate(&open, 2_000, 2_000 + fifteen_min, false),
            Gate::Hold {
                until_ms: 2_000 + fifteen_min + 30_000
            }
        );
        assert_eq!(
            p.gate(&open, 2_000, 2_001 + fifteen_min, false),
            Gate::GiveUp
        );
    }

    #[test]
    fn hosts_include_the_port() {
        assert_eq!(
            host_of("http://127.0.0.1:5000/email").as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(
            host_of("https://hooks.example.com/x").as_deref(),
            Some("hooks.example.com")
        );
        assert_eq!(host_of("nope"), None);
    }
}
