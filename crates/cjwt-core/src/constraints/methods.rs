//! The `methods` constraint (SPEC §3): the request method equals one of the
//! listed names, exactly (case-sensitive).

use crate::reason::Reason;
use crate::request::view::RequestView;
use serde_json::Value;

/// Compiles the `methods` value: a list of method names, or a single one.
pub fn parse(value: &Value) -> Result<Vec<String>, String> {
    Ok(super::strings("methods", value)?.into_iter().map(str::to_owned).collect())
}

/// Holds when `:method` (present exactly once) equals one of `methods`.
pub fn check(methods: &[String], view: &RequestView<'_>) -> Result<(), Reason> {
    let method = view.method().ok_or(Reason::Method)?;
    if methods.iter().any(|m| m == method) {
        Ok(())
    } else {
        Err(Reason::Method)
    }
}

/// Whether `child` allows no method `parent` refuses (SPEC §16): its methods
/// are a subset. A value that does not parse is not within (fail closed).
pub fn within(parent: &Value, child: &Value) -> bool {
    match (parse(parent), parse(child)) {
        (Ok(parent), Ok(child)) => child.iter().all(|c| parent.contains(c)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::view::test_host::TestHost;
    use serde_json::json;

    #[test]
    fn the_method_must_equal_one_exactly() {
        // (constraint value, request method or None for no `:method`, want)
        let table: &[(Value, Option<&str>, Result<(), Reason>)] = &[
            (json!(["GET"]), Some("GET"), Ok(())),
            (json!("GET"), Some("GET"), Ok(())),
            (json!(["GET", "POST"]), Some("POST"), Ok(())),
            (json!(["GET"]), Some("POST"), Err(Reason::Method)),
            (json!(["GET"]), Some("get"), Err(Reason::Method)),
            (json!(["GET"]), Some("GET "), Err(Reason::Method)),
            (json!([]), Some("GET"), Err(Reason::Method)),
            (json!([""]), None, Err(Reason::Method)),
            (json!(["GET"]), None, Err(Reason::Method)),
        ];
        for (value, method, want) in table {
            let methods = parse(value).unwrap();
            let host = match method {
                Some(m) => TestHost::new(m, "/"),
                None => TestHost::new("GET", "/").without(":method"),
            };
            assert_eq!(check(&methods, &host.view()), *want, "{value} {method:?}");
        }
    }

    #[test]
    fn a_repeated_method_is_no_method() {
        let methods = parse(&json!(["GET"])).unwrap();
        let host = TestHost::new("GET", "/").header(":method", "GET");
        assert_eq!(check(&methods, &host.view()), Err(Reason::Method));
    }

    #[test]
    fn malformed_constraint_values_are_refused() {
        for bad in [json!(1), json!([1]), json!({"GET": true}), json!(null)] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }
}
