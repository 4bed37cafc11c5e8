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
    #[serde(default)]
    pub token_from: Option<Vec<RawTokenSource>>,
    #[serde(default)]
    pub clock_skew_seconds: Option<u64>,
    #[serde(default)]
    pub require_expiration: Option<bool>,
    #[serde(default)]
    pub max_lifetime_seconds: Option<u64>,
    #[serde(default)]
    pub required_typ: Option<String>,
    #[serde(default)]
    pub max_token_bytes: Option<usize>,
    #[serde(default)]
    pub claim_names: Option<RawClaimNames>,
    #[serde(default)]
    pub client_ip: Option<RawClientIp>,
    #[serde(default)]
    pub region: Option<RawRegion>,
    #[serde(default)]
    pub custom_constraints: Option<std::collections::BTreeMap<String, RawAttribute>>,
    #[serde(default)]
    pub rules: Option<Vec<RawRule>>,
    #[serde(default)]
    pub default_rule: Option<RawDefaultRule>,
    #[serde(default)]
    pub forward: Option<RawForward>,
    #[serde(default)]
    pub mode: Option<RawMode>,
    #[serde(default)]
    pub cache: Option<RawCache>,
    #[serde(default)]
    pub response: Option<RawResponse>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    pub issuer: String,
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
    /// A JWKS object, or the same as a JSON string.
    #[serde(default)]
    pub jwks: Option<Value>,
    #[serde(default)]
    pub pem_keys: Option<Vec<RawPemKey>>,
    #[serde(default)]
    pub remote_jwks: Option<RawRemoteJwks>,
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawPemKey {
    #[serde(default)]
    pub kid: Option<String>,
    pub alg: String,
    pub pem: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawRemoteJwks {
    pub cluster: String,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub discovery_path: Option<String>,
    #[serde(default)]
    pub refresh_seconds: Option<u64>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub min_refetch_seconds: Option<u64>,
}

/// `{"header": name, "prefix": p}`, `{"cookie": name}` or `{"query": name}`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawTokenSource {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub cookie: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawClaimNames {
    #[serde(default)]
    pub roles: Option<String>,
    #[serde(default)]
    pub scopes: Option<String>,
    #[serde(default)]
    pub constraints: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawClientIp {
    pub from: String,
    #[serde(default)]
    pub trusted_hops: Option<u32>,
}

/// `{"value": v}`, `{"header": h}` or `{"node_metadata": key}`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawRegion {
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub node_metadata: Option<String>,
}

/// `{"header": h}`, `{"query": n}` or `{"path_segment": i}`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawAttribute {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub path_segment: Option<usize>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(rename = "match", default)]
    pub match_: Option<RawMatch>,
    #[serde(default)]
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub require: Option<RawRequire>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawDefaultRule {
    #[serde(default)]
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub require: Option<RawRequire>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    #[serde(default)]
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
    #[serde(default)]
    pub issuers: Option<Vec<String>>,
    #[serde(default)]
    pub roles_any: Option<Vec<String>>,
    #[serde(default)]
    pub roles_all: Option<Vec<String>>,
    #[serde(default)]
    pub scopes_any: Option<Vec<String>>,
    #[serde(default)]
    pub scopes_all: Option<Vec<String>>,
    #[serde(default)]
    pub claims: Option<Vec<RawClaimCheck>>,
}

/// One of `equals`, `one_of`, `equals_header`, `present` next to `claim`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawClaimCheck {
    pub claim: String,
    #[serde(default)]
    pub equals: Option<Value>,
    #[serde(default)]
    pub one_of: Option<Vec<Value>>,
    #[serde(default)]
    pub equals_header: Option<String>,
    #[serde(default)]
    pub present: Option<bool>,
    /// Extension: the claim is a string that starts with this (e.g. a SPIFFE ID prefix for `sub`).
    #[serde(default)]
    pub prefix: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawForward {
    #[serde(default)]
    pub claims_to_headers: Option<Vec<RawClaimToHeader>>,
    #[serde(default)]
    pub payload_header: Option<String>,
    #[serde(default)]
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
    #[serde(default)]
    pub max_entries: Option<usize>,
    /// Extension: an upper bound on the cache's memory (estimated heap bytes).
    #[serde(default)]
    pub max_bytes: Option<usize>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawResponse {
    #[serde(default)]
    pub realm: Option<String>,
    #[serde(default)]
    pub detail: Option<bool>,
}
