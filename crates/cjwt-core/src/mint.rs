//! Signing: key generation and token minting for the command line, the demo and
//! the tests. Host-only (feature `mint`); never part of the wasm filter.

pub mod claims;

use crate::encoding::b64;
use crate::keys::algorithm::{Algorithm, Hash};
use serde_json::{json, Map, Value};

/// A private key that can sign tokens for one algorithm.
pub enum SigningKey {
    /// An Ed25519 key (EdDSA).
    Ed25519(ed25519_dalek::SigningKey),
    /// A P-256 key (ES256).
    P256(p256::ecdsa::SigningKey),
    /// A P-384 key (ES384).
    P384(p384::ecdsa::SigningKey),
    /// An RSA key and the RS* or PS* algorithm it signs with.
    Rsa(Box<rsa::RsaPrivateKey>, Algorithm),
    /// A shared secret and the HS* algorithm it signs with.
    Hmac(Vec<u8>, Algorithm),
}

impl SigningKey {
    /// A fresh random key for `alg` (RSA: 2048 bits; HMAC: hash-length secret).
    pub fn generate(alg: Algorithm) -> Result<SigningKey, String> {
        let mut rng = rand_core::OsRng;
        Ok(match alg {
            Algorithm::EdDSA => SigningKey::Ed25519(ed25519_dalek::SigningKey::generate(&mut rng)),
            Algorithm::ES256 => SigningKey::P256(p256::ecdsa::SigningKey::random(&mut rng)),
            Algorithm::ES384 => SigningKey::P384(p384::ecdsa::SigningKey::random(&mut rng)),
            a if a.is_rsa() => {
                SigningKey::Rsa(Box::new(rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(|e| e.to_string())?), a)
            }
            a => {
                let len = match a.hash() {
                    Hash::Sha256 => 32,
                    Hash::Sha384 => 48,
                    Hash::Sha512 => 64,
                };
                let mut secret = vec![0u8; len];
                rand_core::RngCore::fill_bytes(&mut rng, &mut secret);
                SigningKey::Hmac(secret, a)
            }
        })
    }

    /// Loads a PKCS#8 PEM private key (or, for HS*, a base64url secret) for `alg`.
    pub fn from_pem(alg: Algorithm, pem: &str) -> Result<SigningKey, String> {
        use pkcs8::DecodePrivateKey;
        let pem = pem.trim();
        Ok(match alg {
            Algorithm::EdDSA => SigningKey::Ed25519(
                ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
                    .map_err(|e| format!("not an Ed25519 private key: {e}"))?,
            ),
            Algorithm::ES256 => SigningKey::P256(
                p256::ecdsa::SigningKey::from_pkcs8_pem(pem).map_err(|e| format!("not a P-256 private key: {e}"))?,
            ),
            Algorithm::ES384 => SigningKey::P384(
                p384::ecdsa::SigningKey::from_pkcs8_pem(pem).map_err(|e| format!("not a P-384 private key: {e}"))?,
            ),
            a if a.is_rsa() => SigningKey::Rsa(
                Box::new(rsa::RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| format!("not an RSA private key: {e}"))?),
                a,
            ),
            a => SigningKey::Hmac(b64::decode(pem.as_bytes()).ok_or("an HMAC secret file holds base64url")?, a),
        })
    }

    /// The private key as PKCS#8 PEM (HMAC: the base64url secret).
    pub fn to_pem(&self) -> Result<String, String> {
        use pkcs8::{EncodePrivateKey, LineEnding};
        let pem = match self {
            SigningKey::Ed25519(k) => k.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())?.to_string(),
            SigningKey::P256(k) => k.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())?.to_string(),
            SigningKey::P384(k) => k.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())?.to_string(),
            SigningKey::Rsa(k, _) => k.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())?.to_string(),
            SigningKey::Hmac(s, _) => format!("{}\n", b64::encode(s)),
        };
        Ok(pem)
    }

    /// The algorithm this key signs with (the JWS header `alg`).
    pub fn alg(&self) -> Algorithm {
        match self {
            SigningKey::Ed25519(_) => Algorithm::EdDSA,
            SigningKey::P256(_) => Algorithm::ES256,
            SigningKey::P384(_) => Algorithm::ES384,
            SigningKey::Rsa(_, a) | SigningKey::Hmac(_, a) => *a,
        }
    }

    /// The public JWK (for HS*, the secret JWK: it is what the filter must hold).
    pub fn public_jwk(&self, kid: Option<&str>) -> Value {
        let mut jwk = match self {
            SigningKey::Ed25519(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode(k.verifying_key().as_bytes())})
            }
            SigningKey::P256(k) => ec_jwk("P-256", k.verifying_key().to_encoded_point(false).as_bytes()),
            SigningKey::P384(k) => ec_jwk("P-384", k.verifying_key().to_encoded_point(false).as_bytes()),
            SigningKey::Rsa(k, _) => {
                use rsa::traits::PublicKeyParts;
                json!({"kty": "RSA", "n": b64::encode(&k.n().to_bytes_be()), "e": b64::encode(&k.e().to_bytes_be())})
            }
            SigningKey::Hmac(s, _) => json!({"kty": "oct", "k": b64::encode(s)}),
        };
        if let Value::Object(m) = &mut jwk {
            m.insert("alg".into(), Value::from(self.alg().name()));
            m.insert("use".into(), Value::from("sig"));
            if let Some(kid) = kid {
                m.insert("kid".into(), Value::from(kid));
            }
        }
        jwk
    }

    /// Signs `input` with this key's algorithm (JOSE signature encoding).
    pub fn sign(&self, input: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        match self {
            SigningKey::Ed25519(k) => {
                use ed25519_dalek::Signer;
                k.sign(input).to_bytes().to_vec()
            }
            SigningKey::P256(k) => {
                use p256::ecdsa::signature::Signer;
                let sig: p256::ecdsa::Signature = k.sign(input);
                sig.to_bytes().to_vec()
            }
            SigningKey::P384(k) => {
                use p384::ecdsa::signature::Signer;
                let sig: p384::ecdsa::Signature = k.sign(input);
                sig.to_bytes().to_vec()
            }
            SigningKey::Rsa(k, alg) => {
                let mut rng = rand_core::OsRng;
                let pss = matches!(alg, Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512);
                let result = match (alg.hash(), pss) {
                    (Hash::Sha256, false) => {
                        k.sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &sha2::Sha256::digest(input))
                    }
                    (Hash::Sha384, false) => {
                        k.sign(rsa::Pkcs1v15Sign::new::<sha2::Sha384>(), &sha2::Sha384::digest(input))
                    }
                    (Hash::Sha512, false) => {
                        k.sign(rsa::Pkcs1v15Sign::new::<sha2::Sha512>(), &sha2::Sha512::digest(input))
                    }
                    (Hash::Sha256, true) => k.sign_with_rng(
                        &mut rng,
                        rsa::Pss::new_with_salt::<sha2::Sha256>(32),
                        &sha2::Sha256::digest(input),
                    ),
                    (Hash::Sha384, true) => k.sign_with_rng(
                        &mut rng,
                        rsa::Pss::new_with_salt::<sha2::Sha384>(48),
                        &sha2::Sha384::digest(input),
                    ),
                    (Hash::Sha512, true) => k.sign_with_rng(
                        &mut rng,
                        rsa::Pss::new_with_salt::<sha2::Sha512>(64),
                        &sha2::Sha512::digest(input),
                    ),
                };
                result.unwrap_or_default()
            }
            SigningKey::Hmac(s, alg) => {
                use hmac::Mac;
                match alg.hash() {
                    Hash::Sha256 => hmac::Hmac::<sha2::Sha256>::new_from_slice(s)
                        .map(|m| m.chain_update(input).finalize().into_bytes().to_vec()),
                    Hash::Sha384 => hmac::Hmac::<sha2::Sha384>::new_from_slice(s)
                        .map(|m| m.chain_update(input).finalize().into_bytes().to_vec()),
                    Hash::Sha512 => hmac::Hmac::<sha2::Sha512>::new_from_slice(s)
                        .map(|m| m.chain_update(input).finalize().into_bytes().to_vec()),
                }
                .unwrap_or_default()
            }
        }
    }
}

/// An EC JWK from an uncompressed SEC1 point (`04 || x || y`).
fn ec_jwk(crv: &str, point: &[u8]) -> Value {
    let coords = point.get(1..).unwrap_or(&[]);
    let (x, y) = coords.split_at(coords.len() / 2);
    json!({"kty": "EC", "crv": crv, "x": b64::encode(x), "y": b64::encode(y)})
}

/// Mints a compact JWS with header `{"alg", "typ": "JWT", "kid"?}` plus `extra_header`.
pub fn mint(key: &SigningKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Map::new();
    header.insert("alg".into(), Value::from(key.alg().name()));
    header.insert("typ".into(), Value::from("JWT"));
    if let Some(kid) = kid {
        header.insert("kid".into(), Value::from(kid));
    }
    mint_raw(key, &Value::Object(header).to_string(), &claims.to_string())
}

/// Mints with the exact header and payload JSON text given (for tests of odd input).
pub fn mint_raw(key: &SigningKey, header_json: &str, payload_json: &str) -> String {
    let input = format!("{}.{}", b64::encode(header_json.as_bytes()), b64::encode(payload_json.as_bytes()));
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", b64::encode(&sig))
}

/// A DPoP proof (RFC 9449 §4.2) signed with `key` for `method` and `url` (its
/// query and fragment dropped for `htu`), with `ath` over `token` when given
/// and the server's `nonce` when given. The proof carries the public JWK of
/// `key`; symmetric keys cannot make proofs.
pub fn dpop_proof(
    key: &SigningKey,
    method: &str,
    url: &str,
    token: Option<&str>,
    iat: i64,
    jti: &str,
    nonce: Option<&str>,
) -> Result<String, String> {
    use sha2::Digest;
    if matches!(key, SigningKey::Hmac(..)) {
        return Err("a DPoP proof needs an asymmetric key (EdDSA, ES256, ES384, RS*, PS*)".into());
    }
    let htu = url.split(['?', '#']).next().unwrap_or(url);
    let header = json!({"typ": "dpop+jwt", "alg": key.alg().name(), "jwk": key.public_jwk(None)});
    let mut claims = json!({"jti": jti, "htm": method, "htu": htu, "iat": iat});
    if let Value::Object(m) = &mut claims {
        if let Some(t) = token {
            m.insert("ath".into(), Value::from(b64::encode(&sha2::Sha256::digest(t.as_bytes()))));
        }
        if let Some(n) = nonce {
            m.insert("nonce".into(), Value::from(n));
        }
    }
    Ok(mint_raw(key, &header.to_string(), &claims.to_string()))
}

/// The RFC 7638 thumbprint of `key`'s public JWK: what `cnf.jkt` holds for a
/// token bound to it.
pub fn jkt(key: &SigningKey) -> Option<String> {
    match key.public_jwk(None) {
        Value::Object(jwk) => crate::sender::dpop::thumbprint(&jwk),
        _ => None,
    }
}
