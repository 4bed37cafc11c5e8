//! Parsing of fetched documents (SPEC §2 `remote_jwks`): a remote JWKS and an
//! OIDC discovery document.
//!
//! A fetched key set is parsed with the rules of inline keys, but one unusable
//! key (an encryption key, an algorithm outside the provider's allow-list, an
//! unsupported curve) is skipped rather than failing the set: identity providers
//! publish such keys next to their signing keys. A set that is not JSON, has a
//! duplicate `kid`, carries private or symmetric key material, or has no usable
//! key is refused, and the previous good set stays in force.

use crate::config::Config;
use crate::encoding::json;
use crate::keys::key::VerificationKey;
use serde_json::Value;

/// Largest JWKS (or OIDC discovery document) body accepted.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A parsed remote key set: the usable keys and how many were skipped.
#[derive(Debug)]
pub struct FetchedKeys {
    /// The usable signing keys, in the order of the set.
    pub keys: Vec<VerificationKey>,
    /// How many keys were skipped as unusable here (not an error).
    pub skipped: usize,
}

/// Parses a fetched JWKS body for `provider` (index into `config.providers`).
pub fn parse_remote_jwks(config: &Config, provider: usize, body: &[u8]) -> Result<FetchedKeys, String> {
    if body.len() > MAX_JWKS_BYTES {
        return Err(format!("key set is {} bytes; at most {MAX_JWKS_BYTES} are accepted", body.len()));
    }
    let p = config.providers.get(provider).ok_or("no such provider")?;
    let set = json::parse_object(body).map_err(|_| "key set is not a JSON object without duplicate members")?;
    let Some(Value::Array(list)) = set.get("keys") else {
        return Err("key set has no `keys` array".into());
    };
    let mut keys: Vec<VerificationKey> = Vec::new();
    let mut skipped = 0;
    for (i, jwk) in list.iter().enumerate() {
        let Value::Object(map) = jwk else {
            return Err(format!("keys[{i}] is not an object"));
        };
        if map.get("kty").and_then(Value::as_str) == Some("oct") {
            return Err(format!("keys[{i}]: symmetric keys are never accepted from a remote key set"));
        }
        match VerificationKey::from_jwk(map, p.configured_algorithms) {
            Ok(k) => {
                if let Some(kid) = &k.kid {
                    if keys.iter().any(|o| o.kid.as_ref() == Some(kid)) || p.keys_by_kid.contains_key(kid) {
                        return Err(format!("keys[{i}]: duplicate kid {kid:?}"));
                    }
                }
                keys.push(k);
            }
            Err(e) if e.contains("private key material") => return Err(format!("keys[{i}]: {e}")),
            Err(_) => skipped += 1,
        }
    }
    if keys.is_empty() {
        return Err(format!("key set has no usable signing key ({skipped} skipped)"));
    }
    Ok(FetchedKeys { keys, skipped })
}

/// The JWKS path from an OIDC discovery document (OpenID Connect Discovery 1.0):
/// its `issuer` must equal the provider's, and `jwks_uri` must be on the
/// configured authority (keys are only ever fetched through the configured
/// cluster). Returns the path (with query) of `jwks_uri`.
pub fn jwks_path_from_discovery(doc: &[u8], issuer: &str, authority: &str) -> Result<String, String> {
    if doc.len() > MAX_JWKS_BYTES {
        return Err("discovery document is too large".into());
    }
    let doc =
        json::parse_object(doc).map_err(|_| "discovery document is not a JSON object without duplicate members")?;
    match doc.get("issuer").and_then(Value::as_str) {
        Some(i) if i == issuer => {}
        Some(_) => return Err("discovery document names another issuer".into()),
        None => return Err("discovery document has no `issuer`".into()),
    }
    let uri = doc.get("jwks_uri").and_then(Value::as_str).ok_or("discovery document has no `jwks_uri`")?;
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or("`jwks_uri` is not an http(s) URL")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("/")),
        None => (rest, "/"),
    };
    if !host.eq_ignore_ascii_case(authority) {
        return Err(format!("`jwks_uri` is on {host:?}, not on the configured authority {authority:?}"));
    }
    let path = path.split('#').next().unwrap_or("/");
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err("`jwks_uri` has an invalid path".into());
    }
    Ok(path.to_string())
}
