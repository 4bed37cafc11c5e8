//! Signature verification outside the core's own Rust code: by the proxy in the
//! wasm build (Envoy's `verify_signature` foreign function, BoringSSL, 25–30×
//! cheaper than pure Rust in wasm for RSA and ECDSA), by `ring` in the native
//! build ([`crate::keys::native`]). [`HostCrypto`] is the seam; a `None` answer
//! means "not handled here" and the core verifies in pure Rust.
//!
//! For the wasm build this module encodes and decodes: the protobuf `VerifySignatureArguments`
//! (`hash_function` = 1, `public_key` = 2 as DER SPKI, `signature` = 3, `text` = 4)
//! and `VerifySignatureResult` (`result` = 1) with [`crate::encoding::protobuf`],
//! and JOSE `r‖s` ECDSA signatures as the DER `SEQUENCE { INTEGER r, INTEGER s }`
//! BoringSSL expects (with the `ecdsa` crate's encoder). The adapter makes the
//! call; the core decides which keys may use it.

use crate::encoding::protobuf::{self, Reader};
use crate::keys::algorithm::{Algorithm, Hash};
use crate::keys::key::VerificationKey;
use p256::pkcs8::der::asn1::{SequenceOf, UintRef};
use p256::pkcs8::der::Encode;

/// Signature verification that the host offers. `None` means "not handled
/// here": the caller verifies in pure Rust instead; `Some` is final.
pub trait HostCrypto {
    /// Verifies `signature` over `input` with `key` for `alg` (an algorithm the
    /// key is bound to; the caller has checked that).
    fn verify(&self, key: &VerificationKey, alg: Algorithm, input: &[u8], signature: &[u8]) -> Option<bool>;

    /// Signatures the host has verified so far (`cjwt.verify.host`); the
    /// request lifecycle counts the difference a decision made.
    fn calls(&self) -> u64 {
        0
    }
}

/// No host crypto (tests, the command line, hosts without the function).
pub struct PureRust;

impl HostCrypto for PureRust {
    fn verify(&self, _key: &VerificationKey, _alg: Algorithm, _input: &[u8], _signature: &[u8]) -> Option<bool> {
        None
    }
}

/// Verification through the seam (here, so that `key.rs` stays pure Rust and
/// below it: the seam names the key, the key does not name the seam).
impl VerificationKey {
    /// Verifies with the host's crypto where it answers (the proxy's in wasm,
    /// `ring` natively), else in pure Rust. A host answer is final; only "not
    /// handled" falls back.
    pub fn verify_with(&self, host: &dyn HostCrypto, alg: Algorithm, signing_input: &[u8], signature: &[u8]) -> bool {
        if !self.algs.contains(alg) {
            return false;
        }
        if let Some(valid) = host.verify(self, alg, signing_input, signature) {
            return valid;
        }
        self.verify(alg, signing_input, signature)
    }
}

/// True for the algorithms Envoy's `verify_signature` implements.
pub fn host_supports(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::ES256 | Algorithm::ES384)
}

fn hash_name(alg: Algorithm) -> &'static str {
    match alg.hash() {
        Hash::Sha256 => "sha256",
        Hash::Sha384 => "sha384",
        Hash::Sha512 => "sha512",
    }
}

/// The `VerifySignatureArguments` message for one check, or `None` when the
/// signature cannot be valid for `alg` (wrong length; for ES*, also `r` or `s`
/// zero or out of range: see [`jose_to_der`]), so no call is needed.
pub fn request(alg: Algorithm, spki_der: &[u8], input: &[u8], signature: &[u8]) -> Option<Vec<u8>> {
    let sig = match alg {
        Algorithm::ES256 => jose_to_der(signature, 32)?,
        Algorithm::ES384 => jose_to_der(signature, 48)?,
        _ => signature.to_vec(),
    };
    let mut out = Vec::with_capacity(spki_der.len() + sig.len() + input.len() + 32);
    protobuf::put_bytes(&mut out, 1, hash_name(alg).as_bytes());
    protobuf::put_bytes(&mut out, 2, spki_der);
    protobuf::put_bytes(&mut out, 3, &sig);
    protobuf::put_bytes(&mut out, 4, input);
    Some(out)
}

/// Reads `VerifySignatureResult`: true only if field 1 is present and true.
/// Anything unexpected (another wire type, a truncated field) reads as false.
pub fn result_is_valid(bytes: &[u8]) -> bool {
    let mut r = Reader::new(bytes);
    while !r.done() {
        match r.key() {
            Some((1, protobuf::VARINT)) => return r.varint() == Some(1),
            // Field 2 (error text) or anything else length-delimited: skip it.
            Some((_, protobuf::LEN)) => {
                if r.bytes().is_none() {
                    return false;
                }
            }
            _ => return false,
        }
    }
    false
}

/// JOSE ECDSA `r‖s` (each exactly `n` bytes: 32 for P-256, 48 for P-384) to DER.
/// `None` on a wrong length, on any other `n`, and on `r` or `s` equal to 0 or
/// not below the group order: no such signature is valid, so no call is needed.
pub fn jose_to_der(sig: &[u8], n: usize) -> Option<Vec<u8>> {
    if sig.len() != 2 * n {
        return None;
    }
    // `from_slice` refuses r or s of zero or ≥ n; the `der` crate (under the
    // `ecdsa` types) encodes `SEQUENCE { INTEGER r, INTEGER s }`. (`to_der` does
    // the same through an `expect`, whose panic path costs 11 KB of wasm.)
    match n {
        32 => drop(p256::ecdsa::Signature::from_slice(sig).ok()?),
        48 => drop(p384::ecdsa::Signature::from_slice(sig).ok()?),
        _ => return None,
    }
    let (r, s) = sig.split_at(n);
    let mut seq = SequenceOf::<UintRef<'_>, 2>::new();
    seq.add(UintRef::new(r).ok()?).ok()?;
    seq.add(UintRef::new(s).ok()?).ok()?;
    seq.to_der().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The P-256 group order n, big-endian.
    const P256_N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6,
        0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
    ];

    #[test]
    fn der_encoding_of_jose_signatures() {
        let mut sig = vec![0u8; 64];
        sig[31] = 1; // r = 1
        sig[32] = 0x80; // s has the high bit set
        let der = jose_to_der(&sig, 32).unwrap();
        assert_eq!(&der[..5], &[0x30, 3 + 35, 0x02, 0x01, 0x01]);
        assert_eq!(&der[5..8], &[0x02, 33, 0x00]);
        assert_eq!(der.len(), 2 + 3 + 35);
        let p384 = jose_to_der(&[0x80u8; 96], 48).unwrap();
        assert_eq!(&p384[..4], &[0x30, 2 * (2 + 49), 0x02, 49]);
        assert_eq!(&p384[4..6], &[0x00, 0x80]);
    }

    #[test]
    fn signatures_no_key_can_verify_are_refused_before_any_call() {
        assert_eq!(jose_to_der(&[1u8; 63], 32), None, "wrong length");
        assert_eq!(jose_to_der(&[1u8; 64], 48), None, "wrong length");
        assert_eq!(jose_to_der(&[1u8; 128], 64), None, "not a JOSE ECDSA size");
        assert_eq!(jose_to_der(&[0u8; 64], 32), None, "r = s = 0");
        assert_eq!(jose_to_der(&[[0u8; 32], [1u8; 32]].concat(), 32), None, "r = 0");
        assert_eq!(jose_to_der(&[[1u8; 32], [0u8; 32]].concat(), 32), None, "s = 0");
        assert_eq!(jose_to_der(&[P256_N, [1u8; 32]].concat(), 32), None, "r = n");
        assert_eq!(jose_to_der(&[[1u8; 32], P256_N].concat(), 32), None, "s = n");
        assert_eq!(jose_to_der(&[0xffu8; 64], 32), None, "r, s > n");
        assert_eq!(jose_to_der(&[0xffu8; 96], 48), None, "r, s > n (P-384)");
        let mut below = P256_N;
        below[31] -= 1;
        assert!(jose_to_der(&[below, below].concat(), 32).is_some(), "n - 1 is in range");
        assert_eq!(request(Algorithm::ES256, b"KEY", b"T", &[0u8; 64]), None);
    }

    #[test]
    fn result_parsing_requires_an_explicit_true() {
        assert!(result_is_valid(&[0x08, 0x01]));
        assert!(!result_is_valid(&[0x08, 0x00]));
        assert!(!result_is_valid(&[0x12, 0x03, b'b', b'a', b'd']));
        assert!(result_is_valid(&[0x12, 0x01, b'x', 0x08, 0x01]));
        assert!(!result_is_valid(&[]));
        assert!(!result_is_valid(&[0x12, 0xff]));
        assert!(!result_is_valid(&[0x08]), "truncated");
        assert!(!result_is_valid(&[0x12, 0x05, b'x']), "a length beyond the buffer");
        assert!(!result_is_valid(&[0x09, 1, 0, 0, 0, 0, 0, 0, 0]), "field 1 with another wire type");
        assert!(result_is_valid(&[0xa2, 0x01, 0x01, b'x', 0x08, 0x01]), "a two-byte key is skipped whole");
    }

    #[test]
    fn request_has_the_four_fields() {
        let r = request(Algorithm::RS256, b"KEY", b"TEXT", b"SIG").unwrap();
        assert_eq!(
            r,
            [&[0x0a, 6][..], b"sha256", &[0x12, 3], b"KEY", &[0x1a, 3], b"SIG", &[0x22, 4], b"TEXT"].concat()
        );
        assert_eq!(request(Algorithm::ES256, b"KEY", b"T", &[1u8; 65]), None);
    }
}
