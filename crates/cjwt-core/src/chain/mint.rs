//! Deriving a link (SPEC §16) for the command line and the tests: the holder
//! signs a narrower link onto the credential it holds, and nothing that widens
//! is signed. Host-only (feature `mint`).

use super::{LINK_TYP, SEPARATOR};
use crate::constraints::{self, Constraints};
use crate::encoding::{b64, json};
use crate::mint::{jkt, mint_raw, SigningKey};
use crate::token::claims::lookup_unambiguous;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// What a new link says besides what the parent fixes (`iss`, `par_hash`, `del_depth`).
#[derive(Debug, Clone)]
pub struct LinkSpec {
    /// The link's `jti`.
    pub jti: String,
    /// `iat`, Unix seconds.
    pub iat: i64,
    /// `exp`, Unix seconds: no later than the parent's.
    pub exp: i64,
    /// The link's constraints (an object; `None`: it adds none).
    pub constraints: Option<Value>,
    /// `cnf.jkt`: the next holder's key thumbprint.
    pub next_jkt: String,
}

/// One part of a delegation credential, decoded (not verified).
struct Part<'a> {
    signing_input: &'a str,
    claims: Map<String, Value>,
}

fn decode(text: &str) -> Result<Part<'_>, String> {
    let mut parts = text.split('.');
    let (Some(_), Some(p), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("not a compact JWS (three dot-separated parts)".into());
    };
    let bytes = b64::decode(p.as_bytes()).ok_or("a payload is not base64url")?;
    let claims = json::parse_object(&bytes).map_err(|_| "a payload is not a JSON object")?;
    let signing_input = text.rfind('.').and_then(|end| text.get(..end)).ok_or("not a compact JWS")?;
    Ok(Part { signing_input, claims })
}

/// Signs a link with `holder` onto `credential` (`ROOT` or `ROOT~LINK~…`, as
/// held) and returns the longer credential. Refused, with what is wrong:
/// `holder` is not the key the last part binds (`cnf.jkt`); the link's
/// constraints do not parse, or widen what the credential already allows
/// ([`crate::constraints::within`] against each constraint's narrowest value
/// so far); its `exp` is past its parent's; its `iat` after its `exp`.
/// `claim` is the constraints claim's name; `custom_names` the custom
/// constraints the proxy is configured with.
pub fn attenuate(
    holder: &SigningKey,
    credential: &str,
    spec: &LinkSpec,
    claim: &str,
    custom_names: &[&str],
) -> Result<String, String> {
    if matches!(holder, SigningKey::Hmac(..)) {
        return Err("a link needs an asymmetric key (EdDSA, ES256, ES384, RS*, PS*)".into());
    }
    let credential = credential.trim();
    let parts = credential.split(SEPARATOR).map(decode).collect::<Result<Vec<_>, _>>()?;
    let parent = parts.last().ok_or("an empty credential")?;
    let cnf = parent.claims.get("cnf");
    let bound = match (cnf.and_then(|c| c.get("jkt")), cnf.and_then(|c| c.get("jwk"))) {
        (Some(Value::String(jkt)), _) => Some(jkt.clone()),
        (None, Some(Value::Object(key))) => crate::sender::dpop::thumbprint(key),
        _ => None,
    };
    let bound =
        bound.ok_or("the credential's last part binds no key (no `cnf.jkt` or `cnf.jwk`): nothing can be derived")?;
    let mine = jkt(holder).ok_or("the key has no thumbprint")?;
    if bound != mine {
        return Err("the key is not the one the credential binds (`cnf`): only its holder can derive".into());
    }
    let mut effective = Map::new();
    for part in &parts {
        if let Ok(Some(Value::Object(c))) = lookup_unambiguous(&part.claims, claim) {
            effective.extend(c.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    if let Some(value) = &spec.constraints {
        let parsed = Constraints::parse(value, custom_names, true).map_err(|e| format!("constraint refused: {e}"))?;
        if let Some(unknown) = parsed.unknown {
            return Err(format!("constraint refused: unknown constraint {unknown:?}"));
        }
        constraints::within(&effective, value, custom_names).map_err(|e| format!("refused: {e}"))?;
    }
    if let Some(parent_exp) = parent.claims.get("exp").and_then(Value::as_i64) {
        if spec.exp > parent_exp {
            return Err(format!("refused: exp {} is past the parent's {parent_exp}", spec.exp));
        }
    }
    if spec.iat > spec.exp {
        return Err("refused: iat after exp".into());
    }
    let mut claims = json!({
        "iss": mine,
        "jti": spec.jti,
        "iat": spec.iat,
        "exp": spec.exp,
        "par_hash": b64::encode(&Sha256::digest(parent.signing_input.as_bytes())),
        "del_depth": parts.len(),
        "cnf": {"jkt": spec.next_jkt},
    });
    if let (Some(value), Value::Object(m)) = (&spec.constraints, &mut claims) {
        m.insert(claim.to_owned(), value.clone());
    }
    let header = json!({"typ": LINK_TYP, "alg": holder.alg().name(), "jwk": holder.public_jwk(None)});
    let link = mint_raw(holder, &header.to_string(), &claims.to_string());
    Ok(format!("{credential}{SEPARATOR}{link}"))
}

/// A delegation credential `ROOT~LINK~…` as it travels: the root (for
/// `Authorization: DPoP`) and the links (the `cjwt-chain` header; `None`
/// when there are none).
pub fn split(credential: &str) -> (&str, Option<&str>) {
    match credential.trim().split_once(SEPARATOR) {
        Some((root, links)) => (root, Some(links)),
        None => (credential.trim(), None),
    }
}
