//! A rule's `require` (SPEC §2, §4): issuers, roles, scopes and claim checks, in
//! that order, over a verified token. The first failure decides (`issuer`,
//! `role`, `scope`, `claim`).

use crate::config::{ClaimCheck, Config, ProviderKind, Require};
use crate::reason::Reason;
use crate::request::view::RequestView;
use crate::token::claims::lookup;
use crate::token::verify::VerifiedToken;
use serde_json::Value;

/// Checks `require` against `token`. `config` names the providers and the roles
/// and scopes claims; `view` gives the headers that `equals_header` compares with.
pub fn check(config: &Config, require: &Require, token: &VerifiedToken, view: &RequestView<'_>) -> Result<(), Reason> {
    if let Some(issuers) = &require.issuers {
        let name = config.providers.get(token.provider).map(|p| p.name.as_str()).unwrap_or("");
        if !issuers.iter().any(|i| i == name) {
            return Err(Reason::Issuer);
        }
    }
    let roles = || string_set(lookup(&token.claims, &config.roles_claim), false);
    any_all(roles, require.roles_any.as_deref(), require.roles_all.as_deref(), Reason::Role)?;
    // A Txn-Token's purpose is its `scope` claim, whatever `claim_names.scopes` says (SPEC §14).
    let is_txn = config.providers.get(token.provider).is_some_and(|p| p.kind != ProviderKind::AccessToken);
    let scopes_claim = if is_txn { "scope" } else { config.scopes_claim.as_str() };
    let scopes = || string_set(lookup(&token.claims, scopes_claim), true);
    any_all(scopes, require.scopes_any.as_deref(), require.scopes_all.as_deref(), Reason::Scope)?;
    if let Some(workloads) = &require.workloads {
        let req_wl = token.claims.get("req_wl").and_then(Value::as_str);
        if !req_wl.is_some_and(|w| workloads.iter().any(|x| x == w)) {
            return Err(Reason::Workload);
        }
    }
    for claim in &require.claims {
        if !claim_holds(claim, token, view) {
            return Err(Reason::Claim);
        }
    }
    Ok(())
}

/// `any`: at least one listed value is held; `all`: every listed value is held.
/// `held` is read only when one of them is set. An empty `any` holds for nobody.
fn any_all<'t>(
    held: impl FnOnce() -> Vec<&'t str>,
    any: Option<&[String]>,
    all: Option<&[String]>,
    reason: Reason,
) -> Result<(), Reason> {
    if any.is_none() && all.is_none() {
        return Ok(());
    }
    let held = held();
    let has = |x: &String| held.contains(&x.as_str());
    if any.is_some_and(|any| !any.iter().any(has)) || all.is_some_and(|all| !all.iter().all(has)) {
        return Err(reason);
    }
    Ok(())
}

/// Roles or scopes: a string (space-delimited when `split`) or an array of strings.
fn string_set(value: Option<&Value>, split: bool) -> Vec<&str> {
    match value {
        Some(Value::String(s)) if split => s.split(' ').filter(|x| !x.is_empty()).collect(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// One `require.claims` entry.
fn claim_holds(check: &ClaimCheck, token: &VerifiedToken, view: &RequestView<'_>) -> bool {
    match check {
        ClaimCheck::Equals(path, want) => lookup(&token.claims, path) == Some(want),
        ClaimCheck::OneOf(path, options) => lookup(&token.claims, path).is_some_and(|v| options.contains(v)),
        ClaimCheck::EqualsHeader(path, header) => match (lookup(&token.claims, path), view.header(header)) {
            (Some(Value::String(claim)), Some(value)) => claim == value,
            _ => false,
        },
        ClaimCheck::Present(path) => lookup(&token.claims, path).is_some_and(|v| !v.is_null()),
        ClaimCheck::Prefix(path, prefix) => {
            lookup(&token.claims, path).and_then(Value::as_str).is_some_and(|v| v.starts_with(prefix.as_str()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_config;
    use crate::request::view::test_host::TestHost;
    use serde_json::json;

    /// The verdict of `require` (JSON, as in a rule) on a token with `claims`.
    fn verdict(require: Value, claims: Value, host: &TestHost) -> Result<(), Reason> {
        let remote = json!({"cluster": "idp", "path": "/jwks.json"});
        let config = test_config(json!({"default_rule": {"require": require},
            "providers": [{"name": "corp", "issuer": "https://idp.example.com", "remote_jwks": remote},
                {"name": "other", "issuer": "https://other.example.com", "remote_jwks": remote}],
            "claim_names": {"roles": "realm_access.roles", "scopes": "scope"}}));
        let token = VerifiedToken::for_tests(claims);
        check(&config, &config.default_rule.require, &token, &host.view())
    }

    #[test]
    fn roles_and_scopes_any_and_all() {
        let host = TestHost::new("GET", "/");
        let roles = |r: Value| json!({"realm_access": {"roles": r}, "scope": "read write  admin:x"});
        // (require, claims, want)
        let table: Vec<(Value, Value, Result<(), Reason>)> = vec![
            (json!({}), json!({}), Ok(())),
            (json!({"roles_any": ["a", "b"]}), roles(json!(["b"])), Ok(())),
            (json!({"roles_any": ["a"]}), roles(json!(["b"])), Err(Reason::Role)),
            (json!({"roles_all": ["a", "b"]}), roles(json!(["b", "a", "c"])), Ok(())),
            (json!({"roles_all": ["a", "b"]}), roles(json!(["a"])), Err(Reason::Role)),
            (json!({"roles_any": ["a"], "roles_all": ["b"]}), roles(json!(["a"])), Err(Reason::Role)),
            (json!({"roles_any": ["a b"]}), roles(json!("a b")), Ok(())),
            (json!({"roles_any": ["a"]}), roles(json!("a b")), Err(Reason::Role)),
            (json!({"roles_any": ["a"]}), json!({"realm_access.roles": ["a"]}), Ok(())),
            (json!({"roles_any": ["a"]}), json!({}), Err(Reason::Role)),
            (json!({"scopes_any": ["write"]}), roles(json!([])), Ok(())),
            (json!({"scopes_all": ["read", "admin:x"]}), roles(json!([])), Ok(())),
            (json!({"scopes_all": ["read", "delete"]}), roles(json!([])), Err(Reason::Scope)),
            (json!({"scopes_any": [""]}), roles(json!([])), Err(Reason::Scope)),
            (json!({"scopes_any": ["read"]}), json!({"scope": ["read"]}), Ok(())),
            (json!({"scopes_any": ["read"]}), json!({"scope": 7}), Err(Reason::Scope)),
            // Roles are checked before scopes.
            (json!({"roles_any": ["x"], "scopes_any": ["x"]}), roles(json!([])), Err(Reason::Role)),
        ];
        for (require, claims, want) in table {
            assert_eq!(verdict(require.clone(), claims.clone(), &host), want, "{require} {claims}");
        }
    }

    #[test]
    fn issuers_are_provider_names() {
        let host = TestHost::new("GET", "/");
        assert_eq!(verdict(json!({"issuers": ["corp"]}), json!({}), &host), Ok(()));
        assert_eq!(verdict(json!({"issuers": ["other"]}), json!({}), &host), Err(Reason::Issuer));
        assert_eq!(verdict(json!({"issuers": ["other"], "roles_any": ["x"]}), json!({}), &host), Err(Reason::Issuer));
    }

    #[test]
    fn claim_checks() {
        let host = TestHost::new("GET", "/").header("x-tenant", "acme").header("x-twice", "a").header("x-twice", "a");
        let claims = json!({"tenant": "acme", "n": 7, "null": null, "nested": {"org": "acme-eu"}, "twice": "a"});
        // (claim check, want)
        let table: Vec<(Value, Result<(), Reason>)> = vec![
            (json!({"claim": "tenant", "equals": "acme"}), Ok(())),
            (json!({"claim": "n", "equals": 7}), Ok(())),
            (json!({"claim": "n", "equals": "7"}), Err(Reason::Claim)),
            (json!({"claim": "tenant", "one_of": ["beta", "acme"]}), Ok(())),
            (json!({"claim": "tenant", "one_of": ["beta"]}), Err(Reason::Claim)),
            (json!({"claim": "tenant", "equals_header": "x-tenant"}), Ok(())),
            (json!({"claim": "nested.org", "equals_header": "x-tenant"}), Err(Reason::Claim)),
            (json!({"claim": "tenant", "equals_header": "x-missing"}), Err(Reason::Claim)),
            (json!({"claim": "twice", "equals_header": "x-twice"}), Err(Reason::Claim)),
            (json!({"claim": "n", "equals_header": "x-tenant"}), Err(Reason::Claim)),
            (json!({"claim": "tenant", "present": true}), Ok(())),
            (json!({"claim": "null", "present": true}), Err(Reason::Claim)),
            (json!({"claim": "absent", "present": true}), Err(Reason::Claim)),
            (json!({"claim": "nested.org", "prefix": "acme-"}), Ok(())),
            (json!({"claim": "nested.org", "prefix": "beta-"}), Err(Reason::Claim)),
            (json!({"claim": "n", "prefix": "7"}), Err(Reason::Claim)),
        ];
        for (claim, want) in table {
            assert_eq!(verdict(json!({"claims": [claim.clone()]}), claims.clone(), &host), want, "{claim}");
        }
    }
}
