//! Rule selection (SPEC §2 `rules`): the first rule whose `match` holds for the
//! request, else the default rule. A rule that matches on path refuses a path
//! not in normal form (`path_not_normalized`) once its method and host match.

use crate::config::{Rule, RuleMatch};
use crate::reason::Reason;
use crate::request::view::RequestView;

/// The first rule in `rules` whose `match` holds, else `default_rule`.
pub fn select<'c>(rules: &'c [Rule], default_rule: &'c Rule, view: &RequestView<'_>) -> Result<Selected<'c>, Reason> {
    for (index, rule) in rules.iter().enumerate() {
        if matches(&rule.matcher, view)? {
            return Ok(Selected { rule, index: Some(index) });
        }
    }
    Ok(Selected { rule: default_rule, index: None })
}

/// The rule that decides a request.
#[derive(Debug, Clone, Copy)]
pub struct Selected<'c> {
    /// The rule.
    pub rule: &'c Rule,
    /// Its index in `rules`; `None` for `default_rule`.
    pub index: Option<usize>,
}

/// True when every part of `m` holds: methods, then hosts, then the path (read
/// only when the others hold, so an unrelated rule never refuses a path).
fn matches(m: &RuleMatch, view: &RequestView<'_>) -> Result<bool, Reason> {
    if let Some(methods) = &m.methods {
        let method = view.method().unwrap_or("");
        if !methods.iter().any(|x| x == method) {
            return Ok(false);
        }
    }
    if let Some(hosts) = &m.hosts {
        let host = view.host_name().unwrap_or("");
        if !hosts.iter().any(|h| h.matches(host)) {
            return Ok(false);
        }
    }
    if let Some(pattern) = &m.path {
        return Ok(pattern.matches(view.normalized_path()?));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Auth;
    use crate::policy::test_config;
    use crate::request::view::test_host::TestHost;
    use serde_json::json;

    #[test]
    fn the_first_matching_rule_applies() {
        let config = test_config(json!({
            "rules": [
                {"match": {"path": "/healthz", "methods": ["GET"]}, "auth": "none"},
                {"match": {"hosts": ["admin.example.com"]}, "require": {"roles_any": ["admin"]}},
                {"match": {"path": "/public/**"}, "auth": "optional"},
                {"match": {"methods": ["DELETE"], "path": "/v1/**"}, "require": {"roles_all": ["deleter"]}},
            ],
            "default_rule": {"auth": "required"}
        }));
        let rule = |i: usize| Ok(config.rules.get(i).unwrap());
        let default = Ok(&config.default_rule);
        // (method, path, authority, want)
        let table: Vec<(&str, &str, &str, Result<&Rule, Reason>)> = vec![
            ("GET", "/healthz", "api.example.com", rule(0)),
            ("GET", "/healthz?x=1", "api.example.com", rule(0)),
            ("POST", "/healthz", "api.example.com", default),
            ("GET", "/healthz/x", "api.example.com", default),
            ("GET", "/healthz", "ADMIN.example.com.:443", rule(0)),
            ("GET", "/x", "ADMIN.example.com.:443", rule(1)),
            ("GET", "/public/a/b", "api.example.com", rule(2)),
            ("GET", "/public", "api.example.com", rule(2)),
            ("DELETE", "/v1/orders", "api.example.com", rule(3)),
            ("DELETE", "/v2/orders", "api.example.com", default),
            // A path rule refuses a path not in normal form…
            ("GET", "/public/../admin", "api.example.com", Err(Reason::PathNotNormalized)),
            ("GET", "//healthz", "api.example.com", Err(Reason::PathNotNormalized)),
            // …unless an earlier rule matched without the path, or the rule's method does not match.
            ("POST", "/a//b", "admin.example.com", rule(1)),
            ("PUT", "/healthz/..", "h", Err(Reason::PathNotNormalized)),
        ];
        for (method, path, authority, want) in table {
            let host = TestHost::new(method, path).without(":authority").header(":authority", authority);
            let got = select(&config.rules, &config.default_rule, &host.view());
            assert_eq!(got.map(|s| s.rule), want, "{method} {path} {authority}");
            if let (Ok(selected), Ok(rule)) = (got, want) {
                let index = config.rules.iter().position(|r| std::ptr::eq(r, rule));
                assert_eq!(selected.index, index, "{method} {path}: the index names the rule (None: default)");
            }
        }
        assert_eq!(config.rules.first().map(|r| r.auth), Some(Auth::None));
    }

    #[test]
    fn without_path_rules_no_path_is_refused() {
        let config = test_config(json!({"rules": [{"match": {"methods": ["GET"]}, "auth": "none"}]}));
        for (method, want) in [("GET", Auth::None), ("POST", Auth::Required)] {
            let host = TestHost::new(method, "/a/../b;x");
            let rule = select(&config.rules, &config.default_rule, &host.view()).unwrap().rule;
            assert_eq!(rule.auth, want, "{method}");
        }
    }

    #[test]
    fn absent_method_and_authority_match_nothing_listed() {
        let config = test_config(json!({"rules": [
            {"match": {"methods": ["GET"]}, "auth": "none"},
            {"match": {"hosts": ["api.example.com"]}, "auth": "none"}
        ]}));
        let host = TestHost::default().header(":path", "/");
        let selected = select(&config.rules, &config.default_rule, &host.view()).unwrap();
        assert!(std::ptr::eq(selected.rule, &config.default_rule));
        assert_eq!(selected.index, None);
    }
}
