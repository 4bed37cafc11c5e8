//! A [`Host`] over plain data: fixed headers, fixed properties and a fixed clock.
//!
//! The one static host for everything that is not the proxy: the native tests
//! (through the harness), the fuzz targets, `cjwt explain` and the
//! benchmarks. Built with chained methods:
//!
//! ```
//! use cjwt_core::request::static_host::StaticHost;
//! let host = StaticHost::get("/v1/orders/7").bearer("eyJ...").peer("10.1.2.3:40000").at(1_800_000_000);
//! ```

use crate::request::host::Host;
use std::collections::HashMap;

/// 2026-11-30T10:00:00Z, a Monday: the clock a new [`StaticHost`] starts with.
pub const NOW: i64 = 1_796_032_800;

/// A request as the core sees it, with a fixed clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticHost {
    /// The request headers in order, pseudo-headers included, names lowercase.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Host properties by path (e.g. `["source", "address"]`).
    pub properties: HashMap<Vec<String>, Vec<u8>>,
    /// The host clock, Unix seconds.
    pub now: i64,
}

impl StaticHost {
    /// No headers, no properties, the clock at [`NOW`].
    pub fn new() -> StaticHost {
        StaticHost { headers: Vec::new(), properties: HashMap::new(), now: NOW }
    }

    /// `GET path` (see [`StaticHost::request`]).
    pub fn get(path: &str) -> StaticHost {
        StaticHost::request("GET", path)
    }

    /// `method path` to `api.example.com` from peer `127.0.0.1:40000`, at [`NOW`].
    pub fn request(method: &str, path: &str) -> StaticHost {
        StaticHost::new()
            .header(":method", method)
            .header(":path", path)
            .header(":authority", "api.example.com")
            .peer("127.0.0.1:40000")
    }

    /// Adds a header (repeated names stay separate entries).
    pub fn header(self, name: &str, value: &str) -> StaticHost {
        self.header_bytes(name, value.as_bytes())
    }

    /// Adds a header whose value need not be UTF-8.
    pub fn header_bytes(mut self, name: &str, value: impl Into<Vec<u8>>) -> StaticHost {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces every header `name` with one entry of `value`.
    pub fn set_header(mut self, name: &str, value: &str) -> StaticHost {
        self.headers.retain(|(n, _)| n != name);
        self.header(name, value)
    }

    /// Adds `authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> StaticHost {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// Sets the peer address (property `source.address`, e.g. `10.0.0.1:5000`).
    pub fn peer(self, addr: &str) -> StaticHost {
        self.property_bytes(&["source", "address"], addr.as_bytes())
    }

    /// Sets a host property.
    pub fn property(self, path: &[&str], value: &str) -> StaticHost {
        self.property_bytes(path, value.as_bytes())
    }

    /// Sets a host property whose value need not be UTF-8.
    pub fn property_bytes(mut self, path: &[&str], value: impl Into<Vec<u8>>) -> StaticHost {
        self.properties.insert(path.iter().map(|s| s.to_string()).collect(), value.into());
        self
    }

    /// Sets the clock (Unix seconds).
    pub fn at(mut self, now: i64) -> StaticHost {
        self.now = now;
        self
    }
}

impl Default for StaticHost {
    /// The same as [`StaticHost::new`]: the clock at [`NOW`], not at 0.
    fn default() -> StaticHost {
        StaticHost::new()
    }
}

impl Host for StaticHost {
    fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let key: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        self.properties.get(&key).cloned()
    }

    fn now(&self) -> i64 {
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::host::single_header;

    #[test]
    fn builds_the_request_the_core_reads() {
        let host = StaticHost::request("POST", "/a?b=1")
            .bearer("t")
            .header("x-h", "1")
            .header("x-h", "2")
            .set_header(":authority", "h.example")
            .peer("10.0.0.1:5")
            .property(&["xds", "node", "metadata", "REGION"], "eu-west-1")
            .at(42);
        assert_eq!(single_header(&host, ":method"), Some("POST"));
        assert_eq!(single_header(&host, ":path"), Some("/a?b=1"));
        assert_eq!(single_header(&host, ":authority"), Some("h.example"));
        assert_eq!(single_header(&host, "authorization"), Some("Bearer t"));
        assert_eq!(single_header(&host, "x-h"), None, "repeated headers stay separate");
        assert_eq!(Host::property(&host, &["source", "address"]), Some(b"10.0.0.1:5".to_vec()));
        assert_eq!(Host::property(&host, &["xds", "node", "metadata", "REGION"]), Some(b"eu-west-1".to_vec()));
        assert_eq!(Host::property(&host, &["source"]), None);
        assert_eq!(host.now(), 42);
        assert_eq!(StaticHost::get("/").now(), NOW);
        assert!(StaticHost::new().header_bytes("x", vec![0xff]).headers.contains(&("x".into(), vec![0xff])));
    }
}
