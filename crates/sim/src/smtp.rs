//! The sink's SMTP side (`herald-sim sink --smtp-port`, default 2525): a small SMTP
//! receiver (RFC 5321's commands a client needs to hand over a mail: EHLO/HELO, MAIL,
//! RCPT, DATA, RSET, NOOP, QUIT; no TLS, no AUTH) that records every mail beside the
//! HTTP deliveries, under the path `/smtp`, so `GET /received?path=/smtp` lists them.
//!
//! The reply to the end of DATA is `250`, or the code forced with `--smtp-reply` or
//! `POST /control {"smtp_reply": 451}`: tests drive Herald's retry (4xx) and
//! permanent-failure (5xx) paths with it. It is a test sink, not a mail server:
//! it keeps mails in memory and understands only what Herald's client sends.

use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The longest command line or mail accepted.
const MAX_LINE: usize = 4096;
const MAX_MAIL: usize = 16 * 1024 * 1024;

/// Where received mails go and what their DATA is answered (the sink's state).
pub trait MailSink: Send + Sync + 'static {
    /// The code that ends a mail's DATA, when one is forced (else 250).
    fn smtp_reply(&self) -> Option<u16>;
    /// Keeps a received mail.
    fn record_mail(&self, mail: ReceivedMail);
}

/// One mail as received: its envelope, its data and the code it was answered.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub mail_from: Option<String>,
    pub rcpt_to: Vec<String>,
    /// The message after DATA, dot-stuffing undone.
    pub data: String,
    pub code: u16,
}

/// Serves SMTP on `listener` until the process ends.
pub async fn serve<S: MailSink>(listener: TcpListener, state: Arc<S>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    if let Err(e) = session(stream, state.as_ref()).await {
                        tracing::debug!(error = %e, "SMTP session ended");
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "SMTP accept failed"),
        }
    }
}

/// One mail being received.
#[derive(Default)]
struct Envelope {
    from: Option<String>,
    to: Vec<String>,
}

async fn session<S: MailSink>(stream: TcpStream, state: &S) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    write.write_all(b"220 herald-sim ESMTP ready\r\n").await?;
    let mut envelope = Envelope::default();
    let mut line = String::new();
    loop {
        line.clear();
        if read_line(&mut reader, &mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "EHLO" => "250-herald-sim\r\n250-8BITMIME\r\n250 SIZE 16777216".into(),
            "HELO" | "NOOP" => "250 OK".into(),
            "RSET" => {
                envelope = Envelope::default();
                "250 OK".into()
            }
            "MAIL" => {
                envelope = Envelope {
                    from: Some(address_of(command)),
                    to: Vec::new(),
                };
                "250 OK".into()
            }
            "RCPT" if envelope.from.is_some() => {
                envelope.to.push(address_of(command));
                "250 OK".into()
            }
            "RCPT" => "503 MAIL first".into(),
            "DATA" if envelope.to.is_empty() => "503 RCPT first".into(),
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let data = read_data(&mut reader).await?;
                let code = state.smtp_reply().unwrap_or(250);
                state.record_mail(ReceivedMail {
                    mail_from: envelope.from.take(),
                    rcpt_to: std::mem::take(&mut envelope.to),
                    data,
                    code,
                });
                envelope = Envelope::default();
                match code {
                    200..=299 => format!("{code} OK: queued"),
                    400..=499 => format!("{code} try again later (forced by the sink)"),
                    _ => format!("{code} refused (forced by the sink)"),
                }
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            "STARTTLS" | "AUTH" => "502 not offered".into(),
            _ => "502 command not recognised".into(),
        };
        write.write_all(reply.as_bytes()).await?;
        write.write_all(b"\r\n").await?;
    }
}

async fn read_line<R: AsyncBufReadExt + Unpin>(
    r: &mut R,
    line: &mut String,
) -> std::io::Result<usize> {
    let n = r.read_line(line).await?;
    if line.len() > MAX_LINE {
        return Err(std::io::Error::other("line too long"));
    }
    Ok(n)
}

/// The mail after `354`, up to the lone `.`, with dot-stuffing undone.
async fn read_data<R: AsyncBufReadExt + Unpin>(r: &mut R) -> std::io::Result<String> {
    let mut data = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::other("connection closed in DATA"));
        }
        let content = line.trim_end_matches(['\r', '\n']);
        if content == "." {
            return Ok(data);
        }
        data.push_str(content.strip_prefix('.').unwrap_or(content));
        data.push_str("\r\n");
        if data.len() > MAX_MAIL {
            return Err(std::io::Error::other("mail too large"));
        }
    }
}

/// `MAIL FROM:<a@b> SIZE=1` → `a@b`.
fn address_of(command: &str) -> String {
    let after = command.split_once(':').map_or("", |(_, rest)| rest).trim();
    let inner = after
        .strip_prefix('<')
        .and_then(|rest| rest.split_once('>'))
        .map_or(after, |(address, _)| address);
    inner.split_whitespace().next().unwrap_or("").to_string()
}

/// The mail's header fields (unfolded; names lowercase; the last one of a name wins)
/// and its body.
pub fn split_mail(data: &str) -> (BTreeMap<String, String>, String) {
    let (head, body) = data.split_once("\r\n\r\n").unwrap_or((data, ""));
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(name) = &current {
                if let Some(value) = headers.get_mut(name) {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            }
        } else if let Some((name, value)) = line.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            headers.insert(name.clone(), value.trim().to_string());
            current = Some(name);
        }
    }
    (headers, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_from_mail_and_rcpt_commands() {
        let cases = [
            ("MAIL FROM:<a@example.com>", "a@example.com"),
            (
                "MAIL FROM:<a@example.com> SIZE=120 BODY=8BITMIME",
                "a@example.com",
            ),
            ("RCPT TO: <maria@example.com>", "maria@example.com"),
            ("RCPT TO:bare@example.com", "bare@example.com"),
            ("MAIL FROM:<>", ""),
        ];
        for (command, want) in cases {
            assert_eq!(address_of(command), want, "{command}");
        }
    }

    #[test]
    fn headers_are_unfolded_and_the_body_kept() {
        let data = "Subject: Welcome\r\n to the family!\r\nMessage-ID: <x@y>\r\n\r\nHello\r\n";
        let (headers, body) = split_mail(data);
        assert_eq!(headers["subject"], "Welcome to the family!");
        assert_eq!(headers["message-id"], "<x@y>");
        assert_eq!(body, "Hello\r\n");
    }
}
