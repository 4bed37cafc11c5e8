//! The compiled configuration: the immutable types the request path reads.
//!
//! Built only by [`Config::from_json`] / [`Config::from_plugin_bytes`]
//! (`load.rs`), which run the compile step (`compile.rs`) on the serde shapes of
//! [`super::raw`]; every value here has already been validated.

use super::denylist::DenyList;
use crate::keys::algorithm::AlgSet;
use crate::keys::key::VerificationKey;
use crate::request::host::Host;
use crate::request::paths::{HostPattern, PathPattern};
pub use crate::request::source::{Attribute, ClientIpSource, RegionSource, TokenSource};
use crate::request::view::RequestView;
pub use crate::usage::etcd::EtcdApi;
use serde_json::Value;
use std::collections::HashMap;

/// A configuration error: the field path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The path of the offending field, e.g. `providers[0].jwks.keys[1]`; `(root)` for the whole document.
    pub field: String,
    /// What is wrong with it, for the operator (no line or column).
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A provider: an issuer and the keys that verify its tokens.
#[derive(Debug, Clone)]
pub struct Provider {
    /// The unique provider name (`require.issuers`, logs, metrics).
    pub name: String,
    /// The exact `iss` of this provider's tokens.
    pub issuer: String,
    /// If set (never empty), the token `aud` must contain one of these.
    pub audiences: Option<Vec<String>>,
    /// The algorithms a token may use: `algorithms` if configured, else all
    /// for a remote key set, else the union of the inline keys' algorithms.
    pub algorithms: AlgSet,
    /// `algorithms` as configured (`None`: not given). Fetched keys are parsed
    /// with it, so that an RSA key without `alg` means RS256 as inline (SEC-12.8).
    pub configured_algorithms: Option<AlgSet>,
    /// Keys with a `kid`.
    pub keys_by_kid: HashMap<String, VerificationKey>,
    /// All keys, for tokens without `kid`.
    pub keys: Vec<VerificationKey>,
    /// The remote key set, if configured.
    pub remote: Option<RemoteJwks>,
    /// What the provider issues: access tokens, or Txn-Tokens (SPEC §14).
    pub kind: ProviderKind,
}

/// What a provider issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    /// Access tokens, selected by `iss`.
    AccessToken,
    /// Txn-Tokens, read from the `Txn-Token` header only and never selected by `iss`.
    TxnToken(TxnDomain),
}

/// `transaction_tokens.issue` (SPEC §14), compiled: what the gateway writes
/// in the Txn-Token of every request it allows.
#[derive(Debug, Clone)]
pub struct TxnIssue {
    /// `aud`.
    pub trust_domain: String,
    /// `req_wl`.
    pub workload: String,
    /// `scope` for rules that name no `txn_scope`.
    pub scope: Option<String>,
    /// `exp - iat`, seconds (1..=300).
    pub lifetime_seconds: i64,
    /// Self-issued: the signing key (never printed). `None` when exchanged.
    pub key: Option<crate::keys::signing::TxnSigningKey>,
    /// Exchanged: the Txn-Token Service. `None` when self-issued.
    pub exchange: Option<TxnExchange>,
    /// The JWS `kid`, if any.
    pub kid: Option<String>,
    /// `iss`, if any.
    pub issuer: Option<String>,
}

/// `transaction_tokens.issue.exchange` (SPEC §14), compiled: where the
/// gateway exchanges the inbound token for a Txn-Token, and whose keys verify
/// the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnExchange {
    /// The Envoy cluster of the Txn-Token Service.
    pub cluster: String,
    /// The call's `:authority`.
    pub authority: String,
    /// The token endpoint's `:path`.
    pub path: String,
    /// How long a request waits for the answer, ms.
    pub timeout_ms: u64,
    /// The `kind: txn_token` provider (index) whose keys verify the answer:
    /// the one whose trust domain is the issued Txn-Tokens'.
    pub provider: usize,
}

/// The trust domain a Txn-Token provider vouches for (SPEC §14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDomain {
    /// A Txn-Token's `aud` must equal it.
    pub trust_domain: String,
    /// The longest `exp - iat` accepted, seconds.
    pub max_lifetime_seconds: i64,
}

/// A remote JWKS source (fetched by the adapter through an Envoy cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    /// The Envoy cluster the fetch goes to.
    pub cluster: String,
    /// The `:authority` of the fetch (the cluster name unless configured).
    pub authority: String,
    /// The JWKS path, or the OIDC discovery document that names it.
    pub source: JwksSource,
    /// Seconds between scheduled fetches (1..=86400).
    pub refresh_seconds: u64,
    /// Timeout of one fetch, in milliseconds (100..=60000).
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
    /// A valid token is needed.
    Required,
    /// A token is verified if present (a bad one is refused); none is fine.
    Optional,
    /// No token is looked at; `require` is empty.
    None,
    /// A Txn-Token from the `Txn-Token` header is needed (SPEC §14).
    TxnToken,
}

/// A claim check of `require.claims`.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimCheck {
    /// (claim path, value): the claim equals the JSON value exactly.
    Equals(String, Value),
    /// (claim path, values): the claim equals one of them (never empty).
    OneOf(String, Vec<Value>),
    /// (claim path, lowercase header name): the claim is a string equal to
    /// the header's single value.
    EqualsHeader(String, String),
    /// The claim is present and not `null`.
    Present(String),
    /// The claim is a string starting with the prefix (non-empty).
    Prefix(String, String),
}

/// The `require` block of a rule: everything listed must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Require {
    /// Provider names; the token's provider must be one of them.
    pub issuers: Option<Vec<String>>,
    /// At least one of these roles is held (never empty when set).
    pub roles_any: Option<Vec<String>>,
    /// Every one of these roles is held (never empty when set).
    pub roles_all: Option<Vec<String>>,
    /// At least one of these scopes is held (never empty when set).
    pub scopes_any: Option<Vec<String>>,
    /// Every one of these scopes is held (never empty when set).
    pub scopes_all: Option<Vec<String>>,
    /// Claim checks, all of which must hold.
    pub claims: Vec<ClaimCheck>,
    /// Txn-Tokens only: `req_wl` is one of these (never empty when set).
    pub workloads: Option<Vec<String>>,
    /// Txn-Tokens only: the calling workload's mesh identity must be accepted.
    pub caller: Option<Caller>,
}

/// `require.caller` (SPEC §14): a Txn-Token is accepted only from a workload
/// of the mesh: the identity of the caller (a URI SAN, e.g. a SPIFFE ID) read
/// from `from` must be one of `identities`, or the Txn-Token's `req_wl` when
/// none are listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Where the identity is read: the peer certificate, or a trusted XFCC element.
    pub from: MtlsSource,
    /// Identities accepted; `None`: exactly the Txn-Token's `req_wl`.
    pub identities: Option<Vec<String>>,
}

/// A rule's `match`: all listed parts must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleMatch {
    /// The pattern the normalized path must match.
    pub path: Option<PathPattern>,
    /// Methods, compared exactly (never empty when set).
    pub methods: Option<Vec<String>>,
    /// Host patterns, one of which must match (never empty when set).
    pub hosts: Option<Vec<HostPattern>>,
}

/// A route rule (or the default rule, which matches everything).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Which requests the rule applies to (empty for the default rule).
    pub matcher: RuleMatch,
    /// Whether a token is needed.
    pub auth: Auth,
    /// What a verified token must carry (empty when `auth` is [`Auth::None`]).
    pub require: Require,
    /// With `transaction_tokens.issue`: the `scope` of the Txn-Tokens issued
    /// for requests this rule allows (`None`: the issue block's `scope`).
    pub txn_scope: Option<String>,
}

/// `forward`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forward {
    /// (claim path, lowercase header name)
    pub claims_to_headers: Vec<(String, String)>,
    /// Lowercase header to carry the verified payload JSON.
    pub payload_header: Option<String>,
    /// Whether the credential is stripped before forwarding.
    pub remove_token: bool,
}

/// One field of the decision that `tracing.tags` puts on the request's trace
/// span (SPEC §6, v3 issue 30).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanField {
    /// `cjwt.reason`: `allowed` or the reason code (in `dry_run`, the refusal let through).
    Reason,
    /// `cjwt.rule`: the index of the deciding rule, or `default`.
    Rule,
    /// `cjwt.issuer`: the verified token's `iss`.
    Issuer,
    /// `cjwt.subject`: the verified token's `sub` (personal data: only when configured).
    Subject,
}

impl SpanField {
    /// Every field, in the order tags are written.
    pub const ALL: [SpanField; 4] = [SpanField::Reason, SpanField::Rule, SpanField::Issuer, SpanField::Subject];
    /// The fields tagged when `tracing.tags` is left out: the subject is not.
    pub const DEFAULT: [SpanField; 3] = [SpanField::Reason, SpanField::Rule, SpanField::Issuer];

    /// The name in `tracing.tags`.
    pub fn name(self) -> &'static str {
        match self {
            SpanField::Reason => "reason",
            SpanField::Rule => "rule",
            SpanField::Issuer => "issuer",
            SpanField::Subject => "subject",
        }
    }

    /// The span tag the native module sets (dynamic-module ABI `http_span_set_tag`).
    pub fn tag(self) -> &'static str {
        match self {
            SpanField::Reason => "cjwt.reason",
            SpanField::Rule => "cjwt.rule",
            SpanField::Issuer => "cjwt.issuer",
            SpanField::Subject => "cjwt.subject",
        }
    }

    /// The filter state the wasm filter sets instead (proxy-wasm has no span
    /// call): `wasm.<this>`, which Envoy's tracing `custom_tags` read with
    /// `value: "%FILTER_STATE(wasm.cjwt.span.reason:PLAIN)%"`.
    pub fn filter_state(self) -> &'static str {
        match self {
            SpanField::Reason => "cjwt.span.reason",
            SpanField::Rule => "cjwt.span.rule",
            SpanField::Issuer => "cjwt.span.issuer",
            SpanField::Subject => "cjwt.span.subject",
        }
    }
}

/// `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Refusals are answered.
    Enforce,
    /// Refusals are counted and logged; the request goes upstream.
    DryRun,
}

/// The compiled configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The providers, in configuration order; names and issuers are unique.
    pub(crate) providers: Vec<Provider>,
    /// Where credentials are looked for (never empty).
    pub(crate) token_from: Vec<TokenSource>,
    /// Leeway on `exp`, `nbf` and `iat`, in seconds (0..=300).
    pub(crate) clock_skew_seconds: i64,
    /// Whether a token without `exp` is refused.
    pub(crate) require_expiration: bool,
    /// Upper bound on `exp - iat`, in seconds (at least 1).
    pub(crate) max_lifetime_seconds: Option<i64>,
    /// Lowercased, without an `application/` prefix.
    pub(crate) required_typ: Option<String>,
    /// Longest credential accepted, in bytes (16..=65536).
    pub(crate) max_token_bytes: usize,
    /// The roles claim name or dotted path.
    pub(crate) roles_claim: String,
    /// The scopes claim name or dotted path.
    pub(crate) scopes_claim: String,
    /// The constraints claim name or dotted path.
    pub(crate) constraints_claim: String,
    /// Where the client address for the `ip` constraint comes from.
    pub(crate) client_ip: ClientIpSource,
    /// Where the request region comes from (`None`: not configured).
    pub(crate) region: Option<RegionSource>,
    /// (constraint name, attribute), sorted by name; no name is a built-in one.
    pub(crate) custom_constraints: Vec<(String, Attribute)>,
    /// The route rules, in order; the first that matches applies.
    pub(crate) rules: Vec<Rule>,
    /// The rule for requests no rule matches.
    pub(crate) default_rule: Rule,
    /// What is forwarded upstream after a successful verification.
    pub(crate) forward: Forward,
    /// Enforce, or only report (dry run).
    pub(crate) mode: Mode,
    /// Most verified tokens cached per worker (0 disables the cache).
    pub(crate) cache_max_entries: usize,
    /// Memory bound of the cache in estimated heap bytes ([`crate::token::cache`]).
    pub(crate) cache_max_bytes: usize,
    /// The `realm` of `www-authenticate` (printable ASCII, no `"` or `\`).
    pub(crate) realm: String,
    /// Whether refusals name their reason (body and `error_description`).
    pub(crate) detail: bool,
    /// The RFC 9728 document cjwt serves, and its URL for 401 challenges.
    pub(crate) protected_resource: Option<ProtectedResource>,
    /// The mesh-wide `max_uses` store (`None`: counted per Envoy).
    pub(crate) usage_store: Option<EtcdStore>,
    /// Tokens and subjects revoked by configuration (SPEC §11; empty: none).
    pub(crate) revocation: DenyList,
    /// The configured status lists, in configuration order (URIs unique).
    pub(crate) status_lists: Vec<StatusListSource>,
    /// `status_lists` index by `uri`.
    pub(crate) status_list_by_uri: HashMap<String, usize>,
    /// Which `cnf` bindings are enforced (SPEC §10); both `None`: every `cnf` is refused.
    pub(crate) sender: SenderConstraints,
    /// The bounds of a delegation chain (SPEC §16).
    pub(crate) attenuation: Attenuation,
    /// The decision's fields tagged on the request's trace span, in [`SpanField::ALL`] order.
    pub(crate) span_fields: Vec<SpanField>,
    /// The Txn-Token provider (index into [`Config::providers`]), if one is configured (SPEC §14).
    pub(crate) txn_provider: Option<usize>,
    /// `transaction_tokens.issue`: the Txn-Token every allowed request goes upstream with.
    pub(crate) txn_issue: Option<TxnIssue>,
}

/// One configured status list (SPEC §11 `status_lists[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusListSource {
    /// The URI tokens name (`status.status_list.uri`) and the list's `sub`.
    pub uri: String,
    /// The provider (index into [`Config::providers`]) whose keys sign the list.
    pub provider: usize,
    /// The Envoy cluster the fetch goes to.
    pub cluster: String,
    /// The `:authority` of the fetch.
    pub authority: String,
    /// The list's path on the cluster.
    pub path: String,
    /// Seconds between scheduled fetches (1..=86400).
    pub refresh_seconds: u64,
    /// Timeout of one fetch, ms (100..=60000).
    pub timeout_ms: u64,
    /// Largest inflated list, bytes.
    pub max_bytes: usize,
}

/// `sender_constraints` (SPEC §10 v2), compiled.
#[derive(Debug, Clone, Default)]
pub struct SenderConstraints {
    /// DPoP proofs for tokens with `cnf.jkt`.
    pub dpop: Option<Dpop>,
    /// Where the client certificate of `cnf["x5t#S256"]` comes from.
    pub mtls: Option<MtlsSource>,
}

/// `sender_constraints.dpop`, compiled.
#[derive(Debug, Clone)]
pub struct Dpop {
    /// Proof algorithms accepted (asymmetric only).
    pub algorithms: crate::keys::algorithm::AlgSet,
    /// The same, space-separated, for the `algs` of the challenge.
    pub algs: String,
    /// Largest `|now - iat|` of a proof, seconds.
    pub max_age_seconds: i64,
    /// The origin `htu` must start with (`scheme://host[:port]`, lowercase, no
    /// default port); `None`: the request's `:scheme` and `:authority`.
    pub public_origin: Option<String>,
    /// Stateless nonces, when required.
    pub nonce: Option<NonceKey>,
    /// Most live proof ids the local replay cache keeps per Envoy.
    pub replay_max_entries: usize,
    /// `replay_cache.store: "usage_store"`: proofs are recorded once for the
    /// whole mesh in the `usage_store` etcd (and the local cache is not used).
    pub replay_in_usage_store: bool,
}

/// `attenuation` (SPEC §16), compiled: the bounds of a delegation chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attenuation {
    /// Most links after the root (0: every chain is refused, `chain_depth`).
    pub max_depth: usize,
    /// Longest `cjwt-chain` header, bytes.
    pub max_bytes: usize,
}

impl Default for Attenuation {
    fn default() -> Attenuation {
        Attenuation { max_depth: 4, max_bytes: 8192 }
    }
}

/// The secret and period of stateless DPoP nonces. Never printed.
#[derive(Clone)]
pub struct NonceKey {
    /// The HMAC key (at least 32 bytes).
    pub secret: Vec<u8>,
    /// How long one nonce is current, seconds.
    pub rotate_seconds: i64,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NonceKey {{ rotate_seconds: {} }}", self.rotate_seconds)
    }
}

/// Where a client certificate's SHA-256 comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtlsSource {
    /// The downstream TLS connection (`connection.sha256_peer_certificate_digest`).
    Peer,
    /// The `Hash` of the `x-forwarded-client-cert` element this many places from
    /// the right (1 = the last, appended by the proxy in front of Envoy).
    Xfcc {
        /// Proxies trusted in front of Envoy (1..=10).
        trusted_hops: u32,
    },
}

/// `usage_store.etcd` (SPEC §8 v2): where and how a use is counted for the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdStore {
    /// The Envoy cluster of the etcd members.
    pub cluster: String,
    /// The `:authority` of the calls.
    pub authority: String,
    /// The API the calls use: etcd's gRPC API (default) or its JSON gateway.
    pub api: EtcdApi,
    /// The JSON gateway's path prefix, without a trailing `/` (e.g. `/v3`).
    pub api_prefix: String,
    /// The prefix of every key written.
    pub key_prefix: String,
    /// The longest a request waits for the store, all calls included (1..=5000 ms).
    pub timeout_ms: u64,
    /// Leased allowances (issue 27 item 3; `None`: every use asks the store).
    pub allowance: Option<Allowance>,
}

/// `usage_store.etcd.allowance`: tokens with room are counted in batches
/// taken by each Envoy (`crate::usage::allowance`). Must be the same on every
/// Envoy sharing a `key_prefix`: a token is counted in one key or the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Tokens whose `max_uses` is at least this take batches.
    pub from_max_uses: u64,
    /// Uses per batch.
    pub batch: u64,
    /// A request that leaves fewer uses than this in the allowance starts a
    /// batch in the background (0..=`batch`; 0: only an empty allowance takes one).
    pub refill_below: u64,
}

/// RFC 9728 protected resource metadata (SPEC §15): served at `path` (GET or
/// HEAD, before any decision, to anyone), named as `resource_metadata` in every
/// 401 challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedResource {
    /// The document's absolute URL.
    pub url: String,
    /// The path of `url`, the request path the document is served at.
    pub path: String,
    /// The JSON document.
    pub document: String,
}

impl Config {
    /// The RFC 9728 document cjwt serves, if configured.
    pub fn protected_resource(&self) -> Option<&ProtectedResource> {
        self.protected_resource.as_ref()
    }

    /// The rule that applies to a request, first match wins.
    pub fn rule_for(&self, index: Option<usize>) -> &Rule {
        index.and_then(|i| self.rules.get(i)).unwrap_or(&self.default_rule)
    }

    /// The index of the configured status list at `uri`.
    pub fn status_list_index(&self, uri: &str) -> Option<usize> {
        self.status_list_by_uri.get(uri).copied()
    }

    /// The access-token provider whose issuer is `iss` (a Txn-Token provider is
    /// never selected by `iss`).
    pub fn provider_for_issuer(&self, iss: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.issuer == iss && p.kind == ProviderKind::AccessToken)
    }

    /// The log line of a configuration loaded by an adapter, `build` saying
    /// which build verifies what (e.g. "native module").
    pub fn accepted_line(&self, build: &str) -> String {
        format!(
            "cjwt: configuration accepted ({} provider(s), {} rule(s), mode {:?}; {build})",
            self.providers.len(),
            self.rules.len(),
            self.mode
        )
    }

    /// The providers, in configuration order (the key store has one slot each).
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// How many providers are configured.
    pub fn provider_count(&self) -> usize {
        self.providers.len()
    }

    /// How many rules are configured (the default rule aside).
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// `mode`: enforce or dry run.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Where the token is read from, in order.
    pub fn token_from(&self) -> &[TokenSource] {
        &self.token_from
    }

    /// Where the region is read from, if configured.
    pub fn region(&self) -> Option<&RegionSource> {
        self.region.as_ref()
    }

    /// Sender constraints (DPoP, certificate binding).
    pub fn sender(&self) -> &SenderConstraints {
        &self.sender
    }

    /// The bounds of a delegation chain (SPEC §16).
    pub fn attenuation(&self) -> Attenuation {
        self.attenuation
    }

    /// The configured custom constraint names, in configuration order.
    pub fn custom_constraint_names(&self) -> Vec<&str> {
        self.custom_constraints.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The mesh-wide usage store, if configured.
    pub fn usage_store(&self) -> Option<&EtcdStore> {
        self.usage_store.as_ref()
    }

    /// `transaction_tokens.issue`, if configured (SPEC §14).
    pub fn txn_issue(&self) -> Option<&TxnIssue> {
        self.txn_issue.as_ref()
    }

    /// The clock skew tolerated, in seconds.
    pub fn clock_skew_seconds(&self) -> i64 {
        self.clock_skew_seconds
    }

    /// The configured status lists.
    pub fn status_lists(&self) -> &[StatusListSource] {
        &self.status_lists
    }

    /// The claim that carries the constraints (`cnst` unless configured).
    pub fn constraints_claim(&self) -> &str {
        &self.constraints_claim
    }

    /// The configured deny-list.
    pub fn revocation(&self) -> &DenyList {
        &self.revocation
    }

    /// What an allowed request forwards upstream.
    pub fn forward(&self) -> &Forward {
        &self.forward
    }
}

/// The request view a configuration asks for (here, not in `request/`, which
/// sits below the configuration: the view takes the sources, not the `Config`).
impl<'a> RequestView<'a> {
    /// [`RequestView::new`] with the sources `config` names.
    pub fn for_config(host: &'a dyn Host, config: &'a Config) -> RequestView<'a> {
        RequestView::new(host, config.client_ip, config.region.as_ref(), &config.custom_constraints)
    }
}
