//! Which addresses a person's `webhook_url` may reach.
//!
//! A notification platform that POSTs wherever a user says is a server-side request
//! forgery waiting to happen. One function, [`AllowedTargets::vet`], decides whether an
//! IP address may be a delivery target. The api calls it (through [`check_webhook_url`])
//! on literal addresses at `PUT`; the worker calls it on literal addresses before a POST
//! and on every address a host name resolves to, then connects to exactly those.
//!
//! **The rule.** An address is allowed only if it is globally reachable according to the
//! IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890), or if the operator
//! covers it with `HERALD_ALLOWED_TARGETS`. A hand-kept list of "private ranges" missed
//! blocks (benchmarking 198.18.0.0/15, reserved 240.0.0.0/4); the registries are the
//! maintained list, so their rows are copied below ([`IPV4_SPECIAL_PURPOSE`],
//! [`IPV6_SPECIAL_PURPOSE`]) with each block's RFC and its "Globally Reachable" column,
//! and the most specific block containing an address decides (192.0.0.9/32 is reachable
//! inside the unreachable 192.0.0.0/24). Only `True` allows: `N/A` and the empty cells of
//! terminated rows refuse. Addresses in no block are ordinary, reachable addresses.
//!
//! **Beyond those registries** ([`NOT_UNICAST`]): multicast is never an HTTP server, and
//! IPv6 outside global unicast 2000::/3 is "Reserved by IETF" in the IANA IPv6 Address
//! Space registry (it includes the deprecated site-local fec0::/10, which old routers
//! still route internally). Both are refused.
//!
//! **IPv6 forms that carry an IPv4 address** reach that IPv4 host on a network with the
//! matching translator or tunnel, so they are judged by the IPv4 address inside:
//! IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96`, NAT64 `64:ff9b::/96`, 6to4
//! `2002::/16` and Teredo `2001::/32` (its server in bits 32-63 and its client, the last
//! 32 bits inverted, must both pass). The local-use NAT64 prefix `64:ff9b:1::/48` is
//! refused whole, as the registry marks it: RFC 8215 lets each network choose which
//! RFC 6052 prefix length it uses inside it, so where the IPv4 address sits cannot be
//! read from the address alone.
//!
//! Channel URLs from config are the operator's and are not checked.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::Url;
use Reachable::{No, NotApplicable, Terminated, Yes};

/// The "Globally Reachable" column of a registry row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachable {
    /// `True`: the only value that allows.
    Yes,
    /// `False`.
    No,
    /// `N/A`: reachability depends on what the block carries (6to4, Teredo).
    NotApplicable,
    /// The row is terminated and its cells are empty.
    Terminated,
}

/// One row of an address registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub net: IpNet,
    pub name: &'static str,
    pub rfc: &'static str,
    pub reachable: Reachable,
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, {})", self.net, self.name, self.rfc)
    }
}

const fn v4(
    octets: [u8; 4],
    len: u8,
    name: &'static str,
    rfc: &'static str,
    r: Reachable,
) -> Block {
    let [a, b, c, d] = octets;
    Block {
        net: IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)),
        name,
        rfc,
        reachable: r,
    }
}

const fn v6(s: [u16; 8], len: u8, name: &'static str, rfc: &'static str, r: Reachable) -> Block {
    let [a, b, c, d, e, f, g, h] = s;
    Block {
        net: IpNet::V6(Ipv6Net::new_assert(
            Ipv6Addr::new(a, b, c, d, e, f, g, h),
            len,
        )),
        name,
        rfc,
        reachable: r,
    }
}

/// The IANA IPv4 Special-Purpose Address Registry, row by row (the NAT64/DNS64
/// Discovery row holds two /32s and is written as two).
#[rustfmt::skip]
pub const IPV4_SPECIAL_PURPOSE: &[Block] = &[
    v4([0, 0, 0, 0], 8, "\"This network\"", "RFC 791 §3.2", No),
    v4([0, 0, 0, 0], 32, "\"This host on this network\"", "RFC 1122 §3.2.1.3", No),
    v4([10, 0, 0, 0], 8, "Private-Use", "RFC 1918", No),
    v4([100, 64, 0, 0], 10, "Shared Address Space", "RFC 6598", No),
    v4([127, 0, 0, 0], 8, "Loopback", "RFC 1122 §3.2.1.3", No),
    v4([169, 254, 0, 0], 16, "Link Local", "RFC 3927", No),
    v4([172, 16, 0, 0], 12, "Private-Use", "RFC 1918", No),
    v4([192, 0, 0, 0], 24, "IETF Protocol Assignments", "RFC 6890 §2.1", No),
    v4([192, 0, 0, 0], 29, "IPv4 Service Continuity Prefix", "RFC 7335", No),
    v4([192, 0, 0, 8], 32, "IPv4 dummy address", "RFC 7600", No),
    v4([192, 0, 0, 9], 32, "Port Control Protocol Anycast", "RFC 7723", Yes),
    v4([192, 0, 0, 10], 32, "Traversal Using Relays around NAT Anycast", "RFC 8155", Yes),
    v4([192, 0, 0, 170], 32, "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050 §2.2", No),
    v4([192, 0, 0, 171], 32, "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050 §2.2", No),
    v4([192, 0, 2, 0], 24, "Documentation (TEST-NET-1)", "RFC 5737", No),
    v4([192, 31, 196, 0], 24, "AS112-v4", "RFC 7535", Yes),
    v4([192, 52, 193, 0], 24, "AMT", "RFC 7450", Yes),
    v4([192, 88, 99, 0], 24, "Deprecated (6to4 Relay Anycast)", "RFC 7526", Terminated),
    v4([192, 88, 99, 2], 32, "6a44-relay anycast address", "RFC 6751", No),
    v4([192, 168, 0, 0], 16, "Private-Use", "RFC 1918", No),
    v4([192, 175, 48, 0], 24, "Direct Delegation AS112 Service", "RFC 7534", Yes),
    v4([198, 18, 0, 0], 15, "Benchmarking", "RFC 2544", No),
    v4([198, 51, 100, 0], 24, "Documentation (TEST-NET-2)", "RFC 5737", No),
    v4([203, 0, 113, 0], 24, "Documentation (TEST-NET-3)", "RFC 5737", No),
    v4([240, 0, 0, 0], 4, "Reserved", "RFC 1112 §4", No),
    v4([255, 255, 255, 255], 32, "Limited Broadcast", "RFC 8190, RFC 919 §7", No),
];

/// The IANA IPv6 Special-Purpose Address Registry, row by row.
#[rustfmt::skip]
pub const IPV6_SPECIAL_PURPOSE: &[Block] = &[
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "Loopback Address", "RFC 4291", No),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "Unspecified Address", "RFC 4291", No),
    v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, "IPv4-mapped Address", "RFC 4291", No),
    v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, "IPv4-IPv6 Translat.", "RFC 6052", Yes),
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "IPv4-IPv6 Translat.", "RFC 8215", No),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "Discard-Only Address Block", "RFC 6666", No),
    v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64, "Dummy IPv6 Prefix", "RFC 9780", No),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, "IETF Protocol Assignments", "RFC 2928", No),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "TEREDO", "RFC 4380, RFC 8190", NotApplicable),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 1], 128, "Port Control Protocol Anycast", "RFC 7723", Yes),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 2], 128, "Traversal Using Relays around NAT Anycast", "RFC 8155", Yes),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 3], 128, "DNS-SD Service Registration Protocol Anycast", "RFC 9665", Yes),
    v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, "Benchmarking", "RFC 5180", No),
    v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32, "AMT", "RFC 7450", Yes),
    v6([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48, "AS112-v6", "RFC 7535", Yes),
    v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28, "Deprecated (previously ORCHID)", "RFC 4843", Terminated),
    v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, "ORCHIDv2", "RFC 7343", Yes),
    v6([0x2001, 0x30, 0, 0, 0, 0, 0, 0], 28, "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "RFC 9374", Yes),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "Documentation", "RFC 3849", No),
    v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4", "RFC 3056", NotApplicable),
    v6([0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0], 48, "Direct Delegation AS112 Service", "RFC 7534", Yes),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "Documentation", "RFC 9637", No),
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "Segment Routing (SRv6) SIDs", "RFC 9602", No),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "Unique-Local", "RFC 4193, RFC 8190", No),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "Link-Local Unicast", "RFC 4291", No),
];

/// Space that is not unicast or not allocated, from the multicast and IPv6 Address
/// Space registries: the complement of 2000::/3 is written as ::/3, 4000::/2 and
/// 8000::/1, with fec0::/10 and ff00::/8 named for a clearer refusal.
#[rustfmt::skip]
pub const NOT_UNICAST: &[Block] = &[
    v4([224, 0, 0, 0], 4, "Multicast", "RFC 5771", No),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 3, "Reserved by IETF, outside global unicast 2000::/3", "RFC 4291", No),
    v6([0x4000, 0, 0, 0, 0, 0, 0, 0], 2, "Reserved by IETF, outside global unicast 2000::/3", "RFC 4291", No),
    v6([0x8000, 0, 0, 0, 0, 0, 0, 0], 1, "Reserved by IETF, outside global unicast 2000::/3", "RFC 4291", No),
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "Site-Local (deprecated)", "RFC 3879", No),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "Multicast", "RFC 4291", No),
];

/// The most specific block containing `ip`, if any.
fn most_specific_block(ip: IpAddr) -> Option<&'static Block> {
    IPV4_SPECIAL_PURPOSE
        .iter()
        .chain(IPV6_SPECIAL_PURPOSE)
        .chain(NOT_UNICAST)
        .filter(|b| b.net.contains(&ip))
        .max_by_key(|b| b.net.prefix_len())
}

/// The block that makes `ip` not globally reachable, or None when it is reachable.
fn unreachable_block(ip: IpAddr) -> Option<&'static Block> {
    most_specific_block(ip).filter(|b| b.reachable != Reachable::Yes)
}

/// An IPv4 address found inside an IPv6 one, and the form that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Carried {
    pub ipv4: Ipv4Addr,
    pub form: &'static str,
    pub rfc: &'static str,
}

/// The IPv4 addresses `ip` carries; empty when it is none of the carrying forms.
fn carried_ipv4(ip: Ipv6Addr) -> Vec<Carried> {
    let o = ip.octets();
    // Indices are at most 12, so `i + 3` stays inside the 16 octets.
    let at = |i: usize| Ipv4Addr::new(o[i], o[i + 1], o[i + 2], o[i + 3]);
    let carried = |ipv4, form, rfc| Carried { ipv4, form, rfc };
    match ip.segments() {
        [0, 0, 0, 0, 0, 0xffff, _, _] => vec![carried(at(12), "IPv4-mapped", "RFC 4291")],
        // :: and ::1 are registry rows of their own, judged as themselves.
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => Vec::new(),
        [0, 0, 0, 0, 0, 0, _, _] => {
            vec![carried(at(12), "IPv4-compatible", "RFC 4291 §2.5.5.1")]
        }
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => vec![carried(at(12), "NAT64", "RFC 6052")],
        [0x2002, ..] => vec![carried(at(2), "6to4", "RFC 3056")],
        [0x2001, 0, ..] => vec![
            carried(at(4), "Teredo server", "RFC 4380 §4"),
            carried(!at(12), "Teredo client", "RFC 4380 §4"),
        ],
        _ => Vec::new(),
    }
}

/// Why an address may not be a delivery target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RefusedAddress {
    /// The address as given or resolved.
    pub address: IpAddr,
    /// The IPv4 address judged in its place, when `address` carries one.
    pub carried: Option<Carried>,
    /// The block that makes it not globally reachable.
    pub block: &'static Block,
}

impl fmt::Display for RefusedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.carried {
            None => write!(f, "{} is in {}", self.address, self.block)?,
            Some(c) => write!(
                f,
                "{} carries {} ({}, {}), which is in {}",
                self.address, c.ipv4, c.form, c.rfc, self.block
            )?,
        }
        f.write_str(", not globally reachable")
    }
}

/// CIDRs an operator allows despite their not being globally reachable
/// (`HERALD_ALLOWED_TARGETS`).
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

    fn covers(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The one decision: whether Herald may connect to `ip` on a person's behalf.
    /// Allowed when the operator covers it, or when it (or every IPv4 address it
    /// carries, each of which the operator may cover) is globally reachable.
    pub fn vet(&self, ip: IpAddr) -> Result<(), RefusedAddress> {
        if self.covers(ip) {
            return Ok(());
        }
        let carried = match ip {
            IpAddr::V6(v6) => carried_ipv4(v6),
            IpAddr::V4(_) => Vec::new(),
        };
        if carried.is_empty() {
            return match unreachable_block(ip) {
                Some(block) => Err(RefusedAddress {
                    address: ip,
                    carried: None,
                    block,
                }),
                None => Ok(()),
            };
        }
        for c in carried {
            let inner = IpAddr::V4(c.ipv4);
            if self.covers(inner) {
                continue;
            }
            if let Some(block) = unreachable_block(inner) {
                return Err(RefusedAddress {
                    address: ip,
                    carried: Some(c),
                    block,
                });
            }
        }
        Ok(())
    }

    /// [`AllowedTargets::vet`] as a yes or no.
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.vet(ip).is_ok()
    }
}

/// Why a webhook URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("is not a valid URL: {0}")]
    Invalid(String),
    #[error("must use http or https")]
    Scheme,
    #[error("must be at most {MAX_WEBHOOK_URL_CHARS} characters")]
    TooLong,
    #[error("must not carry a user name or password (put credentials in a header or the path)")]
    UserInfo,
    #[error("must point at a globally reachable address: {0}")]
    Forbidden(RefusedAddress),
}

/// The longest webhook address accepted, as browsers and proxies commonly allow.
pub const MAX_WEBHOOK_URL_CHARS: usize = 2048;

/// Checks a URL given by a person. Host names other than `localhost` are resolved and
/// checked at delivery time, where the connection is pinned to the vetted address.
pub fn check_webhook_url(raw: &str, allowed: &AllowedTargets) -> Result<Url, TargetError> {
    if raw.chars().count() > MAX_WEBHOOK_URL_CHARS {
        return Err(TargetError::TooLong);
    }
    let url = Url::parse(raw).map_err(|e| TargetError::Invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetError::Scheme);
    }
    // Credentials in the URL would be logged by proxies and shown by every tool that
    // prints URLs.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::UserInfo);
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
    match ip.map(|ip| allowed.vet(ip)) {
        Some(Err(refused)) => Err(TargetError::Forbidden(refused)),
        _ => Ok(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse()
            .unwrap_or_else(|_| panic!("{s} is not an address"))
    }

    /// Every row of both registries (and of `NOT_UNICAST`), written out by hand: its
    /// first and last address, and whether those are allowed. The carrying forms
    /// (::ffff:0:0/96, 64:ff9b::/96, 2001::/32, 2002::/16) are judged by the IPv4
    /// address inside, which at both ends is 0.0.0.0 or 255.255.255.255: refused.
    #[rustfmt::skip]
    const BLOCK_ENDS: &[(&str, &str, &str, bool)] = &[
        ("0.0.0.0/8", "0.0.0.0", "0.255.255.255", false),
        ("0.0.0.0/32", "0.0.0.0", "0.0.0.0", false),
        ("10.0.0.0/8", "10.0.0.0", "10.255.255.255", false),
        ("100.64.0.0/10", "100.64.0.0", "100.127.255.255", false),
        ("127.0.0.0/8", "127.0.0.0", "127.255.255.255", false),
        ("169.254.0.0/16", "169.254.0.0", "169.254.255.255", false),
        ("172.16.0.0/12", "172.16.0.0", "172.31.255.255", false),
        ("192.0.0.0/24", "192.0.0.0", "192.0.0.255", false),
        ("192.0.0.0/29", "192.0.0.0", "192.0.0.7", false),
        ("192.0.0.8/32", "192.0.0.8", "192.0.0.8", false),
        ("192.0.0.9/32", "192.0.0.9", "192.0.0.9", true),
        ("192.0.0.10/32", "192.0.0.10", "192.0.0.10", true),
        ("192.0.0.170/32", "192.0.0.170", "192.0.0.170", false),
        ("192.0.0.171/32", "192.0.0.171", "192.0.0.171", false),
        ("192.0.2.0/24", "192.0.2.0", "192.0.2.255", false),
        ("192.31.196.0/24", "192.31.196.0", "192.31.196.255", true),
        ("192.52.193.0/24", "192.52.193.0", "192.52.193.255", true),
        ("192.88.99.0/24", "192.88.99.0", "192.88.99.255", false),
        ("192.88.99.2/32", "192.88.99.2", "192.88.99.2", false),
        ("192.168.0.0/16", "192.168.0.0", "192.168.255.255", false),
        ("192.175.48.0/24", "192.175.48.0", "192.175.48.255", true),
        ("198.18.0.0/15", "198.18.0.0", "198.19.255.255", false),
        ("198.51.100.0/24", "198.51.100.0", "198.51.100.255", false),
        ("203.0.113.0/24", "203.0.113.0", "203.0.113.255", false),
        ("240.0.0.0/4", "240.0.0.0", "255.255.255.255", false),
        ("255.255.255.255/32", "255.255.255.255", "255.255.255.255", false),
        ("::1/128", "::1", "::1", false),
        ("::/128", "::", "::", false),
        ("::ffff:0:0/96", "::ffff:0.0.0.0", "::ffff:255.255.255.255", false),
        ("64:ff9b::/96", "64:ff9b::", "64:ff9b::ffff:ffff", false),
        ("64:ff9b:1::/48", "64:ff9b:1::", "64:ff9b:1:ffff:ffff:ffff:ffff:ffff", false),
        ("100::/64", "100::", "100::ffff:ffff:ffff:ffff", false),
        ("100:0:0:1::/64", "100:0:0:1::", "100::1:ffff:ffff:ffff:ffff", false),
        ("2001::/23", "2001::", "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("2001::/32", "2001::", "2001::ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("2001:1::1/128", "2001:1::1", "2001:1::1", true),
        ("2001:1::2/128", "2001:1::2", "2001:1::2", true),
        ("2001:1::3/128", "2001:1::3", "2001:1::3", true),
        ("2001:2::/48", "2001:2::", "2001:2::ffff:ffff:ffff:ffff:ffff", false),
        ("2001:3::/32", "2001:3::", "2001:3:ffff:ffff:ffff:ffff:ffff:ffff", true),
        ("2001:4:112::/48", "2001:4:112::", "2001:4:112:ffff:ffff:ffff:ffff:ffff", true),
        ("2001:10::/28", "2001:10::", "2001:1f:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("2001:20::/28", "2001:20::", "2001:2f:ffff:ffff:ffff:ffff:ffff:ffff", true),
        ("2001:30::/28", "2001:30::", "2001:3f:ffff:ffff:ffff:ffff:ffff:ffff", true),
        ("2001:db8::/32", "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("2002::/16", "2002::", "2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("2620:4f:8000::/48", "2620:4f:8000::", "2620:4f:8000:ffff:ffff:ffff:ffff:ffff", true),
        ("3fff::/20", "3fff::", "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("5f00::/16", "5f00::", "5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("fc00::/7", "fc00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("fe80::/10", "fe80::", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("224.0.0.0/4", "224.0.0.0", "239.255.255.255", false),
        ("::/3", "::", "1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("4000::/2", "4000::", "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("8000::/1", "8000::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("fec0::/10", "fec0::", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("ff00::/8", "ff00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
    ];

    #[test]
    fn every_block_is_judged_at_its_first_and_last_address() {
        let tables = || {
            IPV4_SPECIAL_PURPOSE
                .iter()
                .chain(IPV6_SPECIAL_PURPOSE)
                .chain(NOT_UNICAST)
        };
        assert_eq!(tables().count(), BLOCK_ENDS.len(), "a block is untested");
        let none = AllowedTargets::default();
        for (block, &(cidr, first, last, allowed)) in tables().zip(BLOCK_ENDS) {
            assert_eq!(Ok(block.net), cidr.parse::<IpNet>(), "table order");
            assert_eq!(block.net, block.net.trunc(), "{cidr} has host bits set");
            assert_eq!(
                (block.net.network(), block.net.broadcast()),
                (ip(first), ip(last)),
                "{cidr}"
            );
            for end in [first, last] {
                assert_eq!(none.permits(ip(end)), allowed, "{end} in {cidr}");
            }
        }
    }

    #[test]
    fn the_registry_column_decides_and_the_most_specific_row_wins() {
        let none = AllowedTargets::default();
        for (addr, allowed) in [
            ("192.0.0.9", true),            // PCP anycast inside 192.0.0.0/24
            ("192.0.0.11", false),          // the /24 itself
            ("192.88.99.1", false),         // terminated row: empty cells refuse
            ("2001:1::4", false),           // IETF assignments /23 around the anycast /128s
            ("2001:4860:4860::8888", true), // an ordinary allocation, in no row
            ("2001:200::1", true),          // just past 2001::/23
            ("1.1.1.1", true),
            ("223.255.255.255", true),
            ("fec0::1", false),
            ("ff02::1", false),
            ("4000::1", false),
        ] {
            assert_eq!(none.permits(ip(addr)), allowed, "{addr}");
        }
    }

    #[test]
    fn ipv6_forms_carrying_ipv4_are_judged_by_the_ipv4_inside() {
        let none = AllowedTargets::default();
        // Teredo: server 65.54.227.120 (4136:e378); client 93.184.216.34 inverted
        // is a247:27dd, client 10.0.0.1 inverted is f5ff:fffe.
        for (addr, allowed, judged) in [
            ("::ffff:10.0.0.1", false, Some("10.0.0.1")),
            ("::ffff:93.184.216.34", true, None),
            ("::10.0.0.1", false, Some("10.0.0.1")),
            ("::93.184.216.34", true, None),
            ("::127.0.0.1", false, Some("127.0.0.1")),
            ("64:ff9b::a00:1", false, Some("10.0.0.1")),
            ("64:ff9b::169.254.169.254", false, Some("169.254.169.254")),
            ("64:ff9b::5db8:d822", true, None),
            ("2002:a00:1::1", false, Some("10.0.0.1")),
            ("2002:c612:1::1", false, Some("198.18.0.1")),
            ("2002:5db8:d822::1", true, None),
            ("2001:0:4136:e378:8000:63bf:a247:27dd", true, None),
            (
                "2001:0:4136:e378:8000:63bf:f5ff:fffe",
                false,
                Some("10.0.0.1"),
            ),
            ("2001:0:a00:1:8000:63bf:a247:27dd", false, Some("10.0.0.1")),
            // The local-use NAT64 prefix is refused whole, whatever it carries.
            ("64:ff9b:1::5db8:d822", false, None),
            ("64:ff9b:1:5db8:d8:2200::", false, None),
            // :: and ::1 are judged as the registry rows they are.
            ("::1", false, None),
            ("::", false, None),
        ] {
            let verdict = none.vet(ip(addr));
            assert_eq!(verdict.is_ok(), allowed, "{addr}: {verdict:?}");
            let carried = verdict.err().and_then(|r| r.carried).map(|c| c.ipv4);
            assert_eq!(carried, judged.map(|j| j.parse().unwrap()), "{addr}");
        }
    }

    #[test]
    fn the_addresses_of_the_issue_are_refused_and_public_ones_allowed() {
        let none = AllowedTargets::default();
        for bad in [
            "http://[::10.0.0.1]/",
            "http://[64:ff9b::a00:1]/",
            "http://[2002:a00:1::1]/",
            "http://198.18.0.1/",
            "http://240.0.0.1/",
        ] {
            assert!(
                matches!(
                    check_webhook_url(bad, &none),
                    Err(TargetError::Forbidden(_))
                ),
                "{bad} accepted"
            );
        }
        for good in [
            "http://93.184.216.34/",
            "http://[2606:2800:220:1::1]/",
            "https://hooks.example.com/x",
        ] {
            assert!(check_webhook_url(good, &none).is_ok(), "{good} refused");
        }
    }

    #[test]
    fn a_refusal_names_the_address_the_ipv4_inside_and_the_block() {
        let none = AllowedTargets::default();
        let Err(e) = check_webhook_url("http://[::10.0.0.1]/", &none) else {
            panic!("accepted");
        };
        let text = e.to_string();
        for part in [
            "::a00:1",
            "10.0.0.1",
            "IPv4-compatible",
            "10.0.0.0/8",
            "RFC 1918",
        ] {
            assert!(text.contains(part), "{part} missing from {text}");
        }
        let refused = none.vet(ip("198.18.0.1")).unwrap_err().to_string();
        assert_eq!(
            refused,
            "198.18.0.1 is in 198.18.0.0/15 (Benchmarking, RFC 2544), not globally reachable"
        );
    }

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
            "http://2130706433/",
        ] {
            assert!(
                matches!(
                    check_webhook_url(bad, &none),
                    Err(TargetError::Forbidden(_))
                ),
                "{bad} accepted"
            );
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
    fn allowed_targets_cover_the_ipv4_inside_or_the_ipv6_itself() {
        let allowed = AllowedTargets::parse("10.0.0.0/8, 64:ff9b:1::/48").unwrap();
        for addr in [
            "::ffff:10.0.0.1",
            "::10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "64:ff9b:1::a00:1",
        ] {
            assert!(allowed.permits(ip(addr)), "{addr}");
        }
        assert!(
            !allowed.permits(ip("64:ff9b::c0a8:1")),
            "192.168.0.1 inside"
        );
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

    #[test]
    fn long_urls_and_credentials_are_refused() {
        let none = AllowedTargets::default();
        let base = "https://hooks.example.com/";
        let longest = format!("{base}{}", "a".repeat(MAX_WEBHOOK_URL_CHARS - base.len()));
        assert!(check_webhook_url(&longest, &none).is_ok());
        assert_eq!(
            check_webhook_url(&format!("{longest}a"), &none),
            Err(TargetError::TooLong)
        );
        for url in [
            "https://user@hooks.example.com/",
            "https://user:pw@hooks.example.com/",
            "https://:pw@hooks.example.com/",
        ] {
            assert_eq!(
                check_webhook_url(url, &none),
                Err(TargetError::UserInfo),
                "{url}"
            );
        }
    }
}
