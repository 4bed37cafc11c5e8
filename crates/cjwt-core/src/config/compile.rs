//! Compilation of [`super::raw::RawConfig`] into [`Config`]: defaults applied,
//! every value checked, and each refusal a [`ConfigError`] naming its field.

use super::denylist::DenyList;
use super::model::{
    Allowance, Attribute, Auth, Caller, ClaimCheck, ClientIpSource, Config, ConfigError, Dpop, EtcdStore, Forward,
    JwksSource, Mode, MtlsSource, NonceKey, Provider, ProviderKind, RegionSource, RemoteJwks, Require, Rule, RuleMatch,
    SenderConstraints, SpanField, StatusListSource, TokenSource, TxnDomain, TxnExchange, TxnIssue,
};
use super::raw::*;
use crate::constraints;
use crate::encoding::json;
use crate::keys::algorithm::{AlgSet, Algorithm};
use crate::keys::key::VerificationKey;
use crate::request::paths::{HostPattern, PathPattern};
use crate::usage::etcd::EtcdApi;
use serde_json::Value;
use std::collections::HashMap;

pub(super) fn err<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError { field: field.into(), message: message.into() })
}

/// Defaults of SPEC §2.
pub const DEFAULT_CLOCK_SKEW: u64 = 60;
/// Largest `clock_skew_seconds` accepted, in seconds.
pub const MAX_CLOCK_SKEW: u64 = 300;
/// Default `max_token_bytes`: the longest credential accepted, in bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// Upper bound on `max_token_bytes`: Envoy's default header limit is 60 KiB.
pub const MAX_MAX_TOKEN_BYTES: usize = 64 * 1024;
/// Default `cache.max_entries`: verified tokens cached per worker.
pub const DEFAULT_CACHE_ENTRIES: usize = 1024;
/// Largest `cache.max_entries` accepted.
pub const MAX_CACHE_ENTRIES: usize = 100_000;
/// Default memory bound of the verified-token cache (per worker VM): 16 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 16 << 20;
/// Largest `cache.max_bytes` accepted: 1 GiB (the least is 4096).
pub const MAX_CACHE_BYTES: usize = 1 << 30;

pub(super) fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
    if raw.providers.is_empty() {
        return err("providers", "at least one provider is required");
    }
    let mut providers = Vec::with_capacity(raw.providers.len());
    for (i, p) in raw.providers.into_iter().enumerate() {
        let provider = compile_provider(&format!("providers[{i}]"), p)?;
        if providers.iter().any(|q: &Provider| q.name == provider.name) {
            return err(format!("providers[{i}].name"), format!("duplicate provider name {:?}", provider.name));
        }
        let access = |q: &Provider| q.kind == ProviderKind::AccessToken;
        if access(&provider) && providers.iter().any(|q: &Provider| access(q) && q.issuer == provider.issuer) {
            return err(format!("providers[{i}].issuer"), format!("duplicate issuer {:?}", provider.issuer));
        }
        if !access(&provider) && providers.iter().any(|q| !access(q)) {
            return err(format!("providers[{i}].kind"), "one trust domain has one Txn-Token provider (one TTS)");
        }
        providers.push(provider);
    }
    let txn_provider = providers.iter().position(|p| p.kind != ProviderKind::AccessToken);

    let sender = compile_sender(raw.sender_constraints)?;
    let mut token_from = match raw.token_from {
        None => vec![TokenSource::Header { name: "authorization".into(), prefix: "Bearer ".into() }],
        Some(list) if list.is_empty() => return err("token_from", "at least one source is required"),
        Some(list) => list
            .into_iter()
            .enumerate()
            .map(|(i, s)| compile_token_source(&format!("token_from[{i}]"), s))
            .collect::<Result<Vec<_>, _>>()?,
    };

    // RFC 9449 §7.1: a DPoP-bound token arrives as `Authorization: DPoP <token>`.
    let dpop_scheme = TokenSource::Header { name: "authorization".into(), prefix: DPOP_SCHEME.into() };
    if sender.dpop.is_some() && !token_from.contains(&dpop_scheme) {
        token_from.push(dpop_scheme);
    }

    let skew = raw.clock_skew_seconds.unwrap_or(DEFAULT_CLOCK_SKEW);
    if skew > MAX_CLOCK_SKEW {
        return err("clock_skew_seconds", format!("must be 0..={MAX_CLOCK_SKEW}"));
    }
    let max_lifetime_seconds = match raw.max_lifetime_seconds {
        Some(0) => return err("max_lifetime_seconds", "must be at least 1"),
        Some(v) => Some(i64::try_from(v).unwrap_or(i64::MAX)),
        None => None,
    };
    let required_typ = match raw.required_typ {
        Some(t) if t.trim().is_empty() => return err("required_typ", "must not be empty"),
        Some(t) if NOT_ACCESS_TOKEN_TYPES.contains(&normalize_typ(&t).as_str()) => {
            return err("required_typ", format!("{t} is not an access token type (RFC 8725 §3.11)"));
        }
        Some(t) => Some(normalize_typ(&t)),
        None => None,
    };
    let max_token_bytes = raw.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
    if !(16..=MAX_MAX_TOKEN_BYTES).contains(&max_token_bytes) {
        return err("max_token_bytes", format!("must be 16..={MAX_MAX_TOKEN_BYTES}"));
    }

    let names = raw.claim_names.unwrap_or_default();
    let roles_claim = claim_name("claim_names.roles", names.roles, "roles")?;
    let scopes_claim = claim_name("claim_names.scopes", names.scopes, "scope")?;
    let constraints_claim = claim_name("claim_names.constraints", names.constraints, "cnst")?;

    let client_ip = match raw.client_ip {
        None => ClientIpSource::Peer,
        Some(c) => match (c.from.as_str(), c.trusted_hops) {
            ("peer", None) => ClientIpSource::Peer,
            ("peer", Some(_)) => return err("client_ip.trusted_hops", "only applies to {\"from\": \"xff\"}"),
            ("xff", Some(h)) if (1..=10).contains(&h) => ClientIpSource::ForwardedFor { trusted_hops: h },
            ("xff", Some(_)) => return err("client_ip.trusted_hops", "must be 1..=10"),
            ("xff", None) => return err("client_ip.trusted_hops", "is required with {\"from\": \"xff\"}"),
            (other, _) => return err("client_ip.from", format!("{other:?} is not \"peer\" or \"xff\"")),
        },
    };

    let region = match raw.region {
        None => None,
        Some(r) => Some(match (r.value, r.header, r.node_metadata) {
            (Some(v), None, None) if !v.is_empty() => RegionSource::Static(v),
            (None, Some(h), None) => RegionSource::Header(header_name("region.header", &h)?),
            (None, None, Some(k)) if !k.is_empty() => RegionSource::NodeMetadata(k),
            _ => return err("region", "exactly one non-empty of `value`, `header`, `node_metadata` is required"),
        }),
    };

    let mut custom_constraints = Vec::new();
    for (name, attr) in raw.custom_constraints.unwrap_or_default() {
        let field = format!("custom_constraints.{name}");
        if name.is_empty() || constraints::kind(&name).is_some() {
            return err(field, "a custom constraint needs a name that is not a built-in constraint");
        }
        custom_constraints.push((name, compile_attribute(&field, attr)?));
    }

    let provider_names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
    let rules = raw
        .rules
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let f = format!("rules[{i}]");
            compile_rule(&f, r.match_, r.auth, r.require, &provider_names)?.with_txn_scope(&f, r.txn_scope)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let default_rule = match raw.default_rule {
        None => {
            Rule { matcher: RuleMatch::default(), auth: Auth::Required, require: Require::default(), txn_scope: None }
        }
        Some(d) => compile_rule("default_rule", None, d.auth, d.require, &provider_names)?
            .with_txn_scope("default_rule", d.txn_scope)?,
    };
    let txn_issue = compile_txn_issue(raw.transaction_tokens.and_then(|t| t.issue), &providers)?;
    check_txn_rules(&rules, &default_rule, txn_provider, txn_issue.as_ref())?;

    let forward = compile_forward(raw.forward.unwrap_or_default(), &token_from)?;
    let mode = match raw.mode {
        None | Some(RawMode::Enforce) => Mode::Enforce,
        Some(RawMode::DryRun) => Mode::DryRun,
    };
    let cache_max_entries = raw.cache.as_ref().and_then(|c| c.max_entries).unwrap_or(DEFAULT_CACHE_ENTRIES);
    if cache_max_entries > MAX_CACHE_ENTRIES {
        return err("cache.max_entries", format!("must be 0..={MAX_CACHE_ENTRIES}"));
    }
    let cache_max_bytes = raw.cache.as_ref().and_then(|c| c.max_bytes).unwrap_or(DEFAULT_CACHE_BYTES);
    if !(4096..=MAX_CACHE_BYTES).contains(&cache_max_bytes) {
        return err("cache.max_bytes", format!("must be 4096..={MAX_CACHE_BYTES}"));
    }
    let (realm, detail) = match raw.response {
        None => ("cjwt".to_string(), true),
        Some(r) => (r.realm.unwrap_or_else(|| "cjwt".into()), r.detail.unwrap_or(true)),
    };
    if realm.is_empty() || !realm.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
        return err("response.realm", "must be printable ASCII without quotes or backslashes");
    }

    let protected_resource = raw.protected_resource.map(compile_protected_resource).transpose()?;

    let usage_store = match raw.usage_store {
        None => None,
        Some(RawUsageStore { etcd: None }) => return err("usage_store", "needs a store: `etcd`"),
        Some(RawUsageStore { etcd: Some(e) }) => Some(compile_etcd("usage_store.etcd", e)?),
    };

    if sender.dpop.as_ref().is_some_and(|d| d.replay_in_usage_store) && usage_store.is_none() {
        return err(
            "sender_constraints.dpop.replay_cache.store",
            "\"usage_store\" needs `usage_store` configured (the etcd that remembers proofs for the mesh)",
        );
    }

    let revocation = compile_revocation(raw.revocation, &providers)?;
    let status_lists = compile_status_lists(raw.status_lists.unwrap_or_default(), &providers)?;
    let status_list_by_uri = status_lists.iter().enumerate().map(|(i, s)| (s.uri.clone(), i)).collect();
    let span_fields = compile_tracing(raw.tracing)?;
    let attenuation = compile_attenuation(raw.attenuation)?;

    Ok(Config {
        providers,
        token_from,
        clock_skew_seconds: i64::try_from(skew).unwrap_or(0),
        require_expiration: raw.require_expiration.unwrap_or(true),
        max_lifetime_seconds,
        required_typ,
        max_token_bytes,
        roles_claim,
        scopes_claim,
        constraints_claim,
        client_ip,
        region,
        custom_constraints,
        rules,
        default_rule,
        forward,
        mode,
        cache_max_entries,
        cache_max_bytes,
        realm,
        detail,
        protected_resource,
        usage_store,
        revocation,
        status_lists,
        status_list_by_uri,
        sender,
        attenuation,
        span_fields,
        txn_provider,
        txn_issue,
    })
}

/// `attenuation` (SPEC §16): `max_depth` 0..=16, `max_bytes` 256..=65536.
fn compile_attenuation(raw: Option<super::raw::RawAttenuation>) -> Result<super::model::Attenuation, ConfigError> {
    let default = super::model::Attenuation::default();
    let Some(raw) = raw else {
        return Ok(default);
    };
    let max_depth = raw.max_depth.unwrap_or(default.max_depth);
    if max_depth > 16 {
        return err("attenuation.max_depth", "must be 0..=16");
    }
    let max_bytes = raw.max_bytes.unwrap_or(default.max_bytes);
    if !(256..=65536).contains(&max_bytes) {
        return err("attenuation.max_bytes", "must be 256..=65536");
    }
    Ok(super::model::Attenuation { max_depth, max_bytes })
}

/// `protected_resource` (RFC 9728): the document, its URL and path.
fn compile_protected_resource(
    raw: super::raw::RawProtectedResource,
) -> Result<super::model::ProtectedResource, ConfigError> {
    const FIELD: &str = "protected_resource";
    let Some((origin, path)) = split_url(&raw.resource) else {
        return err(format!("{FIELD}.resource"), "must be an http(s) URL without query, fragment or quotes");
    };
    if raw.authorization_servers.is_empty() || raw.authorization_servers.iter().any(|a| split_url(a).is_none()) {
        return err(format!("{FIELD}.authorization_servers"), "must be one or more http(s) URLs");
    }
    let url = match raw.metadata_url {
        Some(u) => u,
        // RFC 9728 §3.1: the well-known segment between the host and the path.
        None => format!("{origin}/.well-known/oauth-protected-resource{}", if path == "/" { "" } else { path }),
    };
    let Some((_, served)) = split_url(&url) else {
        return err(format!("{FIELD}.metadata_url"), "must be an http(s) URL without query, fragment or quotes");
    };
    let served = served.to_owned();
    let mut doc = serde_json::Map::new();
    doc.insert("resource".into(), raw.resource.clone().into());
    doc.insert("authorization_servers".into(), raw.authorization_servers.into());
    for (name, values) in [
        ("scopes_supported", raw.scopes_supported),
        ("bearer_methods_supported", raw.bearer_methods_supported),
        ("dpop_signing_alg_values_supported", raw.dpop_signing_alg_values_supported),
    ] {
        if let Some(values) = values {
            doc.insert(name.into(), values.into());
        }
    }
    Ok(super::model::ProtectedResource { url, path: served, document: serde_json::Value::Object(doc).to_string() })
}

/// An `http(s)` URL's origin and path (`/` when empty); `None` for anything
/// else, a query, a fragment, or a character that cannot go in a quoted string.
fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    if !url.bytes().all(|b| (0x21..0x7f).contains(&b) && !matches!(b, b'"' | b'\\' | b'?' | b'#')) {
        return None;
    }
    let host_end = rest.find('/').unwrap_or(rest.len());
    if host_end == 0 {
        return None;
    }
    let origin_len = url.len() - rest.len() + host_end;
    let (origin, path) = url.split_at(origin_len);
    Some((origin, if path.is_empty() { "/" } else { path }))
}

/// `tracing.tags`: known names, each once; written in [`SpanField::ALL`] order.
fn compile_tracing(raw: Option<RawTracing>) -> Result<Vec<SpanField>, ConfigError> {
    let Some(names) = raw.and_then(|t| t.tags) else {
        return Ok(SpanField::DEFAULT.to_vec());
    };
    let mut fields = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let Some(field) = SpanField::ALL.into_iter().find(|f| f.name() == name) else {
            return err(format!("tracing.tags[{i}]"), "must be one of reason, rule, issuer, subject");
        };
        if fields.contains(&field) {
            return err(format!("tracing.tags[{i}]"), format!("{name:?} is listed twice"));
        }
        fields.push(field);
    }
    Ok(SpanField::ALL.into_iter().filter(|f| fields.contains(f)).collect())
}

/// Largest `transaction_tokens.issue.lifetime_seconds` (and its default).
pub const MAX_TXN_LIFETIME: u64 = 300;
/// Default `transaction_tokens.issue.lifetime_seconds`.
pub const DEFAULT_TXN_LIFETIME: u64 = 60;
/// Default `max_lifetime_seconds` of a Txn-Token provider.
pub const DEFAULT_TXN_MAX_LIFETIME: u64 = 300;

impl Rule {
    fn with_txn_scope(mut self, field: &str, scope: Option<String>) -> Result<Rule, ConfigError> {
        if let Some(s) = &scope {
            if !is_scope(s) {
                return err(format!("{field}.txn_scope"), "must be non-empty printable ASCII");
            }
            if matches!(self.auth, Auth::None | Auth::TxnToken) {
                return err(format!("{field}.txn_scope"), "only a rule that allows access tokens issues Txn-Tokens");
            }
        }
        self.txn_scope = scope;
        Ok(self)
    }
}

fn is_scope(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// `auth: txn_token` needs the Txn-Token provider; `require.req_wl` only means
/// something there; with `issue`, every rule that allows a token has a scope,
/// and no rule enforces Txn-Tokens (the gateway issues, the sidecars enforce:
/// decision 71).
fn check_txn_rules(
    rules: &[Rule],
    default_rule: &Rule,
    txn_provider: Option<usize>,
    issue: Option<&TxnIssue>,
) -> Result<(), ConfigError> {
    let named = rules.iter().enumerate().map(|(i, r)| (format!("rules[{i}]"), r));
    for (field, rule) in named.chain(std::iter::once(("default_rule".to_string(), default_rule))) {
        if rule.auth == Auth::TxnToken && txn_provider.is_none() {
            return err(format!("{field}.auth"), "\"txn_token\" needs a provider of `kind: txn_token`");
        }
        if rule.auth != Auth::TxnToken && rule.require.workloads.is_some() {
            return err(format!("{field}.require.req_wl"), "only applies to `auth: txn_token`");
        }
        if rule.auth != Auth::TxnToken && rule.require.caller.is_some() {
            return err(format!("{field}.require.caller"), "only applies to `auth: txn_token`");
        }
        if let Some(issue) = issue {
            if rule.auth == Auth::TxnToken {
                return err(
                    format!("{field}.auth"),
                    "a gateway that issues Txn-Tokens does not enforce them (transaction_tokens.issue)",
                );
            }
            if rule.auth != Auth::None && rule.txn_scope.is_none() && issue.scope.is_none() {
                return err(
                    format!("{field}.txn_scope"),
                    "is required: transaction_tokens.issue has no default `scope`",
                );
            }
        } else if rule.txn_scope.is_some() {
            return err(format!("{field}.txn_scope"), "needs `transaction_tokens.issue`");
        }
    }
    Ok(())
}

fn compile_txn_issue(raw: Option<RawTxnIssue>, providers: &[Provider]) -> Result<Option<TxnIssue>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let field = "transaction_tokens.issue";
    if !is_scope(&raw.trust_domain) {
        return err(format!("{field}.trust_domain"), "must be non-empty printable ASCII");
    }
    if !is_scope(&raw.workload) {
        return err(format!("{field}.workload"), "must be non-empty printable ASCII");
    }
    if raw.scope.as_deref().is_some_and(|s| !is_scope(s)) {
        return err(format!("{field}.scope"), "must be non-empty printable ASCII");
    }
    let lifetime = raw.lifetime_seconds.unwrap_or(DEFAULT_TXN_LIFETIME);
    if !(1..=MAX_TXN_LIFETIME).contains(&lifetime) {
        return err(format!("{field}.lifetime_seconds"), format!("must be 1..={MAX_TXN_LIFETIME}"));
    }
    if raw.kid.as_deref().is_some_and(str::is_empty) || raw.issuer.as_deref().is_some_and(str::is_empty) {
        return err(field, "`kid` and `issuer` must not be empty when given");
    }
    let (key, exchange) = match (raw.key, raw.exchange) {
        (Some(key), None) => (Some(read_txn_key(&format!("{field}.key"), key)?), None),
        (None, Some(exchange)) => {
            if raw.kid.is_some() || raw.issuer.is_some() {
                return err(field, "`kid` and `issuer` are the service's when `exchange` is set");
            }
            (None, Some(compile_txn_exchange(&format!("{field}.exchange"), exchange, &raw.trust_domain, providers)?))
        }
        _ => return err(field, "exactly one of `key` (self-issued), `exchange` (a Txn-Token Service) is required"),
    };
    Ok(Some(TxnIssue {
        trust_domain: raw.trust_domain,
        workload: raw.workload,
        scope: raw.scope,
        lifetime_seconds: i64::try_from(lifetime).unwrap_or(60),
        key,
        exchange,
        kid: raw.kid,
        issuer: raw.issuer,
    }))
}

/// `issue.exchange`: the service's cluster, and the `kind: txn_token`
/// provider of the same trust domain, whose keys verify its answers.
fn compile_txn_exchange(
    field: &str,
    raw: RawTxnExchange,
    trust_domain: &str,
    providers: &[Provider],
) -> Result<TxnExchange, ConfigError> {
    if !is_scope(&raw.cluster) {
        return err(format!("{field}.cluster"), "must be non-empty printable ASCII");
    }
    let authority = raw.authority.unwrap_or_else(|| raw.cluster.clone());
    if !is_scope(&authority) {
        return err(format!("{field}.authority"), "must be non-empty printable ASCII");
    }
    let path = raw.path.unwrap_or_else(|| "/token".to_string());
    if !path.starts_with('/') || !is_scope(&path) {
        return err(format!("{field}.path"), "must be an absolute path");
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(DEFAULT_TXN_EXCHANGE_TIMEOUT_MS);
    if !(1..=MAX_TXN_EXCHANGE_TIMEOUT_MS).contains(&timeout_ms) {
        return err(format!("{field}.timeout_ms"), format!("must be 1..={MAX_TXN_EXCHANGE_TIMEOUT_MS}"));
    }
    let provider =
        providers.iter().position(|p| matches!(&p.kind, ProviderKind::TxnToken(d) if d.trust_domain == trust_domain));
    let Some(provider) = provider else {
        return err(
            field,
            "needs a provider of `kind: txn_token` with the same `trust_domain`: its keys verify the service's answers",
        );
    };
    Ok(TxnExchange { cluster: raw.cluster, authority, path, timeout_ms, provider })
}

/// `issue.exchange.timeout_ms` when left out.
const DEFAULT_TXN_EXCHANGE_TIMEOUT_MS: u64 = 1000;
/// The longest `issue.exchange.timeout_ms`.
const MAX_TXN_EXCHANGE_TIMEOUT_MS: u64 = 10_000;

/// A key file, natively.
#[cfg(not(target_os = "wasi"))]
fn read_key_file(field: &str, path: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).or_else(|e| err(field, format!("cannot read {path:?}: {}", e.kind())))
}

/// The wasm VM has no file system (and linking WASI's would cost the filter
/// its size): a key file is refused, `env` is the way in.
#[cfg(target_os = "wasi")]
fn read_key_file(field: &str, _path: &str) -> Result<String, ConfigError> {
    err(field, "the wasm build cannot read files: use `env` (named in vm_config.environment_variables)")
}

/// Reads the signing key once, at configuration. Neither the PEM nor anything
/// read from it is ever part of an error or a log line (SEC-13.4).
fn read_txn_key(field: &str, raw: RawTxnKey) -> Result<crate::keys::signing::TxnSigningKey, ConfigError> {
    let pem = match (raw.file, raw.env) {
        (Some(path), None) if !path.is_empty() => read_key_file(&format!("{field}.file"), &path)?,
        (None, Some(name)) if !name.is_empty() => match std::env::var(&name) {
            Ok(text) => text,
            Err(_) => return err(format!("{field}.env"), format!("the environment has no {name:?} (or not UTF-8)")),
        },
        _ => return err(field, "exactly one non-empty of `file`, `env` is required"),
    };
    crate::keys::signing::TxnSigningKey::from_pkcs8_pem(&pem).or_else(|m| err(field, m))
}

/// The authorization scheme of DPoP-bound tokens (RFC 9449 §7.1), with its space.
pub const DPOP_SCHEME: &str = "DPoP ";
/// Proof algorithms accepted when `dpop.algorithms` is left out.
pub const DEFAULT_DPOP_ALGORITHMS: [Algorithm; 2] = [Algorithm::ES256, Algorithm::EdDSA];
/// Default `dpop.max_age_seconds`.
pub const DEFAULT_DPOP_MAX_AGE: u64 = 60;
/// Largest `dpop.max_age_seconds` accepted.
pub const MAX_DPOP_MAX_AGE: u64 = 600;
/// Default `dpop.replay_cache.max_entries`.
pub const DEFAULT_REPLAY_ENTRIES: usize = 65_536;
/// Bounds of `dpop.replay_cache.max_entries`.
pub const REPLAY_ENTRIES_RANGE: std::ops::RangeInclusive<usize> = 1024..=1_048_576;
/// Default `dpop.nonce.rotate_seconds`.
pub const DEFAULT_NONCE_ROTATE: u64 = 300;

fn compile_sender(raw: Option<RawSenderConstraints>) -> Result<SenderConstraints, ConfigError> {
    let Some(raw) = raw else {
        return Ok(SenderConstraints::default());
    };
    if raw.dpop.is_none() && raw.mtls.is_none() {
        return err("sender_constraints", "needs `dpop`, `mtls` or both");
    }
    let dpop = raw.dpop.map(compile_dpop).transpose()?;
    let mtls =
        raw.mtls.map(|m| compile_certificate_source("sender_constraints.mtls", &m.from, m.trusted_hops)).transpose()?;
    Ok(SenderConstraints { dpop, mtls })
}

/// `{"from": "peer"}` or `{"from": "xfcc", "trusted_hops": 1..=10}` at `field`.
fn compile_certificate_source(field: &str, from: &str, trusted_hops: Option<u32>) -> Result<MtlsSource, ConfigError> {
    match (from, trusted_hops) {
        ("peer", None) => Ok(MtlsSource::Peer),
        ("peer", Some(_)) => err(format!("{field}.trusted_hops"), "only applies to {\"from\": \"xfcc\"}"),
        ("xfcc", Some(h)) if (1..=10).contains(&h) => Ok(MtlsSource::Xfcc { trusted_hops: h }),
        ("xfcc", Some(_)) => err(format!("{field}.trusted_hops"), "must be 1..=10"),
        ("xfcc", None) => err(format!("{field}.trusted_hops"), "is required with {\"from\": \"xfcc\"}"),
        (other, _) => err(format!("{field}.from"), format!("{other:?} is not \"peer\" or \"xfcc\"")),
    }
}

fn compile_dpop(raw: RawDpop) -> Result<Dpop, ConfigError> {
    const F: &str = "sender_constraints.dpop";
    let algorithms = match raw.algorithms {
        None => DEFAULT_DPOP_ALGORITHMS.to_vec(),
        Some(list) if list.is_empty() => return err(format!("{F}.algorithms"), "at least one algorithm is required"),
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for (i, name) in list.iter().enumerate() {
                let field = format!("{F}.algorithms[{i}]");
                let alg = Algorithm::from_name(name).ok_or_else(|| ConfigError {
                    field: field.clone(),
                    message: format!("unsupported algorithm {name:?}"),
                })?;
                if alg.is_hmac() {
                    return err(field, format!("{name} is symmetric; DPoP proofs are signed with a private key"));
                }
                if out.contains(&alg) {
                    return err(field, format!("{name} is listed twice"));
                }
                out.push(alg);
            }
            out
        }
    };
    let algs = algorithms.iter().map(|a| a.name()).collect::<Vec<_>>().join(" ");
    let max_age = raw.max_age_seconds.unwrap_or(DEFAULT_DPOP_MAX_AGE);
    if !(1..=MAX_DPOP_MAX_AGE).contains(&max_age) {
        return err(format!("{F}.max_age_seconds"), format!("must be 1..={MAX_DPOP_MAX_AGE}"));
    }
    let public_origin = match raw.public_origin {
        None => None,
        Some(o) => Some(crate::request::origin::parse_origin(&o).ok_or_else(|| ConfigError {
            field: format!("{F}.public_origin"),
            message: "must be an http or https origin (`https://host[:port]`, no path, query or user info)".into(),
        })?),
    };
    let nonce = match raw.nonce {
        None => None,
        Some(n) => {
            let secret = n
                .secret
                .as_deref()
                .and_then(|s| crate::encoding::b64::decode(s.as_bytes()))
                .filter(|k| k.len() >= 32)
                .ok_or_else(|| ConfigError {
                    field: format!("{F}.nonce.secret"),
                    message: "is required: base64url (no padding) of at least 32 bytes".into(),
                })?;
            let rotate = n.rotate_seconds.unwrap_or(DEFAULT_NONCE_ROTATE);
            if !(10..=86_400).contains(&rotate) {
                return err(format!("{F}.nonce.rotate_seconds"), "must be 10..=86400");
            }
            Some(NonceKey { secret, rotate_seconds: i64::try_from(rotate).unwrap_or(300) })
        }
    };
    let (max_entries, store) = raw.replay_cache.map_or((None, None), |r| (r.max_entries, r.store));
    let replay_in_usage_store = match store.as_deref() {
        None | Some("local") => false,
        Some("usage_store") if max_entries.is_some() => {
            return err(format!("{F}.replay_cache.max_entries"), "only applies to {\"store\": \"local\"}")
        }
        Some("usage_store") => true,
        Some(other) => {
            return err(format!("{F}.replay_cache.store"), format!("{other:?} is not \"local\" or \"usage_store\""))
        }
    };
    let replay_max_entries = max_entries.unwrap_or(DEFAULT_REPLAY_ENTRIES);
    if !REPLAY_ENTRIES_RANGE.contains(&replay_max_entries) {
        return err(
            format!("{F}.replay_cache.max_entries"),
            format!("must be {}..={}", REPLAY_ENTRIES_RANGE.start(), REPLAY_ENTRIES_RANGE.end()),
        );
    }
    Ok(Dpop {
        algorithms: AlgSet::of(&algorithms),
        algs,
        max_age_seconds: i64::try_from(max_age).unwrap_or(60),
        public_origin,
        nonce,
        replay_max_entries,
        replay_in_usage_store,
    })
}

/// Largest `status_lists[].max_bytes` accepted: 16 MiB (128 M entries at 1 bit).
pub const MAX_STATUS_LIST_BYTES: usize = 16 << 20;

fn compile_revocation(raw: Option<RawRevocation>, providers: &[Provider]) -> Result<DenyList, ConfigError> {
    let mut list = DenyList::default();
    let Some(raw) = raw else {
        return Ok(list);
    };
    // An entry for an issuer no provider has could never match: most likely a typo
    // that would leave the token it names valid. Refused.
    let issuer = |field: &str, iss: &str| {
        if providers.iter().any(|p| p.issuer == iss) {
            Ok(())
        } else {
            err(format!("{field}.iss"), format!("{iss:?} is no provider's issuer"))
        }
    };
    for (i, e) in raw.jti.unwrap_or_default().into_iter().enumerate() {
        let field = format!("revocation.jti[{i}]");
        issuer(&field, &e.iss)?;
        if e.jti.is_empty() {
            return err(format!("{field}.jti"), "must not be empty");
        }
        if list.add_jti(&e.iss, &e.jti).is_err() {
            return err(field, "duplicate entry");
        }
    }
    for (i, e) in raw.subjects.unwrap_or_default().into_iter().enumerate() {
        let field = format!("revocation.subjects[{i}]");
        issuer(&field, &e.iss)?;
        if e.sub.is_empty() {
            return err(format!("{field}.sub"), "must not be empty");
        }
        if list.add_subject(&e.iss, &e.sub, e.issued_before).is_err() {
            return err(field, "duplicate subject (one `issued_before` per issuer and subject)");
        }
    }
    Ok(list)
}

fn compile_status_lists(raw: Vec<RawStatusList>, providers: &[Provider]) -> Result<Vec<StatusListSource>, ConfigError> {
    let mut lists: Vec<StatusListSource> = Vec::with_capacity(raw.len());
    for (i, s) in raw.into_iter().enumerate() {
        let field = format!("status_lists[{i}]");
        if s.uri.is_empty() {
            return err(format!("{field}.uri"), "must not be empty");
        }
        if lists.iter().any(|l| l.uri == s.uri) {
            return err(format!("{field}.uri"), format!("duplicate uri {:?}", s.uri));
        }
        let Some(provider) = providers.iter().position(|p| p.name == s.provider) else {
            return err(format!("{field}.provider"), format!("{:?} is not a provider name", s.provider));
        };
        if s.cluster.is_empty() || !s.cluster.bytes().all(|b| b.is_ascii_graphic()) {
            return err(format!("{field}.cluster"), "must name an Envoy cluster");
        }
        if !s.path.starts_with('/') || s.path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return err(format!("{field}.path"), "must start with '/' and have no spaces or control characters");
        }
        let authority = s.authority.unwrap_or_else(|| s.cluster.clone());
        if authority.is_empty() || !authority.bytes().all(|b| b.is_ascii_graphic()) {
            return err(format!("{field}.authority"), "must be non-empty printable ASCII without spaces");
        }
        let refresh_seconds = s.refresh_seconds.unwrap_or(300);
        if !(1..=86_400).contains(&refresh_seconds) {
            return err(format!("{field}.refresh_seconds"), "must be 1..=86400");
        }
        let timeout_ms = s.timeout_ms.unwrap_or(2000);
        if !(100..=60_000).contains(&timeout_ms) {
            return err(format!("{field}.timeout_ms"), "must be 100..=60000");
        }
        let max_bytes = s.max_bytes.unwrap_or(1 << 20);
        if !(1..=MAX_STATUS_LIST_BYTES).contains(&max_bytes) {
            return err(format!("{field}.max_bytes"), format!("must be 1..={MAX_STATUS_LIST_BYTES}"));
        }
        lists.push(StatusListSource {
            uri: s.uri,
            provider,
            cluster: s.cluster,
            authority,
            path: s.path,
            refresh_seconds,
            timeout_ms,
            max_bytes,
        });
    }
    Ok(lists)
}

/// The longest a request may wait for the usage store, ms.
pub const MAX_USAGE_TIMEOUT_MS: u64 = 5000;

/// The largest `usage_store.etcd.allowance.batch`: an Envoy holds at most
/// `batch + refill_below − 1` uses of a token unspent (about 1.5 batches with
/// the default `refill_below`; the bound on what is lost, SPEC §8), and
/// each batch is one etcd transaction, so a batch sized for a token's peak
/// rate keeps the store's load (and, where the store shares the proxies'
/// CPUs, its CPU bursts) to a few transactions per second (decision 127).
const MAX_BATCH: u64 = 1_000_000;

fn compile_etcd(field: &str, e: RawEtcdStore) -> Result<EtcdStore, ConfigError> {
    let required = |name: &str, v: Option<String>| match v {
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic()) => Ok(v),
        Some(_) => err(format!("{field}.{name}"), "must be non-empty printable ASCII without spaces"),
        None => err(format!("{field}.{name}"), "is required"),
    };
    let cluster = required("cluster", e.cluster)?;
    let authority = required("authority", e.authority)?;
    let api = match e.api.as_deref() {
        None | Some("grpc") => EtcdApi::Grpc,
        Some("json") => EtcdApi::Json,
        Some(_) => return err(format!("{field}.api"), "must be \"grpc\" or \"json\""),
    };
    let api_prefix = e.api_prefix.unwrap_or_else(|| "/v3".into());
    if !api_prefix.starts_with('/') || api_prefix.ends_with('/') || !api_prefix.bytes().all(|b| b.is_ascii_graphic()) {
        return err(format!("{field}.api_prefix"), "must start with '/' and not end with one (e.g. \"/v3\")");
    }
    let key_prefix = e.key_prefix.unwrap_or_else(|| "cjwt/uses/".into());
    if key_prefix.is_empty() || key_prefix.len() > 256 || !key_prefix.bytes().all(|b| b.is_ascii_graphic()) {
        return err(format!("{field}.key_prefix"), "must be 1..=256 printable ASCII characters without spaces");
    }
    let timeout_ms = e.timeout_ms.unwrap_or(250);
    if !(1..=MAX_USAGE_TIMEOUT_MS).contains(&timeout_ms) {
        return err(format!("{field}.timeout_ms"), format!("must be 1..={MAX_USAGE_TIMEOUT_MS}"));
    }
    let allowance = match e.allowance {
        None => None,
        Some(a) => {
            let from_max_uses = match a.from_max_uses {
                Some(n) if n >= 2 => n,
                Some(_) => return err(format!("{field}.allowance.from_max_uses"), "must be at least 2"),
                None => return err(format!("{field}.allowance.from_max_uses"), "is required"),
            };
            let batch = a.batch.unwrap_or(16);
            if !(2..=MAX_BATCH).contains(&batch) {
                return err(format!("{field}.allowance.batch"), format!("must be 2..={MAX_BATCH}"));
            }
            let refill_below = a.refill_below.unwrap_or(batch / 2);
            if refill_below > batch {
                return err(format!("{field}.allowance.refill_below"), "must be 0..=batch");
            }
            Some(Allowance { from_max_uses, batch, refill_below })
        }
    };
    Ok(EtcdStore { cluster, authority, api, api_prefix, key_prefix, timeout_ms, allowance })
}

/// The `typ` values of JWTs that are signed by issuers cjwt trusts but are not
/// access tokens (RFC 8725 §3.11: explicit typing keeps one kind of JWT from
/// being accepted as another): Status List Tokens, DPoP proofs and Transaction
/// Tokens. Compared after [`crate::config::normalize_typ`].
pub const NOT_ACCESS_TOKEN_TYPES: [&str; 3] = ["statuslist+jwt", "dpop+jwt", "txntoken+jwt"];

/// `typ` compared as a media type: ASCII-case-insensitive, `application/` optional.
pub fn normalize_typ(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) if !rest.contains('/') => rest.to_string(),
        _ => lower,
    }
}

fn claim_name(field: &str, value: Option<String>, default: &str) -> Result<String, ConfigError> {
    match value {
        None => Ok(default.to_string()),
        Some(v) if v.is_empty() || v.starts_with('.') || v.ends_with('.') || v.contains("..") => {
            err(field, "must be a claim name or a dotted path")
        }
        Some(v) => Ok(v),
    }
}

/// Header names are lowercase HTTP tokens; pseudo-headers are not allowed.
fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return err(field, format!("{name:?} is not a valid header name"));
    }
    Ok(name.to_ascii_lowercase())
}

fn compile_provider(field: &str, raw: RawProvider) -> Result<Provider, ConfigError> {
    if raw.name.is_empty() || !raw.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return err(format!("{field}.name"), "must be non-empty ASCII letters, digits, '-', '_' or '.'");
    }
    let kind = match (raw.kind.unwrap_or_default(), raw.trust_domain, raw.max_lifetime_seconds) {
        (RawProviderKind::AccessToken, None, None) => ProviderKind::AccessToken,
        (RawProviderKind::AccessToken, _, _) => {
            return err(field, "`trust_domain` and `max_lifetime_seconds` only apply to `kind: txn_token`");
        }
        (RawProviderKind::TxnToken, None, _) => {
            return err(format!("{field}.trust_domain"), "is required with `kind: txn_token`")
        }
        (RawProviderKind::TxnToken, Some(domain), lifetime) => {
            if domain.is_empty() {
                return err(format!("{field}.trust_domain"), "must not be empty");
            }
            let lifetime = lifetime.unwrap_or(DEFAULT_TXN_MAX_LIFETIME);
            if !(1..=86_400).contains(&lifetime) {
                return err(format!("{field}.max_lifetime_seconds"), "must be 1..=86400");
            }
            let max_lifetime_seconds = i64::try_from(lifetime).unwrap_or(300);
            ProviderKind::TxnToken(TxnDomain { trust_domain: domain, max_lifetime_seconds })
        }
    };
    let issuer = match (raw.issuer, &kind) {
        (Some(i), _) if i.is_empty() => return err(format!("{field}.issuer"), "must not be empty"),
        (Some(i), _) => i,
        // A Txn-Token's `iss` is optional (the draft); without one configured it is not compared.
        (None, ProviderKind::TxnToken(_)) => String::new(),
        (None, ProviderKind::AccessToken) => return err(format!("{field}.issuer"), "missing field `issuer`"),
    };
    let audiences = match raw.audiences {
        Some(a) if a.is_empty() => return err(format!("{field}.audiences"), "must not be empty when given"),
        other => other,
    };
    let algorithms = match &raw.algorithms {
        None => None,
        Some(list) if list.is_empty() => return err(format!("{field}.algorithms"), "must not be empty when given"),
        Some(list) => {
            let mut set = AlgSet::EMPTY;
            for (i, name) in list.iter().enumerate() {
                match Algorithm::from_name(name) {
                    Some(a) => set.insert(a),
                    None => return err(format!("{field}.algorithms[{i}]"), format!("unsupported algorithm {name:?}")),
                }
            }
            Some(set)
        }
    };

    let mut keys: Vec<VerificationKey> = Vec::new();
    if let Some(jwks) = raw.jwks {
        let jwks_field = format!("{field}.jwks");
        let set = match jwks {
            Value::Object(map) => map,
            Value::String(text) => match json::parse_object(text.as_bytes()) {
                Ok(map) => map,
                Err(_) => return err(jwks_field, "is not a JSON object (JWKS)"),
            },
            _ => return err(jwks_field, "must be a JWKS object or a JSON string of one"),
        };
        keys.extend(parse_jwks(&jwks_field, &set, algorithms)?);
    }
    for (i, pem) in raw.pem_keys.unwrap_or_default().into_iter().enumerate() {
        let f = format!("{field}.pem_keys[{i}]");
        let Some(alg) = Algorithm::from_name(&pem.alg) else {
            return err(format!("{f}.alg"), format!("unsupported algorithm {:?}", pem.alg));
        };
        match VerificationKey::from_pem(pem.kid, alg, &pem.pem, algorithms) {
            Ok(k) => keys.push(k),
            Err(m) => return err(f, m),
        }
    }
    let remote = match raw.remote_jwks {
        None => None,
        Some(r) => Some(compile_remote(&format!("{field}.remote_jwks"), r)?),
    };
    if keys.is_empty() && remote.is_none() {
        return err(field, "needs keys: `jwks`, `pem_keys` or `remote_jwks`");
    }
    if keys.iter().any(|k| k.is_symmetric()) && (keys.iter().any(|k| !k.is_symmetric()) || remote.is_some()) {
        return err(field, "symmetric (oct) and asymmetric keys must not be mixed in one provider");
    }
    let mut keys_by_kid = HashMap::new();
    for k in &keys {
        if let Some(kid) = &k.kid {
            if keys_by_kid.insert(kid.clone(), k.clone()).is_some() {
                return err(field, format!("duplicate kid {kid:?}"));
            }
        }
    }
    let union = keys.iter().fold(AlgSet::EMPTY, |acc, k| acc.union(k.algs));
    let configured_algorithms = algorithms;
    let algorithms = match (algorithms, remote.is_some()) {
        (Some(a), _) => a,
        (None, true) => AlgSet::all(),
        (None, false) => union,
    };
    Ok(Provider {
        name: raw.name,
        issuer,
        audiences,
        algorithms,
        configured_algorithms,
        keys_by_kid,
        keys,
        remote,
        kind,
    })
}

/// Parses a JWKS (`{"keys": [...]}`) with the rules of inline keys.
pub fn parse_jwks(
    field: &str,
    set: &serde_json::Map<String, Value>,
    algorithms: Option<AlgSet>,
) -> Result<Vec<VerificationKey>, ConfigError> {
    let Some(Value::Array(list)) = set.get("keys") else {
        return err(format!("{field}.keys"), "must be an array of JWKs");
    };
    let mut keys = Vec::with_capacity(list.len());
    for (i, jwk) in list.iter().enumerate() {
        let f = format!("{field}.keys[{i}]");
        let Value::Object(map) = jwk else {
            return err(f, "must be a JWK object");
        };
        match VerificationKey::from_jwk(map, algorithms) {
            Ok(k) => keys.push(k),
            Err(m) => return err(f, m),
        }
    }
    Ok(keys)
}

fn compile_remote(field: &str, r: RawRemoteJwks) -> Result<RemoteJwks, ConfigError> {
    if r.cluster.is_empty() {
        return err(format!("{field}.cluster"), "must name an Envoy cluster");
    }
    let source = match (r.path, r.discovery_path) {
        (Some(p), None) if p.starts_with('/') => JwksSource::Path(p),
        (None, Some(d)) if d.starts_with('/') => JwksSource::Discovery(d),
        (Some(_), None) => return err(format!("{field}.path"), "must start with '/'"),
        (None, Some(_)) => return err(format!("{field}.discovery_path"), "must start with '/'"),
        _ => return err(field, "exactly one of `path` (the JWKS) or `discovery_path` (OIDC discovery) is required"),
    };
    let refresh = r.refresh_seconds.unwrap_or(600);
    if !(1..=86_400).contains(&refresh) {
        return err(format!("{field}.refresh_seconds"), "must be 1..=86400");
    }
    let min_refetch = r.min_refetch_seconds.unwrap_or(30);
    if min_refetch > 3600 {
        return err(format!("{field}.min_refetch_seconds"), "must be 0..=3600");
    }
    let timeout = r.timeout_ms.unwrap_or(2000);
    if !(100..=60_000).contains(&timeout) {
        return err(format!("{field}.timeout_ms"), "must be 100..=60000");
    }
    let authority = r.authority.unwrap_or_else(|| r.cluster.clone());
    Ok(RemoteJwks {
        cluster: r.cluster,
        authority,
        source,
        refresh_seconds: refresh,
        timeout_ms: timeout,
        min_refetch_seconds: min_refetch,
    })
}

fn compile_token_source(field: &str, s: RawTokenSource) -> Result<TokenSource, ConfigError> {
    match (s.header, s.prefix, s.cookie, s.query) {
        (Some(h), prefix, None, None) => {
            let name = header_name(&format!("{field}.header"), &h)?;
            Ok(TokenSource::Header { name, prefix: prefix.unwrap_or_default() })
        }
        (None, None, Some(c), None) if !c.is_empty() => Ok(TokenSource::Cookie(c)),
        (None, None, None, Some(q)) if !q.is_empty() => Ok(TokenSource::Query(q)),
        _ => err(field, "exactly one of `header` (with optional `prefix`), `cookie`, `query` is required"),
    }
}

fn compile_attribute(field: &str, a: RawAttribute) -> Result<Attribute, ConfigError> {
    match (a.header, a.query, a.path_segment) {
        (Some(h), None, None) => Ok(Attribute::Header(header_name(&format!("{field}.header"), &h)?)),
        (None, Some(q), None) if !q.is_empty() => Ok(Attribute::Query(q)),
        (None, None, Some(i)) if i < 64 => Ok(Attribute::PathSegment(i)),
        _ => err(field, "exactly one of `header`, `query`, `path_segment` (0..64) is required"),
    }
}

fn compile_rule(
    field: &str,
    m: Option<RawMatch>,
    auth: Option<RawAuth>,
    require: Option<RawRequire>,
    providers: &[&str],
) -> Result<Rule, ConfigError> {
    let m = m.unwrap_or_default();
    let path = match m.path {
        None => None,
        Some(p) => Some(PathPattern::parse(&p).or_else(|e| err(format!("{field}.match.path"), e))?),
    };
    let methods = match m.methods {
        Some(list) if list.is_empty() => return err(format!("{field}.match.methods"), "must not be empty when given"),
        other => other,
    };
    let hosts = match m.hosts {
        None => None,
        Some(list) if list.is_empty() => return err(format!("{field}.match.hosts"), "must not be empty when given"),
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, h)| HostPattern::parse(h).or_else(|e| err(format!("{field}.match.hosts[{i}]"), e)))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let auth = match auth {
        None | Some(RawAuth::Required) => Auth::Required,
        Some(RawAuth::Optional) => Auth::Optional,
        Some(RawAuth::None) => Auth::None,
        Some(RawAuth::TxnToken) => Auth::TxnToken,
    };
    let require = compile_require(&format!("{field}.require"), require.unwrap_or_default(), providers)?;
    if auth == Auth::None && require != Require::default() {
        return err(format!("{field}.require"), "cannot be combined with \"auth\": \"none\"");
    }
    Ok(Rule { matcher: RuleMatch { path, methods, hosts }, auth, require, txn_scope: None })
}

fn non_empty(field: String, list: Option<Vec<String>>) -> Result<Option<Vec<String>>, ConfigError> {
    match list {
        Some(l) if l.is_empty() => err(field, "must not be empty when given"),
        other => Ok(other),
    }
}

fn compile_require(field: &str, r: RawRequire, providers: &[&str]) -> Result<Require, ConfigError> {
    let issuers = non_empty(format!("{field}.issuers"), r.issuers)?;
    if let Some(list) = &issuers {
        for (i, name) in list.iter().enumerate() {
            if !providers.contains(&name.as_str()) {
                return err(format!("{field}.issuers[{i}]"), format!("{name:?} is not a provider name"));
            }
        }
    }
    let mut claims = Vec::new();
    for (i, c) in r.claims.unwrap_or_default().into_iter().enumerate() {
        let f = format!("{field}.claims[{i}]");
        if c.claim.is_empty() {
            return err(format!("{f}.claim"), "must not be empty");
        }
        claims.push(match (c.equals, c.one_of, c.equals_header, c.present, c.prefix) {
            (Some(v), None, None, None, None) => ClaimCheck::Equals(c.claim, v),
            (None, Some(list), None, None, None) if !list.is_empty() => ClaimCheck::OneOf(c.claim, list),
            (None, None, Some(h), None, None) => {
                ClaimCheck::EqualsHeader(c.claim, header_name(&format!("{f}.equals_header"), &h)?)
            }
            (None, None, None, Some(true), None) => ClaimCheck::Present(c.claim),
            (None, None, None, None, Some(p)) if !p.is_empty() => ClaimCheck::Prefix(c.claim, p),
            _ => {
                return err(
                    f,
                    "exactly one of `equals`, `one_of` (non-empty), `equals_header`, `present: true`, \
                     `prefix` (non-empty) is required",
                )
            }
        });
    }
    Ok(Require {
        issuers,
        roles_any: non_empty(format!("{field}.roles_any"), r.roles_any)?,
        roles_all: non_empty(format!("{field}.roles_all"), r.roles_all)?,
        scopes_any: non_empty(format!("{field}.scopes_any"), r.scopes_any)?,
        scopes_all: non_empty(format!("{field}.scopes_all"), r.scopes_all)?,
        claims,
        workloads: non_empty(format!("{field}.req_wl"), r.req_wl)?,
        caller: match r.caller {
            None => None,
            Some(c) => Some(Caller {
                from: compile_certificate_source(&format!("{field}.caller"), &c.from, c.trusted_hops)?,
                identities: non_empty(format!("{field}.caller.identities"), c.identities)?,
            }),
        },
    })
}

fn compile_forward(f: RawForward, sources: &[TokenSource]) -> Result<Forward, ConfigError> {
    let mut claims_to_headers = Vec::new();
    for (i, c) in f.claims_to_headers.unwrap_or_default().into_iter().enumerate() {
        let field = format!("forward.claims_to_headers[{i}]");
        if c.claim.is_empty() {
            return err(format!("{field}.claim"), "must not be empty");
        }
        let header = header_name(&format!("{field}.header"), &c.header)?;
        claims_to_headers.push((c.claim, header));
    }
    let payload_header = match f.payload_header {
        None => None,
        Some(h) => Some(header_name("forward.payload_header", &h)?),
    };
    let forwarded: Vec<&str> =
        claims_to_headers.iter().map(|(_, h)| h.as_str()).chain(payload_header.as_deref()).collect();
    for (i, h) in forwarded.iter().enumerate() {
        if forwarded.iter().skip(i + 1).any(|o| o == h) {
            return err("forward", format!("header {h:?} is forwarded twice"));
        }
        let is_credential = sources.iter().any(|s| matches!(s, TokenSource::Header { name, .. } if name == h));
        if is_credential || *h == "cookie" || h.starts_with(':') || *h == "host" {
            return err("forward", format!("header {h:?} cannot carry forwarded claims"));
        }
    }
    Ok(Forward { claims_to_headers, payload_header, remove_token: f.remove_token.unwrap_or(false) })
}
