//! From an untrusted compact JWS to a [`VerifiedToken`]: provider by `iss`, key by
//! `kid` and `alg`, signature, then the constraints claim compiled once.
//!
//! Time-dependent checks (`exp`, `nbf`, `iat`, lifetime) are *not* done here; they
//! run on every request in [`check_claims`], so a cached [`VerifiedToken`] never
//! outlives its validity.

use crate::config::{Config, Provider, ProviderKind};
use crate::constraints::Constraints;
use crate::keys::algorithm::Algorithm;
use crate::keys::host_crypto::HostCrypto;
use crate::keys::key::VerificationKey;
use crate::reason::Reason;
use crate::token::claims::{lookup_unambiguous, numeric_date, Rounding};
use crate::token::jws::{self, UntrustedToken};
use crate::token::status::{StatusList, TokenStatus};
use serde_json::{Map, Value};

/// At most this many keys are tried for a token without `kid`.
const MAX_KEYS_WITHOUT_KID: usize = 4;

/// A credential admitted for verification: UTF-8 and at most `max_token_bytes`
/// long.
///
/// `max_token_bytes` is checked here and nowhere else. The engine admits the
/// credential where it finds it, before the cache is consulted (an oversized
/// credential is neither hashed nor parsed, and is `token_too_large` even when it
/// is not UTF-8); [`verify`] takes only an admitted token, so no direct caller
/// (command line, fuzz targets, benches, tests) can skip the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenText<'a>(&'a str);

impl<'a> TokenText<'a> {
    /// Admits `raw`: `token_too_large` when it is longer than
    /// `config.max_token_bytes` (checked first), else `malformed_token` when it
    /// is not UTF-8.
    pub fn admit(config: &Config, raw: &'a [u8]) -> Result<TokenText<'a>, Reason> {
        if raw.len() > config.max_token_bytes {
            return Err(Reason::TokenTooLarge);
        }
        std::str::from_utf8(raw).map(TokenText).map_err(|_| Reason::MalformedToken)
    }

    /// The admitted token text.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

/// Why [`verify`] did not trust a token: a 401 reason and, when a key fetch
/// could change the answer, the provider whose keys were missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRefusal {
    /// The reason (always a 401 one).
    pub reason: Reason,
    /// For `unknown_key` and `keys_unavailable` only: the provider (index into
    /// [`Config::providers`]) that `iss` selected, so that the adapter can fetch
    /// its keys and decide again without parsing the token a second time.
    pub provider: Option<usize>,
}

impl TokenRefusal {
    /// A refusal met with `provider`'s keys: the provider is kept only for the
    /// reasons that fetching its keys can change.
    fn at_provider(reason: Reason, provider: usize) -> TokenRefusal {
        let provider = matches!(reason, Reason::UnknownKey | Reason::KeysUnavailable).then_some(provider);
        TokenRefusal { reason, provider }
    }
}

impl From<Reason> for TokenRefusal {
    fn from(reason: Reason) -> TokenRefusal {
        TokenRefusal { reason, provider: None }
    }
}

/// A token whose signature was verified with a configured key. Only
/// [`verify`] constructs one.
#[derive(Debug)]
#[non_exhaustive]
pub struct VerifiedToken {
    /// Index into [`Config::providers`].
    pub provider: usize,
    /// The payload's members.
    pub claims: Map<String, Value>,
    /// The payload JSON as signed (for `forward.payload_header`).
    pub payload: Vec<u8>,
    /// `exp`, in seconds since the Unix epoch.
    pub exp: Option<i64>,
    /// `nbf`, in seconds since the Unix epoch.
    pub nbf: Option<i64>,
    /// `iat`, in seconds since the Unix epoch.
    pub iat: Option<i64>,
    /// `jti`, the token id (what `max_uses` counts by, with the issuer).
    pub jti: Option<String>,
    /// The header `typ` as written.
    pub typ: Option<String>,
    /// The constraints claim, compiled.
    pub constraints: Constraints,
    /// The `status` claim (SPEC §11, must-understand).
    pub status: TokenStatus,
}

impl VerifiedToken {
    /// The `iss` claim (empty if absent or not a string).
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
            .saturating_add(self.status.heap_bytes())
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
            status: TokenStatus::None,
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
    /// The last good copy of the configured status list `list` (index into
    /// `config.status_lists`), or `None` when none was fetched (SPEC §11).
    fn status_list(&self, _list: usize) -> Option<&StatusList> {
        None
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
/// constraints. Does no time checks (see [`check_claims`]). The size limit was
/// checked when `token` was admitted (see [`TokenText`]).
pub fn verify(
    config: &Config,
    keys: &dyn KeyLookup,
    crypto: &dyn HostCrypto,
    token: TokenText<'_>,
) -> Result<VerifiedToken, TokenRefusal> {
    let untrusted = jws::parse(token.as_str()).map_err(Reason::from)?;
    // A Txn-Token is read from the `Txn-Token` header only (SPEC §14): one
    // presented as an access token is refused before any key is looked for.
    if is_txn_token(untrusted.jws.typ.as_deref()) {
        return Err(Reason::TxnTokenInAuthorization.into());
    }
    let iss = match untrusted.claims.get("iss") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(Reason::MalformedToken.into()),
        None => return Err(Reason::UnknownIssuer.into()),
    };
    let (index, provider) = config
        .providers
        .iter()
        .enumerate()
        .find(|(_, p)| p.issuer == iss && p.kind == ProviderKind::AccessToken)
        .ok_or(Reason::UnknownIssuer)?;
    if !provider.algorithms.contains(untrusted.jws.alg) {
        return Err(Reason::UnsupportedAlgorithm.into());
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
    )
    .map_err(|reason| TokenRefusal::at_provider(reason, index))?;
    into_verified(config, index, untrusted).map_err(TokenRefusal::from)
}

/// The media type of Txn-Tokens (`typ`, draft-ietf-oauth-transaction-tokens).
pub const TXN_TOKEN_TYP: &str = "txntoken+jwt";

/// Whether a JWS `typ` names a Txn-Token (compared as a media type).
pub fn is_txn_token(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| crate::config::normalize_typ(t) == TXN_TOKEN_TYP)
}

/// Verifies a Txn-Token from the `Txn-Token` header with the Txn-Token
/// provider (index `provider`, SPEC §14): `typ` first (`wrong_typ`), an `iss`
/// equal to the provider's when it names one, the signature, then the claims
/// as `into_verified` reads them, with the constraints of `tctx.cnst`
/// ([`Constraints::parse_downstream`]). The Txn-Token's own claims (`aud`,
/// `txn`, ...) and times are checked per request by the caller.
pub fn verify_txn(
    config: &Config,
    keys: &dyn KeyLookup,
    crypto: &dyn HostCrypto,
    token: TokenText<'_>,
    provider: usize,
) -> Result<VerifiedToken, TokenRefusal> {
    let untrusted = jws::parse(token.as_str()).map_err(Reason::from)?;
    if !is_txn_token(untrusted.jws.typ.as_deref()) {
        return Err(Reason::WrongTyp.into());
    }
    let p = config.providers.get(provider).ok_or(Reason::KeysUnavailable)?;
    match untrusted.claims.get("iss") {
        None => {}
        Some(Value::String(iss)) if p.issuer.is_empty() || *iss == p.issuer => {}
        Some(Value::String(_)) => return Err(Reason::UnknownIssuer.into()),
        Some(_) => return Err(Reason::MalformedToken.into()),
    }
    if !p.algorithms.contains(untrusted.jws.alg) {
        return Err(Reason::UnsupportedAlgorithm.into());
    }
    check_signature(
        p,
        keys.fetched(provider),
        crypto,
        untrusted.jws.alg,
        untrusted.jws.kid.as_deref(),
        untrusted.jws.signing_input,
        &untrusted.jws.signature,
    )
    .map_err(|reason| TokenRefusal::at_provider(reason, provider))?;
    let claims = untrusted.claims;
    let names: Vec<&str> = config.custom_constraints.iter().map(|(n, _)| n.as_str()).collect();
    let constraints = match claims.get("tctx") {
        None => Constraints::default(),
        Some(Value::Object(tctx)) => match tctx.get("cnst") {
            None => Constraints::default(),
            Some(cnst) => Constraints::parse_downstream(cnst, &names).map_err(|_| Reason::MalformedConstraint)?,
        },
        Some(_) => return Err(Reason::IncompleteTxnToken.into()),
    };
    let jti = match claims.get("jti") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(Reason::MalformedToken.into()),
    };
    Ok(VerifiedToken {
        provider,
        exp: numeric_date(&claims, "exp", Rounding::Down)?,
        nbf: numeric_date(&claims, "nbf", Rounding::Up)?,
        iat: numeric_date(&claims, "iat", Rounding::Up)?,
        claims,
        payload: untrusted.jws.payload,
        jti,
        typ: untrusted.jws.typ,
        constraints,
        status: TokenStatus::None,
    })
}

/// Selects the key (exact `kid`, or up to `MAX_KEYS_WITHOUT_KID` keys of the
/// token's `alg` when it has none) and verifies the signature: `keys_unavailable`
/// when the provider has no key at all, `unknown_key`, `unsupported_algorithm` or
/// `bad_signature`.
pub fn check_signature(
    provider: &Provider,
    fetched: Option<&[VerificationKey]>,
    crypto: &dyn HostCrypto,
    alg: Algorithm,
    kid: Option<&str>,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), Reason> {
    let inline = provider.keys.as_slice();
    let remote = fetched.unwrap_or(&[]);
    if inline.is_empty() && remote.is_empty() {
        return Err(Reason::KeysUnavailable);
    }
    let key_ok = |k: &VerificationKey| k.verify_with(crypto, alg, signing_input, signature);
    match kid {
        Some(kid) => {
            let key = provider
                .keys_by_kid
                .get(kid)
                .or_else(|| remote.iter().find(|k| k.kid.as_deref() == Some(kid)))
                .ok_or(Reason::UnknownKey)?;
            if !key.algs.contains(alg) {
                return Err(Reason::UnsupportedAlgorithm);
            }
            if key_ok(key) {
                Ok(())
            } else {
                Err(Reason::BadSignature)
            }
        }
        None => {
            let mut candidates = inline.iter().chain(remote).filter(|k| k.algs.contains(alg)).peekable();
            if candidates.peek().is_none() {
                return Err(Reason::UnknownKey);
            }
            if candidates.take(MAX_KEYS_WITHOUT_KID).any(key_ok) {
                Ok(())
            } else {
                Err(Reason::BadSignature)
            }
        }
    }
}

fn into_verified(config: &Config, provider: usize, token: UntrustedToken<'_>) -> Result<VerifiedToken, Reason> {
    let claims = token.claims;
    let exp = numeric_date(&claims, "exp", Rounding::Down)?;
    let nbf = numeric_date(&claims, "nbf", Rounding::Up)?;
    let iat = numeric_date(&claims, "iat", Rounding::Up)?;
    let jti = match claims.get("jti") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(Reason::MalformedToken),
    };
    // `aud` must be a string or an array of strings wherever it appears.
    match claims.get("aud") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
        Some(_) => return Err(Reason::MalformedToken),
    }
    let constraints = match lookup_unambiguous(&claims, &config.constraints_claim) {
        Err(_) => return Err(Reason::MalformedConstraint),
        Ok(None) => Constraints::default(),
        Ok(Some(value)) => {
            let names: Vec<&str> = config.custom_constraints.iter().map(|(n, _)| n.as_str()).collect();
            Constraints::parse(value, &names, jti.is_some()).map_err(|_| Reason::MalformedConstraint)?
        }
    };
    refuse_other_token_kinds(token.jws.typ.as_deref(), &claims)?;
    let status = TokenStatus::parse(&claims)?;
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
        status,
    })
}

/// `wrong_typ` for a JWT explicitly typed as another kind than an access token,
/// or carrying a Status List Token's `status_list` claim, whatever
/// `required_typ` says (issue 24 item 6).
fn refuse_other_token_kinds(typ: Option<&str>, claims: &Map<String, Value>) -> Result<(), Reason> {
    let other_kind =
        typ.is_some_and(|t| crate::config::NOT_ACCESS_TOKEN_TYPES.contains(&crate::config::normalize_typ(t).as_str()));
    if other_kind || claims.contains_key("status_list") {
        return Err(Reason::WrongTyp);
    }
    Ok(())
}

/// The checks that depend on the clock or on per-provider settings; run on every
/// request, cached token or not.
pub fn check_claims(config: &Config, token: &VerifiedToken, now: i64) -> Result<(), Reason> {
    let skew = config.clock_skew_seconds;
    match token.exp {
        None if config.require_expiration => return Err(Reason::MissingExp),
        Some(exp) if now >= exp.saturating_add(skew) => return Err(Reason::Expired),
        _ => {}
    }
    if let Some(nbf) = token.nbf {
        if now.saturating_add(skew) < nbf {
            return Err(Reason::NotYetValid);
        }
    }
    if let Some(iat) = token.iat {
        if now.saturating_add(skew) < iat {
            return Err(Reason::NotYetValid);
        }
    }
    if let (Some(max), Some(exp)) = (config.max_lifetime_seconds, token.exp) {
        let issued = token.iat.unwrap_or(now);
        if exp.saturating_sub(issued) > max {
            return Err(Reason::LifetimeTooLong);
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
            return Err(Reason::WrongAudience);
        }
    }
    if let Some(required) = &config.required_typ {
        let ok = token.typ.as_deref().is_some_and(|t| crate::config::normalize_typ(t) == *required);
        if !ok {
            return Err(Reason::WrongTyp);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::b64;
    use crate::keys::host_crypto::PureRust;
    use serde_json::json;

    /// RFC 8037 Appendix A.2's Ed25519 public key.
    const X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn config() -> Config {
        let cfg = json!({"max_token_bytes": 512, "providers": [
            {"name": "inline", "issuer": "https://inline.example",
             "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": X, "kid": "k1"}]}},
            {"name": "remote", "issuer": "https://remote.example",
             "remote_jwks": {"cluster": "idp", "path": "/jwks"}}]});
        Config::from_json(cfg.to_string().as_bytes()).unwrap()
    }

    /// A token with a well-formed but wrong signature.
    fn unsigned(header: Value, claims: Value) -> String {
        let seg = |v: Value| b64::encode(v.to_string().as_bytes());
        format!("{}.{}.{}", seg(header), seg(claims), b64::encode(&[1u8; 64]))
    }

    fn refusal(token: &str) -> TokenRefusal {
        let config = config();
        let text = TokenText::admit(&config, token.as_bytes()).unwrap();
        verify(&config, &InlineOnly, &PureRust, text).unwrap_err()
    }

    #[test]
    fn a_refusal_names_the_provider_only_when_its_keys_are_missing() {
        let remote = unsigned(json!({"alg": "EdDSA", "kid": "k1"}), json!({"iss": "https://remote.example"}));
        assert_eq!(refusal(&remote), TokenRefusal { reason: Reason::KeysUnavailable, provider: Some(1) });
        let other_kid = unsigned(json!({"alg": "EdDSA", "kid": "k2"}), json!({"iss": "https://inline.example"}));
        assert_eq!(refusal(&other_kid), TokenRefusal { reason: Reason::UnknownKey, provider: Some(0) });
        let forged = unsigned(json!({"alg": "EdDSA", "kid": "k1"}), json!({"iss": "https://inline.example"}));
        assert_eq!(refusal(&forged), TokenRefusal { reason: Reason::BadSignature, provider: None });
        let stranger = unsigned(json!({"alg": "EdDSA", "kid": "k1"}), json!({"iss": "https://else.example"}));
        assert_eq!(refusal(&stranger), TokenRefusal { reason: Reason::UnknownIssuer, provider: None });
        let critical = unsigned(json!({"alg": "EdDSA", "crit": ["x"]}), json!({"iss": "https://inline.example"}));
        assert_eq!(refusal(&critical), TokenRefusal { reason: Reason::ForbiddenHeader, provider: None });
        assert_eq!(refusal("a.b"), TokenRefusal { reason: Reason::MalformedToken, provider: None });
    }

    #[test]
    fn admission_checks_the_size_first_then_utf8() {
        let config = config();
        assert_eq!(TokenText::admit(&config, &[b'a'; 512]).map(|t| t.as_str().len()), Ok(512));
        assert_eq!(TokenText::admit(&config, &[b'a'; 513]), Err(Reason::TokenTooLarge));
        assert_eq!(TokenText::admit(&config, &[0xff; 513]), Err(Reason::TokenTooLarge));
        assert_eq!(TokenText::admit(&config, &[0xff; 8]), Err(Reason::MalformedToken));
    }
}
