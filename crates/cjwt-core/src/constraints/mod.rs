//! The token's constraints claim (SPEC §3), compiled once per verified token.
//!
//! Must-understand: a key that is neither built-in nor a configured custom
//! constraint is remembered and refuses every request (`unknown_constraint`). A
//! known key with a value of the wrong shape makes the whole token
//! `malformed_constraint`. Lists mean "any of"; an empty list allows nothing; a
//! single string is a one-element list.

pub mod ip;
pub mod tz;
#[rustfmt::skip]
pub mod tzdb;
pub mod window;

use crate::constraints::ip::IpRange;
use crate::constraints::window::Window;
use crate::request::paths::{HostPattern, PathPattern};
use serde_json::{Map, Value};

/// Compiled constraints of one token.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Constraints {
    /// The first key the filter does not understand, if any.
    pub unknown: Option<String>,
    pub ip: Option<Vec<IpRange>>,
    pub methods: Option<Vec<String>>,
    pub paths: Option<Vec<PathPattern>>,
    pub hosts: Option<Vec<HostPattern>>,
    pub region: Option<Vec<String>>,
    pub window: Option<Vec<Window>>,
    pub max_uses: Option<u64>,
    /// (custom constraint name, allowed values), in configuration order.
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
                "ip" => {
                    let list = strings(key, v)?;
                    c.ip = Some(
                        list.iter()
                            .map(|s| IpRange::parse(s).ok_or_else(|| "ip: malformed address or range".to_string()))
                            .collect::<Result<_, _>>()?,
                    );
                }
                "methods" => c.methods = Some(strings(key, v)?.into_iter().map(str::to_owned).collect()),
                "paths" => {
                    let list = strings(key, v)?;
                    c.paths = Some(
                        list.iter()
                            .map(|s| PathPattern::parse(s).map_err(|_| "paths: malformed pattern".to_string()))
                            .collect::<Result<_, _>>()?,
                    );
                }
                "hosts" => {
                    let list = strings(key, v)?;
                    c.hosts = Some(
                        list.iter()
                            .map(|s| HostPattern::parse(s).map_err(|_| "hosts: malformed pattern".to_string()))
                            .collect::<Result<_, _>>()?,
                    );
                }
                "region" => c.region = Some(strings(key, v)?.into_iter().map(str::to_owned).collect()),
                "window" => {
                    let list: Vec<&Value> = match v {
                        Value::Array(items) => items.iter().collect(),
                        Value::Object(_) => vec![v],
                        _ => return Err("window: not a list of windows".into()),
                    };
                    c.window = Some(
                        list.into_iter()
                            .map(|w| Window::parse(w).map_err(|e| format!("window: {e}")))
                            .collect::<Result<_, _>>()?,
                    );
                }
                "max_uses" => {
                    let n = v.as_u64().filter(|n| *n >= 1).ok_or("max_uses: not an integer >= 1")?;
                    if !has_jti {
                        return Err("max_uses: the token has no string `jti`".into());
                    }
                    c.max_uses = Some(n);
                }
                name if custom_names.contains(&name) => {
                    c.custom.push((name.to_owned(), strings(key, v)?.into_iter().map(str::to_owned).collect()));
                }
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

/// Looks a claim up by name: the exact member first (claim names such as
/// `https://example.com/roles` contain dots), else as a dotted path through
/// nested objects (`realm_access.roles`).
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    lookup_nested(claims, path)
}

/// The two readings of a dotted name disagree (see [`lookup_unambiguous`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ambiguous;

/// Like [`lookup`], but when the exact member and the nested path both exist
/// with different values, neither is chosen. For the constraints claim, where a
/// literal `"ext.cnst": {}` must not shadow `ext: {cnst: {...}}` (SEC-12.10).
pub fn lookup_unambiguous<'a>(claims: &'a Map<String, Value>, path: &str) -> Result<Option<&'a Value>, Ambiguous> {
    let exact = claims.get(path);
    let nested = if path.contains('.') { lookup_nested(claims, path) } else { None };
    match (exact, nested) {
        (Some(a), Some(b)) if a != b => Err(Ambiguous),
        (Some(v), _) | (None, Some(v)) => Ok(Some(v)),
        (None, None) => Ok(None),
    }
}

fn lookup_nested<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Constraints, String> {
        Constraints::parse(&v, &["tenant"], true)
    }

    #[test]
    fn a_literal_dotted_member_does_not_shadow_the_nested_claim() {
        let both = json!({"ext.cnst": {}, "ext": {"cnst": {"ip": ["10.0.0.0/8"]}}});
        let both = both.as_object().unwrap();
        assert_eq!(lookup_unambiguous(both, "ext.cnst"), Err(Ambiguous));
        let same = json!({"ext.cnst": {"a": 1}, "ext": {"cnst": {"a": 1}}});
        assert_eq!(lookup_unambiguous(same.as_object().unwrap(), "ext.cnst"), Ok(Some(&json!({"a": 1}))));
        let nested = json!({"ext": {"cnst": {"a": 1}}});
        assert_eq!(lookup_unambiguous(nested.as_object().unwrap(), "ext.cnst"), Ok(Some(&json!({"a": 1}))));
        let literal = json!({"ext.cnst": {"a": 1}});
        assert_eq!(lookup_unambiguous(literal.as_object().unwrap(), "ext.cnst"), Ok(Some(&json!({"a": 1}))));
        assert_eq!(lookup_unambiguous(literal.as_object().unwrap(), "cnst"), Ok(None));
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

    #[test]
    fn lookup_prefers_exact_names_then_dotted_paths() {
        let claims = json!({"realm_access": {"roles": ["admin"]}, "https://x.io/roles": ["a"], "a": {"b": {"c": 1}}});
        let m = claims.as_object().unwrap();
        assert_eq!(lookup(m, "realm_access.roles"), Some(&json!(["admin"])));
        assert_eq!(lookup(m, "https://x.io/roles"), Some(&json!(["a"])));
        assert_eq!(lookup(m, "a.b.c"), Some(&json!(1)));
        assert_eq!(lookup(m, "a.b.d"), None);
        assert_eq!(lookup(m, "a.b.c.d"), None);
    }
}
