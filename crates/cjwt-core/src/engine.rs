//! The decision (SPEC §4): rule, credential, token, `require`, constraints — in
//! that order, first failure decides, `max_uses` counted last so that a refused
//! request uses nothing.

use crate::config::{Attribute, Auth, ClaimCheck, ClientIpSource, Config, RegionSource, Require, Rule};
use crate::constraints::ip;
use crate::constraints::lookup;
use crate::keys::host_crypto::HostCrypto;
use crate::reason::Reason;
use crate::request::credential::{self, Credential, Found};
use crate::request::host::{header_values, single_header, Host, UsageCounter};
use crate::request::paths::{is_normalized, normalize_host, path_only, path_segment, query_only};
use crate::request::query::{self, Param};
use crate::token::cache::TokenCache;
use crate::token::verify::{check_claims, verify, KeyLookup, TokenRefusal, TokenText, VerifiedToken};
use crate::usage::UsageId;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::rc::Rc;

/// What to do with a request.
#[derive(Debug)]
pub enum Decision {
    /// Let it through; `token` is the verified token, if one was required or offered.
    Allow { token: Option<Rc<VerifiedToken>>, credential: Option<Found> },
    /// Refuse it.
    Deny(Denial),
}

/// A refusal: the reason, and a short fingerprint of the token (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: Reason,
    pub fingerprint: Option<String>,
    /// For `unknown_key` and `keys_unavailable`: the provider (index) whose keys
    /// were missing, so the adapter can fetch them and decide again.
    pub provider: Option<usize>,
    /// The one credential found, if any: a `dry_run` refusal still applies
    /// `forward.remove_token` to it (SEC-12.12).
    pub credential: Option<Found>,
}

/// The decision and whether the verified-token cache answered (for metrics).
#[derive(Debug)]
pub struct Outcome {
    pub decision: Decision,
    /// `Some(true)` on a cache hit, `Some(false)` on a miss, `None` when no token was verified.
    pub cache_hit: Option<bool>,
}

/// The core: a compiled configuration and its verified-token cache (one per VM).
pub struct Engine {
    pub config: Config,
    cache: TokenCache,
}

/// A short, non-reversible token fingerprint for logs: the first 8 bytes of SHA-256, hex.
pub fn fingerprint(token: &[u8]) -> String {
    Sha256::digest(token).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl Engine {
    pub fn new(config: Config) -> Engine {
        let cache = TokenCache::new(config.cache_max_entries, config.cache_max_bytes);
        Engine { config, cache }
    }

    /// Number of cached verified tokens.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Estimated heap bytes held by the verified-token cache.
    pub fn cached_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// Decides one request.
    pub fn decide(
        &mut self,
        host: &dyn Host,
        keys: &dyn KeyLookup,
        crypto: &dyn HostCrypto,
        counter: &mut dyn UsageCounter,
    ) -> Outcome {
        let mut cache_hit = None;
        let decision = match self.decide_inner(host, keys, crypto, counter, &mut cache_hit) {
            Ok(d) => d,
            Err((TokenRefusal { reason, provider }, credential)) => {
                let fingerprint = credential.as_ref().map(|c| fingerprint(&c.token));
                Decision::Deny(Denial { reason, fingerprint, provider, credential })
            }
        };
        Outcome { decision, cache_hit }
    }

    fn decide_inner(
        &mut self,
        host: &dyn Host,
        keys: &dyn KeyLookup,
        crypto: &dyn HostCrypto,
        counter: &mut dyn UsageCounter,
        cache_hit: &mut Option<bool>,
    ) -> Result<Decision, (TokenRefusal, Option<Found>)> {
        let config = &self.config;
        let rule = select_rule(config, host).map_err(|r| (r.into(), None))?;
        if rule.auth == Auth::None {
            return Ok(Decision::Allow { token: None, credential: None });
        }
        let found = match credential::find(&config.token_from, host) {
            Credential::None if rule.auth == Auth::Optional => {
                return Ok(Decision::Allow { token: None, credential: None })
            }
            Credential::None => return Err((Reason::MissingToken.into(), None)),
            Credential::Multiple => return Err((Reason::MultipleTokens.into(), None)),
            Credential::One(found) => found,
        };
        let fail = |reason: Reason| (TokenRefusal::from(reason), Some(found.clone()));
        let text = TokenText::admit(config, &found.token).map_err(fail)?;
        let now = host.now();
        let token = match self.cache.get(text.as_str(), now, keys) {
            Some(t) => {
                *cache_hit = Some(true);
                t
            }
            None => {
                *cache_hit = Some(false);
                let verified = Rc::new(verify(config, keys, crypto, text).map_err(|e| (e, Some(found.clone())))?);
                let expires_at = verified.exp.map_or(i64::MAX, |e| e.saturating_add(config.clock_skew_seconds));
                self.cache.insert(text.as_str(), Rc::clone(&verified), expires_at, now, keys);
                verified
            }
        };
        let config = &self.config;
        check_claims(config, &token, now).map_err(fail)?;
        check_require(config, &rule.require, &token, host).map_err(fail)?;
        check_constraints(config, &token, host, counter, now).map_err(fail)?;
        Ok(Decision::Allow { token: Some(token), credential: Some(found) })
    }
}

/// The first rule whose `match` holds, else the default rule. A rule that matches
/// on path refuses a path that is not in normal form.
fn select_rule<'c>(config: &'c Config, host: &dyn Host) -> Result<&'c Rule, Reason> {
    for rule in &config.rules {
        let m = &rule.matcher;
        if let Some(methods) = &m.methods {
            let method = single_header(host, ":method").unwrap_or("");
            if !methods.iter().any(|x| x == method) {
                continue;
            }
        }
        if let Some(hosts) = &m.hosts {
            let authority = normalize_host(single_header(host, ":authority").unwrap_or(""));
            if !hosts.iter().any(|h| h.matches(&authority)) {
                continue;
            }
        }
        if let Some(pattern) = &m.path {
            let path = normalized_path(host)?;
            if !pattern.matches(path) {
                continue;
            }
        }
        return Ok(rule);
    }
    Ok(&config.default_rule)
}

/// The request path (no query) if it is in normal form.
fn normalized_path(host: &dyn Host) -> Result<&str, Reason> {
    let path = path_only(single_header(host, ":path").unwrap_or(""));
    if is_normalized(path) {
        Ok(path)
    } else {
        Err(Reason::PathNotNormalized)
    }
}

fn check_require(config: &Config, require: &Require, token: &VerifiedToken, host: &dyn Host) -> Result<(), Reason> {
    if let Some(issuers) = &require.issuers {
        let name = config.providers.get(token.provider).map(|p| p.name.as_str()).unwrap_or("");
        if !issuers.iter().any(|i| i == name) {
            return Err(Reason::Issuer);
        }
    }
    if require.roles_any.is_some() || require.roles_all.is_some() {
        let roles = string_set(lookup(&token.claims, &config.roles_claim), false);
        if let Some(any) = &require.roles_any {
            if !any.iter().any(|r| roles.contains(&r.as_str())) {
                return Err(Reason::Role);
            }
        }
        if let Some(all) = &require.roles_all {
            if !all.iter().all(|r| roles.contains(&r.as_str())) {
                return Err(Reason::Role);
            }
        }
    }
    if require.scopes_any.is_some() || require.scopes_all.is_some() {
        let scopes = string_set(lookup(&token.claims, &config.scopes_claim), true);
        if let Some(any) = &require.scopes_any {
            if !any.iter().any(|s| scopes.contains(&s.as_str())) {
                return Err(Reason::Scope);
            }
        }
        if let Some(all) = &require.scopes_all {
            if !all.iter().all(|s| scopes.contains(&s.as_str())) {
                return Err(Reason::Scope);
            }
        }
    }
    for check in &require.claims {
        let ok = match check {
            ClaimCheck::Equals(path, want) => lookup(&token.claims, path) == Some(want),
            ClaimCheck::OneOf(path, options) => lookup(&token.claims, path).is_some_and(|v| options.contains(v)),
            ClaimCheck::EqualsHeader(path, header) => {
                match (lookup(&token.claims, path), single_header(host, header)) {
                    (Some(Value::String(claim)), Some(value)) => claim == value,
                    _ => false,
                }
            }
            ClaimCheck::Present(path) => lookup(&token.claims, path).is_some_and(|v| !v.is_null()),
            ClaimCheck::Prefix(path, prefix) => {
                lookup(&token.claims, path).and_then(Value::as_str).is_some_and(|v| v.starts_with(prefix.as_str()))
            }
        };
        if !ok {
            return Err(Reason::Claim);
        }
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

fn check_constraints(
    config: &Config,
    token: &VerifiedToken,
    host: &dyn Host,
    counter: &mut dyn UsageCounter,
    now: i64,
) -> Result<(), Reason> {
    let c = &token.constraints;
    if c.unknown.is_some() {
        return Err(Reason::UnknownConstraint);
    }
    if let Some(ranges) = &c.ip {
        let client = client_ip(config, host).ok_or(Reason::Ip)?;
        if !ranges.iter().any(|r| r.contains(client)) {
            return Err(Reason::Ip);
        }
    }
    if let Some(methods) = &c.methods {
        let method = single_header(host, ":method").ok_or(Reason::Method)?;
        if !methods.iter().any(|m| m == method) {
            return Err(Reason::Method);
        }
    }
    if let Some(paths) = &c.paths {
        let path = normalized_path(host)?;
        if !paths.iter().any(|p| p.matches(path)) {
            return Err(Reason::Path);
        }
    }
    if let Some(hosts) = &c.hosts {
        let authority = normalize_host(single_header(host, ":authority").ok_or(Reason::Host)?);
        if !hosts.iter().any(|h| h.matches(&authority)) {
            return Err(Reason::Host);
        }
    }
    if let Some(regions) = &c.region {
        let region = request_region(config, host).ok_or(Reason::Region)?;
        if !regions.contains(&region) {
            return Err(Reason::Region);
        }
    }
    if let Some(windows) = &c.window {
        if !windows.iter().any(|w| w.contains(now)) {
            return Err(Reason::Window);
        }
    }
    for (name, allowed) in &c.custom {
        let attribute =
            config.custom_constraints.iter().find(|(n, _)| n == name).map(|(_, a)| a).ok_or(Reason::Custom)?;
        let value = attribute_value(attribute, host)?.ok_or(Reason::Custom)?;
        if !allowed.iter().any(|a| *a == *value) {
            return Err(Reason::Custom);
        }
    }
    if let (Some(limit), Some(jti)) = (c.max_uses, &token.jti) {
        let id = UsageId::new(token.issuer(), jti);
        let expires_at = token.exp.map_or(i64::MAX, |e| e.saturating_add(config.clock_skew_seconds));
        match counter.try_use(&id, limit, expires_at, now) {
            Ok(true) => {}
            Ok(false) | Err(_) => return Err(Reason::MaxUses),
        }
    }
    Ok(())
}

/// The client IP from the configured source.
pub fn client_ip(config: &Config, host: &dyn Host) -> Option<std::net::IpAddr> {
    match config.client_ip {
        ClientIpSource::Peer => {
            let raw = host.property(&["source", "address"])?;
            ip::parse_socket_address(std::str::from_utf8(&raw).ok()?)
        }
        ClientIpSource::ForwardedFor { trusted_hops } => {
            let values: Option<Vec<&str>> =
                header_values(host, "x-forwarded-for").map(|v| std::str::from_utf8(v).ok()).collect();
            ip::from_forwarded_for(&values?, trusted_hops)
        }
    }
}

fn request_region(config: &Config, host: &dyn Host) -> Option<String> {
    match config.region.as_ref()? {
        RegionSource::Static(v) => Some(v.clone()),
        RegionSource::Header(h) => single_header(host, h).map(str::to_owned),
        RegionSource::NodeMetadata(key) => {
            let raw = host.property(&["xds", "node", "metadata", key])?;
            String::from_utf8(raw).ok()
        }
    }
}

/// The request attribute a custom constraint compares with; `Ok(None)` when absent
/// or ambiguous (repeated).
fn attribute_value<'h>(attribute: &'h Attribute, host: &'h dyn Host) -> Result<Option<Cow<'h, str>>, Reason> {
    Ok(match attribute {
        Attribute::Header(h) => single_header(host, h).map(Cow::Borrowed),
        // Decoded as upstream decoders decode it; any second occurrence is ambiguous.
        Attribute::Query(name) => {
            let query = single_header(host, ":path").and_then(query_only).unwrap_or("");
            match query::param(query, name) {
                Param::One(v) => return Ok(String::from_utf8(v).ok().filter(|v| !v.is_empty()).map(Cow::Owned)),
                Param::Absent | Param::Ambiguous => None,
            }
        }
        Attribute::PathSegment(i) => {
            path_segment(normalized_path(host)?, *i).filter(|s| !s.is_empty()).map(Cow::Borrowed)
        }
    })
}
