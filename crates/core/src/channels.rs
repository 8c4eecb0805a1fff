//! Delivery channels (`config/channels.yml`, contract §5.2): where a notification is POSTed,
//! how it is signed, how long a try may take and how tries are spaced.

use crate::duration::serde_duration;
use crate::retry::BackoffPolicy;
use crate::signing::WebhookSecret;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// The channel that delivers into the inbox only, without any HTTP call.
pub const IN_APP: &str = "in_app";
/// The channel that prefers the person's own `webhook_url` to its configured `url`.
pub const WEBHOOK: &str = "webhook";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    pub name: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default = "default_timeout", with = "serde_duration")]
    pub timeout: Duration,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default)]
    pub backoff: BackoffPolicy,
    #[serde(default)]
    pub rate_limit_per_s: Option<u32>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_max_attempts() -> u32 {
    3
}

/// How a channel delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// Straight into the inbox: `sent` at once.
    InApp,
    /// POST to the person's `webhook_url`, else to the channel's `url`.
    PersonalWebhook,
    /// POST to the channel's `url` (email, SMS, push providers, operators).
    Provider,
}

/// A validated channel, ready to deliver with.
#[derive(Debug, Clone)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    pub url: Option<String>,
    pub secret: Option<WebhookSecret>,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub backoff: BackoffPolicy,
    pub rate_limit_per_s: Option<u32>,
}

impl Channel {
    /// Validates a spec; the error names the field.
    pub fn from_spec(spec: ChannelSpec) -> Result<Self, (&'static str, String)> {
        let kind = match spec.name.as_str() {
            IN_APP => ChannelKind::InApp,
            WEBHOOK => ChannelKind::PersonalWebhook,
            _ => ChannelKind::Provider,
        };
        if kind == ChannelKind::Provider && spec.url.is_none() {
            return Err(("url", "is required for a channel that POSTs".into()));
        }
        if let Some(url) = &spec.url {
            url::Url::parse(url).map_err(|e| ("url", format!("{url:?} is not a URL: {e}")))?;
        }
        if spec.max_attempts == 0 {
            return Err(("max_attempts", "must be at least 1".into()));
        }
        if spec.timeout.is_zero() {
            return Err(("timeout", "must be more than 0s".into()));
        }
        spec.backoff
            .validate()
            .map_err(|e| ("backoff", e.to_string()))?;
        let secret = match spec.secret.as_deref() {
            None | Some("") => None,
            Some(s) => Some(WebhookSecret::parse(s).map_err(|e| ("secret", e.to_string()))?),
        };
        Ok(Channel {
            name: spec.name,
            kind,
            url: spec.url,
            secret,
            timeout: spec.timeout,
            max_attempts: spec.max_attempts,
            backoff: spec.backoff,
            rate_limit_per_s: spec.rate_limit_per_s,
        })
    }
}

/// Channels by name.
#[derive(Debug, Clone, Default)]
pub struct Channels(HashMap<String, Channel>);

impl Channels {
    pub fn new(channels: impl IntoIterator<Item = Channel>) -> Self {
        Channels(channels.into_iter().map(|c| (c.name.clone(), c)).collect())
    }

    pub fn get(&self, name: &str) -> Option<&Channel> {
        self.0.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The longest try any channel allows; the queue's visibility timeout must exceed it.
    pub fn max_timeout(&self) -> Duration {
        self.0.values().map(|c| c.timeout).max().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> ChannelSpec {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_follow_seed_002_three_attempts_and_five_seconds() {
        let c = Channel::from_spec(spec("{name: email, url: 'http://x/email'}")).unwrap();
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.kind, ChannelKind::Provider);
        assert_eq!(c.backoff, BackoffPolicy::default());
    }

    #[test]
    fn a_provider_channel_needs_a_url_but_in_app_does_not() {
        assert_eq!(
            Channel::from_spec(spec("{name: sms}")).unwrap_err().0,
            "url"
        );
        assert_eq!(
            Channel::from_spec(spec("{name: in_app}")).unwrap().kind,
            ChannelKind::InApp
        );
        assert_eq!(
            Channel::from_spec(spec("{name: email, url: 'x', max_attempts: 0}"))
                .unwrap_err()
                .0,
            "url"
        );
        assert_eq!(
            Channel::from_spec(spec("{name: email, url: 'http://x', max_attempts: 0}"))
                .unwrap_err()
                .0,
            "max_attempts"
        );
    }
}
