//! The plugin configuration exactly as written (SPEC §2): strict serde types.
//!
//! Every struct denies unknown fields, so a misspelt option is refused at load
//! instead of being silently ignored. The compile step (`compile.rs`) turns this into the
//! immutable form used per request.

use serde::Deserialize;
use serde_json::Value;

/// The whole plugin configuration object (SPEC §2); only `providers` is required.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The token issuers and their keys (at least one).
    pub providers: Vec<RawProvider>,
    /// Where a credential is looked for; default: the `authorization` header with prefix `Bearer `.
    pub token_from: Option<Vec<RawTokenSource>>,
    /// Leeway applied to `exp`, `nbf` and `iat`, in seconds (0..=300; default 60).
    pub clock_skew_seconds: Option<u64>,
    /// Whether a token without `exp` is refused (default `true`).
    pub require_expiration: Option<bool>,
    /// Upper bound on `exp - iat`, in seconds (at least 1; default: no bound).
    pub max_lifetime_seconds: Option<u64>,
    /// The header `typ` every token must carry, compared as a media type (default: not checked).
    pub required_typ: Option<String>,
    /// Longest credential accepted, in bytes (16..=65536; default 8192).
    pub max_token_bytes: Option<usize>,
    /// Names (or dotted paths) of the roles, scopes and constraints claims.
    pub claim_names: Option<RawClaimNames>,
    /// Where the client address for the `ip` constraint comes from (default: the peer).
    pub client_ip: Option<RawClientIp>,
    /// Where the request region for the `region` constraint comes from (default: none).
    pub region: Option<RawRegion>,
    /// Operator-defined constraint names, each bound to the request attribute it compares with.
    pub custom_constraints: Option<std::collections::BTreeMap<String, RawAttribute>>,
    /// Route rules, tried in order; the first whose `match` holds applies.
    pub rules: Option<Vec<RawRule>>,
    /// The rule for requests no rule matches (default: `auth: required`, no `require`).
    pub default_rule: Option<RawDefaultRule>,
    /// Verified claims (or the payload) to set as request headers upstream.
    pub forward: Option<RawForward>,
    /// `enforce` (default) or `dry_run` (decide and report, never refuse).
    pub mode: Option<RawMode>,
    /// Bounds of the verified-token cache.
    pub cache: Option<RawCache>,
    /// What a refusal tells the client.
    pub response: Option<RawResponse>,
    /// RFC 9728 protected resource metadata served by cjwt and named in 401
    /// challenges (MCP authorization discovery; SPEC §15).
    pub protected_resource: Option<RawProtectedResource>,
    /// Where `max_uses` is counted for the whole mesh (SPEC §8 v2); default: per Envoy.
    pub usage_store: Option<RawUsageStore>,
    /// Deny-lists of revoked tokens and subjects (SPEC §11 v2).
    pub revocation: Option<RawRevocation>,
    /// OAuth Token Status Lists fetched through Envoy clusters (SPEC §11 v2).
    pub status_lists: Option<Vec<RawStatusList>>,
    /// Sender-constrained tokens (SPEC §10 v2): which `cnf` bindings are enforced.
    pub sender_constraints: Option<RawSenderConstraints>,
    /// Which parts of the decision tag the request's trace span (SPEC §6, v3 issue 30).
    pub tracing: Option<RawTracing>,
    /// Transaction Tokens (SPEC §14 v3): issuing them at the edge.
    pub transaction_tokens: Option<RawTransactionTokens>,
    /// Holder attenuation (SPEC §16): the delegation chains a request may carry.
    pub attenuation: Option<RawAttenuation>,
}

/// `attenuation` (SPEC §16): the bounds of a delegation chain.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawAttenuation {
    /// Most links after the root (0..=16; default 4; 0 refuses every chain).
    pub max_depth: Option<usize>,
    /// Longest `cjwt-chain` header, bytes (256..=65536; default 8192).
    pub max_bytes: Option<usize>,
}

/// `tracing`: the decision's fields put on the request's trace span.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// Fields to tag, each once: `reason`, `rule`, `issuer`, `subject` (default
    /// `["reason", "rule", "issuer"]`; `[]` tags nothing).
    pub tags: Option<Vec<String>>,
}

/// `transaction_tokens` (SPEC §14).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawTransactionTokens {
    /// Self-issuing at the edge: every allowed request goes upstream with a Txn-Token.
    pub issue: Option<RawTxnIssue>,
}

/// `transaction_tokens.issue`: the gateway signs a Txn-Token per allowed request.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawTxnIssue {
    /// The trust domain: the `aud` of every Txn-Token issued (non-empty).
    pub trust_domain: String,
    /// The gateway's workload identifier: `req_wl` (non-empty).
    pub workload: String,
    /// The `scope` of requests whose rule names no `txn_scope` (non-empty; default: none,
    /// and then every rule that allows a token must name one).
    pub scope: Option<String>,
    /// `exp - iat` of the Txn-Tokens issued, seconds (1..=300; default 60).
    pub lifetime_seconds: Option<u64>,
    /// Self-issued: the private key (PKCS#8 PEM, Ed25519 or P-256): `{"file": path}`
    /// or `{"env": name}`. Exactly one of `key`, `exchange`.
    pub key: Option<RawTxnKey>,
    /// Exchanged: the trust domain's Txn-Token Service, asked per request with
    /// an RFC 8693 token exchange. Exactly one of `key`, `exchange`.
    pub exchange: Option<RawTxnExchange>,
    /// The `kid` written in the JWS header (optional).
    pub kid: Option<String>,
    /// The `iss` of the Txn-Tokens (optional: the draft leaves it out unless set).
    pub issuer: Option<String>,
}

/// `transaction_tokens.issue.exchange`: the Txn-Token Service, through an Envoy cluster.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawTxnExchange {
    /// The Envoy cluster of the service (non-empty).
    pub cluster: String,
    /// The call's `:authority` (default: the cluster's name).
    pub authority: Option<String>,
    /// The token endpoint's path (default `/token`).
    pub path: Option<String>,
    /// How long a request waits for the answer, ms (1..=10000; default 1000).
    pub timeout_ms: Option<u64>,
}

/// Where the Txn-Token signing key is read from, once, at configuration.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawTxnKey {
    /// A file holding the PEM (the native build; the wasm VM has no file system).
    pub file: Option<String>,
    /// An environment variable holding the PEM (both builds; wasm: the VM's
    /// `environment_variables`).
    pub env: Option<String>,
}

/// `kind` of a provider.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RawProviderKind {
    /// Access tokens, selected by `iss` (the default).
    #[default]
    AccessToken,
    /// The Txn-Token Service of the trust domain (SPEC §14): at most one.
    TxnToken,
}

/// `revocation`: tokens and subjects revoked by configuration.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawRevocation {
    /// Revoked tokens, by (`iss`, `jti`).
    pub jti: Option<Vec<RawRevokedJti>>,
    /// Revoked subjects: their tokens issued before a time.
    pub subjects: Option<Vec<RawRevokedSubject>>,
}

/// One entry of `revocation.jti`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawRevokedJti {
    /// The token's issuer (a provider's `issuer`).
    pub iss: String,
    /// The token's `jti` (non-empty).
    pub jti: String,
}

/// One entry of `revocation.subjects`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawRevokedSubject {
    /// The tokens' issuer (a provider's `issuer`).
    pub iss: String,
    /// The tokens' `sub` (non-empty).
    pub sub: String,
    /// Tokens whose `iat` is before this (Unix seconds) are revoked.
    pub issued_before: i64,
}

/// One entry of `status_lists`: a Status List Token fetched through a cluster.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawStatusList {
    /// The list's URI: what tokens name in `status.status_list.uri` (non-empty, unique).
    pub uri: String,
    /// The provider (by name) whose keys sign the list.
    pub provider: String,
    /// The Envoy cluster the fetch goes to (non-empty).
    pub cluster: String,
    /// The `:authority` of the fetch (default: the cluster name).
    pub authority: Option<String>,
    /// The list's path on the cluster (starts with `/`).
    pub path: String,
    /// Seconds between fetches (1..=86400; default 300).
    pub refresh_seconds: Option<u64>,
    /// Timeout of one fetch, ms (100..=60000; default 2000).
    pub timeout_ms: Option<u64>,
    /// Largest inflated list, bytes (1..=16777216; default 1048576).
    pub max_bytes: Option<usize>,
}

/// `sender_constraints` (SPEC §10): at least one of `dpop`, `mtls`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawSenderConstraints {
    /// DPoP proofs (RFC 9449) for tokens with `cnf.jkt`.
    pub dpop: Option<RawDpop>,
    /// Certificate-bound tokens (RFC 8705) with `cnf["x5t#S256"]`.
    pub mtls: Option<RawMtls>,
}

/// `sender_constraints.dpop`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawDpop {
    /// Proof algorithms accepted (asymmetric only; default `["ES256", "EdDSA"]`).
    pub algorithms: Option<Vec<String>>,
    /// Largest `|now - iat|` of a proof, seconds (1..=600; default 60).
    pub max_age_seconds: Option<u64>,
    /// The origin clients address (`https://api.example.com`); default: `:scheme://:authority`.
    pub public_origin: Option<String>,
    /// Stateless server nonces (default: none).
    pub nonce: Option<RawDpopNonce>,
    /// Bound of the proof `jti` replay cache.
    pub replay_cache: Option<RawReplayCache>,
}

/// `sender_constraints.dpop.nonce`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawDpopNonce {
    /// base64url, at least 32 bytes once decoded (required).
    pub secret: Option<String>,
    /// How long one nonce is current, seconds (10..=86400; default 300).
    pub rotate_seconds: Option<u64>,
}

/// `sender_constraints.dpop.replay_cache`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawReplayCache {
    /// Most live proof ids remembered per Envoy (1024..=1048576; default 65536);
    /// with `store: "local"` only.
    pub max_entries: Option<usize>,
    /// Where proofs are remembered: `"local"` (default: per Envoy) or
    /// `"usage_store"` (the mesh-wide etcd of `usage_store`, shared by every replica).
    pub store: Option<String>,
}

/// `sender_constraints.mtls`: `{"from": "peer"}` or `{"from": "xfcc", "trusted_hops": n}`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawMtls {
    /// `peer` (the downstream TLS connection) or `xfcc` (`x-forwarded-client-cert`).
    pub from: String,
    /// With `xfcc` only (required, 1..=10): the proxies in front of Envoy to trust.
    pub trusted_hops: Option<u32>,
}

/// `usage_store`: the shared store of `max_uses` counts (exactly one kind).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawUsageStore {
    /// An etcd v3 cluster reached through its HTTP/JSON gateway.
    pub etcd: Option<RawEtcdStore>,
}

/// `usage_store.etcd`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawEtcdStore {
    /// The Envoy cluster of the etcd members (required, non-empty).
    pub cluster: Option<String>,
    /// The `:authority` of the calls (required, non-empty).
    pub authority: Option<String>,
    /// The API the calls use: `"grpc"` (default) or `"json"` (the gateway).
    pub api: Option<String>,
    /// The gateway's path prefix (default `/v3`; the JSON gateway only).
    pub api_prefix: Option<String>,
    /// The prefix of every key written (default `cjwt/uses/`).
    pub key_prefix: Option<String>,
    /// The longest a request waits for the store, ms (1..=5000; default 250).
    pub timeout_ms: Option<u64>,
    /// Leased allowances (issue 27): tokens with room take uses in batches.
    pub allowance: Option<RawAllowance>,
}

/// `usage_store.etcd.allowance`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawAllowance {
    /// Tokens whose `max_uses` is at least this take batches (required, 2..).
    pub from_max_uses: Option<u64>,
    /// Uses per batch (2..=1,000,000; default 16).
    pub batch: Option<u64>,
    /// Background refill below this many uses left (0..=batch; default batch / 2).
    pub refill_below: Option<u64>,
}

/// One entry of `providers`: an issuer and how its keys are found.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Unique name (ASCII letters, digits, `-`, `_`, `.`), used by `require.issuers`, logs and metrics.
    pub name: String,
    /// The exact `iss` value of this provider's tokens (non-empty; optional for
    /// `kind: txn_token`, where a Txn-Token's `iss` must equal it when given).
    pub issuer: Option<String>,
    /// `access_token` (default) or `txn_token` (SPEC §14).
    pub kind: Option<RawProviderKind>,
    /// With `kind: txn_token` (required): the trust domain a Txn-Token's `aud` must equal.
    pub trust_domain: Option<String>,
    /// With `kind: txn_token`: the longest `exp - iat` accepted, seconds (1..=86400; default 300).
    pub max_lifetime_seconds: Option<u64>,
    /// If given (non-empty), the token `aud` must contain one of these.
    pub audiences: Option<Vec<String>>,
    /// A JWKS object, or the same as a JSON string.
    pub jwks: Option<Value>,
    /// Inline public keys in PEM, each with its algorithm.
    pub pem_keys: Option<Vec<RawPemKey>>,
    /// A key set fetched through an Envoy cluster.
    pub remote_jwks: Option<RawRemoteJwks>,
    /// Allow-list of JWS `alg` names (non-empty when given); default: those of the keys.
    pub algorithms: Option<Vec<String>>,
}

/// One entry of `pem_keys`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawPemKey {
    /// The key id a token's `kid` header must name (optional).
    pub kid: Option<String>,
    /// The JWS algorithm this key verifies (e.g. `ES256`).
    pub alg: String,
    /// The public key, PEM-encoded (`-----BEGIN PUBLIC KEY-----`).
    pub pem: String,
}

/// `remote_jwks`: a key set fetched through an Envoy cluster (never a URL from a token).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawRemoteJwks {
    /// The Envoy cluster the fetch goes to (non-empty).
    pub cluster: String,
    /// The `:authority` of the fetch (default: the cluster name).
    pub authority: Option<String>,
    /// Path of the JWKS on the cluster (starts with `/`); exclusive with `discovery_path`.
    pub path: Option<String>,
    /// Path of an OIDC discovery document whose `jwks_uri` names the JWKS; exclusive with `path`.
    pub discovery_path: Option<String>,
    /// Seconds between fetches (1..=86400; default 600).
    pub refresh_seconds: Option<u64>,
    /// Timeout of one fetch, in milliseconds (100..=60000; default 2000).
    pub timeout_ms: Option<u64>,
    /// Least seconds between fetches triggered by an unknown `kid` (0..=3600; default 30).
    pub min_refetch_seconds: Option<u64>,
}

/// `{"header": name, "prefix": p}`, `{"cookie": name}` or `{"query": name}`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawTokenSource {
    /// A request header carrying the credential (case-insensitive name).
    pub header: Option<String>,
    /// With `header`: the text before the token (e.g. `Bearer `), matched ASCII-case-insensitively.
    pub prefix: Option<String>,
    /// A cookie carrying the credential (non-empty name).
    pub cookie: Option<String>,
    /// A query parameter carrying the credential (non-empty name).
    pub query: Option<String>,
}

/// `claim_names`: each a claim name or a dotted path into nested objects.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawClaimNames {
    /// The roles claim (default `roles`): a string or an array of strings.
    pub roles: Option<String>,
    /// The scopes claim (default `scope`): a space-delimited string or an array.
    pub scopes: Option<String>,
    /// The constraints claim (default `cnst`).
    pub constraints: Option<String>,
}

/// `client_ip`: `{"from": "peer"}` or `{"from": "xff", "trusted_hops": n}`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawClientIp {
    /// `peer` (the downstream address) or `xff` (`x-forwarded-for`).
    pub from: String,
    /// With `xff` only (required, 1..=10): the proxies in front of Envoy to trust.
    pub trusted_hops: Option<u32>,
}

/// `{"value": v}`, `{"header": h}` or `{"node_metadata": key}`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawRegion {
    /// A fixed region for every request (non-empty).
    pub value: Option<String>,
    /// A request header carrying the region.
    pub header: Option<String>,
    /// A key of the Envoy node metadata holding the region (non-empty).
    pub node_metadata: Option<String>,
}

/// `{"header": h}`, `{"query": n}` or `{"path_segment": i}`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawAttribute {
    /// A request header (its single value).
    pub header: Option<String>,
    /// A query parameter (its single, decoded value).
    pub query: Option<String>,
    /// A segment of the normalized path, 0-based (0..64).
    pub path_segment: Option<usize>,
}

/// One entry of `rules`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// What the request must match (`match`; default: everything).
    #[serde(rename = "match")]
    pub match_: Option<RawMatch>,
    /// Whether a token is needed (default `required`).
    pub auth: Option<RawAuth>,
    /// What a verified token must carry (not with `auth: none`).
    pub require: Option<RawRequire>,
    /// With `transaction_tokens.issue`: the `scope` (purpose) of the Txn-Tokens
    /// issued for requests this rule allows.
    pub txn_scope: Option<String>,
}

/// `default_rule`: a rule without `match`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawDefaultRule {
    /// Whether a token is needed (default `required`).
    pub auth: Option<RawAuth>,
    /// What a verified token must carry (not with `auth: none`).
    pub require: Option<RawRequire>,
    /// As a rule's `txn_scope`.
    pub txn_scope: Option<String>,
}

/// A rule's `match`: every part given must hold.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    /// A path pattern (SPEC §3) matched against the normalized path.
    pub path: Option<String>,
    /// HTTP methods, compared exactly and case-sensitively (non-empty when given).
    pub methods: Option<Vec<String>>,
    /// Host patterns: exact names or `*.suffix` (non-empty when given).
    pub hosts: Option<Vec<String>>,
}

/// `auth` of a rule, as written.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawAuth {
    /// A valid token is needed.
    Required,
    /// A token is verified if present; a bad one is refused.
    Optional,
    /// No token is looked at.
    None,
    /// A Txn-Token in the `Txn-Token` header is needed (SPEC §14); access tokens are not looked at.
    TxnToken,
}

/// `require`: everything given must hold for the verified token.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRequire {
    /// Provider names (not issuer URLs); the token's provider must be one of them.
    pub issuers: Option<Vec<String>>,
    /// The token holds at least one of these roles.
    pub roles_any: Option<Vec<String>>,
    /// The token holds every one of these roles.
    pub roles_all: Option<Vec<String>>,
    /// The token holds at least one of these scopes.
    pub scopes_any: Option<Vec<String>>,
    /// The token holds every one of these scopes.
    pub scopes_all: Option<Vec<String>>,
    /// Claim checks, all of which must hold.
    pub claims: Option<Vec<RawClaimCheck>>,
    /// With `auth: txn_token`: the Txn-Token's `req_wl` is one of these (non-empty).
    pub req_wl: Option<Vec<String>>,
    /// With `auth: txn_token`: the Txn-Token is bound to the calling workload's
    /// mesh identity (SPEC §14, "Bound to the caller").
    pub caller: Option<RawCaller>,
}

/// `require.caller`: where the calling workload's identity comes from
/// (`{"from": "peer"}` or `{"from": "xfcc", "trusted_hops": n}`, as
/// `sender_constraints.mtls`), and the identities accepted (`identities`; absent:
/// the Txn-Token's own `req_wl`).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawCaller {
    /// `peer` (the URI SAN of the downstream TLS peer's certificate) or `xfcc`
    /// (the `URI` of the trusted `x-forwarded-client-cert` element).
    pub from: String,
    /// With `xfcc` only (required, 1..=10): the proxies in front of Envoy to trust.
    pub trusted_hops: Option<u32>,
    /// The caller identities accepted (non-empty when set), e.g. SPIFFE IDs.
    pub identities: Option<Vec<String>>,
}

/// One of `equals`, `one_of`, `equals_header`, `present` next to `claim`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawClaimCheck {
    /// The claim name or dotted path (non-empty).
    pub claim: String,
    /// The claim equals this JSON value exactly.
    pub equals: Option<Value>,
    /// The claim equals one of these JSON values (non-empty).
    pub one_of: Option<Vec<Value>>,
    /// The claim is a string equal to this request header's value.
    pub equals_header: Option<String>,
    /// `true`: the claim is present and not `null` (`false` is refused).
    pub present: Option<bool>,
    /// Extension: the claim is a string that starts with this (e.g. a SPIFFE ID prefix for `sub`).
    pub prefix: Option<String>,
}

/// `forward`: what is passed upstream after a successful verification.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawForward {
    /// Claims to set as request headers.
    pub claims_to_headers: Option<Vec<RawClaimToHeader>>,
    /// A header to carry the verified payload JSON (default: none).
    pub payload_header: Option<String>,
    /// Whether the credential is stripped before forwarding (default `false`).
    pub remove_token: Option<bool>,
}

/// One entry of `forward.claims_to_headers`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawClaimToHeader {
    /// The claim name or dotted path (non-empty).
    pub claim: String,
    /// The request header to set (not the credential header, `cookie`, `host` or a pseudo-header).
    pub header: String,
}

/// `mode`, as written.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawMode {
    /// Refusals are answered.
    Enforce,
    /// Refusals are only reported; the request goes upstream.
    DryRun,
}

/// `cache`: bounds of the verified-token cache (per worker).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Most cached tokens (0..=100000; 0 disables; default 1024).
    pub max_entries: Option<usize>,
    /// Extension: an upper bound on the cache's memory (estimated heap bytes).
    pub max_bytes: Option<usize>,
}

/// `response`: what a refusal tells the client.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawResponse {
    /// The `realm` of `www-authenticate` (printable ASCII, no `"` or `\`; default `cjwt`).
    pub realm: Option<String>,
    /// Whether the body and `error_description` name the reason (default `true`).
    pub detail: Option<bool>,
}

/// `protected_resource`: the RFC 9728 document's members.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawProtectedResource {
    /// The resource identifier (an `https` or `http` URL without query or fragment).
    pub resource: String,
    /// The authorization servers' issuer identifiers (at least one).
    pub authorization_servers: Vec<String>,
    /// Scopes a client may ask for.
    pub scopes_supported: Option<Vec<String>>,
    /// How the token may be sent (`header`, `body`, `query`).
    pub bearer_methods_supported: Option<Vec<String>>,
    /// DPoP proof algorithms accepted.
    pub dpop_signing_alg_values_supported: Option<Vec<String>>,
    /// Where the document is served; default: RFC 9728 §3.1's well-known URL of `resource`.
    pub metadata_url: Option<String>,
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
