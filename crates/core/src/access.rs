//! Who may do what with an API key (contract §3): each key of `HERALD_API_KEYS` may
//! carry a scope, `ingest:KEY` (post events and alerts), `receipts:KEY` (post
//! receipts), `read:KEY` (every GET, the live stream) or `admin:KEY` (everything). A key
//! without a scope is an admin key, as every key was before scopes existed.
//!
//! Keys are held as SHA-256 digests and a presented key is compared with every digest
//! in constant time: neither which byte differed nor the key's length can be learned
//! from the answer's timing, and no key is kept in memory as text.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Ingest,
    Receipts,
    Read,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Receipts => "receipts",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Scope> {
        match s {
            "ingest" => Some(Scope::Ingest),
            "receipts" => Some(Scope::Receipts),
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    /// Whether a key of this scope may make a request that needs `needed`.
    pub fn allows(self, needed: Scope) -> bool {
        self == Scope::Admin || self == needed
    }
}

/// The scope a request needs, by its method and path: posting events and alerts is
/// ingestion, posting receipts is `receipts`, any other read is `read`, and every
/// other change (people, topics, preferences, retries, read marks) is `admin`.
pub fn required_scope(method: &str, path: &str) -> Scope {
    match (method, path) {
        ("POST", "/api/v1/events" | "/webhooks/alerts" | "/webhook/notifications") => Scope::Ingest,
        ("POST", "/webhooks/receipts") => Scope::Receipts,
        ("GET" | "HEAD", _) => Scope::Read,
        _ => Scope::Admin,
    }
}

/// The configured keys.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<([u8; 32], Scope)>,
}

impl ApiKeys {
    /// Reads the entries of `HERALD_API_KEYS` (already split on commas): `scope:key`
    /// for a known scope, anything else a whole admin key.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> ApiKeys {
        let keys = entries
            .into_iter()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|entry| match entry.split_once(':') {
                Some((scope, key)) if !key.is_empty() => match Scope::parse(scope) {
                    Some(scope) => (digest(key), scope),
                    None => (digest(entry), Scope::Admin),
                },
                _ => (digest(entry), Scope::Admin),
            })
            .collect();
        ApiKeys { keys }
    }

    /// No keys: authentication is off (development only).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The scope of `presented`, when it is a configured key. Every configured key is
    /// compared, whatever matched, so the time taken says nothing about which.
    pub fn scope_of(&self, presented: &str) -> Option<Scope> {
        let presented = digest(presented);
        self.keys.iter().fold(None, |found, (key, scope)| {
            let equal: bool = key.ct_eq(&presented).into();
            if equal {
                Some(*scope)
            } else {
                found
            }
        })
    }
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys(<{} redacted>)", self.keys.len())
    }
}

/// The key `/metrics` asks for (`HERALD_METRICS_KEY`), on the api and on the worker
/// alike; without one, `/metrics` is open. Held and compared like the API keys.
#[derive(Clone, Default)]
pub struct MetricsKey {
    key: Option<[u8; 32]>,
}

impl MetricsKey {
    /// `None` or an empty (or blank) value: no key, `/metrics` is open.
    pub fn new(key: Option<&str>) -> MetricsKey {
        MetricsKey {
            key: key.map(str::trim).filter(|k| !k.is_empty()).map(digest),
        }
    }

    /// Whether a request with this `Authorization` header may read the metrics:
    /// always without a key, else only with `Bearer <key>`.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        let Some(key) = &self.key else {
            return true;
        };
        let presented = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        key.ct_eq(&digest(presented)).into()
    }

    pub fn is_set(&self) -> bool {
        self.key.is_some()
    }
}

impl std::fmt::Debug for MetricsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.key.is_some() {
            "<redacted>"
        } else {
            "none"
        };
        write!(f, "MetricsKey({shown})")
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_read_off_the_prefix_and_bare_keys_are_admin() {
        let keys = ApiKeys::parse([
            "ingest:k-ingest",
            "read:k-read",
            "receipts:k-rcpt",
            "admin:k-admin",
            "legacy-key",
            "other:colon-key",
            " spaced ",
            "",
        ]);
        assert_eq!(keys.len(), 7);
        for (presented, scope) in [
            ("k-ingest", Some(Scope::Ingest)),
            ("k-read", Some(Scope::Read)),
            ("k-rcpt", Some(Scope::Receipts)),
            ("k-admin", Some(Scope::Admin)),
            ("legacy-key", Some(Scope::Admin)),
            ("other:colon-key", Some(Scope::Admin)),
            ("spaced", Some(Scope::Admin)),
            ("ingest:k-ingest", None),
            ("k-ingest ", None),
            ("", None),
            ("k", None),
        ] {
            assert_eq!(keys.scope_of(presented), scope, "{presented:?}");
        }
        assert_eq!(ApiKeys::parse([]).scope_of("x"), None);
    }

    #[test]
    fn the_metrics_key_is_asked_only_when_set() {
        let open = MetricsKey::new(None);
        assert!(open.allows(None));
        assert!(
            MetricsKey::new(Some("  ")).allows(None),
            "a blank key is no key"
        );
        let key = MetricsKey::new(Some("m-key"));
        assert!(key.allows(Some("Bearer m-key")));
        for refused in [
            None,
            Some("m-key"),
            Some("Bearer m-ke"),
            Some("Bearer "),
            Some("Basic m-key"),
        ] {
            assert!(!key.allows(refused), "{refused:?}");
        }
        assert_eq!(format!("{key:?}"), "MetricsKey(<redacted>)");
    }

    #[test]
    fn each_route_needs_its_scope() {
        for (method, path, needed) in [
            ("POST", "/api/v1/events", Scope::Ingest),
            ("POST", "/webhooks/alerts", Scope::Ingest),
            ("POST", "/webhook/notifications", Scope::Ingest),
            ("POST", "/webhooks/receipts", Scope::Receipts),
            ("GET", "/api/v1/notifications", Scope::Read),
            ("GET", "/api/v1/users/ana/stream", Scope::Read),
            ("PUT", "/api/v1/users/ana", Scope::Admin),
            ("POST", "/api/v1/notifications/x/retry", Scope::Admin),
            (
                "POST",
                "/api/v1/users/ana/notifications/read-all",
                Scope::Admin,
            ),
            ("DELETE", "/api/v1/users/ana", Scope::Admin),
        ] {
            assert_eq!(required_scope(method, path), needed, "{method} {path}");
        }
    }

    #[test]
    fn admin_allows_everything_and_others_only_themselves() {
        let all = [Scope::Ingest, Scope::Receipts, Scope::Read, Scope::Admin];
        for have in all {
            for need in all {
                assert_eq!(
                    have.allows(need),
                    have == Scope::Admin || have == need,
                    "{have:?} {need:?}"
                );
            }
        }
    }
}
