//! Which IP addresses a fetch may connect to.
//!
//! An address is public when it is routed on the open internet. Everything else — loopback,
//! private and shared ranges, link-local (where cloud metadata services live), multicast,
//! documentation and reserved blocks — is refused unless the operator allows it, because a
//! caller-supplied URL must not become a way to reach the server's own network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// IPv4 blocks that are not reachable on the public internet, with what each one is.
const REFUSED_V4: &[(Ipv4Net, &str)] = &[
    (v4(0, 0, 0, 0, 8), "this network"),
    (v4(10, 0, 0, 0, 8), "private"),
    (v4(100, 64, 0, 0, 10), "shared address space (carrier-grade NAT)"),
    (v4(127, 0, 0, 0, 8), "loopback"),
    (v4(169, 254, 0, 0, 16), "link-local (includes the cloud metadata address)"),
    (v4(172, 16, 0, 0, 12), "private"),
    (v4(192, 0, 0, 0, 24), "IETF protocol assignments"),
    (v4(192, 0, 2, 0, 24), "documentation"),
    (v4(192, 88, 99, 0, 24), "6to4 relay anycast"),
    (v4(192, 168, 0, 0, 16), "private"),
    (v4(198, 18, 0, 0, 15), "benchmarking"),
    (v4(198, 51, 100, 0, 24), "documentation"),
    (v4(203, 0, 113, 0, 24), "documentation"),
    (v4(224, 0, 0, 0, 4), "multicast"),
    (v4(240, 0, 0, 0, 4), "reserved (includes broadcast)"),
];

/// IPv6 blocks inside global unicast (2000::/3) that are still not public. Addresses outside
/// 2000::/3 are refused as a whole, except the forms that embed an IPv4 address.
const REFUSED_V6_GLOBAL: &[(Ipv6Net, &str)] = &[
    // Teredo, ORCHID and benchmarking live here; none of them is a web host.
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), "IETF protocol assignments"),
    (v6([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32), "documentation"),
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), "documentation"),
];

const GLOBAL_UNICAST_V6: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);
const NAT64_WELL_KNOWN: Ipv6Net = v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
const SIX_TO_FOUR: Ipv6Net = v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)
}

const fn v6(segments: [u16; 8], prefix: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), prefix)
}

/// Returns `true` when `ip` is routed on the public internet, so a fetch may connect to it
/// without the operator's permission.
///
/// IPv6 forms that carry an IPv4 address (IPv4-mapped, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`)
/// are judged by the IPv4 address they carry, since connecting to them reaches that address.
pub fn is_public_address(ip: IpAddr) -> bool {
    refusal_reason(ip).is_none()
}

/// Says why `ip` is not public, or `None` when it is. The reason goes to the server log only.
pub(crate) fn refusal_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refusal_reason_v4(v4),
        IpAddr::V6(v6) => refusal_reason_v6(v6),
    }
}

fn refusal_reason_v4(ip: Ipv4Addr) -> Option<&'static str> {
    REFUSED_V4.iter().find(|(net, _)| net.contains(&ip)).map(|(_, reason)| *reason)
}

fn refusal_reason_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(embedded) = embedded_v4(ip) {
        return refusal_reason_v4(embedded);
    }
    if !GLOBAL_UNICAST_V6.contains(&ip) {
        // Loopback, unspecified, IPv4-compatible (::/96), unique local (fc00::/7), link-local
        // (fe80::/10), multicast (ff00::/8) and every unassigned block sit outside 2000::/3.
        return Some(describe_non_global_v6(ip));
    }
    REFUSED_V6_GLOBAL.iter().find(|(net, _)| net.contains(&ip)).map(|(_, reason)| *reason)
}

/// The IPv4 address that an IPv4-mapped, NAT64 or 6to4 address reaches, if `ip` is one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let octets = ip.octets();
    if let Some(mapped) = ip.to_ipv4_mapped() {
        return Some(mapped);
    }
    if NAT64_WELL_KNOWN.contains(&ip) {
        return Some(Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]));
    }
    if SIX_TO_FOUR.contains(&ip) {
        return Some(Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5]));
    }
    None
}

fn describe_non_global_v6(ip: Ipv6Addr) -> &'static str {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if first & 0xfe00 == 0xfc00 {
        "unique local"
    } else if first & 0xffc0 == 0xfe80 {
        "link-local"
    } else if first & 0xff00 == 0xff00 {
        "multicast"
    } else {
        "not global unicast"
    }
}
