//! The compiled configuration: the immutable types the request path reads.
//!
//! Built only by [`Config::from_json`] / [`Config::from_plugin_bytes`]
//! (`load.rs`), which run the compile step (`compile.rs`) on the serde shapes of
//! [`super::raw`]; every value here has already been validated.

use crate::keys::algorithm::AlgSet;
use crate::keys::key::VerificationKey;
use crate::request::paths::{HostPattern, PathPattern};
use serde_json::Value;
use std::collections::HashMap;

/// A configuration error: the field path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Where a credential may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A request header (lowercase name); `prefix` is matched ASCII-case-insensitively.
    Header {
        name: String,
        prefix: String,
    },
    Cookie(String),
    Query(String),
}

/// How the client IP is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIpSource {
    /// The downstream peer (`source.address`).
    Peer,
    /// `x-forwarded-for`, trusting this many proxy hops in front of Envoy.
    ForwardedFor { trusted_hops: u32 },
}

/// Where the request's region comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionSource {
    Static(String),
    Header(String),
    NodeMetadata(String),
}

/// A request attribute that a custom constraint compares with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    Header(String),
    Query(String),
    PathSegment(usize),
}

/// A provider: an issuer and the keys that verify its tokens.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub audiences: Option<Vec<String>>,
    pub algorithms: AlgSet,
    /// `algorithms` as configured (`None`: not given). Fetched keys are parsed
    /// with it, so that an RSA key without `alg` means RS256 as inline (SEC-12.8).
    pub configured_algorithms: Option<AlgSet>,
    /// Keys with a `kid`.
    pub keys_by_kid: HashMap<String, VerificationKey>,
    /// All keys, for tokens without `kid`.
    pub keys: Vec<VerificationKey>,
    pub remote: Option<RemoteJwks>,
}

/// A remote JWKS source (fetched by the adapter through an Envoy cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub cluster: String,
    pub authority: String,
    pub source: JwksSource,
    pub refresh_seconds: u64,
    pub timeout_ms: u64,
    /// At most one fetch per this many seconds is triggered by unknown `kid`s.
    pub min_refetch_seconds: u64,
}

/// Where a remote key set is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// The JWKS path on the cluster.
    Path(String),
    /// An OIDC discovery document (`/.well-known/openid-configuration`) whose
    /// `jwks_uri` names the JWKS on the same authority.
    Discovery(String),
}

/// `auth` of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Required,
    Optional,
    None,
}

/// A claim check of `require.claims`.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimCheck {
    Equals(String, Value),
    OneOf(String, Vec<Value>),
    EqualsHeader(String, String),
    Present(String),
    /// The claim is a string starting with the prefix (non-empty).
    Prefix(String, String),
}

/// The `require` block of a rule: everything listed must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Require {
    pub issuers: Option<Vec<String>>,
    pub roles_any: Option<Vec<String>>,
    pub roles_all: Option<Vec<String>>,
    pub scopes_any: Option<Vec<String>>,
    pub scopes_all: Option<Vec<String>>,
    pub claims: Vec<ClaimCheck>,
}

/// A rule's `match`: all listed parts must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleMatch {
    pub path: Option<PathPattern>,
    pub methods: Option<Vec<String>>,
    pub hosts: Option<Vec<HostPattern>>,
}

/// A route rule (or the default rule, which matches everything).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub matcher: RuleMatch,
    pub auth: Auth,
    pub require: Require,
}

/// `forward`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forward {
    /// (claim path, lowercase header name)
    pub claims_to_headers: Vec<(String, String)>,
    pub payload_header: Option<String>,
    pub remove_token: bool,
}

/// `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    DryRun,
}

/// The compiled configuration.
#[derive(Debug)]
pub struct Config {
    pub providers: Vec<Provider>,
    pub token_from: Vec<TokenSource>,
    pub clock_skew_seconds: i64,
    pub require_expiration: bool,
    pub max_lifetime_seconds: Option<i64>,
    /// Lowercased, without an `application/` prefix.
    pub required_typ: Option<String>,
    pub max_token_bytes: usize,
    pub roles_claim: String,
    pub scopes_claim: String,
    pub constraints_claim: String,
    pub client_ip: ClientIpSource,
    pub region: Option<RegionSource>,
    pub custom_constraints: Vec<(String, Attribute)>,
    pub rules: Vec<Rule>,
    pub default_rule: Rule,
    pub forward: Forward,
    pub mode: Mode,
    pub cache_max_entries: usize,
    /// Memory bound of the cache in estimated heap bytes ([`crate::token::cache`]).
    pub cache_max_bytes: usize,
    pub realm: String,
    pub detail: bool,
}

impl Config {
    /// The rule that applies to a request, first match wins.
    pub fn rule_for(&self, index: Option<usize>) -> &Rule {
        index.and_then(|i| self.rules.get(i)).unwrap_or(&self.default_rule)
    }

    /// The provider whose issuer is `iss`.
    pub fn provider_for_issuer(&self, iss: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.issuer == iss)
    }
}
