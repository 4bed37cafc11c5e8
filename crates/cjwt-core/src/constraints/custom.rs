//! Custom constraints (SPEC §3, `custom_constraints`): the configured request
//! attribute (a header, a query parameter, or a path segment) equals one of the
//! listed strings. An absent, empty or ambiguous attribute is refused.

use crate::reason::Reason;
use crate::request::view::RequestView;
use serde_json::Value;

/// Compiles a custom constraint's value (`key` is its name, for the message):
/// a list of strings, or a single one.
pub fn parse(key: &str, value: &Value) -> Result<Vec<String>, String> {
    Ok(super::strings(key, value)?.into_iter().map(str::to_owned).collect())
}

/// Holds when the attribute configured for `name` equals one of `allowed`.
/// A path-segment attribute of a path not in normal form is `path_not_normalized`.
pub fn check(name: &str, allowed: &[String], view: &RequestView<'_>) -> Result<(), Reason> {
    let value = view.attribute(name)?.ok_or(Reason::Custom)?;
    if allowed.iter().any(|a| a == value) {
        Ok(())
    } else {
        Err(Reason::Custom)
    }
}

/// Whether the custom constraint `key`'s `child` value allows no attribute its
/// `parent` value refuses (SPEC §16): a subset. A value that does not parse is
/// not within (fail closed).
pub fn within(key: &str, parent: &Value, child: &Value) -> bool {
    match (parse(key, parent), parse(key, child)) {
        (Ok(parent), Ok(child)) => child.iter().all(|c| parent.contains(c)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Attribute, ClientIpSource};
    use crate::request::view::test_host::TestHost;
    use serde_json::json;

    #[test]
    fn the_attribute_must_equal_one() {
        let attributes = vec![
            ("tenant".to_string(), Attribute::Header("x-tenant".into())),
            ("ver".to_string(), Attribute::Query("v".into())),
            ("shard".to_string(), Attribute::PathSegment(1)),
        ];
        /// (name, constraint value, :path, x-tenant values, want)
        type Case<'a> = (&'a str, Value, &'a str, &'a [&'a str], Result<(), Reason>);
        let table: &[Case] = &[
            ("tenant", json!(["acme"]), "/t/s1", &["acme"], Ok(())),
            ("tenant", json!("acme"), "/t/s1", &["acme"], Ok(())),
            ("tenant", json!(["acme", "beta"]), "/t/s1", &["beta"], Ok(())),
            ("tenant", json!(["acme"]), "/t/s1", &["Acme"], Err(Reason::Custom)),
            ("tenant", json!(["acme"]), "/t/s1", &[], Err(Reason::Custom)),
            ("tenant", json!(["acme"]), "/t/s1", &["acme", "acme"], Err(Reason::Custom)),
            ("tenant", json!([]), "/t/s1", &["acme"], Err(Reason::Custom)),
            ("ver", json!(["2"]), "/t/s1?v=2", &[], Ok(())),
            ("ver", json!(["2"]), "/t/s1?v=2&v=3", &[], Err(Reason::Custom)),
            ("ver", json!([""]), "/t/s1?v=", &[], Err(Reason::Custom)),
            ("shard", json!(["s1"]), "/t/s1/x", &[], Ok(())),
            ("shard", json!(["s1"]), "/t", &[], Err(Reason::Custom)),
            ("shard", json!(["s1"]), "/t/./s1", &[], Err(Reason::PathNotNormalized)),
            ("unconfigured", json!(["x"]), "/t/s1", &[], Err(Reason::Custom)),
        ];
        for (name, value, path, tenants, want) in table {
            let allowed = parse(name, value).unwrap();
            let mut host = TestHost::new("GET", path);
            for t in *tenants {
                host = host.header("x-tenant", t);
            }
            let view = RequestView::new(&host, ClientIpSource::Peer, None, &attributes);
            assert_eq!(check(name, &allowed, &view), *want, "{name} {value} {path} {tenants:?}");
        }
    }

    #[test]
    fn malformed_constraint_values_are_refused() {
        for bad in [json!(7), json!([7]), json!({"a": "b"})] {
            assert!(parse("tenant", &bad).is_err(), "{bad}");
        }
    }
}
