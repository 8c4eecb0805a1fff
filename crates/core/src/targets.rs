//! Which addresses a person's `webhook_url` may reach. A notification platform that
//! POSTs wherever a user says is a server-side request forgery waiting to happen, so
//! loopback, private, link-local (cloud metadata) and similar ranges are refused unless
//! the operator allows them with `HERALD_ALLOWED_TARGETS` (CIDRs). The check runs at
//! `PUT` on literal addresses and again at delivery on every resolved address.
//! Channel URLs from config are the operator's and are not checked.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::Url;

/// CIDRs an operator allows despite being private or loopback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedTargets(Vec<IpNet>);

impl AllowedTargets {
    /// Parses a comma-separated list of CIDRs (or bare addresses).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = part
                .parse::<IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{part:?} is not a CIDR such as 10.0.0.0/8"))?;
            nets.push(net);
        }
        Ok(AllowedTargets(nets))
    }

    /// Whether Herald may connect to `ip` on a person's behalf.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        !is_internal(ip) || self.0.iter().any(|n| n.contains(&ip))
    }
}

/// Why a webhook URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("is not a valid URL: {0}")]
    Invalid(String),
    #[error("must use http or https")]
    Scheme,
    #[error(
        "points at a loopback, private, link-local or metadata address ({0}), which is not allowed"
    )]
    Forbidden(String),
}

/// Checks a URL given by a person. Host names other than `localhost` are resolved and
/// checked at delivery time, where the connection is pinned to the vetted address.
pub fn check_webhook_url(raw: &str, allowed: &AllowedTargets) -> Result<Url, TargetError> {
    let url = Url::parse(raw).map_err(|e| TargetError::Invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetError::Scheme);
    }
    let ip = match url.host() {
        None => return Err(TargetError::Invalid("has no host".into())),
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(d))
            if d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost") =>
        {
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        }
        Some(url::Host::Domain(_)) => None,
    };
    match ip {
        Some(ip) if !allowed.permits(ip) => Err(TargetError::Forbidden(ip.to_string())),
        _ => Ok(url),
    }
}

/// IPv4-mapped IPv6 addresses are checked as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16, where cloud metadata lives
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local, incl. fd00:ec2::254 metadata
        || (first & 0xffc0) == 0xfe80 // link-local
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_and_public_ones_accepted() {
        let none = AllowedTargets::default();
        for bad in [
            "http://127.0.0.1/x",
            "http://localhost:8080/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
            "http://100.64.0.1/",
        ] {
            assert!(
                matches!(
                    check_webhook_url(bad, &none),
                    Err(TargetError::Forbidden(_))
                ),
                "{bad} accepted"
            );
        }
        for good in ["https://hooks.example.com/x", "http://93.184.216.34/"] {
            assert!(check_webhook_url(good, &none).is_ok(), "{good} refused");
        }
    }

    #[test]
    fn allowed_targets_open_exactly_their_ranges() {
        let allowed = AllowedTargets::parse("127.0.0.0/8, 10.0.0.5").unwrap();
        assert!(check_webhook_url("http://127.0.0.1:5000/", &allowed).is_ok());
        assert!(check_webhook_url("http://10.0.0.5/", &allowed).is_ok());
        assert!(check_webhook_url("http://10.0.0.6/", &allowed).is_err());
        assert!(AllowedTargets::parse("nonsense").is_err());
    }

    #[test]
    fn only_http_and_https_are_accepted() {
        let none = AllowedTargets::default();
        assert_eq!(
            check_webhook_url("file:///etc/passwd", &none),
            Err(TargetError::Scheme)
        );
        assert!(matches!(
            check_webhook_url("not a url", &none),
            Err(TargetError::Invalid(_))
        ));
    }
}
