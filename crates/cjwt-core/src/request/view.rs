//! [`RequestView`]: what one decision reads of the request, read once.
//!
//! The method, the path, the authority and the query are single header lookups
//! and are read when the view is made. Everything else is read on first use and
//! remembered for the rest of the decision: the client IP (the `source.address`
//! property or `x-forwarded-for`), the region, the custom-constraint attributes,
//! the normalised host name and the path's normal-form check. Host properties
//! are hostcalls in wasm, so a decision that needs none reads none.
//!
//! Checks take a `&RequestView` and are pure functions of it; nothing below the
//! engine reads the [`Host`] but through the view: the credential, the sender
//! checks (DPoP proofs, origin, certificate digest, XFCC) and the plan's header
//! operations included.

use crate::reason::Reason;
use crate::request::address;
use crate::request::host::{header_values, single_header, Host};
use crate::request::paths::{is_normalized, normalize_host, path_only, path_segment, query_only};
use crate::request::query::{self, Param};
use crate::request::source::{Attribute, ClientIpSource, RegionSource};
use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::IpAddr;

/// A custom attribute as read: absent or ambiguous is `Ok(None)`; an attribute
/// that depends on a path not in normal form is `Err(PathNotNormalized)`.
type AttributeValue<'a> = Result<Option<Cow<'a, str>>, Reason>;

/// One request as the decision sees it. Made once per decision by
/// [`RequestView::new`] (or [`RequestView::for_config`]).
pub struct RequestView<'a> {
    host: &'a dyn Host,
    client_ip_source: ClientIpSource,
    region_source: Option<&'a RegionSource>,
    attributes: &'a [(String, Attribute)],
    /// `:method` if it occurs exactly once and is UTF-8.
    method: Option<&'a str>,
    /// `:authority` as sent (not normalised), if it occurs exactly once.
    authority: Option<&'a str>,
    /// `:path` up to the first `?` or `#` (empty when `:path` is absent or repeated).
    path: &'a str,
    /// The query part of `:path` (empty when there is none).
    query: &'a str,
    /// `authority` without port, lowercased, without one trailing dot.
    host_name: OnceCell<Option<String>>,
    path_normalized: OnceCell<bool>,
    client_ip: OnceCell<Option<IpAddr>>,
    region: OnceCell<Option<Cow<'a, str>>>,
    /// One cell per configured custom attribute, made on first use.
    attribute_values: OnceCell<Box<[OnceCell<AttributeValue<'a>>]>>,
}

impl<'a> RequestView<'a> {
    /// Reads the request line of `host` (method, path, authority, query).
    /// `client_ip`, `region` and `attributes` say where the on-demand parts come
    /// from (SPEC §2 `client_ip`, `region`, `custom_constraints`).
    pub fn new(
        host: &'a dyn Host,
        client_ip: ClientIpSource,
        region: Option<&'a RegionSource>,
        attributes: &'a [(String, Attribute)],
    ) -> RequestView<'a> {
        let raw_path = single_header(host, ":path");
        RequestView {
            host,
            client_ip_source: client_ip,
            region_source: region,
            attributes,
            method: single_header(host, ":method"),
            authority: single_header(host, ":authority"),
            path: path_only(raw_path.unwrap_or("")),
            query: raw_path.and_then(query_only).unwrap_or(""),
            host_name: OnceCell::new(),
            path_normalized: OnceCell::new(),
            client_ip: OnceCell::new(),
            region: OnceCell::new(),
            attribute_values: OnceCell::new(),
        }
    }

    /// The same request with its origin fixed: [`RequestView::client_ip`] is
    /// `ip` and [`RequestView::region`] is `region`, whatever the configured
    /// sources say. For a Txn-Token, whose constraints hold for the request it
    /// was issued for (SPEC §14, `rctx`), not for the hop that carries it.
    /// Everything already read is carried over, not read again.
    pub fn with_origin(&self, ip: Option<IpAddr>, region: Option<String>) -> RequestView<'a> {
        RequestView {
            host: self.host,
            client_ip_source: self.client_ip_source,
            region_source: self.region_source,
            attributes: self.attributes,
            method: self.method,
            authority: self.authority,
            path: self.path,
            query: self.query,
            host_name: self.host_name.clone(),
            path_normalized: self.path_normalized.clone(),
            client_ip: OnceCell::from(ip),
            region: OnceCell::from(region.map(Cow::Owned)),
            attribute_values: self.attribute_values.clone(),
        }
    }

    /// The single value of header `name` (lowercase) as UTF-8; `None` if absent,
    /// repeated or not UTF-8.
    pub fn header<'s>(&'s self, name: &'s str) -> Option<&'s str> {
        single_header(self.host, name)
    }

    /// Every value of header `name` (lowercase), in order, as bytes.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        let host: &'a dyn Host = self.host;
        host.headers().iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    /// Every request header, in order (the forwarding edits strip each
    /// spelling of a forwarded header).
    pub fn headers(&self) -> &'a [(String, Vec<u8>)] {
        self.host.headers()
    }

    /// A host property (e.g. the peer certificate's digest), read when asked.
    pub fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.host.property(path)
    }

    /// The host clock (Unix seconds) the decision is made at.
    pub fn now(&self) -> i64 {
        self.host.now()
    }

    /// `:method`, if it occurs exactly once.
    pub fn method(&self) -> Option<&'a str> {
        self.method
    }

    /// The request's host name: `:authority` without port, ASCII-lowercased,
    /// without one trailing dot; `None` if `:authority` is absent or repeated.
    pub fn host_name(&self) -> Option<&str> {
        self.host_name.get_or_init(|| self.authority.map(normalize_host)).as_deref()
    }

    /// The path (no query, no fragment) as sent, whether in normal form or not.
    /// Empty when `:path` is absent or repeated.
    pub fn raw_path(&self) -> &'a str {
        self.path
    }

    /// The path if it is in normal form (SPEC §3), else `path_not_normalized`.
    /// Call it only when the decision depends on the path.
    pub fn normalized_path(&self) -> Result<&'a str, Reason> {
        if *self.path_normalized.get_or_init(|| is_normalized(self.path)) {
            Ok(self.path)
        } else {
            Err(Reason::PathNotNormalized)
        }
    }

    /// The query string (after `?`, before `#`); empty when there is none.
    pub fn query(&self) -> &'a str {
        self.query
    }

    /// The client IP from the configured source (IPv4-mapped IPv6 read as IPv4);
    /// `None` when the source gives no address.
    pub fn client_ip(&self) -> Option<IpAddr> {
        *self.client_ip.get_or_init(|| read_client_ip(self.client_ip_source, self.host))
    }

    /// The request's region from the configured source; `None` when no source is
    /// configured or it gives no value.
    pub fn region(&self) -> Option<&str> {
        self.region.get_or_init(|| read_region(self.region_source?, self.host)).as_deref()
    }

    /// The request attribute of the custom constraint `name`. `Ok(None)` when the
    /// name is not configured, or the attribute is absent, empty or ambiguous
    /// (repeated); `Err(path_not_normalized)` for a path segment of a path not in
    /// normal form.
    pub fn attribute(&self, name: &str) -> Result<Option<&str>, Reason> {
        let Some(index) = self.attributes.iter().position(|(n, _)| n == name) else {
            return Ok(None);
        };
        let cells = self.attribute_values.get_or_init(|| self.attributes.iter().map(|_| OnceCell::new()).collect());
        let (Some(cell), Some((_, attribute))) = (cells.get(index), self.attributes.get(index)) else {
            return Ok(None);
        };
        match cell.get_or_init(|| self.read_attribute(attribute)) {
            Ok(value) => Ok(value.as_deref()),
            Err(reason) => Err(*reason),
        }
    }

    fn read_attribute(&self, attribute: &'a Attribute) -> AttributeValue<'a> {
        Ok(match attribute {
            Attribute::Header(h) => single_header(self.host, h).map(Cow::Borrowed),
            // Decoded as upstream decoders decode it; any second occurrence is ambiguous.
            Attribute::Query(name) => match query::param(self.query, name) {
                Param::One(v) => String::from_utf8(v).ok().filter(|v| !v.is_empty()).map(Cow::Owned),
                Param::Absent | Param::Ambiguous => None,
            },
            Attribute::PathSegment(i) => {
                path_segment(self.normalized_path()?, *i).filter(|s| !s.is_empty()).map(Cow::Borrowed)
            }
        })
    }
}

fn read_client_ip(source: ClientIpSource, host: &dyn Host) -> Option<IpAddr> {
    match source {
        ClientIpSource::Peer => {
            let raw = host.property(&["source", "address"])?;
            address::parse_socket_address(std::str::from_utf8(&raw).ok()?)
        }
        ClientIpSource::ForwardedFor { trusted_hops } => {
            let values: Option<Vec<&str>> =
                header_values(host, "x-forwarded-for").map(|v| std::str::from_utf8(v).ok()).collect();
            address::from_forwarded_for(&values?, trusted_hops)
        }
    }
}

fn read_region<'a>(source: &'a RegionSource, host: &'a dyn Host) -> Option<Cow<'a, str>> {
    match source {
        RegionSource::Static(v) => Some(Cow::Borrowed(v.as_str())),
        RegionSource::Header(h) => single_header(host, h).map(Cow::Borrowed),
        RegionSource::NodeMetadata(key) => {
            let raw = host.property(&["xds", "node", "metadata", key])?;
            String::from_utf8(raw).ok().map(Cow::Owned)
        }
    }
}

/// A plain-data [`Host`] for the crate's unit tests, counting property reads.
#[cfg(test)]
pub(crate) mod test_host {
    use super::*;
    use std::cell::Cell;

    /// Headers, properties and a clock; `reads` counts `property` calls.
    #[derive(Default)]
    pub struct TestHost {
        pub headers: Vec<(String, Vec<u8>)>,
        pub properties: Vec<(Vec<String>, Vec<u8>)>,
        pub reads: Cell<usize>,
    }

    impl TestHost {
        /// `method path`, authority `api.example.com`, peer `127.0.0.1:40000`.
        pub fn new(method: &str, path: &str) -> TestHost {
            TestHost::default()
                .header(":method", method)
                .header(":path", path)
                .header(":authority", "api.example.com")
                .property(&["source", "address"], "127.0.0.1:40000")
        }

        pub fn header(mut self, name: &str, value: &str) -> TestHost {
            self.headers.push((name.into(), value.as_bytes().to_vec()));
            self
        }

        pub fn without(mut self, name: &str) -> TestHost {
            self.headers.retain(|(n, _)| n != name);
            self
        }

        pub fn property(mut self, path: &[&str], value: &str) -> TestHost {
            self.properties.retain(|(p, _)| p != path);
            self.properties.push((path.iter().map(|s| s.to_string()).collect(), value.as_bytes().to_vec()));
            self
        }

        /// A view with the peer as client IP and no region or attributes.
        pub fn view(&self) -> RequestView<'_> {
            RequestView::new(self, ClientIpSource::Peer, None, &[])
        }
    }

    impl Host for TestHost {
        fn headers(&self) -> &[(String, Vec<u8>)] {
            &self.headers
        }
        fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
            self.reads.set(self.reads.get() + 1);
            self.properties.iter().find(|(p, _)| p == path).map(|(_, v)| v.clone())
        }
        fn now(&self) -> i64 {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_host::TestHost;
    use super::*;

    #[test]
    fn the_request_line_is_split_as_spec() {
        /// (method, :path, :authority, method(), raw_path(), query(), host_name())
        type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, &'a str, &'a str, Option<&'a str>);
        let table: &[Case] = &[
            ("GET", "/a/b?x=1#f", "API.Example.com:8443", Some("GET"), "/a/b", "x=1", Some("api.example.com")),
            ("POST", "/", "example.com.", Some("POST"), "/", "", Some("example.com")),
            ("GET", "/a#f", "[::1]:80", Some("GET"), "/a", "", Some("[::1]")),
            ("GET", "/a/../b?q", "h", Some("GET"), "/a/../b", "q", Some("h")),
        ];
        for (method, path, authority, m, p, q, h) in table {
            let host =
                TestHost::default().header(":method", method).header(":path", path).header(":authority", authority);
            let view = host.view();
            assert_eq!(view.method(), *m, "{path}");
            assert_eq!(view.raw_path(), *p, "{path}");
            assert_eq!(view.query(), *q, "{path}");
            assert_eq!(view.host_name(), *h, "{path}");
        }
    }

    #[test]
    fn absent_or_repeated_pseudo_headers_read_as_absent() {
        let none = TestHost::default();
        let view = none.view();
        assert_eq!((view.method(), view.host_name(), view.raw_path(), view.query()), (None, None, "", ""));
        assert_eq!(view.normalized_path(), Err(Reason::PathNotNormalized));
        let twice =
            TestHost::new("GET", "/a?x=1").header(":method", "POST").header(":authority", "b").header(":path", "/b");
        let view = twice.view();
        assert_eq!((view.method(), view.host_name(), view.raw_path(), view.query()), (None, None, "", ""));
    }

    #[test]
    fn the_normal_form_is_checked_on_demand() {
        let table: &[(&str, Result<&str, Reason>)] = &[
            ("/a/b?x=..", Ok("/a/b")),
            ("/", Ok("/")),
            ("/a//b", Err(Reason::PathNotNormalized)),
            ("/a/%2e%2e/b", Err(Reason::PathNotNormalized)),
            ("/a;x", Err(Reason::PathNotNormalized)),
        ];
        for (path, want) in table {
            let host = TestHost::new("GET", path);
            assert_eq!(host.view().normalized_path(), *want, "{path}");
        }
    }

    #[test]
    fn properties_are_read_only_when_needed_and_only_once() {
        let host = TestHost::new("GET", "/x").property(&["xds", "node", "metadata", "region"], "eu-west-1");
        let region = RegionSource::NodeMetadata("region".into());
        let view = RequestView::new(&host, ClientIpSource::Peer, Some(&region), &[]);
        assert_eq!(host.reads.get(), 0, "making the view reads no property");
        for _ in 0..3 {
            assert_eq!(view.client_ip(), Some("127.0.0.1".parse().unwrap()));
            assert_eq!(view.region(), Some("eu-west-1"));
        }
        assert_eq!(host.reads.get(), 2, "one read per property");
    }

    #[test]
    fn client_ip_sources() {
        let xff = |hops| ClientIpSource::ForwardedFor { trusted_hops: hops };
        // (source, peer, x-forwarded-for values, want)
        let table: &[(ClientIpSource, &str, &[&str], Option<&str>)] = &[
            (ClientIpSource::Peer, "10.0.0.1:5", &["6.6.6.6"], Some("10.0.0.1")),
            (ClientIpSource::Peer, "[::ffff:10.0.0.1]:5", &[], Some("10.0.0.1")),
            (ClientIpSource::Peer, "junk", &[], None),
            (xff(1), "10.0.0.1:5", &["6.6.6.6, 10.0.0.9"], Some("10.0.0.9")),
            (xff(2), "10.0.0.1:5", &["6.6.6.6", "10.0.0.9"], Some("6.6.6.6")),
            (xff(3), "10.0.0.1:5", &["6.6.6.6", "10.0.0.9"], None),
            (xff(1), "10.0.0.1:5", &[], None),
        ];
        for (source, peer, values, want) in table {
            let mut host = TestHost::new("GET", "/").property(&["source", "address"], peer);
            for v in *values {
                host = host.header("x-forwarded-for", v);
            }
            let view = RequestView::new(&host, *source, None, &[]);
            assert_eq!(view.client_ip(), want.map(|w| w.parse().unwrap()), "{source:?} {peer} {values:?}");
        }
    }

    #[test]
    fn region_sources() {
        let host = TestHost::new("GET", "/").header("x-region", "us-east-1");
        let table: &[(Option<RegionSource>, Option<&str>)] = &[
            (None, None),
            (Some(RegionSource::Static("eu".into())), Some("eu")),
            (Some(RegionSource::Header("x-region".into())), Some("us-east-1")),
            (Some(RegionSource::Header("x-other".into())), None),
            (Some(RegionSource::NodeMetadata("region".into())), None),
        ];
        for (source, want) in table {
            let view = RequestView::new(&host, ClientIpSource::Peer, source.as_ref(), &[]);
            assert_eq!(view.region(), *want, "{source:?}");
        }
    }

    #[test]
    fn custom_attributes() {
        let attributes = vec![
            ("tenant".to_string(), Attribute::Header("x-tenant".into())),
            ("ver".to_string(), Attribute::Query("v".into())),
            ("shard".to_string(), Attribute::PathSegment(1)),
        ];
        /// (path, extra headers, name, want)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, Result<Option<&'a str>, Reason>);
        let table: &[Case] = &[
            ("/t/s1", &[("x-tenant", "acme")], "tenant", Ok(Some("acme"))),
            ("/t/s1", &[("x-tenant", "acme"), ("x-tenant", "evil")], "tenant", Ok(None)),
            ("/t/s1", &[], "tenant", Ok(None)),
            ("/t/s1?v=2", &[], "ver", Ok(Some("2"))),
            ("/t/s1?v=%32", &[], "ver", Ok(Some("2"))),
            ("/t/s1?v=", &[], "ver", Ok(None)),
            ("/t/s1?v=1&v=2", &[], "ver", Ok(None)),
            ("/t/s1", &[], "shard", Ok(Some("s1"))),
            ("/t", &[], "shard", Ok(None)),
            ("/t//s1", &[], "shard", Err(Reason::PathNotNormalized)),
            ("/t/s1", &[], "unconfigured", Ok(None)),
        ];
        for (path, headers, name, want) in table {
            let mut host = TestHost::new("GET", path);
            for (n, v) in *headers {
                host = host.header(n, v);
            }
            let view = RequestView::new(&host, ClientIpSource::Peer, None, &attributes);
            assert_eq!(view.attribute(name), *want, "{path} {headers:?} {name}");
            assert_eq!(view.attribute(name), *want, "{path} {headers:?} {name}: the second read agrees");
        }
    }
}
