//! The `paths` constraint (SPEC §3): the request path matches one of the listed
//! patterns ([`PathPattern`]). A path not in normal form is refused with
//! `path_not_normalized` before any pattern is tried.

use crate::reason::Reason;
use crate::request::paths::PathPattern;
use crate::request::view::RequestView;
use serde_json::Value;

/// Compiles the `paths` value: a list of path patterns, or a single one.
pub fn parse(value: &Value) -> Result<Vec<PathPattern>, String> {
    super::strings("paths", value)?
        .into_iter()
        .map(|s| PathPattern::parse(s).map_err(|_| "paths: malformed pattern".to_string()))
        .collect()
}

/// Holds when the normalised request path matches one of `patterns`.
pub fn check(patterns: &[PathPattern], view: &RequestView<'_>) -> Result<(), Reason> {
    let path = view.normalized_path()?;
    if patterns.iter().any(|p| p.matches(path)) {
        Ok(())
    } else {
        Err(Reason::Path)
    }
}

/// Whether `child` allows no path `parent` refuses (SPEC §16): every child
/// pattern lies inside a parent pattern ([`PathPattern::within`]). A value that
/// does not parse is not within (fail closed).
pub fn within(parent: &Value, child: &Value) -> bool {
    let (Ok(parent), Ok(child)) = (parse(parent), parse(child)) else {
        return false;
    };
    child.iter().all(|c| parent.iter().any(|p| c.within(p)))
}

impl super::Footprint for PathPattern {
    fn heap_bytes(&self) -> usize {
        PathPattern::heap_bytes(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::view::test_host::TestHost;
    use serde_json::json;

    #[test]
    fn the_path_must_match_one_pattern() {
        // (constraint value, :path, want)
        let table: &[(Value, &str, Result<(), Reason>)] = &[
            (json!(["/v1/orders/**"]), "/v1/orders/7", Ok(())),
            (json!("/v1/orders/**"), "/v1/orders", Ok(())),
            (json!(["/v1/orders/**"]), "/v1/orders/7?x=/admin", Ok(())),
            (json!(["/v1/orders/**"]), "/v1/ordersX", Err(Reason::Path)),
            (json!(["/a/*/c"]), "/a/x/c", Ok(())),
            (json!(["/a/*/c"]), "/a/x/y/c", Err(Reason::Path)),
            (json!(["/a", "/b"]), "/b", Ok(())),
            (json!(["/a"]), "/A", Err(Reason::Path)),
            (json!([]), "/a", Err(Reason::Path)),
            (json!(["/**"]), "/a//b", Err(Reason::PathNotNormalized)),
            (json!(["/**"]), "/v1/orders/../admin", Err(Reason::PathNotNormalized)),
            (json!(["/**"]), "/a/%2F", Err(Reason::PathNotNormalized)),
            (json!([]), "/a;x", Err(Reason::PathNotNormalized)),
        ];
        for (value, path, want) in table {
            let patterns = parse(value).unwrap();
            let host = TestHost::new("GET", path);
            assert_eq!(check(&patterns, &host.view()), *want, "{value} {path}");
        }
    }

    #[test]
    fn malformed_constraint_values_are_refused() {
        for bad in [json!(["no-slash"]), json!(["/a/../b"]), json!(["/a/**/b"]), json!([1]), json!(7)] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }
}
