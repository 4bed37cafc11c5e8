//! The `ip` constraint (SPEC §3): strict IP addresses and CIDR ranges, and the
//! check against the client IP ([`RequestView::client_ip`]).
//!
//! `010.0.0.0/8`, `10.0.0.0/08`, `10.0.0.1/8` (host bits set) and `/+8` are all
//! malformed. IPv4-mapped IPv6 addresses are treated as the IPv4 address they
//! carry; `::1` stays IPv6 and never equals `0.0.0.1`.

use crate::reason::Reason;
use crate::request::address::normalize;
use crate::request::view::RequestView;
use serde_json::Value;
use std::net::IpAddr;

/// Compiles the `ip` value: a list of addresses or ranges, or a single one.
pub fn parse(value: &Value) -> Result<Vec<IpRange>, String> {
    super::strings("ip", value)?
        .into_iter()
        .map(|s| IpRange::parse(s).ok_or_else(|| "ip: malformed address or range".to_string()))
        .collect()
}

/// Holds when the client IP is in one of `ranges`; a request without a client
/// IP is refused.
pub fn check(ranges: &[IpRange], view: &RequestView<'_>) -> Result<(), Reason> {
    let client = view.client_ip().ok_or(Reason::Ip)?;
    if ranges.iter().any(|r| r.contains(client)) {
        Ok(())
    } else {
        Err(Reason::Ip)
    }
}

/// Whether `child` allows no client `parent` refuses (SPEC §16): every range of
/// `child` lies inside a range of `parent`. A value that does not parse is not
/// within (fail closed).
pub fn within(parent: &Value, child: &Value) -> bool {
    let (Ok(parent), Ok(child)) = (parse(parent), parse(child)) else {
        return false;
    };
    child.iter().all(|c| parent.iter().any(|p| p.covers(c)))
}

impl super::Footprint for IpRange {
    fn heap_bytes(&self) -> usize {
        0
    }
}

/// A CIDR range (a single address is a full-length prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpRange {
    /// An IPv4 network: host bits of `net` are zero, `prefix` ≤ 32.
    V4 {
        /// The network address, as a big-endian integer.
        net: u32,
        /// The prefix length in bits.
        prefix: u8,
    },
    /// An IPv6 network: host bits of `net` are zero, `prefix` ≤ 128.
    V6 {
        /// The network address, as a big-endian integer.
        net: u128,
        /// The prefix length in bits.
        prefix: u8,
    },
}

impl IpRange {
    /// Parses `addr` or `addr/prefix` strictly (`None` when malformed).
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

    /// True when `ip` (IPv4-mapped IPv6 read as IPv4) is inside the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, normalize(ip)) {
            (IpRange::V4 { net, prefix }, IpAddr::V4(a)) => u32::from(a) & mask32(*prefix) == *net,
            (IpRange::V6 { net, prefix }, IpAddr::V6(a)) => u128::from(a) & mask128(*prefix) == *net,
            _ => false,
        }
    }

    /// True when every address of `other` is inside this range.
    pub fn covers(&self, other: &IpRange) -> bool {
        match (self, other) {
            (IpRange::V4 { net, prefix }, IpRange::V4 { net: n, prefix: p }) => {
                p >= prefix && n & mask32(*prefix) == *net
            }
            (IpRange::V6 { net, prefix }, IpRange::V6 { net: n, prefix: p }) => {
                p >= prefix && n & mask128(*prefix) == *net
            }
            _ => false,
        }
    }
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
    fn the_constraint_holds_when_the_client_ip_is_in_one_range() {
        use crate::request::view::test_host::TestHost;
        use serde_json::json;
        // (constraint value, peer address, want)
        let table: &[(Value, &str, Result<(), Reason>)] = &[
            (json!(["10.0.0.0/8"]), "10.1.2.3:5", Ok(())),
            (json!("10.0.0.0/8"), "10.1.2.3:5", Ok(())),
            (json!(["192.168.0.0/16", "10.0.0.0/8"]), "10.1.2.3:5", Ok(())),
            (json!(["10.0.0.0/8"]), "11.0.0.1:5", Err(Reason::Ip)),
            (json!(["10.0.0.0/8"]), "[::ffff:10.0.0.1]:5", Ok(())),
            (json!(["::1"]), "[::1]:5", Ok(())),
            (json!(["0.0.0.1"]), "[::1]:5", Err(Reason::Ip)),
            (json!(["127.0.0.0/30"]), "127.0.0.4:5", Err(Reason::Ip)),
            (json!([]), "10.1.2.3:5", Err(Reason::Ip)),
            (json!(["0.0.0.0/0"]), "not an address", Err(Reason::Ip)),
        ];
        for (value, peer, want) in table {
            let ranges = parse(value).unwrap();
            let host = TestHost::new("GET", "/").property(&["source", "address"], peer);
            assert_eq!(check(&ranges, &host.view()), *want, "{value} {peer}");
        }
    }

    #[test]
    fn malformed_constraint_values_are_refused() {
        use serde_json::json;
        for bad in [json!(10), json!({"a": 1}), json!([1]), json!(["010.0.0.0/8"]), json!(["10.0.0.1/8"])] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }
}
