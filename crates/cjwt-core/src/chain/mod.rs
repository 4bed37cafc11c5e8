//! Holder attenuation (SPEC §16): a delegation chain a proxy verifies with the
//! root issuer's key alone.
//!
//! The root is the request's ordinary token (`Authorization: DPoP <root>`),
//! bound to a holder key by `cnf.jkt` (or `cnf.jwk`). The `cjwt-chain` header carries the
//! links, root to leaf, `~`-separated; each link is a compact JWS
//! (`typ: cjwt-link+jwt`) that:
//!
//! - carries its signer's public key in the header `jwk`, whose RFC 7638
//!   thumbprint is the parent's `cnf.jkt`, and names it as `iss` (the AAT
//!   draft's I1): a link signed by another key is `chain_key`;
//! - is signed by that key with an algorithm DPoP proofs may use
//!   (`sender_constraints.dpop.algorithms`): else `chain_signature`;
//! - names its parent by `par_hash`, base64url SHA-256 of the parent's JWS
//!   signing input (I5): a link spliced from another chain, or reordered, is
//!   `chain_parent`;
//! - counts its place in `del_depth` (1 for the root's child, I2), has a
//!   `jti`, an `exp` and a `cnf.jkt` binding the next holder: else
//!   `chain_malformed`;
//! - lives within its parent (`exp` no later, I3) and within its own
//!   lifetime: else `chain_widens`, `chain_expired`;
//! - carries constraints (the configured constraints claim) that allow no
//!   request its ancestors refuse, kind by kind ([`crate::constraints::within`],
//!   I4): else `chain_widens`.
//!
//! A request with a chain proves possession of the leaf's key with its DPoP
//! proof (SPEC §10 with the leaf's `cnf.jkt` in place of the root's). The
//! effective constraints are the conjunction of the root's and every link's
//! ([`check`]); a link's `max_uses` counts under its own key, so a child never
//! spends more than its parent has left. A link whose `jti` the deny-list names
//! (with the root's issuer), like the root itself, revokes the chain.

#[cfg(feature = "mint")]
pub mod mint;

use crate::config::Config;
use crate::constraints::max_uses::TokenUse;
use crate::constraints::{self, Constraints};
use crate::encoding::b64;
use crate::keys::algorithm::Algorithm;
use crate::keys::host_crypto::HostCrypto;
use crate::reason::Reason;
use crate::request::view::RequestView;
use crate::sender::dpop::{thumbprint, ProofKeys};
use crate::token::claims::{lookup_unambiguous, numeric_date, Rounding};
use crate::token::jws::{parse_holder_jws, HolderJws};
use crate::token::verify::VerifiedToken;
use crate::usage::UsageCounter;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The header that carries the links (lowercase, as hosts give header names).
pub const HEADER: &str = "cjwt-chain";
/// Between two links in [`HEADER`].
pub const SEPARATOR: char = '~';
/// The `typ` of every link.
pub const LINK_TYP: &str = "cjwt-link+jwt";
/// The longest link `jti` accepted, bytes.
pub const MAX_JTI_BYTES: usize = 256;

/// JWK members only private (or symmetric) keys carry.
const PRIVATE_MEMBERS: [&str; 9] = ["d", "p", "q", "dp", "dq", "qi", "oth", "r", "k"];
/// Link header parameters refused: extensions cjwt does not understand, and
/// key references other than the embedded `jwk`.
const FORBIDDEN_HEADER: [&str; 7] = ["crit", "jku", "x5u", "x5c", "zip", "enc", "kid"];

/// One verified link.
#[derive(Debug)]
pub struct Link {
    /// `jti`: what the deny-list names.
    pub jti: String,
    /// `exp`, Unix seconds.
    pub exp: i64,
    /// `cnf.jkt`: the thumbprint of the next holder's key.
    pub jkt: String,
    /// The link's constraints, compiled.
    pub constraints: Constraints,
    /// What the link's `max_uses` counts under (with the root's issuer): its
    /// own signing input's hash, so that no link can count against another
    /// token by naming its `jti`.
    usage_key: String,
}

/// A verified chain: at least one link, root to leaf.
#[derive(Debug)]
pub struct Chain {
    links: Vec<Link>,
}

impl Chain {
    /// The links, root to leaf.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The thumbprint of the leaf holder's key, which the request's DPoP proof
    /// must be signed with.
    pub fn leaf_jkt(&self) -> Option<&str> {
        self.links.last().map(|l| l.jkt.as_str())
    }
}

/// The chain the request carries, verified against the (verified) `root`
/// presented as `root_raw`: `None` without a `cjwt-chain` header; more than
/// one header is `chain_malformed`.
pub fn verify(
    config: &Config,
    root: &VerifiedToken,
    root_raw: &[u8],
    view: &RequestView<'_>,
    crypto: &dyn HostCrypto,
    keys: &mut ProofKeys,
) -> Result<Option<Chain>, Reason> {
    let mut values = view.header_values(HEADER);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Reason::ChainMalformed);
    }
    verify_value(config, root, root_raw, value, crypto, keys, view.now()).map(Some)
}

/// What a link is checked against: the previous link, or the root.
struct Parent<'a> {
    signing_input: &'a str,
    jkt: String,
    exp: Option<i64>,
}

/// [`verify`] of one header value, in order: size, depth, then each link
/// from the root's child to the leaf (the first failure decides).
pub fn verify_value(
    config: &Config,
    root: &VerifiedToken,
    root_raw: &[u8],
    value: &[u8],
    crypto: &dyn HostCrypto,
    keys: &mut ProofKeys,
    now: i64,
) -> Result<Chain, Reason> {
    let limits = config.attenuation();
    if value.len() > limits.max_bytes {
        return Err(Reason::ChainSize);
    }
    let text = std::str::from_utf8(value).map_err(|_| Reason::ChainMalformed)?.trim_matches([' ', '\t']);
    let count = text.split(SEPARATOR).count();
    if count > limits.max_depth {
        return Err(Reason::ChainDepth);
    }
    let dpop = config.sender().dpop.as_ref().ok_or(Reason::ChainKey)?;
    let root_jkt = crate::sender::binding(&root.claims, config.sender()).ok().and_then(|b| b.jkt);
    let root_jkt = root_jkt.ok_or(Reason::ChainKey)?;
    let root_text = std::str::from_utf8(root_raw).map_err(|_| Reason::ChainMalformed)?;
    let root_input = root_text.rfind('.').and_then(|end| root_text.get(..end)).ok_or(Reason::ChainMalformed)?;
    let names = config.custom_constraint_names();
    let claim = config.constraints_claim();
    // The narrowest value of each constraint so far: a link is compared with it.
    let mut effective = match lookup_unambiguous(&root.claims, claim) {
        Ok(Some(Value::Object(m))) => m.clone(),
        Ok(None) => Map::new(),
        _ => return Err(Reason::MalformedConstraint),
    };
    let skew = config.clock_skew_seconds();
    let mut parent = Parent { signing_input: root_input, jkt: root_jkt.into_owned(), exp: root.exp };
    let mut links = Vec::with_capacity(count);
    for (i, text) in text.split(SEPARATOR).enumerate() {
        let HolderJws { header_b64, header, claims, signing_input, signature } =
            parse_holder_jws(text).ok_or(Reason::ChainMalformed)?;
        match header.get("typ").and_then(Value::as_str) {
            Some(t) if t.eq_ignore_ascii_case(LINK_TYP) => {}
            _ => return Err(Reason::ChainMalformed),
        }
        if FORBIDDEN_HEADER.iter().any(|p| header.contains_key(*p)) {
            return Err(Reason::ChainMalformed);
        }
        let jwk = header.get("jwk").and_then(Value::as_object).ok_or(Reason::ChainMalformed)?;
        if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
            return Err(Reason::ChainMalformed);
        }
        // Signed by the parent's bound key (checked before the signature: a
        // key substituted is `chain_key` whatever it signed).
        if thumbprint(jwk).as_deref() != Some(parent.jkt.as_str()) {
            return Err(Reason::ChainKey);
        }
        let alg = header.get("alg").and_then(Value::as_str).and_then(Algorithm::from_name);
        let alg = alg.filter(|a| !a.is_hmac() && dpop.algorithms.contains(*a)).ok_or(Reason::ChainSignature)?;
        let key = keys.import(header_b64, jwk, dpop.algorithms).ok_or(Reason::ChainSignature)?;
        if !key.verify_with(crypto, alg, signing_input.as_bytes(), &signature) {
            return Err(Reason::ChainSignature);
        }
        if claims.get("iss").and_then(Value::as_str) != Some(parent.jkt.as_str()) {
            return Err(Reason::ChainKey);
        }
        let par_hash = b64::encode(&Sha256::digest(parent.signing_input.as_bytes()));
        if claims.get("par_hash").and_then(Value::as_str) != Some(par_hash.as_str()) {
            return Err(Reason::ChainParent);
        }
        let depth = u64::try_from(i).unwrap_or(u64::MAX).saturating_add(1);
        if claims.get("del_depth").and_then(Value::as_u64) != Some(depth) {
            return Err(Reason::ChainMalformed);
        }
        let jti = claims.get("jti").and_then(Value::as_str).filter(|j| !j.is_empty() && j.len() <= MAX_JTI_BYTES);
        let jti = jti.ok_or(Reason::ChainMalformed)?;
        let date = |name| numeric_date(&claims, name, Rounding::Up).map_err(|_| Reason::ChainMalformed);
        let exp = numeric_date(&claims, "exp", Rounding::Down).ok().flatten().ok_or(Reason::ChainMalformed)?;
        let (nbf, iat) = (date("nbf")?, date("iat")?);
        let jkt = next_holder(&claims).ok_or(Reason::ChainMalformed)?;
        let constraints = match lookup_unambiguous(&claims, claim) {
            Err(_) => return Err(Reason::ChainMalformed),
            Ok(None) => Constraints::default(),
            Ok(Some(value)) => {
                let compiled = Constraints::parse(value, &names, true).map_err(|_| Reason::ChainMalformed)?;
                // A key nobody understands cannot be shown to narrow: refused.
                if compiled.unknown.is_some() {
                    return Err(Reason::ChainWidens);
                }
                constraints::within(&effective, value, &names).map_err(|_| Reason::ChainWidens)?;
                if let Some(obj) = value.as_object() {
                    effective.extend(obj.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                compiled
            }
        };
        // Within its parent's lifetime, and within its own.
        if parent.exp.is_some_and(|p| exp > p) {
            return Err(Reason::ChainWidens);
        }
        let early = |t: Option<i64>| t.is_some_and(|t| now.saturating_add(skew) < t);
        if now >= exp.saturating_add(skew) || early(nbf) || early(iat) {
            return Err(Reason::ChainExpired);
        }
        if config.revocation().lists_jti(root.issuer(), jti) {
            return Err(Reason::Revoked);
        }
        let usage_key = format!("link:{}", b64::encode(&Sha256::digest(signing_input.as_bytes())));
        links.push(Link { jti: jti.to_owned(), exp, jkt: jkt.to_owned(), constraints, usage_key });
        parent = Parent { signing_input, jkt: jkt.to_owned(), exp: Some(exp) };
    }
    Ok(Chain { links })
}

/// `cnf`: an object whose one member is a non-empty string `jkt`.
fn next_holder(claims: &Map<String, Value>) -> Option<&str> {
    let cnf = claims.get("cnf")?.as_object()?;
    match (cnf.len(), cnf.get("jkt")) {
        (1, Some(Value::String(jkt))) if !jkt.is_empty() => Some(jkt),
        _ => None,
    }
}

/// The effective constraints of a request with `chain`: the root's and every
/// link's, all of them (SPEC §16). Every level's conditions first, then the
/// uses, the leaf's first and the root's last, each under its own key: a
/// refused request counts nothing, and a use refused at a level after another
/// counted it leaves that count spent (never more uses than any level
/// allows). With a mesh-wide `usage_store` the uses are noted in the same
/// order and asked of the store one after another, each under its own key
/// ([`crate::usage::etcd::UseCall`]), with the same outcome.
#[allow(clippy::too_many_arguments)] // each is one input of the decision
pub fn check(
    config: &Config,
    root: &VerifiedToken,
    root_expires_at: i64,
    chain: &Chain,
    view: &RequestView<'_>,
    counter: &mut dyn UsageCounter,
    now: i64,
) -> Result<(), Reason> {
    root.constraints.check_conditions(view, now)?;
    for link in &chain.links {
        link.constraints.check_conditions(view, now)?;
    }
    let issuer = root.issuer();
    let skew = config.clock_skew_seconds();
    for link in chain.links.iter().rev() {
        let expires_at = link.exp.saturating_add(skew);
        let uses = TokenUse { counter: &mut *counter, issuer, jti: Some(&link.usage_key), expires_at };
        link.constraints.check_uses(view, uses, now)?;
    }
    let uses = TokenUse { counter, issuer, jti: root.jti.as_deref(), expires_at: root_expires_at };
    root.constraints.check_uses(view, uses, now)
}

/// What [`inspect`] reads of one link, unverified (for `cjwt inspect`).
#[derive(Debug)]
pub struct Shown {
    /// The link's header.
    pub header: Map<String, Value>,
    /// The link's claims.
    pub claims: Map<String, Value>,
    /// RFC 7638 thumbprint of the signer's `jwk`, if it has one.
    pub signer: Option<String>,
}

/// The links of a `cjwt-chain` value, decoded and NOT verified (for display).
/// `None` when a link is not a compact JWS.
pub fn inspect(value: &str) -> Option<Vec<Shown>> {
    value
        .trim()
        .split(SEPARATOR)
        .map(|text| {
            let p = parse_holder_jws(text)?;
            let signer = p.header.get("jwk").and_then(Value::as_object).and_then(thumbprint);
            Some(Shown { header: p.header, claims: p.claims, signer })
        })
        .collect()
}
