//! Standard Webhooks signatures (<https://www.standardwebhooks.com>).
//!
//! contract §5.2: when a channel has a `secret`, every delivery carries `webhook-id`
//! (the notification id), `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 HMAC-SHA256>` over `"{id}.{timestamp}.{body}"`.
//! Following the published scheme rather than inventing one means receivers can
//! verify Herald's deliveries with any Standard Webhooks library, and the id in
//! the signed content is what lets them dedupe at-least-once redeliveries.
//!
//! [`verify`] is the receiving half, used by `herald-sim sink` and by tests; it
//! compares in constant time so it leaks nothing about the expected signature.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the message id (Herald's notification id).
pub const HEADER_ID: &str = "webhook-id";
/// Header carrying the signing time in Unix seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying the signature(s), e.g. `v1,<base64>`.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Prefix of secrets in the Standard Webhooks format.
const SECRET_PREFIX: &str = "whsec_";

/// Why a configured secret is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    #[error("webhook secret is empty")]
    Empty,
    #[error("webhook secret starts with \"whsec_\" but the rest is not valid base64")]
    InvalidBase64,
}

/// The HMAC key of a channel. Its `Debug` output never shows the key, so a
/// secret cannot leak through logs of the config.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// `"whsec_<base64>"` decodes the base64 after the prefix (the Standard
    /// Webhooks format); any other string is used as raw UTF-8 key bytes.
    pub fn parse(s: &str) -> Result<Self, SigningError> {
        let key = match s.strip_prefix(SECRET_PREFIX) {
            Some(encoded) => STANDARD
                .decode(encoded)
                .map_err(|_| SigningError::InvalidBase64)?,
            None => s.as_bytes().to_vec(),
        };
        if key.is_empty() {
            return Err(SigningError::Empty);
        }
        Ok(Self(key))
    }

    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length (RFC 2104 hashes long keys and pads
        // short ones); `new_from_slice` can only fail for fixed-key MACs.
        #[allow(clippy::expect_used)]
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

/// The value of the `webhook-signature` header:
/// `v1,<base64(HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}"))>`.
#[must_use]
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = secret.mac(msg_id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// Whether `header` (a space-separated list of `v1,<base64>` signatures, as sent
/// during key rotation) holds a valid signature of this message. Entries of
/// other versions and malformed entries are skipped. Each comparison runs in
/// constant time. Checking the timestamp's age is left to the caller, who
/// knows the clock.
#[must_use]
pub fn verify(
    secret: &WebhookSecret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let expected = secret.mac(msg_id, timestamp, body);
    header.split_whitespace().any(|entry| {
        let Some(("v1", encoded)) = entry.split_once(',') else {
            return false;
        };
        let Ok(candidate) = STANDARD.decode(encoded) else {
            return false;
        };
        expected.clone().verify_slice(&candidate).is_ok()
    })
}

/// How far a signed request's `webhook-timestamp` may be from now, either way
/// (Standard Webhooks' recommended tolerance): older copies are replays.
pub const TIMESTAMP_TOLERANCE_S: i64 = 300;

/// Why a signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestSignatureError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is more than 5 minutes from now (a replay, or a wrong clock)")]
    Stale,
    #[error("webhook-signature does not match the body")]
    Mismatch,
}

/// Checks a request signed per Standard Webhooks: its three headers (absent ones are
/// `None`), a timestamp within [`TIMESTAMP_TOLERANCE_S`] of `now_s`, and a signature of
/// exactly these body bytes.
pub fn verify_request(
    secret: &WebhookSecret,
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_s: i64,
) -> Result<(), RequestSignatureError> {
    let id = id.ok_or(RequestSignatureError::MissingHeader(HEADER_ID))?;
    let timestamp = timestamp.ok_or(RequestSignatureError::MissingHeader(HEADER_TIMESTAMP))?;
    let signature = signature.ok_or(RequestSignatureError::MissingHeader(HEADER_SIGNATURE))?;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| RequestSignatureError::BadTimestamp)?;
    if (now_s - ts).abs() > TIMESTAMP_TOLERANCE_S {
        return Err(RequestSignatureError::Stale);
    }
    if !verify(secret, id, ts, body, signature) {
        return Err(RequestSignatureError::Mismatch);
    }
    Ok(())
}

/// The value of `webhook-signature` signed with each secret, space-separated (as
/// Standard Webhooks allows during a key rotation); empty without secrets.
#[must_use]
pub fn sign_all(secrets: &[WebhookSecret], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| sign(s, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A new endpoint secret in the Standard Webhooks format, `whsec_<base64>`, from
/// random bytes the caller draws (core does no I/O).
#[must_use]
pub fn format_secret(random: &[u8; 24]) -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(random))
}

/// The default time a rotated-out endpoint secret keeps signing beside the new one.
pub const DEFAULT_ROTATION_OVERLAP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A person's webhook secrets as stored: the current one and, after a rotation,
/// the previous one with the rotation's time.
#[derive(Debug, Clone, Copy)]
pub struct EndpointSecrets<'a> {
    pub current: &'a str,
    pub previous: Option<&'a str>,
    pub rotated_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl EndpointSecrets<'_> {
    /// The secrets a delivery is signed with at `now`: the current one, and the
    /// previous one until `overlap` has passed since the rotation, so receivers can
    /// roll without losing a delivery. Unparsable stored secrets are skipped.
    pub fn signing_at(
        &self,
        overlap: std::time::Duration,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Vec<WebhookSecret> {
        let overlap = chrono::Duration::from_std(overlap).unwrap_or(chrono::Duration::MAX);
        let previous = match (self.previous, self.rotated_at) {
            (Some(previous), Some(at))
                if now < at.checked_add_signed(overlap).unwrap_or(now + overlap) =>
            {
                Some(previous)
            }
            _ => None,
        };
        std::iter::once(self.current)
            .chain(previous)
            .filter_map(|s| WebhookSecret::parse(s).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The official Standard Webhooks test vector.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn secret() -> WebhookSecret {
        WebhookSecret::parse(SECRET).unwrap()
    }

    #[test]
    fn signing_reproduces_the_official_test_vector() {
        assert_eq!(sign(&secret(), MSG_ID, TIMESTAMP, BODY), SIGNATURE);
    }

    #[test]
    fn the_official_signature_verifies() {
        assert!(verify(&secret(), MSG_ID, TIMESTAMP, BODY, SIGNATURE));
    }

    #[test]
    fn a_tampered_body_fails_verification() {
        let tampered = br#"{"test": 2432232315}"#;
        assert!(!verify(&secret(), MSG_ID, TIMESTAMP, tampered, SIGNATURE));
    }

    #[test]
    fn a_changed_id_or_timestamp_fails_verification() {
        assert!(!verify(&secret(), "msg_other", TIMESTAMP, BODY, SIGNATURE));
        assert!(!verify(&secret(), MSG_ID, TIMESTAMP + 1, BODY, SIGNATURE));
    }

    #[test]
    fn a_different_secret_fails_verification() {
        let other = WebhookSecret::parse("whsec_c2VjcmV0").unwrap();
        assert!(!verify(&other, MSG_ID, TIMESTAMP, BODY, SIGNATURE));
    }

    #[test]
    fn any_valid_entry_of_a_space_separated_header_verifies() {
        let header = format!("v1,Zm9v v2,abc garbage v1a,{} {SIGNATURE}", &SIGNATURE[3..]);
        assert!(verify(&secret(), MSG_ID, TIMESTAMP, BODY, &header));
    }

    #[test]
    fn malformed_headers_do_not_verify() {
        let sig = &SIGNATURE[3..];
        for header in ["", " ", "v1,", "v1,not base64!", sig, &format!("v2,{sig}")] {
            assert!(
                !verify(&secret(), MSG_ID, TIMESTAMP, BODY, header),
                "{header:?}"
            );
        }
    }

    #[test]
    fn a_secret_without_prefix_is_used_as_raw_bytes() {
        let raw = WebhookSecret::parse("my-shared-secret").unwrap();
        let b64 = WebhookSecret::parse(&format!("whsec_{}", STANDARD.encode("my-shared-secret")));
        let b64 = b64.unwrap();
        assert_eq!(sign(&raw, "id", 1, b"{}"), sign(&b64, "id", 1, b"{}"));
    }

    #[test]
    fn empty_and_undecodable_secrets_are_rejected() {
        assert_eq!(WebhookSecret::parse("").unwrap_err(), SigningError::Empty);
        assert_eq!(
            WebhookSecret::parse("whsec_").unwrap_err(),
            SigningError::Empty
        );
        assert_eq!(
            WebhookSecret::parse("whsec_%%%").unwrap_err(),
            SigningError::InvalidBase64
        );
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let shown = format!("{:?}", secret());
        assert_eq!(shown, "WebhookSecret(***)");
        let raw = format!("{:?}", WebhookSecret::parse("hunter2").unwrap());
        assert!(!raw.contains("hunter2"));
    }

    #[test]
    fn a_signed_request_needs_its_headers_a_fresh_timestamp_and_the_right_body() {
        let ts = TIMESTAMP.to_string();
        let now = TIMESTAMP + 10;
        let check = |id, t, sig, body: &[u8], now| verify_request(&secret(), id, t, sig, body, now);
        for (got, want) in [
            (
                check(Some(MSG_ID), Some(&ts), Some(SIGNATURE), BODY, now),
                Ok(()),
            ),
            (
                check(None, Some(&ts), Some(SIGNATURE), BODY, now),
                Err(RequestSignatureError::MissingHeader(HEADER_ID)),
            ),
            (
                check(Some(MSG_ID), None, Some(SIGNATURE), BODY, now),
                Err(RequestSignatureError::MissingHeader(HEADER_TIMESTAMP)),
            ),
            (
                check(Some(MSG_ID), Some(&ts), None, BODY, now),
                Err(RequestSignatureError::MissingHeader(HEADER_SIGNATURE)),
            ),
            (
                check(Some(MSG_ID), Some("soon"), Some(SIGNATURE), BODY, now),
                Err(RequestSignatureError::BadTimestamp),
            ),
            (
                check(
                    Some(MSG_ID),
                    Some(&ts),
                    Some(SIGNATURE),
                    BODY,
                    TIMESTAMP + 301,
                ),
                Err(RequestSignatureError::Stale),
            ),
            (
                check(
                    Some(MSG_ID),
                    Some(&ts),
                    Some(SIGNATURE),
                    BODY,
                    TIMESTAMP - 301,
                ),
                Err(RequestSignatureError::Stale),
            ),
            (
                check(Some(MSG_ID), Some(&ts), Some(SIGNATURE), b"{}", now),
                Err(RequestSignatureError::Mismatch),
            ),
        ] {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn a_rotated_secret_signs_beside_the_new_one_during_the_overlap_only() {
        use chrono::TimeZone;
        let at = |s: i64| {
            chrono::Utc
                .timestamp_opt(1_700_000_000 + s, 0)
                .single()
                .unwrap()
        };
        let old = format_secret(&[1; 24]);
        let new = format_secret(&[2; 24]);
        assert!(new.starts_with("whsec_"));
        let stored = EndpointSecrets {
            current: &new,
            previous: Some(&old),
            rotated_at: Some(at(0)),
        };
        let overlap = std::time::Duration::from_secs(60);
        let header = |now: i64| sign_all(&stored.signing_at(overlap, at(now)), "id", 1, b"{}");
        let verifies = |secret: &str, header: &str| {
            verify(
                &WebhookSecret::parse(secret).unwrap(),
                "id",
                1,
                b"{}",
                header,
            )
        };
        let cases = [
            (0, true, true),
            (59, true, true),
            (60, true, false),
            (3600, true, false),
        ];
        for (now, with_new, with_old) in cases {
            let h = header(now);
            assert_eq!(verifies(&new, &h), with_new, "{now}: {h}");
            assert_eq!(verifies(&old, &h), with_old, "{now}: {h}");
        }
        assert_eq!(header(0).split(' ').count(), 2);
        let never_rotated = EndpointSecrets {
            current: &new,
            previous: None,
            rotated_at: None,
        };
        assert_eq!(never_rotated.signing_at(overlap, at(0)).len(), 1);
    }
}
