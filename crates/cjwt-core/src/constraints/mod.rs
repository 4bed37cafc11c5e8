//! The token's constraints claim (SPEC §3), compiled once per verified token.
//!
//! Must-understand: a key that is neither built-in nor a configured custom
//! constraint is remembered and refuses every request (`unknown_constraint`). A
//! known key with a value of the wrong shape makes the whole token
//! `malformed_constraint`. Lists mean "any of"; an empty list allows nothing; a
//! single string is a one-element list.

pub mod custom;
pub mod hosts;
pub mod ip;
pub mod max_uses;
pub mod methods;
pub mod paths;
pub mod region;
pub mod tz;
#[rustfmt::skip]
pub mod tzdb;
pub mod window;

use crate::constraints::ip::IpRange;
use crate::constraints::max_uses::TokenUse;
use crate::constraints::window::Window;
use crate::reason::Reason;
use crate::request::paths::{HostPattern, PathPattern};
use crate::request::view::RequestView;
use serde_json::Value;
use std::mem::size_of;

/// Compiled constraints of one token. Each kind is parsed and checked by its
/// own module; `None` means the token does not constrain that kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Constraints {
    /// The first key the filter does not understand, if any.
    pub unknown: Option<String>,
    /// `ip` ([`ip`]).
    pub ip: Option<Vec<IpRange>>,
    /// `methods` ([`methods`]).
    pub methods: Option<Vec<String>>,
    /// `paths` ([`mod@paths`]).
    pub paths: Option<Vec<PathPattern>>,
    /// `hosts` ([`hosts`]).
    pub hosts: Option<Vec<HostPattern>>,
    /// `region` ([`region`]).
    pub region: Option<Vec<String>>,
    /// `window` ([`window`]).
    pub window: Option<Vec<Window>>,
    /// `max_uses` ([`max_uses`]).
    pub max_uses: Option<u64>,
    /// (custom constraint name, allowed values), in configuration order ([`custom`]).
    pub custom: Vec<(String, Vec<String>)>,
}

impl Constraints {
    /// Compiles the constraints object. `custom_names` are the configured custom
    /// constraint names; `has_jti` says whether the token carries a string `jti`.
    /// The error is a short description for the log (never token content).
    pub fn parse(value: &Value, custom_names: &[&str], has_jti: bool) -> Result<Constraints, String> {
        let obj = value.as_object().ok_or("the constraints claim is not an object")?;
        let mut c = Constraints::default();
        for (key, v) in obj {
            match key.as_str() {
                "ip" => c.ip = Some(ip::parse(v)?),
                "methods" => c.methods = Some(methods::parse(v)?),
                "paths" => c.paths = Some(paths::parse(v)?),
                "hosts" => c.hosts = Some(hosts::parse(v)?),
                "region" => c.region = Some(region::parse(v)?),
                "window" => c.window = Some(window::parse(v)?),
                "max_uses" => c.max_uses = Some(max_uses::parse(v, has_jti)?),
                name if custom_names.contains(&name) => c.custom.push((name.to_owned(), custom::parse(key, v)?)),
                other => {
                    if c.unknown.is_none() {
                        c.unknown = Some(other.to_owned());
                    }
                }
            }
        }
        // Evaluate custom constraints in configuration order, whatever the token's order.
        c.custom.sort_by_key(|(name, _)| custom_names.iter().position(|n| n == name));
        Ok(c)
    }

    /// Checks every constraint against the request, in SPEC §3's table order:
    /// `unknown_constraint` first, then `ip`, `methods`, `paths`, `hosts`,
    /// `region`, `window`, the custom constraints, and `max_uses` last, so that a
    /// refused request uses nothing. The first failure decides.
    pub fn check(&self, view: &RequestView<'_>, token: TokenUse<'_>, now: i64) -> Result<(), Reason> {
        if self.unknown.is_some() {
            return Err(Reason::UnknownConstraint);
        }
        if let Some(ranges) = &self.ip {
            ip::check(ranges, view)?;
        }
        if let Some(list) = &self.methods {
            methods::check(list, view)?;
        }
        if let Some(patterns) = &self.paths {
            paths::check(patterns, view)?;
        }
        if let Some(patterns) = &self.hosts {
            hosts::check(patterns, view)?;
        }
        if let Some(regions) = &self.region {
            region::check(regions, view)?;
        }
        if let Some(windows) = &self.window {
            window::check(windows, now)?;
        }
        for (name, allowed) in &self.custom {
            custom::check(name, allowed, view)?;
        }
        if let Some(limit) = self.max_uses {
            max_uses::check(limit, token, now)?;
        }
        Ok(())
    }

    /// An upper estimate of the heap these compiled constraints hold (for the
    /// verified-token cache's memory bound): every buffer at its capacity, plus
    /// allocator overhead per allocation.
    pub fn heap_bytes(&self) -> usize {
        let mut sum = opt_string_bytes(self.unknown.as_ref());
        sum = sum.saturating_add(self.ip.as_ref().map_or(0, vec_bytes));
        sum = sum.saturating_add(self.methods.as_ref().map_or(0, strings_bytes));
        if let Some(list) = &self.paths {
            sum = list.iter().fold(sum.saturating_add(vec_bytes(list)), |s, p| s.saturating_add(p.heap_bytes()));
        }
        if let Some(list) = &self.hosts {
            sum = list.iter().fold(sum.saturating_add(vec_bytes(list)), |s, h| s.saturating_add(h.heap_bytes()));
        }
        sum = sum.saturating_add(self.region.as_ref().map_or(0, strings_bytes));
        sum = sum.saturating_add(self.window.as_ref().map_or(0, vec_bytes));
        self.custom.iter().fold(sum.saturating_add(vec_bytes(&self.custom)), |s, (name, allowed)| {
            s.saturating_add(string_bytes(name)).saturating_add(strings_bytes(allowed))
        })
    }
}

/// Allocator bookkeeping per allocation (headers, rounding).
const ALLOCATION_OVERHEAD: usize = 16;

fn vec_bytes<T>(v: &Vec<T>) -> usize {
    v.capacity().saturating_mul(size_of::<T>()).saturating_add(ALLOCATION_OVERHEAD)
}

fn string_bytes(s: &String) -> usize {
    s.capacity().saturating_add(ALLOCATION_OVERHEAD)
}

fn opt_string_bytes(s: Option<&String>) -> usize {
    s.map_or(0, string_bytes)
}

fn strings_bytes(v: &Vec<String>) -> usize {
    v.iter().fold(vec_bytes(v), |sum, s| sum.saturating_add(string_bytes(s)))
}

/// A list of strings, or a single string as a one-element list.
fn strings<'a>(key: &str, v: &'a Value) -> Result<Vec<&'a str>, String> {
    match v {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(items) => {
            items.iter().map(|i| i.as_str().ok_or_else(|| format!("{key}: list items must be strings"))).collect()
        }
        _ => Err(format!("{key}: must be a string or a list of strings")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Constraints, String> {
        Constraints::parse(&v, &["tenant"], true)
    }

    #[test]
    fn parses_every_builtin_and_custom_key() {
        let c = parse(json!({
            "ip": ["10.0.0.0/8", "::1"], "methods": "GET", "paths": ["/v1/**"], "hosts": ["*.example.com"],
            "region": ["eu-west-1"], "window": [{"start": "09:00", "end": "17:00"}], "max_uses": 3, "tenant": "acme"
        }))
        .unwrap();
        assert_eq!(c.ip.unwrap().len(), 2);
        assert_eq!(c.methods.unwrap(), vec!["GET"]);
        assert_eq!(c.max_uses, Some(3));
        assert_eq!(c.custom, vec![("tenant".to_string(), vec!["acme".to_string()])]);
        assert_eq!(c.unknown, None);
    }

    #[test]
    fn unknown_keys_are_remembered_not_ignored() {
        let c = parse(json!({"ip_range": ["10.0.0.0/8"], "methods": ["GET"]})).unwrap();
        assert_eq!(c.unknown.as_deref(), Some("ip_range"));
    }

    #[test]
    fn empty_lists_stay_empty() {
        let c = parse(json!({"ip": [], "methods": []})).unwrap();
        assert_eq!(c.ip, Some(vec![]));
        assert_eq!(c.methods, Some(vec![]));
    }

    #[test]
    fn malformed_values_are_errors() {
        for bad in [
            json!([]),
            json!("ip"),
            json!({"ip": ["010.0.0.0/8"]}),
            json!({"ip": 10}),
            json!({"methods": [1]}),
            json!({"paths": ["no-slash"]}),
            json!({"paths": ["/a/../b"]}),
            json!({"hosts": ["a*.b"]}),
            json!({"region": {"x": 1}}),
            json!({"window": "always"}),
            json!({"window": [{"start": "25:00", "end": "01:00"}]}),
            json!({"max_uses": 0}),
            json!({"max_uses": -1}),
            json!({"max_uses": 1.5}),
            json!({"max_uses": "3"}),
            json!({"tenant": 7}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn max_uses_needs_a_jti() {
        assert!(Constraints::parse(&json!({"max_uses": 1}), &[], false).is_err());
    }

    fn check(
        c: &Constraints,
        host: &crate::request::view::test_host::TestHost,
        counter: &mut crate::request::host::MemoryCounter,
    ) -> Result<(), Reason> {
        use crate::config::{Attribute, ClientIpSource, RegionSource};
        let attributes = [("tenant".to_string(), Attribute::Header("x-tenant".into()))];
        let region = RegionSource::Header("x-region".into());
        let view = RequestView::new(host, ClientIpSource::Peer, Some(&region), &attributes);
        let token = TokenUse { counter, issuer: "https://idp", jti: Some("j"), expires_at: i64::MAX };
        c.check(&view, token, 1_796_032_800)
    }

    #[test]
    fn the_first_failing_constraint_in_table_order_decides() {
        use crate::request::host::MemoryCounter;
        use crate::request::view::test_host::TestHost;
        let all_fail = json!({
            "zzz": 1, "ip": ["10.0.0.0/8"], "methods": ["POST"], "paths": ["/a"], "hosts": ["b.example"],
            "region": ["eu"], "window": {"start": "00:00", "end": "00:01"}, "tenant": ["acme"], "max_uses": 1
        });
        // Remove one failing key at a time, in table order: the next one decides.
        let order = [
            ("zzz", Reason::UnknownConstraint),
            ("ip", Reason::Ip),
            ("methods", Reason::Method),
            ("paths", Reason::Path),
            ("hosts", Reason::Host),
            ("region", Reason::Region),
            ("window", Reason::Window),
            ("tenant", Reason::Custom),
        ];
        let host = TestHost::new("GET", "/x").header("x-tenant", "other").header("x-region", "us");
        let mut value = all_fail;
        for (key, reason) in order {
            let c = parse(value.clone()).unwrap();
            let mut counter = MemoryCounter::default();
            assert_eq!(check(&c, &host, &mut counter), Err(reason), "with {key}");
            value.as_object_mut().unwrap().remove(key);
        }
        // Only max_uses is left: it holds once, and a refused request counted nothing.
        let c = parse(value).unwrap();
        let mut counter = MemoryCounter::default();
        assert_eq!(check(&c, &host, &mut counter), Ok(()));
        assert_eq!(check(&c, &host, &mut counter), Err(Reason::MaxUses));
    }

    #[test]
    fn a_refused_request_uses_nothing() {
        use crate::request::host::MemoryCounter;
        use crate::request::view::test_host::TestHost;
        let c = parse(json!({"methods": ["GET"], "max_uses": 1})).unwrap();
        let mut counter = MemoryCounter::default();
        assert_eq!(check(&c, &TestHost::new("POST", "/"), &mut counter), Err(Reason::Method));
        assert_eq!(check(&c, &TestHost::new("GET", "/"), &mut counter), Ok(()));
        assert_eq!(check(&c, &TestHost::new("GET", "/"), &mut counter), Err(Reason::MaxUses));
    }

    #[test]
    fn no_constraints_hold_for_every_request() {
        use crate::request::host::MemoryCounter;
        use crate::request::view::test_host::TestHost;
        let host = TestHost::default();
        assert_eq!(check(&Constraints::default(), &host, &mut MemoryCounter::default()), Ok(()));
    }

    #[test]
    fn the_heap_estimate_grows_with_every_kind() {
        let empty = Constraints::default().heap_bytes();
        let one = parse(json!({"ip": "10.0.0.0/8"})).unwrap().heap_bytes();
        let many = parse(json!({"ip": vec!["10.0.0.0/8"; 100]})).unwrap().heap_bytes();
        assert!(empty < one && one < many, "{empty} {one} {many}");
        assert!(many >= 100 * size_of::<IpRange>());
        for value in [
            json!({"methods": ["GET"]}),
            json!({"paths": ["/a/b/c"]}),
            json!({"hosts": ["a.example.com"]}),
            json!({"region": ["eu"]}),
            json!({"window": {"start": "09:00", "end": "10:00"}}),
            json!({"tenant": ["acme"]}),
            json!({"unknown": 1}),
        ] {
            let c = parse(value.clone()).unwrap();
            assert!(c.heap_bytes() > empty, "{value}");
        }
        let long = parse(json!({"paths": [format!("/{}", "a".repeat(5000))]})).unwrap();
        assert!(long.heap_bytes() >= 5000);
    }
}
