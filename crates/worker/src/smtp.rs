//! Mail over SMTP (contract §5.2, `kind: smtp`). One pooled lettre transport per
//! SMTP channel is built at start; each delivery is one SMTP transaction whose last
//! reply code is recorded as the attempt's status. What a code means (2xx sent, 4xx
//! or no reply retried with the channel's backoff, 5xx failed at once) is decided in
//! core (`herald_core::delivery::SmtpReply`); this module only talks SMTP.

use herald_core::channels::{Channel, Channels, SmtpSettings, SmtpTls};
use herald_core::delivery::HttpTry;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::collections::HashMap;
use uuid::Uuid;

/// Connections kept open per SMTP channel.
const POOL_SIZE: u32 = 16;

/// A mail about to go out, as the delivery gathered it.
#[derive(Debug, Clone)]
pub struct Mail<'a> {
    pub notification_id: Uuid,
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: Option<String>,
    pub list_unsubscribe: Option<String>,
}

/// The transports of every SMTP channel, by channel name.
pub struct Mailers {
    transports: HashMap<String, Mailer>,
}

struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    reply_to: Option<Mailbox>,
}

impl Mailers {
    /// Builds a pooled transport for each SMTP channel; a `from`, a `reply_to` or TLS
    /// settings lettre refuses stop the start with the channel named.
    pub fn new(channels: &Channels) -> anyhow::Result<Mailers> {
        let mut transports = HashMap::new();
        for channel in channels.iter() {
            if let Some(settings) = &channel.smtp {
                let mailer = Mailer::new(channel, settings)
                    .map_err(|e| anyhow::anyhow!("channel {}: {e}", channel.name))?;
                transports.insert(channel.name.clone(), mailer);
            }
        }
        Ok(Mailers { transports })
    }

    /// Sends one mail on `channel`: the reply code (or none) and the error text.
    pub async fn send(&self, channel: &str, mail: &Mail<'_>) -> HttpTry {
        let Some(mailer) = self.transports.get(channel) else {
            return failure(None, format!("no SMTP transport for channel {channel:?}"));
        };
        let message = match mailer.message(mail) {
            Ok(m) => m,
            // A recipient address lettre cannot parse will never be deliverable.
            Err(e) => return failure(Some(553), format!("cannot build the mail: {e}")),
        };
        match mailer.transport.send(message).await {
            Ok(reply) => HttpTry {
                status: Some(u16::from(reply.code())),
                ..HttpTry::default()
            },
            Err(e) => failure(e.status().map(u16::from), format!("SMTP: {e}")),
        }
    }
}

fn failure(status: Option<u16>, error: String) -> HttpTry {
    HttpTry {
        status,
        error: Some(error),
        ..HttpTry::default()
    }
}

impl Mailer {
    fn new(channel: &Channel, s: &SmtpSettings) -> anyhow::Result<Mailer> {
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
            .port(s.port)
            .timeout(Some(channel.timeout))
            .hello_name(ClientId::Domain("herald.localhost".into()))
            .pool_config(PoolConfig::new().max_size(POOL_SIZE));
        let builder = match s.tls {
            SmtpTls::None => builder.tls(Tls::None),
            SmtpTls::StartTls => builder.tls(Tls::Required(TlsParameters::new(s.host.clone())?)),
            SmtpTls::Tls => builder.tls(Tls::Wrapper(TlsParameters::new(s.host.clone())?)),
        };
        let builder = match (&s.user, &s.password) {
            (Some(user), password) => builder.credentials(Credentials::new(
                user.clone(),
                password.clone().unwrap_or_default(),
            )),
            _ => builder,
        };
        Ok(Mailer {
            transport: builder.build(),
            from: s.from.parse().map_err(|e| anyhow::anyhow!("from: {e}"))?,
            reply_to: s
                .reply_to
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| anyhow::anyhow!("reply_to: {e}"))?,
        })
    }

    fn message(&self, mail: &Mail<'_>) -> anyhow::Result<Message> {
        let to: Mailbox = mail.to.parse()?;
        // Derived from the notification id, so a redelivered mail keeps its id and
        // receivers (and their clients) can deduplicate it.
        let domain = self.from.email.domain().to_string();
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .message_id(Some(format!("<{}@{domain}>", mail.notification_id)));
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        if let Some(value) = &mail.list_unsubscribe {
            builder = builder.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                value.clone(),
            ));
        }
        let text = SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(mail.text.to_string());
        Ok(match &mail.html {
            Some(html) => builder.multipart(
                MultiPart::alternative().singlepart(text).singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html.clone()),
                ),
            )?,
            None => builder.singlepart(text)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::channels::ChannelSpec;

    fn mailer() -> Mailer {
        let yaml = "{name: email, kind: smtp, url: 'smtp://127.0.0.1:2525', tls: none, \
                    from: 'Herald <no-reply@example.com>', reply_to: help@example.com}";
        let spec: ChannelSpec = serde_norway::from_str(yaml).expect("valid yaml");
        let channel = Channel::from_spec(spec).expect("valid channel");
        let settings = channel.smtp.clone().expect("an smtp channel");
        Mailer::new(&channel, &settings).expect("a transport")
    }

    fn mail(html: Option<&str>, unsubscribe: Option<&str>) -> Mail<'static> {
        Mail {
            notification_id: Uuid::nil(),
            to: "maria@example.com",
            subject: "Welcome to the family!",
            text: "Thanks for signing up.",
            html: html.map(str::to_string),
            list_unsubscribe: unsubscribe.map(str::to_string),
        }
    }

    fn formatted(mail: &Mail<'_>) -> String {
        let message = mailer().message(mail).expect("a message");
        String::from_utf8(message.formatted()).expect("ASCII mail")
    }

    #[tokio::test]
    async fn a_mail_carries_its_headers_and_an_html_alternative_when_given() {
        let plain = formatted(&mail(None, None));
        let id = format!("Message-ID: <{}@example.com>", Uuid::nil());
        for want in [
            "From: Herald <no-reply@example.com>",
            "Reply-To: help@example.com",
            "To: maria@example.com",
            "Subject: Welcome to the family!",
            id.as_str(),
            "Content-Type: text/plain",
            "Thanks for signing up.",
        ] {
            assert!(plain.contains(want), "{want:?} missing from\n{plain}");
        }
        assert!(!plain.contains("List-Unsubscribe"), "{plain}");
        assert!(!plain.contains("multipart"), "{plain}");

        let rich = formatted(&mail(
            Some("<p>Thanks</p>"),
            Some("<mailto:unsubscribe@example.com>"),
        ));
        for want in [
            "List-Unsubscribe: <mailto:unsubscribe@example.com>",
            "Content-Type: multipart/alternative",
            "Content-Type: text/html",
            "<p>Thanks</p>",
            "Thanks for signing up.",
        ] {
            assert!(rich.contains(want), "{want:?} missing from\n{rich}");
        }
    }

    #[tokio::test]
    async fn an_unusable_recipient_is_refused_as_permanent_without_a_connection() {
        let mailers = Mailers {
            transports: [("email".to_string(), mailer())].into_iter().collect(),
        };
        let bad = Mail {
            to: "not an address",
            ..mail(None, None)
        };
        let got = mailers.send("email", &bad).await;
        assert_eq!(got.status, Some(553));
        assert!(got.error.is_some());
    }
}
