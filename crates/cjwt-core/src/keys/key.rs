//! Verification keys: parsed once from JWK or PEM at configuration time, with every
//! refusal of SPEC §2 (weak keys, `use`/`key_ops`, `crv`/`alg` contradictions,
//! private material), and the signature check itself.
//!
//! The key decides the algorithm. A token's `alg` only has to agree with it.

use crate::encoding::b64;
use crate::keys::algorithm::{AlgSet, Algorithm, Hash};
use crate::keys::rsa::RsaVerifier;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Sha256, Sha384, Sha512};

/// Public key material of one of the supported kinds.
#[derive(Clone)]
pub enum KeyMaterial {
    /// An Ed25519 public key (OKP, `crv: Ed25519`).
    Ed25519(ed25519_dalek::VerifyingKey),
    /// A P-256 public key (EC, `crv: P-256`), checked on the curve.
    P256(p256::ecdsa::VerifyingKey),
    /// A P-384 public key (EC, `crv: P-384`), checked on the curve.
    P384(p384::ecdsa::VerifyingKey),
    /// An RSA public key of 2048 to 8192 bits.
    Rsa(Box<RsaKey>),
    /// A shared secret (HS*). Never derived from a public key.
    Hmac(Vec<u8>),
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material (SPEC §6).
        f.write_str(match self {
            KeyMaterial::Ed25519(_) => "Ed25519",
            KeyMaterial::P256(_) => "P-256",
            KeyMaterial::P384(_) => "P-384",
            KeyMaterial::Rsa(_) => "RSA",
            KeyMaterial::Hmac(_) => "oct",
        })
    }
}

/// An RSA public key: the `rsa` crate's (parsing, checks, SPKI) and its
/// prepared form for verification ([`RsaVerifier`]).
#[derive(Clone)]
pub struct RsaKey {
    /// The key as parsed and checked by the `rsa` crate.
    pub public: rsa::RsaPublicKey,
    /// The same key prepared for verification.
    pub verifier: RsaVerifier,
}

/// A key bound to the algorithms it may verify.
#[derive(Clone, Debug)]
pub struct VerificationKey {
    /// The key id (`kid`) a token header must name to select this key, if any.
    pub kid: Option<String>,
    /// The algorithms this key may verify (never empty); the token header only selects among them.
    pub algs: AlgSet,
    /// The public key (or shared secret).
    pub material: KeyMaterial,
    /// DER SubjectPublicKeyInfo for keys the proxy can verify natively (RSA, P-256,
    /// P-384), computed once here so no request re-encodes a key.
    pub spki_der: Option<Vec<u8>>,
}

/// Minimum and maximum RSA modulus sizes (SPEC §2).
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

/// JWK members that only private keys carry.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "r"];

impl VerificationKey {
    /// Whether the key is a shared secret (oct, HS*).
    pub fn is_symmetric(&self) -> bool {
        matches!(self.material, KeyMaterial::Hmac(_))
    }

    /// Parses one JWK (RFC 7517). `provider_algs` is the provider's allow-list
    /// (all algorithms when the provider has none). The result verifies only
    /// algorithms fixed by the key itself and allowed by the provider.
    pub fn from_jwk(jwk: &Map<String, Value>, provider_algs: Option<AlgSet>) -> Result<VerificationKey, String> {
        let kty = str_member(jwk, "kty")?.ok_or("missing `kty`")?;
        let alg = match str_member(jwk, "alg")? {
            None => None,
            Some(name) => Some(Algorithm::from_name(name).ok_or_else(|| format!("unsupported `alg` {name:?}"))?),
        };
        let kid = str_member(jwk, "kid")?.map(str::to_owned);
        if let Some(u) = str_member(jwk, "use")? {
            if u != "sig" {
                return Err(format!("`use` is {u:?}; only \"sig\" keys verify tokens"));
            }
        }
        if let Some(ops) = jwk.get("key_ops") {
            let ops = ops.as_array().ok_or("`key_ops` must be an array")?;
            if !ops.iter().any(|o| o.as_str() == Some("verify")) {
                return Err("`key_ops` does not include \"verify\"".into());
            }
        }
        if kty != "oct" {
            if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
                return Err(format!("private key material (`{m}`) must not be configured"));
            }
        }
        let (material, algs) = match kty {
            "OKP" => {
                let crv = str_member(jwk, "crv")?.ok_or("missing `crv`")?;
                if crv != "Ed25519" {
                    return Err(format!("unsupported OKP curve {crv:?}"));
                }
                require_alg(alg, &[Algorithm::EdDSA], "Ed25519")?;
                let x = fixed_bytes(jwk, "x", 32)?;
                (ed25519_from_bytes(&x)?, AlgSet::of(&[Algorithm::EdDSA]))
            }
            "EC" => {
                let crv = str_member(jwk, "crv")?.ok_or("missing `crv`")?;
                match crv {
                    "P-256" => {
                        require_alg(alg, &[Algorithm::ES256], crv)?;
                        let point = ec_point(jwk, 32)?;
                        let key = p256::EncodedPoint::from_bytes(&point)
                            .ok()
                            .and_then(|p| p256::ecdsa::VerifyingKey::from_encoded_point(&p).ok())
                            .ok_or("EC point is not on P-256")?;
                        (KeyMaterial::P256(key), AlgSet::of(&[Algorithm::ES256]))
                    }
                    "P-384" => {
                        require_alg(alg, &[Algorithm::ES384], crv)?;
                        let point = ec_point(jwk, 48)?;
                        let key = p384::EncodedPoint::from_bytes(&point)
                            .ok()
                            .and_then(|p| p384::ecdsa::VerifyingKey::from_encoded_point(&p).ok())
                            .ok_or("EC point is not on P-384")?;
                        (KeyMaterial::P384(key), AlgSet::of(&[Algorithm::ES384]))
                    }
                    other => return Err(format!("unsupported EC curve {other:?}")),
                }
            }
            "RSA" => {
                let n = b64_member(jwk, "n")?;
                let e = b64_member(jwk, "e")?;
                let key = rsa_from_parts(&n, &e)?;
                let algs = match alg {
                    Some(a) if a.is_rsa() => AlgSet::of(&[a]),
                    Some(a) => return Err(format!("`alg` {} does not fit an RSA key", a.name())),
                    None => rsa_default_algs(provider_algs),
                };
                (KeyMaterial::Rsa(key), algs)
            }
            "oct" => {
                let alg = alg.ok_or("an oct (HMAC) key needs `alg`")?;
                if !alg.is_hmac() {
                    return Err(format!("`alg` {} does not fit an oct key", alg.name()));
                }
                let k = b64_member(jwk, "k")?;
                hmac_secret(alg, k)?
            }
            other => return Err(format!("unsupported `kty` {other:?}")),
        };
        bind(kid, algs, material, provider_algs)
    }

    /// Parses a PEM public key (SPKI `PUBLIC KEY`, or PKCS#1 `RSA PUBLIC KEY`) for
    /// the given algorithm. Private keys and certificates are refused.
    pub fn from_pem(
        kid: Option<String>,
        alg: Algorithm,
        pem: &str,
        provider_algs: Option<AlgSet>,
    ) -> Result<VerificationKey, String> {
        use rsa::pkcs1::DecodeRsaPublicKey;
        use spki::DecodePublicKey;
        let trimmed = pem.trim();
        if trimmed.contains("PRIVATE KEY") {
            return Err("private key material must not be configured".into());
        }
        if trimmed.contains("CERTIFICATE") {
            return Err("certificates are not supported; configure the public key".into());
        }
        if trimmed.matches("-----BEGIN ").count() != 1 {
            return Err("exactly one PEM block is expected".into());
        }
        let material = match alg {
            Algorithm::EdDSA => KeyMaterial::Ed25519(
                ed25519_dalek::VerifyingKey::from_public_key_pem(trimmed).map_err(|_| "not an Ed25519 public key")?,
            ),
            Algorithm::ES256 => KeyMaterial::P256(
                p256::ecdsa::VerifyingKey::from_public_key_pem(trimmed).map_err(|_| "not a P-256 public key")?,
            ),
            Algorithm::ES384 => KeyMaterial::P384(
                p384::ecdsa::VerifyingKey::from_public_key_pem(trimmed).map_err(|_| "not a P-384 public key")?,
            ),
            a if a.is_rsa() => {
                let key = rsa::RsaPublicKey::from_public_key_pem(trimmed)
                    .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(trimmed))
                    .map_err(|_| "not an RSA public key")?;
                use rsa::traits::PublicKeyParts;
                let n = key.n().to_bytes_be();
                let e = key.e().to_bytes_be();
                KeyMaterial::Rsa(rsa_from_parts(&n, &e)?)
            }
            _ => return Err("HMAC secrets are configured as JWK (kty oct), not PEM".into()),
        };
        if let KeyMaterial::Ed25519(k) = &material {
            if k.is_weak() {
                return Err("weak (small-order) Ed25519 key".into());
            }
        }
        bind(kid, AlgSet::of(&[alg]), material, provider_algs)
    }

    /// Verifies `signature` over `signing_input` with `alg` in pure Rust.
    pub fn verify(&self, alg: Algorithm, signing_input: &[u8], signature: &[u8]) -> bool {
        if !self.algs.contains(alg) {
            return false;
        }
        match (&self.material, alg) {
            (KeyMaterial::Ed25519(key), Algorithm::EdDSA) => ed25519_dalek::Signature::from_slice(signature)
                .map(|sig| key.verify_strict(signing_input, &sig).is_ok())
                .unwrap_or(false),
            (KeyMaterial::P256(key), Algorithm::ES256) => {
                use p256::ecdsa::signature::Verifier;
                signature.len() == 64
                    && p256::ecdsa::Signature::from_slice(signature)
                        .map(|sig| key.verify(signing_input, &sig).is_ok())
                        .unwrap_or(false)
            }
            (KeyMaterial::P384(key), Algorithm::ES384) => {
                use p384::ecdsa::signature::Verifier;
                signature.len() == 96
                    && p384::ecdsa::Signature::from_slice(signature)
                        .map(|sig| key.verify(signing_input, &sig).is_ok())
                        .unwrap_or(false)
            }
            (KeyMaterial::Rsa(key), a) if a.is_rsa() => key.verifier.verify(a, signing_input, signature),
            (KeyMaterial::Hmac(secret), a) if a.is_hmac() => verify_hmac(secret, a, signing_input, signature),
            _ => false,
        }
    }
}

fn verify_hmac(secret: &[u8], alg: Algorithm, input: &[u8], tag: &[u8]) -> bool {
    // `verify_slice` is constant-time and refuses truncated tags.
    match alg.hash() {
        Hash::Sha256 => Hmac::<Sha256>::new_from_slice(secret).map(|m| m.chain_update(input).verify_slice(tag).is_ok()),
        Hash::Sha384 => Hmac::<Sha384>::new_from_slice(secret).map(|m| m.chain_update(input).verify_slice(tag).is_ok()),
        Hash::Sha512 => Hmac::<Sha512>::new_from_slice(secret).map(|m| m.chain_update(input).verify_slice(tag).is_ok()),
    }
    .unwrap_or(false)
}

fn bind(
    kid: Option<String>,
    algs: AlgSet,
    material: KeyMaterial,
    provider_algs: Option<AlgSet>,
) -> Result<VerificationKey, String> {
    let allowed = provider_algs.map_or(algs, |p| algs.intersect(p));
    if allowed.is_empty() {
        return Err("the key's algorithm is not in the provider's `algorithms`".into());
    }
    let spki_der = spki_der(&material);
    Ok(VerificationKey { kid, algs: allowed, material, spki_der })
}

fn spki_der(material: &KeyMaterial) -> Option<Vec<u8>> {
    use spki::EncodePublicKey;
    let doc = match material {
        KeyMaterial::P256(k) => k.to_public_key_der().ok()?,
        KeyMaterial::P384(k) => k.to_public_key_der().ok()?,
        KeyMaterial::Rsa(k) => k.public.to_public_key_der().ok()?,
        KeyMaterial::Ed25519(_) | KeyMaterial::Hmac(_) => return None,
    };
    Some(doc.as_bytes().to_vec())
}

fn rsa_default_algs(provider_algs: Option<AlgSet>) -> AlgSet {
    let rsa_in_provider = provider_algs
        .map(|p| AlgSet::of(&Algorithm::ALL.into_iter().filter(|a| a.is_rsa() && p.contains(*a)).collect::<Vec<_>>()));
    match rsa_in_provider {
        Some(set) if !set.is_empty() => set,
        _ => AlgSet::of(&[Algorithm::RS256]),
    }
}

fn require_alg(alg: Option<Algorithm>, fitting: &[Algorithm], what: &str) -> Result<(), String> {
    match alg {
        Some(a) if !fitting.contains(&a) => Err(format!("`alg` {} contradicts {what}", a.name())),
        _ => Ok(()),
    }
}

fn hmac_secret(alg: Algorithm, k: Vec<u8>) -> Result<(KeyMaterial, AlgSet), String> {
    let min = match alg.hash() {
        Hash::Sha256 => 32,
        Hash::Sha384 => 48,
        Hash::Sha512 => 64,
    };
    if k.len() < min {
        return Err(format!("{} secret is {} bytes; at least {min} are required", alg.name(), k.len()));
    }
    Ok((KeyMaterial::Hmac(k), AlgSet::of(&[alg])))
}

fn ed25519_from_bytes(x: &[u8]) -> Result<KeyMaterial, String> {
    let bytes: [u8; 32] = x.try_into().map_err(|_| "Ed25519 `x` must be 32 bytes")?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| "Ed25519 `x` is not a valid point")?;
    if key.is_weak() {
        return Err("weak (small-order) Ed25519 key".into());
    }
    Ok(KeyMaterial::Ed25519(key))
}

fn rsa_from_parts(n: &[u8], e: &[u8]) -> Result<Box<RsaKey>, String> {
    let odd = |bytes: &[u8]| bytes.last().is_some_and(|b| b & 1 == 1);
    let (n_odd, e_odd) = (odd(n), odd(e));
    let n = rsa::BigUint::from_bytes_be(n);
    let e = rsa::BigUint::from_bytes_be(e);
    let bits = n.bits();
    if bits < RSA_MIN_BITS {
        return Err(format!("RSA modulus is {bits} bits; at least {RSA_MIN_BITS} are required"));
    }
    if bits > RSA_MAX_BITS {
        return Err(format!("RSA modulus is {bits} bits; at most {RSA_MAX_BITS} are allowed"));
    }
    let three = rsa::BigUint::from(3u8);
    if e < three || !e_odd {
        return Err("RSA exponent must be odd and at least 3".into());
    }
    if !n_odd {
        return Err("RSA modulus must be odd".into());
    }
    if has_roca_fingerprint(&n) {
        return Err("RSA modulus has the ROCA fingerprint (CVE-2017-15361): the key is factorable".into());
    }
    let verifier = RsaVerifier::new(&n.to_bytes_be(), &e.to_bytes_be()).ok_or("invalid RSA key")?;
    let public =
        rsa::RsaPublicKey::new_with_max_size(n, e, RSA_MAX_BITS).map_err(|err| format!("invalid RSA key: {err}"))?;
    Ok(Box::new(RsaKey { public, verifier }))
}

/// Primes of the ROCA test (Nemec et al., CCS 2017): a modulus made by the flawed
/// Infineon generator is, modulo each of them, a power of 65537.
const ROCA_PRIMES: [u32; 38] = [
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103, 107, 109,
    113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
];

/// True when `n mod p` lies in the subgroup generated by 65537 for every ROCA
/// prime. A random modulus passes with negligible probability.
fn has_roca_fingerprint(n: &rsa::BigUint) -> bool {
    let bytes = n.to_bytes_be();
    ROCA_PRIMES.iter().all(|&p| {
        let p = u64::from(p);
        let residue = bytes.iter().fold(0u64, |acc, b| (acc * 256 + u64::from(*b)) % p);
        let generator = 65_537 % p;
        let mut power = 1u64;
        for _ in 0..p {
            if power == residue {
                return true;
            }
            power = power * generator % p;
        }
        false
    })
}

fn ec_point(jwk: &Map<String, Value>, len: usize) -> Result<Vec<u8>, String> {
    let x = fixed_bytes(jwk, "x", len)?;
    let y = fixed_bytes(jwk, "y", len)?;
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(point)
}

fn str_member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{name}` must be a string")),
    }
}

fn b64_member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let s = str_member(jwk, name)?.ok_or_else(|| format!("missing `{name}`"))?;
    b64::decode(s.as_bytes()).ok_or_else(|| format!("`{name}` is not base64url"))
}

fn fixed_bytes(jwk: &Map<String, Value>, name: &str, len: usize) -> Result<Vec<u8>, String> {
    let bytes = b64_member(jwk, name)?;
    if bytes.len() != len {
        return Err(format!("`{name}` must be {len} bytes, found {}", bytes.len()));
    }
    Ok(bytes)
}
