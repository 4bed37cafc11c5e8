//! From an untrusted compact JWS to a [`VerifiedToken`]: provider by `iss`, key by
//! `kid` and `alg`, signature, then the constraints claim compiled once.
//!
//! Time-dependent checks (`exp`, `nbf`, `iat`, lifetime) are *not* done here; they
//! run on every request in [`check_claims`], so a cached [`VerifiedToken`] never
//! outlives its validity.

use crate::keys::algorithm::Algorithm;
use crate::config::{Config, Provider};
use crate::constraints::{lookup_unambiguous, Constraints};
use crate::keys::host_crypto::HostCrypto;
use crate::token::jws::{self, ParseError, UntrustedToken};
use crate::keys::key::VerificationKey;
use crate::reason::Reason;
use serde_json::{Map, Value};

/// At most this many keys are tried for a token without `kid`.
const MAX_KEYS_WITHOUT_KID: usize = 4;

/// Why a token is not trusted (each maps to one 401 reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    TooLarge,
    Malformed,
    ForbiddenHeader,
    UnsupportedAlgorithm,
    UnknownIssuer,
    UnknownKey,
    KeysUnavailable,
    BadSignature,
    MissingExp,
    Expired,
    NotYetValid,
    LifetimeTooLong,
    WrongAudience,
    WrongTyp,
    MalformedConstraint,
}

impl From<TokenError> for Reason {
    fn from(e: TokenError) -> Reason {
        match e {
            TokenError::TooLarge => Reason::TokenTooLarge,
            TokenError::Malformed => Reason::MalformedToken,
            TokenError::ForbiddenHeader => Reason::ForbiddenHeader,
            TokenError::UnsupportedAlgorithm => Reason::UnsupportedAlgorithm,
            TokenError::UnknownIssuer => Reason::UnknownIssuer,
            TokenError::UnknownKey => Reason::UnknownKey,
            TokenError::KeysUnavailable => Reason::KeysUnavailable,
            TokenError::BadSignature => Reason::BadSignature,
            TokenError::MissingExp => Reason::MissingExp,
            TokenError::Expired => Reason::Expired,
            TokenError::NotYetValid => Reason::NotYetValid,
            TokenError::LifetimeTooLong => Reason::LifetimeTooLong,
            TokenError::WrongAudience => Reason::WrongAudience,
            TokenError::WrongTyp => Reason::WrongTyp,
            TokenError::MalformedConstraint => Reason::MalformedConstraint,
        }
    }
}

impl From<ParseError> for TokenError {
    fn from(e: ParseError) -> TokenError {
        match e {
            ParseError::Malformed => TokenError::Malformed,
            ParseError::ForbiddenHeader => TokenError::ForbiddenHeader,
            ParseError::UnsupportedAlgorithm => TokenError::UnsupportedAlgorithm,
        }
    }
}

/// A token whose signature was verified with a configured key. Only
/// [`verify`] constructs one.
#[derive(Debug)]
#[non_exhaustive]
pub struct VerifiedToken {
    /// Index into [`Config::providers`].
    pub provider: usize,
    pub claims: Map<String, Value>,
    /// The payload JSON as signed (for `forward.payload_header`).
    pub payload: Vec<u8>,
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
    pub jti: Option<String>,
    pub typ: Option<String>,
    pub constraints: Constraints,
}

impl VerifiedToken {
    pub fn issuer(&self) -> &str {
        self.claims.get("iss").and_then(Value::as_str).unwrap_or("")
    }

    /// An upper estimate of the heap this token holds: the signed payload, the
    /// parsed claims, and the compiled constraints (whatever the constraints
    /// claim is named). Used to bound the cache's memory; `tests/memory.rs`
    /// checks it against a counting allocator.
    pub fn heap_bytes(&self) -> usize {
        self.payload
            .capacity()
            .saturating_add(map_heap_bytes(&self.claims))
            .saturating_add(self.constraints.heap_bytes())
            .saturating_add(self.jti.as_ref().map_or(0, String::capacity))
            .saturating_add(self.typ.as_ref().map_or(0, String::capacity))
    }

    /// A token as if verified, for the crate's own unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(claims: Value) -> VerifiedToken {
        let payload = claims.to_string().into_bytes();
        let claims = match claims {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        VerifiedToken {
            provider: 0,
            claims,
            payload,
            exp: None,
            nbf: None,
            iat: None,
            jti: None,
            typ: None,
            constraints: Constraints::default(),
        }
    }
}

/// Heap allocator bookkeeping per allocation (dlmalloc/glibc headers, rounding).
const ALLOCATION_OVERHEAD: usize = 16;
/// Per object member: key `String` + `Value` + the map's node share.
const MEMBER_OVERHEAD: usize = 24 + 32 + 48;

fn map_heap_bytes(map: &Map<String, Value>) -> usize {
    map.iter().fold(ALLOCATION_OVERHEAD, |sum, (k, v)| {
        sum.saturating_add(MEMBER_OVERHEAD + ALLOCATION_OVERHEAD + k.capacity()).saturating_add(json_heap_bytes(v))
    })
}

/// Heap bytes below one JSON value (its own inline slot counted by the parent).
fn json_heap_bytes(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.capacity() + ALLOCATION_OVERHEAD,
        Value::Array(items) => {
            items.iter().fold(ALLOCATION_OVERHEAD.saturating_add(items.capacity().saturating_mul(32)), |sum, v| {
                sum.saturating_add(json_heap_bytes(v))
            })
        }
        Value::Object(map) => map_heap_bytes(map),
    }
}

/// Keys a provider can use right now: its inline keys, plus keys fetched at run
/// time (remote JWKS) when the adapter has any.
pub trait KeyLookup {
    /// Keys fetched for `provider` (by index), or `None` when none were fetched yet.
    fn fetched(&self, provider: usize) -> Option<&[VerificationKey]>;
    /// Changes whenever `provider`'s fetched keys change, so that a cached
    /// verification made with a key that has since left is made again (SEC-12.4).
    fn generation(&self, _provider: usize) -> u64 {
        0
    }
}

/// No remote keys: inline keys only.
pub struct InlineOnly;

impl KeyLookup for InlineOnly {
    fn fetched(&self, _provider: usize) -> Option<&[VerificationKey]> {
        None
    }
}

/// Parses, selects provider and key, verifies the signature and compiles the
/// constraints. Does no time checks (see [`check_claims`]).
pub fn verify(
    config: &Config,
    keys: &dyn KeyLookup,
    crypto: &dyn HostCrypto,
    token: &str,
) -> Result<VerifiedToken, TokenError> {
    if token.len() > config.max_token_bytes {
        return Err(TokenError::TooLarge);
    }
    let untrusted = jws::parse(token)?;
    let iss = match untrusted.claims.get("iss") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(TokenError::Malformed),
        None => return Err(TokenError::UnknownIssuer),
    };
    let (index, provider) =
        config.providers.iter().enumerate().find(|(_, p)| p.issuer == iss).ok_or(TokenError::UnknownIssuer)?;
    if !provider.algorithms.contains(untrusted.jws.alg) {
        return Err(TokenError::UnsupportedAlgorithm);
    }
    let kid = untrusted.jws.kid.as_deref();
    check_signature(
        provider,
        keys.fetched(index),
        crypto,
        untrusted.jws.alg,
        kid,
        untrusted.jws.signing_input,
        &untrusted.jws.signature,
    )?;
    into_verified(config, index, untrusted)
}

/// The provider (index) a token names with `iss`; `None` if it cannot be parsed.
pub fn provider_of(config: &Config, token: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(token).ok()?;
    let untrusted = jws::parse(text).ok()?;
    let iss = untrusted.claims.get("iss")?.as_str()?;
    config.providers.iter().position(|p| p.issuer == iss)
}

/// Selects the key (exact `kid`, or up to [`MAX_KEYS_WITHOUT_KID`] keys of the
/// token's `alg` when it has none) and verifies the signature.
pub fn check_signature(
    provider: &Provider,
    fetched: Option<&[VerificationKey]>,
    crypto: &dyn HostCrypto,
    alg: Algorithm,
    kid: Option<&str>,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), TokenError> {
    let inline = provider.keys.as_slice();
    let remote = fetched.unwrap_or(&[]);
    if inline.is_empty() && remote.is_empty() {
        return Err(TokenError::KeysUnavailable);
    }
    let key_ok = |k: &VerificationKey| k.verify_with(crypto, alg, signing_input, signature);
    match kid {
        Some(kid) => {
            let key = provider
                .keys_by_kid
                .get(kid)
                .or_else(|| remote.iter().find(|k| k.kid.as_deref() == Some(kid)))
                .ok_or(TokenError::UnknownKey)?;
            if !key.algs.contains(alg) {
                return Err(TokenError::UnsupportedAlgorithm);
            }
            if key_ok(key) {
                Ok(())
            } else {
                Err(TokenError::BadSignature)
            }
        }
        None => {
            let mut candidates = inline.iter().chain(remote).filter(|k| k.algs.contains(alg)).peekable();
            if candidates.peek().is_none() {
                return Err(TokenError::UnknownKey);
            }
            if candidates.take(MAX_KEYS_WITHOUT_KID).any(key_ok) {
                Ok(())
            } else {
                Err(TokenError::BadSignature)
            }
        }
    }
}

fn into_verified(config: &Config, provider: usize, token: UntrustedToken<'_>) -> Result<VerifiedToken, TokenError> {
    let claims = token.claims;
    let exp = numeric_date(&claims, "exp", Rounding::Down)?;
    let nbf = numeric_date(&claims, "nbf", Rounding::Up)?;
    let iat = numeric_date(&claims, "iat", Rounding::Up)?;
    let jti = match claims.get("jti") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(TokenError::Malformed),
    };
    // `aud` must be a string or an array of strings wherever it appears.
    match claims.get("aud") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
        Some(_) => return Err(TokenError::Malformed),
    }
    let constraints = match lookup_unambiguous(&claims, &config.constraints_claim) {
        Err(_) => return Err(TokenError::MalformedConstraint),
        Ok(None) => Constraints::default(),
        Ok(Some(value)) => {
            let names: Vec<&str> = config.custom_constraints.iter().map(|(n, _)| n.as_str()).collect();
            Constraints::parse(value, &names, jti.is_some()).map_err(|_| TokenError::MalformedConstraint)?
        }
    };
    Ok(VerifiedToken {
        provider,
        claims,
        payload: token.jws.payload,
        exp,
        nbf,
        iat,
        jti,
        typ: token.jws.typ,
        constraints,
    })
}

#[derive(Clone, Copy)]
enum Rounding {
    /// Towards the past (an `exp` of 10.5 expires at 10).
    Down,
    /// Towards the future (an `nbf` of 10.5 starts at 11).
    Up,
}

/// A NumericDate: an integer or a float, saturated into i64 seconds.
fn numeric_date(claims: &Map<String, Value>, name: &str, rounding: Rounding) -> Result<Option<i64>, TokenError> {
    let Some(v) = claims.get(name) else {
        return Ok(None);
    };
    let n = v.as_number().ok_or(TokenError::Malformed)?;
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    if n.as_u64().is_some() {
        return Ok(Some(i64::MAX));
    }
    let f = n.as_f64().filter(|f| f.is_finite()).ok_or(TokenError::Malformed)?;
    let rounded = match rounding {
        Rounding::Down => f.floor(),
        Rounding::Up => f.ceil(),
    };
    // `as` saturates for floats out of range.
    Ok(Some(rounded as i64))
}

/// The checks that depend on the clock or on per-provider settings; run on every
/// request, cached token or not.
pub fn check_claims(config: &Config, token: &VerifiedToken, now: i64) -> Result<(), TokenError> {
    let skew = config.clock_skew_seconds;
    match token.exp {
        None if config.require_expiration => return Err(TokenError::MissingExp),
        Some(exp) if now >= exp.saturating_add(skew) => return Err(TokenError::Expired),
        _ => {}
    }
    if let Some(nbf) = token.nbf {
        if now.saturating_add(skew) < nbf {
            return Err(TokenError::NotYetValid);
        }
    }
    if let Some(iat) = token.iat {
        if now.saturating_add(skew) < iat {
            return Err(TokenError::NotYetValid);
        }
    }
    if let (Some(max), Some(exp)) = (config.max_lifetime_seconds, token.exp) {
        let issued = token.iat.unwrap_or(now);
        if exp.saturating_sub(issued) > max {
            return Err(TokenError::LifetimeTooLong);
        }
    }
    if let Some(audiences) = config.providers.get(token.provider).and_then(|p| p.audiences.as_ref()) {
        let ok = match token.claims.get("aud") {
            Some(Value::String(a)) => audiences.contains(a),
            Some(Value::Array(items)) => {
                items.iter().filter_map(Value::as_str).any(|a| audiences.iter().any(|x| x == a))
            }
            _ => false,
        };
        if !ok {
            return Err(TokenError::WrongAudience);
        }
    }
    if let Some(required) = &config.required_typ {
        let ok = token.typ.as_deref().is_some_and(|t| crate::config::normalize_typ(t) == *required);
        if !ok {
            return Err(TokenError::WrongTyp);
        }
    }
    Ok(())
}
