//! Standard Webhooks signature verification, as a receiver sees it.
//!
//! Herald signs every delivery on a channel that has a secret with three headers:
//! `webhook-id` (the notification id), `webhook-timestamp` (epoch seconds) and
//! `webhook-signature`, a space-separated list of `v1,<base64 HMAC-SHA256>` entries.
//! The signed content is `{webhook-id}.{webhook-timestamp}.{raw body}`.
//!
//! This module is written independently of `herald-core`'s signer on purpose: a
//! verifier that shares the signer's code would agree with any bug in it.
//!
//! Secrets follow the Standard Webhooks convention `whsec_<base64 key>`; a secret
//! without that prefix is used as raw bytes, which is what a channel configured with a
//! plain string ends up with.
//!
//! The timestamp is *not* checked for freshness. Receivers in production should reject
//! old timestamps to stop replays, but the sink exists to check that Herald signs
//! correctly, and a test that replays a recorded request (or a slow CI box) must not
//! see spurious failures.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The prefix Standard Webhooks puts before a base64-encoded secret.
const SECRET_PREFIX: &str = "whsec_";
/// The only signature scheme Standard Webhooks defines for symmetric keys.
const SCHEME_V1: &str = "v1";

/// Why a request's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("no v1 signature in webhook-signature matches the payload")]
    NoMatch,
}

/// A secret that is not `whsec_` followed by valid base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secret starts with {SECRET_PREFIX} but the rest is not valid base64: {0}")]
pub struct InvalidSecret(String);

/// The key bytes a sender and receiver share.
///
/// `Debug` never prints the key, so a secret can sit in a logged config struct.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl FromStr for WebhookSecret {
    type Err = InvalidSecret;

    /// `whsec_<base64>` decodes the base64 part; anything else is taken as raw bytes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = match s.strip_prefix(SECRET_PREFIX) {
            Some(encoded) => BASE64
                .decode(encoded)
                .map_err(|e| InvalidSecret(e.to_string()))?,
            None => s.as_bytes().to_vec(),
        };
        Ok(Self { key })
    }
}

impl WebhookSecret {
    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length (long ones are hashed first), so this cannot
        // fail; `new_from_slice` only returns a Result because `Mac` is generic.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .expect("HMAC-SHA256 accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `v1,<base64>` signature a sender would put in `webhook-signature`.
    pub fn sign(&self, id: &str, timestamp: &str, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("{SCHEME_V1},{}", BASE64.encode(tag))
    }

    /// Checks the three Standard Webhooks headers against `body`.
    ///
    /// Accepts when any `v1` entry of the space-separated `signature` header matches;
    /// entries of other schemes (e.g. `v1a` asymmetric ones) or with broken base64 are
    /// skipped rather than refused, because senders rotating keys or schemes list
    /// several signatures and only one has to match.
    ///
    /// # Errors
    /// [`SignatureError::MissingHeader`] when a header is absent,
    /// [`SignatureError::NoMatch`] when no entry matches.
    pub fn verify(
        &self,
        id: Option<&str>,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        let id = id.ok_or(SignatureError::MissingHeader("webhook-id"))?;
        let timestamp = timestamp.ok_or(SignatureError::MissingHeader("webhook-timestamp"))?;
        let signature = signature.ok_or(SignatureError::MissingHeader("webhook-signature"))?;

        let expected = self.mac(id, timestamp, body);
        let matched = signature
            .split_whitespace()
            .filter_map(|entry| entry.split_once(','))
            .filter(|(scheme, _)| *scheme == SCHEME_V1)
            .filter_map(|(_, encoded)| BASE64.decode(encoded).ok())
            // `verify_slice` compares in constant time, so a receiver built like this
            // leaks nothing about the expected tag through its response time.
            .any(|candidate| expected.clone().verify_slice(&candidate).is_ok());
        if matched {
            Ok(())
        } else {
            Err(SignatureError::NoMatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The reference vector published with the Standard Webhooks / Svix libraries.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: &str = "1614265330";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn secret() -> WebhookSecret {
        SECRET.parse().expect("reference secret is valid")
    }

    #[test]
    fn sign_reproduces_the_standard_webhooks_reference_vector() {
        assert_eq!(secret().sign(ID, TIMESTAMP, BODY), SIGNATURE);
    }

    #[test]
    fn verify_accepts_the_reference_vector() {
        assert_eq!(
            secret().verify(Some(ID), Some(TIMESTAMP), Some(SIGNATURE), BODY),
            Ok(())
        );
    }

    #[test]
    fn verify_accepts_when_any_listed_signature_matches() {
        let header = format!("v1,AAAA v1a,whatever v1,not*base64 {SIGNATURE}");
        assert_eq!(
            secret().verify(Some(ID), Some(TIMESTAMP), Some(&header), BODY),
            Ok(())
        );
    }

    #[test]
    fn verify_refuses_a_tampered_body_id_or_timestamp() {
        let s = secret();
        let cases: [(&str, &str, &[u8]); 3] = [
            (ID, TIMESTAMP, br#"{"test": 2432232315}"#),
            ("msg_other", TIMESTAMP, BODY),
            (ID, "1614265331", BODY),
        ];
        for (id, ts, body) in cases {
            assert_eq!(
                s.verify(Some(id), Some(ts), Some(SIGNATURE), body),
                Err(SignatureError::NoMatch),
                "id={id} ts={ts} should not verify"
            );
        }
    }

    #[test]
    fn verify_refuses_a_signature_made_with_another_key() {
        let other: WebhookSecret = "whsec_b3RoZXIta2V5".parse().expect("valid base64");
        let forged = other.sign(ID, TIMESTAMP, BODY);
        assert_eq!(
            secret().verify(Some(ID), Some(TIMESTAMP), Some(&forged), BODY),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn verify_refuses_a_correct_tag_under_another_scheme() {
        let header = SIGNATURE.replacen("v1,", "v2,", 1);
        assert_eq!(
            secret().verify(Some(ID), Some(TIMESTAMP), Some(&header), BODY),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn verify_names_the_first_missing_header() {
        let s = secret();
        assert_eq!(
            s.verify(None, Some(TIMESTAMP), Some(SIGNATURE), BODY),
            Err(SignatureError::MissingHeader("webhook-id"))
        );
        assert_eq!(
            s.verify(Some(ID), None, Some(SIGNATURE), BODY),
            Err(SignatureError::MissingHeader("webhook-timestamp"))
        );
        assert_eq!(
            s.verify(Some(ID), Some(TIMESTAMP), None, BODY),
            Err(SignatureError::MissingHeader("webhook-signature"))
        );
    }

    #[test]
    fn a_secret_without_the_prefix_is_used_as_raw_bytes() {
        let raw: WebhookSecret = "plain-secret".parse().expect("raw secrets always parse");
        assert_eq!(raw.key, b"plain-secret");
        let sig = raw.sign(ID, TIMESTAMP, BODY);
        assert_eq!(
            raw.verify(Some(ID), Some(TIMESTAMP), Some(&sig), BODY),
            Ok(())
        );
        assert_eq!(
            secret().verify(Some(ID), Some(TIMESTAMP), Some(&sig), BODY),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn a_prefixed_secret_with_broken_base64_is_refused() {
        assert!("whsec_not*base64".parse::<WebhookSecret>().is_err());
    }

    #[test]
    fn debug_output_hides_the_key() {
        assert_eq!(format!("{:?}", secret()), "WebhookSecret(<redacted>)");
    }
}
