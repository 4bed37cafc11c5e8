//! Signature verification for native builds (the Envoy dynamic module): `ring`
//! verifies RS*, PS* and ES*, several times faster natively than the pure-Rust
//! code the wasm build needs (docs/performance.md: RS256 ≈ 47 vs 360 µs, ES256
//! ≈ 100 vs 545 µs on this machine). EdDSA stays with `ed25519-dalek`
//! (`verify_strict`), as fast natively as `ring` and already the reference for
//! small-order and non-canonical points. HMAC stays with the `hmac` crate.
//!
//! `ring` refuses some keys the core accepts (public exponents above 33 bits):
//! for those it answers "not handled", never "invalid", so both builds agree.
//! Wycheproof vectors run against this verifier too (`tests/vectors_wycheproof.rs`).

use crate::keys::algorithm::Algorithm;
use crate::keys::host_crypto::HostCrypto;
use crate::keys::key::{KeyMaterial, VerificationKey};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};
use rsa::traits::PublicKeyParts;
use std::sync::atomic::{AtomicU64, Ordering};

/// `ring`-backed verification, counting the signatures it checked.
#[derive(Debug, Default)]
pub struct NativeCrypto {
    calls: AtomicU64,
}

impl NativeCrypto {
    /// A verifier with its count at zero.
    pub fn new() -> NativeCrypto {
        NativeCrypto::default()
    }

    /// Signatures verified by `ring` so far (the `cjwt.verify.host` counter).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// The largest public exponent `ring` accepts: 33 bits.
const RING_MAX_E_BITS: usize = 33;

impl HostCrypto for NativeCrypto {
    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn verify(&self, key: &VerificationKey, alg: Algorithm, input: &[u8], sig: &[u8]) -> Option<bool> {
        let valid = match (&key.material, alg) {
            (KeyMaterial::Rsa(rsa), a) if a.is_rsa() => {
                let e = rsa.public.e();
                if e.bits() > RING_MAX_E_BITS {
                    return None;
                }
                let params: &RsaParams = match a {
                    Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return None,
                };
                let components = RsaPublicKeyComponents { n: rsa.public.n().to_bytes_be(), e: e.to_bytes_be() };
                components.verify(params, input, sig).is_ok()
            }
            (KeyMaterial::P256(k), Algorithm::ES256) => {
                let point = k.to_encoded_point(false);
                ecdsa(&signature::ECDSA_P256_SHA256_FIXED, point.as_bytes(), input, sig)
            }
            (KeyMaterial::P384(k), Algorithm::ES384) => {
                let point = k.to_encoded_point(false);
                ecdsa(&signature::ECDSA_P384_SHA384_FIXED, point.as_bytes(), input, sig)
            }
            _ => return None,
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        Some(valid)
    }
}

type RsaParams = signature::RsaParameters;

fn ecdsa(alg: &'static dyn VerificationAlgorithm, point: &[u8], input: &[u8], sig: &[u8]) -> bool {
    UnparsedPublicKey::new(alg, point).verify(input, sig).is_ok()
}
