//! Strict IP addresses and CIDR ranges (SPEC §3 `ip`).
//!
//! `010.0.0.0/8`, `10.0.0.0/08`, `10.0.0.1/8` (host bits set) and `/+8` are all
//! malformed. IPv4-mapped IPv6 addresses are treated as the IPv4 address they
//! carry; `::1` stays IPv6 and never equals `0.0.0.1`.

use std::net::IpAddr;

/// A CIDR range (a single address is a full-length prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpRange {
    V4 { net: u32, prefix: u8 },
    V6 { net: u128, prefix: u8 },
}

impl IpRange {
    /// Parses `addr` or `addr/prefix` strictly.
    pub fn parse(text: &str) -> Option<IpRange> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(parse_prefix(p)?)),
            None => (text, None),
        };
        match normalize(addr.parse::<IpAddr>().ok()?) {
            IpAddr::V4(v4) => {
                // A mapped address written with a v6 prefix: shift the prefix.
                let prefix = match prefix {
                    Some(p) if addr.contains(':') => p.checked_sub(96)?,
                    Some(p) => p,
                    None => 32,
                };
                if prefix > 32 {
                    return None;
                }
                let net = u32::from(v4);
                (net & mask32(prefix) == net).then_some(IpRange::V4 { net, prefix })
            }
            IpAddr::V6(v6) => {
                let prefix = prefix.unwrap_or(128);
                if prefix > 128 {
                    return None;
                }
                let net = u128::from(v6);
                (net & mask128(prefix) == net).then_some(IpRange::V6 { net, prefix })
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, normalize(ip)) {
            (IpRange::V4 { net, prefix }, IpAddr::V4(a)) => u32::from(a) & mask32(*prefix) == *net,
            (IpRange::V6 { net, prefix }, IpAddr::V6(a)) => u128::from(a) & mask128(*prefix) == *net,
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes IPv4; everything else is unchanged.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Parses Envoy's `source.address` (`1.2.3.4:5678`, `[::1]:5678`, or a bare address).
pub fn parse_socket_address(text: &str) -> Option<IpAddr> {
    if let Ok(sa) = text.parse::<std::net::SocketAddr>() {
        return Some(normalize(sa.ip()));
    }
    text.parse::<IpAddr>().ok().map(normalize)
}

/// The client address from `x-forwarded-for`, trusting `trusted_hops` proxies in
/// front of Envoy: the entry `trusted_hops` from the right (1 = the last one).
/// Returns `None` when the header has fewer entries or the entry is not an address.
pub fn from_forwarded_for(values: &[&str], trusted_hops: u32) -> Option<IpAddr> {
    let entries: Vec<&str> = values.iter().flat_map(|v| v.split(',')).map(str::trim).collect();
    let hops = usize::try_from(trusted_hops).ok()?;
    let index = entries.len().checked_sub(hops)?;
    let entry = entries.get(index)?;
    entry.parse::<IpAddr>().ok().map(normalize)
}

fn parse_prefix(p: &str) -> Option<u8> {
    let canonical =
        !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0'));
    if canonical {
        p.parse().ok()
    } else {
        None
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn strict_parsing_refuses_ambiguous_spellings() {
        for bad in [
            "010.0.0.0/8",
            "10.0.0.0/08",
            "10.0.0.0/+8",
            "10.0.0.1/8",
            "10.0.0.0/33",
            "10.0.0",
            "1.2.3.4/",
            "::1/129",
            "10.0.0.0 /8",
            "",
            "/8",
            "0x0a.0.0.0/8",
            "10.0.0.0/8/8",
        ] {
            assert_eq!(IpRange::parse(bad), None, "{bad}");
        }
        assert!(IpRange::parse("10.0.0.0/8").is_some());
        assert!(IpRange::parse("0.0.0.0/0").is_some());
        assert!(IpRange::parse("2001:db8::/32").is_some());
        assert!(IpRange::parse("127.0.0.2").is_some());
    }

    #[test]
    fn cidr_edges() {
        let r = IpRange::parse("127.0.0.0/30").unwrap();
        assert!(r.contains(ip("127.0.0.0")));
        assert!(r.contains(ip("127.0.0.3")));
        assert!(!r.contains(ip("127.0.0.4")));
        let one = IpRange::parse("127.0.0.2/32").unwrap();
        assert!(one.contains(ip("127.0.0.2")) && !one.contains(ip("127.0.0.3")));
        assert!(IpRange::parse("0.0.0.0/0").unwrap().contains(ip("255.255.255.255")));
        assert!(!IpRange::parse("0.0.0.0/0").unwrap().contains(ip("::1")));
    }

    #[test]
    fn mapped_v6_is_v4_but_loopback_v6_is_not_v4() {
        let r = IpRange::parse("10.0.0.0/8").unwrap();
        assert!(r.contains(ip("::ffff:10.1.2.3")));
        assert!(!IpRange::parse("0.0.0.1").unwrap().contains(ip("::1")));
        assert!(IpRange::parse("::1").unwrap().contains(ip("::1")));
        let mapped = IpRange::parse("::ffff:10.0.0.0/104").unwrap();
        assert_eq!(mapped, r);
    }

    #[test]
    fn socket_addresses_from_envoy() {
        assert_eq!(parse_socket_address("127.0.0.2:5555"), Some(ip("127.0.0.2")));
        assert_eq!(parse_socket_address("[::1]:80"), Some(ip("::1")));
        assert_eq!(parse_socket_address("[::ffff:10.0.0.1]:80"), Some(ip("10.0.0.1")));
        assert_eq!(parse_socket_address("junk"), None);
    }

    #[test]
    fn forwarded_for_trusts_only_the_configured_hops() {
        let values = ["6.6.6.6, 10.0.0.1", "10.0.0.2"];
        assert_eq!(from_forwarded_for(&values, 1), Some(ip("10.0.0.2")));
        assert_eq!(from_forwarded_for(&values, 2), Some(ip("10.0.0.1")));
        assert_eq!(from_forwarded_for(&values, 3), Some(ip("6.6.6.6")));
        assert_eq!(from_forwarded_for(&values, 4), None);
        assert_eq!(from_forwarded_for(&["bogus"], 1), None);
    }
}
