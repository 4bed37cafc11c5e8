//! The plugin configuration exactly as written (SPEC §2): strict serde types.
//!
//! Every struct denies unknown fields, so a misspelt option is refused at load
//! instead of being silently ignored. The compile step (`compile.rs`) turns this into the
//! immutable form used per request.

use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub providers: Vec<RawProvider>,
    pub token_from: Option<Vec<RawTokenSource>>,
    pub clock_skew_seconds: Option<u64>,
    pub require_expiration: Option<bool>,
    pub max_lifetime_seconds: Option<u64>,
    pub required_typ: Option<String>,
    pub max_token_bytes: Option<usize>,
    pub claim_names: Option<RawClaimNames>,
    pub client_ip: Option<RawClientIp>,
    pub region: Option<RawRegion>,
    pub custom_constraints: Option<std::collections::BTreeMap<String, RawAttribute>>,
    pub rules: Option<Vec<RawRule>>,
    pub default_rule: Option<RawDefaultRule>,
    pub forward: Option<RawForward>,
    pub mode: Option<RawMode>,
    pub cache: Option<RawCache>,
    pub response: Option<RawResponse>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    pub issuer: String,
    pub audiences: Option<Vec<String>>,
    /// A JWKS object, or the same as a JSON string.
    pub jwks: Option<Value>,
    pub pem_keys: Option<Vec<RawPemKey>>,
    pub remote_jwks: Option<RawRemoteJwks>,
    pub algorithms: Option<Vec<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawPemKey {
    pub kid: Option<String>,
    pub alg: String,
    pub pem: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawRemoteJwks {
    pub cluster: String,
    pub authority: Option<String>,
    pub path: Option<String>,
    pub discovery_path: Option<String>,
    pub refresh_seconds: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub min_refetch_seconds: Option<u64>,
}

/// `{"header": name, "prefix": p}`, `{"cookie": name}` or `{"query": name}`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawTokenSource {
    pub header: Option<String>,
    pub prefix: Option<String>,
    pub cookie: Option<String>,
    pub query: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawClaimNames {
    pub roles: Option<String>,
    pub scopes: Option<String>,
    pub constraints: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawClientIp {
    pub from: String,
    pub trusted_hops: Option<u32>,
}

/// `{"value": v}`, `{"header": h}` or `{"node_metadata": key}`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawRegion {
    pub value: Option<String>,
    pub header: Option<String>,
    pub node_metadata: Option<String>,
}

/// `{"header": h}`, `{"query": n}` or `{"path_segment": i}`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawAttribute {
    pub header: Option<String>,
    pub query: Option<String>,
    pub path_segment: Option<usize>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(rename = "match")]
    pub match_: Option<RawMatch>,
    pub auth: Option<RawAuth>,
    pub require: Option<RawRequire>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawDefaultRule {
    pub auth: Option<RawAuth>,
    pub require: Option<RawRequire>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub path: Option<String>,
    pub methods: Option<Vec<String>>,
    pub hosts: Option<Vec<String>>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawAuth {
    Required,
    Optional,
    None,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRequire {
    pub issuers: Option<Vec<String>>,
    pub roles_any: Option<Vec<String>>,
    pub roles_all: Option<Vec<String>>,
    pub scopes_any: Option<Vec<String>>,
    pub scopes_all: Option<Vec<String>>,
    pub claims: Option<Vec<RawClaimCheck>>,
}

/// One of `equals`, `one_of`, `equals_header`, `present` next to `claim`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawClaimCheck {
    pub claim: String,
    pub equals: Option<Value>,
    pub one_of: Option<Vec<Value>>,
    pub equals_header: Option<String>,
    pub present: Option<bool>,
    /// Extension: the claim is a string that starts with this (e.g. a SPIFFE ID prefix for `sub`).
    pub prefix: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawForward {
    pub claims_to_headers: Option<Vec<RawClaimToHeader>>,
    pub payload_header: Option<String>,
    pub remove_token: Option<bool>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawClaimToHeader {
    pub claim: String,
    pub header: String,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawMode {
    Enforce,
    DryRun,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub max_entries: Option<usize>,
    /// Extension: an upper bound on the cache's memory (estimated heap bytes).
    pub max_bytes: Option<usize>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawResponse {
    pub realm: Option<String>,
    pub detail: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_and_null_options_are_none_and_unknown_fields_are_refused() {
        let raw: RawConfig = serde_json::from_str(r#"{"providers": [{"name": "p", "issuer": "i"}], "mode": null}"#)
            .expect("a minimal configuration parses");
        assert!(raw.token_from.is_none() && raw.rules.is_none() && raw.mode.is_none() && raw.cache.is_none());
        let p = raw.providers.first().expect("one provider");
        assert!(p.jwks.is_none() && p.audiences.is_none() && p.remote_jwks.is_none());
        let rule: RawRule = serde_json::from_str("{}").expect("an empty rule parses");
        assert!(rule.match_.is_none() && rule.auth.is_none() && rule.require.is_none());
        for text in [
            r#"{"providers": [], "extra": 1}"#,
            r#"{"providers": [{"name": "p", "issuer": "i", "extra": 1}]}"#,
            r#"{"providers": [], "rules": [{"match": {"extra": 1}}]}"#,
            r#"{"providers": [], "cache": {"extra": 1}}"#,
        ] {
            assert!(serde_json::from_str::<RawConfig>(text).is_err(), "{text}");
        }
    }
}
