//! Keys fetched at run time (SPEC §2 `remote_jwks`), per provider.
//!
//! A fetched key set is parsed with the rules of inline keys, but one unusable
//! key (an encryption key, an algorithm outside the provider's allow-list, an
//! unsupported curve) is skipped rather than failing the set: identity providers
//! publish such keys next to their signing keys. A set that is not JSON, has a
//! duplicate `kid`, carries private or symmetric key material, or has no usable
//! key is refused, and the previous good set stays in force.

use crate::core::config::Config;
use crate::core::json;
use crate::core::keys::VerificationKey;
use crate::core::verify::KeyLookup;
use serde_json::Value;

/// Largest JWKS body accepted.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// The last good fetched key set of every provider (index = provider index).
#[derive(Default)]
pub struct KeyStore {
    fetched: Vec<Option<Vec<VerificationKey>>>,
}

impl KeyStore {
    pub fn new(providers: usize) -> KeyStore {
        KeyStore { fetched: vec![None; providers] }
    }

    /// Replaces the provider's fetched keys.
    pub fn set(&mut self, provider: usize, keys: Vec<VerificationKey>) {
        if let Some(slot) = self.fetched.get_mut(provider) {
            *slot = Some(keys);
        }
    }

    pub fn has_keys(&self, provider: usize) -> bool {
        self.fetched.get(provider).is_some_and(Option::is_some)
    }
}

impl KeyLookup for KeyStore {
    fn fetched(&self, provider: usize) -> Option<&[VerificationKey]> {
        self.fetched.get(provider)?.as_deref()
    }
}

/// A parsed remote key set: the usable keys and how many were skipped.
#[derive(Debug)]
pub struct FetchedKeys {
    pub keys: Vec<VerificationKey>,
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
        match VerificationKey::from_jwk(map, Some(p.algorithms)) {
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
