//! Delivery channels (`config/channels.yml`, contract §5.2): how a notification travels
//! (`kind: http | smtp | in_app`), where to, how it is signed, how long a try may take,
//! how tries are spaced and how fast and how many at once a host may be sent to.

use crate::duration::serde_duration;
use crate::provider_request::RequestShape;
use crate::retry::BackoffPolicy;
use crate::signing::WebhookSecret;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The channel that delivers into the inbox only, without any HTTP call.
pub const IN_APP: &str = "in_app";
/// The channel that prefers the person's own `webhook_url` to its configured `url`.
pub const WEBHOOK: &str = "webhook";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    pub name: String,
    /// `http` (the default), `smtp` or `in_app`.
    #[serde(default)]
    pub kind: Option<String>,
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
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// Which of the person's addresses is `to`: `email`, `phone` or `none`.
    #[serde(default)]
    pub address: Option<String>,
    // http
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub basic_auth: Option<String>,
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    #[serde(default)]
    pub content_type: Option<String>,
    // smtp
    #[serde(default)]
    pub tls: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub reply_to: Option<String>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_max_attempts() -> u32 {
    3
}

/// Deliveries at once per destination host when a channel does not say.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 32;

/// How a channel delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// Straight into the inbox: `sent` at once.
    InApp,
    /// POST to the person's `webhook_url`, else to the channel's `url`.
    PersonalWebhook,
    /// An HTTP request to the channel's `url` (email, SMS, push providers, operators).
    Provider,
    /// A mail over SMTP to the person's email address.
    Smtp,
}

/// Which of the person's addresses a channel sends to (the payload's `to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    Email,
    Phone,
    WebhookUrl,
}

/// How an SMTP channel connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (a local relay or a test sink).
    None,
    /// Plain, then upgraded with STARTTLS (required).
    StartTls,
    /// TLS from the first byte (`smtps://`, port 465).
    Tls,
}

/// An SMTP channel's server and envelope.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls: SmtpTls,
    pub from: String,
    pub reply_to: Option<String>,
}

impl std::fmt::Debug for SmtpSettings {
    // The password never shows in logs of the config.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("tls", &self.tls)
            .field("from", &self.from)
            .field("reply_to", &self.reply_to)
            .finish_non_exhaustive()
    }
}

impl SmtpSettings {
    /// `smtp://[user:pass@]host[:port]` (port 25, STARTTLS unless `tls` says) or
    /// `smtps://...` (port 465, TLS).
    fn parse(
        url: &str,
        tls: Option<&str>,
        from: Option<&str>,
        reply_to: Option<&str>,
    ) -> Result<Self, (&'static str, String)> {
        let parsed = url::Url::parse(url).map_err(|e| ("url", format!("is not a URL: {e}")))?;
        let (default_port, default_tls) = match parsed.scheme() {
            "smtp" => (25, SmtpTls::StartTls),
            "smtps" => (465, SmtpTls::Tls),
            other => {
                return Err(("url", format!("scheme {other:?} is not smtp or smtps")));
            }
        };
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(("url", "has no host".to_string()))?
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let user = (!parsed.username().is_empty()).then(|| decode(parsed.username()));
        let password = parsed.password().map(decode);
        let tls = match tls {
            None => default_tls,
            Some("none") => SmtpTls::None,
            Some("starttls") => SmtpTls::StartTls,
            Some("tls") => SmtpTls::Tls,
            Some(other) => {
                return Err((
                    "tls",
                    format!("{other:?} is not one of none, starttls, tls"),
                ));
            }
        };
        let from = from.ok_or(("from", "is required for an smtp channel".to_string()))?;
        for (field, value) in [("from", Some(from)), ("reply_to", reply_to)] {
            if let Some(v) = value {
                if !v.contains('@') {
                    return Err((field, format!("{v:?} is not a mail address")));
                }
            }
        }
        Ok(SmtpSettings {
            host,
            port: parsed.port().unwrap_or(default_port),
            user,
            password,
            tls,
            from: from.to_string(),
            reply_to: reply_to.map(str::to_string),
        })
    }
}

/// A validated channel, ready to deliver with.
#[derive(Debug, Clone)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    /// The HTTP target (http channels); an SMTP channel's server is in `smtp`.
    pub url: Option<String>,
    pub secret: Option<WebhookSecret>,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub backoff: BackoffPolicy,
    pub rate_limit_per_s: Option<u32>,
    /// Deliveries at once per destination host.
    pub max_in_flight: u32,
    /// Which address is `to`, if any.
    pub address: Option<AddressKind>,
    /// Without an address there is nothing to send to: the notification fails
    /// with `no address` (SMTP, and http channels that name an `address`).
    pub requires_address: bool,
    /// How an http channel's request looks.
    pub request: RequestShape,
    pub smtp: Option<SmtpSettings>,
}

impl Channel {
    /// Validates a spec; the error names the field.
    pub fn from_spec(spec: ChannelSpec) -> Result<Self, (&'static str, String)> {
        let kind = kind_of(&spec)?;
        let smtp = match kind {
            ChannelKind::Smtp => {
                let url = spec
                    .url
                    .as_deref()
                    .ok_or(("url", "is required for an smtp channel".to_string()))?;
                Some(SmtpSettings::parse(
                    url,
                    spec.tls.as_deref(),
                    spec.from.as_deref(),
                    spec.reply_to.as_deref(),
                )?)
            }
            _ => {
                refuse_smtp_keys(&spec)?;
                None
            }
        };
        if kind == ChannelKind::Provider && spec.url.is_none() {
            return Err(("url", "is required for a channel that POSTs".into()));
        }
        if matches!(kind, ChannelKind::Provider | ChannelKind::PersonalWebhook) {
            if let Some(url) = &spec.url {
                url::Url::parse(url).map_err(|e| ("url", format!("{url:?} is not a URL: {e}")))?;
            }
        }
        let request = if kind == ChannelKind::Smtp || kind == ChannelKind::InApp {
            refuse_http_keys(&spec)?;
            RequestShape::default()
        } else {
            let headers: Vec<(String, String)> = spec.headers.clone().into_iter().collect();
            RequestShape::from_parts(
                spec.method.as_deref(),
                &headers,
                spec.basic_auth.as_deref(),
                spec.body.as_ref(),
                spec.content_type.as_deref(),
            )?
        };
        if spec.max_attempts == 0 {
            return Err(("max_attempts", "must be at least 1".into()));
        }
        if spec.timeout.is_zero() {
            return Err(("timeout", "must be more than 0s".into()));
        }
        if spec.rate_limit_per_s == Some(0) {
            return Err(("rate_limit_per_s", "must be at least 1".into()));
        }
        if spec.max_in_flight == Some(0) {
            return Err(("max_in_flight", "must be at least 1".into()));
        }
        spec.backoff
            .validate()
            .map_err(|e| ("backoff", e.to_string()))?;
        let (address, explicit) = address_of(&spec, kind)?;
        let secret = match spec.secret.as_deref() {
            None | Some("") => None,
            Some(s) => Some(WebhookSecret::parse(s).map_err(|e| ("secret", e.to_string()))?),
        };
        Ok(Channel {
            name: spec.name,
            kind,
            url: if kind == ChannelKind::Smtp {
                None
            } else {
                spec.url
            },
            secret,
            timeout: spec.timeout,
            max_attempts: spec.max_attempts,
            backoff: spec.backoff,
            rate_limit_per_s: spec.rate_limit_per_s,
            max_in_flight: spec.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT),
            address,
            requires_address: kind == ChannelKind::Smtp || (explicit && address.is_some()),
            request,
            smtp,
        })
    }
}

/// The channel's kind: `kind` when given, else `in_app` for the channel of that name
/// and `http` for any other. An http channel named `webhook` prefers the person's
/// own URL.
fn kind_of(spec: &ChannelSpec) -> Result<ChannelKind, (&'static str, String)> {
    let default = if spec.name == IN_APP {
        "in_app"
    } else {
        "http"
    };
    match spec.kind.as_deref().unwrap_or(default) {
        "in_app" => Ok(ChannelKind::InApp),
        "http" if spec.name == WEBHOOK => Ok(ChannelKind::PersonalWebhook),
        "http" => Ok(ChannelKind::Provider),
        "smtp" => Ok(ChannelKind::Smtp),
        other => Err((
            "kind",
            format!("unknown kind {other:?}; expected one of http, smtp, in_app"),
        )),
    }
}

/// The address `to` carries, and whether the channel named it explicitly.
fn address_of(
    spec: &ChannelSpec,
    kind: ChannelKind,
) -> Result<(Option<AddressKind>, bool), (&'static str, String)> {
    match (spec.address.as_deref(), kind) {
        (Some("email"), ChannelKind::Smtp) | (None, ChannelKind::Smtp) => {
            Ok((Some(AddressKind::Email), true))
        }
        (Some(_), ChannelKind::Smtp) => Err(("address", "an smtp channel sends to email".into())),
        (Some("email"), _) => Ok((Some(AddressKind::Email), true)),
        (Some("phone"), _) => Ok((Some(AddressKind::Phone), true)),
        (Some("none"), _) => Ok((None, true)),
        (Some(other), _) => Err((
            "address",
            format!("unknown address {other:?}; expected email, phone or none"),
        )),
        (None, ChannelKind::PersonalWebhook) => Ok((Some(AddressKind::WebhookUrl), false)),
        (None, _) => Ok((
            match spec.name.as_str() {
                "email" => Some(AddressKind::Email),
                "sms" => Some(AddressKind::Phone),
                _ => None,
            },
            false,
        )),
    }
}

fn refuse_smtp_keys(spec: &ChannelSpec) -> Result<(), (&'static str, String)> {
    let given = [
        ("tls", spec.tls.is_some()),
        ("from", spec.from.is_some()),
        ("reply_to", spec.reply_to.is_some()),
    ];
    match given.into_iter().find(|(_, set)| *set) {
        Some((field, _)) => Err((field, "applies to smtp channels only".into())),
        None => Ok(()),
    }
}

fn refuse_http_keys(spec: &ChannelSpec) -> Result<(), (&'static str, String)> {
    let given = [
        ("method", spec.method.is_some()),
        ("headers", !spec.headers.is_empty()),
        ("basic_auth", spec.basic_auth.is_some()),
        ("body", spec.body.is_some()),
        ("content_type", spec.content_type.is_some()),
    ];
    match given.into_iter().find(|(_, set)| *set) {
        Some((field, _)) => Err((field, "applies to http channels only".into())),
        None => Ok(()),
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

    pub fn iter(&self) -> impl Iterator<Item = &Channel> {
        self.0.values()
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

    fn field_of(yaml: &str) -> &'static str {
        Channel::from_spec(spec(yaml)).unwrap_err().0
    }

    #[test]
    fn kinds_and_their_required_fields() {
        let cases = [
            ("{name: fax, kind: telex, url: 'http://x'}", "kind"),
            ("{name: mail, kind: smtp}", "url"),
            ("{name: mail, kind: smtp, url: 'smtp://h:25'}", "from"),
            (
                "{name: mail, kind: smtp, url: 'http://h', from: 'a@b'}",
                "url",
            ),
            (
                "{name: mail, kind: smtp, url: 'smtp://h', from: 'a@b', tls: ssl}",
                "tls",
            ),
            (
                "{name: mail, kind: smtp, url: 'smtp://h', from: 'nobody'}",
                "from",
            ),
            (
                "{name: mail, kind: smtp, url: 'smtp://h', from: 'a@b', body: 'x'}",
                "body",
            ),
            ("{name: sms, url: 'http://x', from: 'a@b'}", "from"),
            ("{name: sms, url: 'http://x', method: GET}", "method"),
            (
                "{name: sms, url: 'http://x', body: {a: 1}, content_type: xml}",
                "content_type",
            ),
            ("{name: sms, url: 'http://x', address: fax}", "address"),
            (
                "{name: sms, url: 'http://x', rate_limit_per_s: 0}",
                "rate_limit_per_s",
            ),
            (
                "{name: sms, url: 'http://x', max_in_flight: 0}",
                "max_in_flight",
            ),
            ("{name: box, kind: in_app, headers: {a: b}}", "headers"),
        ];
        for (yaml, field) in cases {
            assert_eq!(field_of(yaml), field, "{yaml}");
        }
    }

    #[test]
    fn an_smtp_channel_reads_its_url() {
        let c = Channel::from_spec(spec(
            "{name: email, kind: smtp, url: 'smtp://ann:p%40ss@mail.example:2525', \
              from: 'Herald <no-reply@example.com>', reply_to: help@example.com, tls: none}",
        ))
        .unwrap();
        assert_eq!(c.kind, ChannelKind::Smtp);
        assert_eq!(c.address, Some(AddressKind::Email));
        assert!(c.requires_address);
        let smtp = c.smtp.clone().unwrap();
        assert_eq!((smtp.host.as_str(), smtp.port), ("mail.example", 2525));
        assert_eq!(smtp.user.as_deref(), Some("ann"));
        assert_eq!(smtp.password.as_deref(), Some("p@ss"));
        assert_eq!(smtp.tls, SmtpTls::None);
        assert!(!format!("{c:?}").contains("p@ss"));
        let tls = |url: &str| {
            let yaml = format!("{{name: e, kind: smtp, url: '{url}', from: a@b}}");
            let s = Channel::from_spec(spec(&yaml)).unwrap().smtp.unwrap();
            (s.port, s.tls)
        };
        assert_eq!(tls("smtp://h"), (25, SmtpTls::StartTls));
        assert_eq!(tls("smtps://h"), (465, SmtpTls::Tls));
    }

    #[test]
    fn addresses_follow_the_name_unless_given() {
        let cases = [
            (
                "{name: email, url: 'http://x'}",
                Some(AddressKind::Email),
                false,
            ),
            (
                "{name: sms, url: 'http://x'}",
                Some(AddressKind::Phone),
                false,
            ),
            (
                "{name: webhook, url: 'http://x'}",
                Some(AddressKind::WebhookUrl),
                false,
            ),
            ("{name: push, url: 'http://x'}", None, false),
            (
                "{name: text, url: 'http://x', address: phone}",
                Some(AddressKind::Phone),
                true,
            ),
            ("{name: slack, url: 'http://x', address: none}", None, false),
        ];
        for (yaml, address, required) in cases {
            let c = Channel::from_spec(spec(yaml)).unwrap();
            assert_eq!(
                (c.address, c.requires_address),
                (address, required),
                "{yaml}"
            );
        }
        assert_eq!(
            Channel::from_spec(spec("{name: push, url: 'http://x'}"))
                .unwrap()
                .max_in_flight,
            DEFAULT_MAX_IN_FLIGHT
        );
    }
}
