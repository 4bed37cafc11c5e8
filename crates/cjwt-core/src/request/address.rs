//! The client's address as the request carries it (SPEC §2 `client_ip`): Envoy's
//! `source.address` property or the `x-forwarded-for` header, with IPv4-mapped
//! IPv6 addresses read as the IPv4 address they carry (`::1` stays IPv6).

use std::net::IpAddr;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn socket_addresses_from_envoy() {
        let table: &[(&str, Option<&str>)] = &[
            ("127.0.0.2:5555", Some("127.0.0.2")),
            ("[::1]:80", Some("::1")),
            ("[::ffff:10.0.0.1]:80", Some("10.0.0.1")),
            ("10.0.0.3", Some("10.0.0.3")),
            ("::ffff:10.0.0.4", Some("10.0.0.4")),
            ("junk", None),
            ("", None),
        ];
        for (text, want) in table {
            assert_eq!(parse_socket_address(text), want.map(ip), "{text}");
        }
    }

    #[test]
    fn forwarded_for_trusts_only_the_configured_hops() {
        let values = ["6.6.6.6, 10.0.0.1", "10.0.0.2"];
        assert_eq!(from_forwarded_for(&values, 1), Some(ip("10.0.0.2")));
        assert_eq!(from_forwarded_for(&values, 2), Some(ip("10.0.0.1")));
        assert_eq!(from_forwarded_for(&values, 3), Some(ip("6.6.6.6")));
        assert_eq!(from_forwarded_for(&values, 4), None);
        assert_eq!(from_forwarded_for(&["bogus"], 1), None);
        assert_eq!(from_forwarded_for(&["::ffff:10.9.9.9"], 1), Some(ip("10.9.9.9")));
    }

    #[test]
    fn mapped_v6_is_v4_but_loopback_v6_is_not() {
        assert_eq!(normalize(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(normalize(ip("::1")), ip("::1"));
        assert_eq!(normalize(ip("10.1.2.3")), ip("10.1.2.3"));
    }
}
