//! The `hosts` constraint (SPEC §3): `:authority` without port, ASCII-lowercased,
//! equals one of the listed host patterns ([`HostPattern`]).

use crate::reason::Reason;
use crate::request::paths::HostPattern;
use crate::request::view::RequestView;
use serde_json::Value;

/// Compiles the `hosts` value: a list of host patterns, or a single one.
pub fn parse(value: &Value) -> Result<Vec<HostPattern>, String> {
    super::strings("hosts", value)?
        .into_iter()
        .map(|s| HostPattern::parse(s).map_err(|_| "hosts: malformed pattern".to_string()))
        .collect()
}

/// Holds when the request's host name matches one of `patterns`; a request
/// without a single `:authority` is refused.
pub fn check(patterns: &[HostPattern], view: &RequestView<'_>) -> Result<(), Reason> {
    let host = view.host_name().ok_or(Reason::Host)?;
    if patterns.iter().any(|h| h.matches(host)) {
        Ok(())
    } else {
        Err(Reason::Host)
    }
}

/// Whether `child` allows no host `parent` refuses (SPEC §16): every child
/// pattern lies inside a parent pattern ([`HostPattern::within`]). A value that
/// does not parse is not within (fail closed).
pub fn within(parent: &Value, child: &Value) -> bool {
    let (Ok(parent), Ok(child)) = (parse(parent), parse(child)) else {
        return false;
    };
    child.iter().all(|c| parent.iter().any(|p| c.within(p)))
}

impl super::Footprint for HostPattern {
    fn heap_bytes(&self) -> usize {
        HostPattern::heap_bytes(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::view::test_host::TestHost;
    use serde_json::json;

    #[test]
    fn the_host_must_match_one_pattern() {
        // (constraint value, :authority or None for none, want)
        let table: &[(Value, Option<&str>, Result<(), Reason>)] = &[
            (json!(["api.example.com"]), Some("api.example.com"), Ok(())),
            (json!("api.example.com"), Some("API.Example.com:8443"), Ok(())),
            (json!(["api.example.com"]), Some("api.example.com."), Ok(())),
            (json!(["api.example.com"]), Some("api.example.com.."), Err(Reason::Host)),
            (json!(["*.example.com"]), Some("x.example.com"), Ok(())),
            (json!(["*.example.com"]), Some("example.com"), Err(Reason::Host)),
            (json!(["*.example.com"]), Some("a.b.example.com"), Err(Reason::Host)),
            (json!(["[::1]"]), Some("[::1]:80"), Ok(())),
            (json!([]), Some("api.example.com"), Err(Reason::Host)),
            (json!(["api.example.com"]), None, Err(Reason::Host)),
        ];
        for (value, authority, want) in table {
            let patterns = parse(value).unwrap();
            let mut host = TestHost::new("GET", "/").without(":authority");
            if let Some(a) = authority {
                host = host.header(":authority", a);
            }
            assert_eq!(check(&patterns, &host.view()), *want, "{value} {authority:?}");
        }
    }

    #[test]
    fn malformed_constraint_values_are_refused() {
        for bad in [json!(["a*.example.com"]), json!(["example.com:443"]), json!([""]), json!([1]), json!(true)] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }
}
