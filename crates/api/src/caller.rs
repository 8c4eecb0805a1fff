//! Which API key made a request, for limits counted per key (the live streams', see
//! [`crate::stream_slots`]). The auth middleware puts a [`CallerKey`] in the
//! extensions of every request it let through with a valid key; there is none when no
//! keys are configured.

/// The key's SHA-256 digest, so that no key is kept as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallerKey(pub [u8; 32]);

impl CallerKey {
    pub fn of(key: &str) -> CallerKey {
        use sha2::{Digest, Sha256};
        CallerKey(Sha256::digest(key.as_bytes()).into())
    }
}
