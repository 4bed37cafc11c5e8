//! Sender-constrained tokens (SPEC §10 v2): the `cnf` claim is must-understand.
//!
//! - `cnf.jkt` (RFC 9449): the request carries `Authorization: DPoP <token>` and
//!   exactly one `DPoP` proof signed by the key whose thumbprint is `jkt`
//!   ([`dpop`], nonces in [`nonce`], proof ids in [`replay`]);
//! - `cnf.jwk` (RFC 7800): the same, with the key itself in place of its
//!   thumbprint (a public EC, OKP or RSA key; with `jkt` beside it, the two
//!   must name the same key);
//! - `cnf["x5t#S256"]` (RFC 8705): the client certificate's SHA-256 equals it
//!   ([`mtls`]);
//! - any other member, or a binding the configuration does not enable, is
//!   `unsupported_binding`.
//!
//! Checked after the token checks and before the rule's `require`, on every
//! request: the verified-token cache holds the token, never a proof.

pub mod dpop;
pub mod mtls;
pub mod nonce;
pub mod replay;

use crate::config::{Config, SenderConstraints, TokenSource, DPOP_SCHEME};
use crate::keys::host_crypto::HostCrypto;
use crate::reason::Reason;
use crate::request::credential::Found;
use crate::request::view::RequestView;
use crate::token::verify::VerifiedToken;
use replay::ReplayCache;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// The name of the proof header (lowercase, as hosts give header names).
pub const DPOP_HEADER: &str = "dpop";

/// The bindings a token's `cnf` claim names.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Binding<'a> {
    /// `cnf.jkt`, or the thumbprint of `cnf.jwk`: the RFC 7638 SHA-256
    /// thumbprint of the proof key.
    pub jkt: Option<Cow<'a, str>>,
    /// `cnf["x5t#S256"]`: base64url SHA-256 of the client certificate (DER).
    pub x5t: Option<&'a str>,
}

/// Reads `cnf` as must-understand: absent is no binding; anything but an object
/// whose members are `jkt` (a string) or `jwk` (a public key, `public_jwk`),
/// with `dpop` configured, and `x5t#S256` (a string, with `mtls` configured),
/// at least one, is `unsupported_binding`; so are a `jkt` and a `jwk` that name
/// different keys.
pub fn binding<'a>(claims: &'a Map<String, Value>, sender: &SenderConstraints) -> Result<Binding<'a>, Reason> {
    let Some(cnf) = claims.get("cnf") else {
        return Ok(Binding::default());
    };
    let cnf = cnf.as_object().filter(|c| !c.is_empty()).ok_or(Reason::UnsupportedBinding)?;
    let mut out = Binding::default();
    let mut jwk = None;
    for (name, value) in cnf {
        match (name.as_str(), value) {
            ("jkt", Value::String(s)) if sender.dpop.is_some() && !s.is_empty() => out.jkt = Some(Cow::Borrowed(s)),
            ("jwk", Value::Object(key)) if sender.dpop.is_some() => jwk = Some(public_jwk(key)?),
            ("x5t#S256", Value::String(s)) if sender.mtls.is_some() && !s.is_empty() => out.x5t = Some(s),
            _ => return Err(Reason::UnsupportedBinding),
        }
    }
    match (jwk, &out.jkt) {
        (Some(thumbprint), None) => out.jkt = Some(Cow::Owned(thumbprint)),
        (Some(thumbprint), Some(jkt)) if thumbprint != *jkt => return Err(Reason::UnsupportedBinding),
        _ => {}
    }
    Ok(out)
}

/// The RFC 7638 thumbprint of `cnf.jwk`: a public EC, OKP or RSA key. A key
/// with a private member (`d`, the RSA primes and exponents, `oth`, an `oct`
/// key's `k`) or of another type is `unsupported_binding`: a token that
/// carries a private key binds nothing.
fn public_jwk(key: &Map<String, Value>) -> Result<String, Reason> {
    const PRIVATE: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
    if PRIVATE.iter().any(|m| key.contains_key(*m)) {
        return Err(Reason::UnsupportedBinding);
    }
    dpop::thumbprint(key).ok_or(Reason::UnsupportedBinding)
}

/// Whether the credential came with the `DPoP` authorization scheme.
pub fn is_dpop_scheme(source: &TokenSource) -> bool {
    matches!(source, TokenSource::Header { name, prefix } if name == "authorization" && prefix == DPOP_SCHEME)
}

/// The sender checks of SPEC §10 for a verified `token` found as `credential`.
/// The first failure decides: `unsupported_binding`, then the DPoP reasons
/// (`unexpected_dpop`, `dpop_required`, the proof's), then the certificate's.
/// With a delegation chain (SPEC §16), `leaf` is the leaf link's `cnf.jkt`:
/// the proof must be signed by the leaf holder's key, not the root's.
#[allow(clippy::too_many_arguments)] // each is one input of the decision
pub fn check(
    config: &Config,
    token: &VerifiedToken,
    credential: &Found,
    view: &RequestView<'_>,
    crypto: &dyn HostCrypto,
    replay: &mut dyn ReplayCache,
    proof_keys: &mut dpop::ProofKeys,
    leaf: Option<&str>,
) -> Result<(), Reason> {
    let sender = &config.sender;
    let mut bound = binding(&token.claims, sender)?;
    if let (Some(leaf), Some(_)) = (leaf, &bound.jkt) {
        bound.jkt = Some(Cow::Borrowed(leaf));
    }
    if let Some(dpop) = &sender.dpop {
        let scheme = is_dpop_scheme(&credential.source);
        match bound.jkt.as_deref() {
            None if scheme || view.header_values(DPOP_HEADER).next().is_some() => {
                return Err(Reason::UnexpectedDpop);
            }
            None => {}
            Some(_) if !scheme => return Err(Reason::DpopRequired),
            Some(jkt) => {
                let proofs: Vec<&[u8]> = view.header_values(DPOP_HEADER).collect();
                let origin = match &dpop.public_origin {
                    Some(o) => o.clone(),
                    None => request_origin(view).ok_or(Reason::InvalidDpopProof)?,
                };
                let request = dpop::ProofRequest {
                    method: view.method().ok_or(Reason::InvalidDpopProof)?,
                    origin: &origin,
                    path: view.normalized_path()?,
                    token: &credential.token,
                };
                dpop::check(dpop, &proofs, &request, jkt, crypto, replay, proof_keys, view.now())?;
            }
        }
    }
    if let (Some(x5t), Some(source)) = (bound.x5t, sender.mtls) {
        mtls::check(source, x5t, view)?;
    }
    Ok(())
}

/// `:scheme://:authority` of the request, normalised as [`dpop::parse_origin`] does.
fn request_origin(view: &RequestView<'_>) -> Option<String> {
    let scheme = view.header(":scheme")?;
    let authority = view.header(":authority")?;
    dpop::parse_origin(&format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Dpop, MtlsSource};
    use crate::keys::algorithm::{AlgSet, Algorithm};
    use serde_json::json;

    fn sender(dpop: bool, mtls: bool) -> SenderConstraints {
        SenderConstraints {
            dpop: dpop.then(|| Dpop {
                algorithms: AlgSet::of(&[Algorithm::ES256]),
                algs: "ES256".into(),
                max_age_seconds: 60,
                public_origin: None,
                nonce: None,
                replay_max_entries: 65536,
                replay_in_usage_store: false,
            }),
            mtls: mtls.then_some(MtlsSource::Peer),
        }
    }

    #[test]
    fn cnf_is_must_understand() {
        let both = sender(true, true);
        let claims = |v: Value| v.as_object().cloned().unwrap();
        let none = claims(json!({"sub": "a"}));
        assert_eq!(binding(&none, &SenderConstraints::default()), Ok(Binding::default()));
        let jkt = claims(json!({"cnf": {"jkt": "abc"}}));
        assert_eq!(binding(&jkt, &both), Ok(Binding { jkt: Some("abc".into()), x5t: None }));
        assert_eq!(binding(&jkt, &sender(false, true)), Err(Reason::UnsupportedBinding));
        assert_eq!(binding(&jkt, &SenderConstraints::default()), Err(Reason::UnsupportedBinding));
        let x5t = claims(json!({"cnf": {"x5t#S256": "xyz"}}));
        assert_eq!(binding(&x5t, &both), Ok(Binding { jkt: None, x5t: Some("xyz") }));
        assert_eq!(binding(&x5t, &sender(true, false)), Err(Reason::UnsupportedBinding));
        for cnf in [
            json!({"cnf": {"jwk": {"kty": "EC"}}}),
            json!({"cnf": {"jwk": {"kty": "oct", "k": "c2VjcmV0"}}}),
            json!({"cnf": {"jwk": "abc"}}),
            json!({"cnf": {"jkt": "abc", "kid": "k"}}),
            json!({"cnf": {"jkt": 1}}),
            json!({"cnf": {"jkt": ""}}),
            json!({"cnf": {}}),
            json!({"cnf": "abc"}),
            json!({"cnf": null}),
        ] {
            assert_eq!(binding(&claims(cnf.clone()), &both), Err(Reason::UnsupportedBinding), "{cnf}");
        }
    }

    /// `cnf.jwk` binds the key it holds, as `cnf.jkt` binds its thumbprint
    /// (RFC 9449 §6.1's example key); a private key, a key of no supported
    /// type, a `jkt` beside it naming another key, or no `dpop` configured is
    /// `unsupported_binding`.
    #[test]
    fn cnf_jwk_binds_its_public_keys_thumbprint() {
        let claims = |v: Value| v.as_object().cloned().unwrap();
        let key = json!({"kty": "EC", "crv": "P-256",
            "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs", "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"});
        let thumbprint = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
        let both = sender(true, true);
        let jwk = claims(json!({"cnf": {"jwk": key}}));
        assert_eq!(binding(&jwk, &both).unwrap().jkt.as_deref(), Some(thumbprint));
        let agreeing = claims(json!({"cnf": {"jwk": key, "jkt": thumbprint}}));
        assert_eq!(binding(&agreeing, &both).unwrap().jkt.as_deref(), Some(thumbprint));
        let disagreeing = claims(json!({"cnf": {"jwk": key, "jkt": "another"}}));
        assert_eq!(binding(&disagreeing, &both), Err(Reason::UnsupportedBinding));
        assert_eq!(binding(&jwk, &sender(false, true)), Err(Reason::UnsupportedBinding));
        let mut private = key.clone();
        private["d"] = json!("870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE");
        assert_eq!(binding(&claims(json!({"cnf": {"jwk": private}})), &both), Err(Reason::UnsupportedBinding));
    }
}
