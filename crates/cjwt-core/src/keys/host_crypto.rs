//! Signature verification by the proxy (Envoy's `verify_signature` foreign
//! function, BoringSSL), 25–30× cheaper than pure Rust in wasm for RSA and ECDSA.
//!
//! This module only encodes and decodes: the protobuf `VerifySignatureArguments`
//! (`hash_function` = 1, `public_key` = 2 as DER SPKI, `signature` = 3, `text` = 4)
//! and `VerifySignatureResult` (`result` = 1), and JOSE `r‖s` ECDSA signatures
//! as the DER `SEQUENCE { INTEGER r, INTEGER s }` BoringSSL expects. The adapter
//! makes the call; the core decides which keys may use it.

use crate::keys::algorithm::{Algorithm, Hash};

/// What the proxy can verify for us. `None` means "not handled here": the
/// caller verifies in pure Rust instead.
pub trait HostCrypto {
    fn verify(&self, request: &[u8]) -> Option<bool>;
}

/// No host crypto (tests, the command line, hosts without the function).
pub struct PureRust;

impl HostCrypto for PureRust {
    fn verify(&self, _request: &[u8]) -> Option<bool> {
        None
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
/// signature cannot be valid for `alg` (wrong length), so no call is needed.
pub fn request(alg: Algorithm, spki_der: &[u8], input: &[u8], signature: &[u8]) -> Option<Vec<u8>> {
    let sig = match alg {
        Algorithm::ES256 => jose_to_der(signature, 32)?,
        Algorithm::ES384 => jose_to_der(signature, 48)?,
        _ => signature.to_vec(),
    };
    let mut out = Vec::with_capacity(spki_der.len() + sig.len() + input.len() + 32);
    field(&mut out, 1, hash_name(alg).as_bytes());
    field(&mut out, 2, spki_der);
    field(&mut out, 3, &sig);
    field(&mut out, 4, input);
    Some(out)
}

/// Reads `VerifySignatureResult`: true only if field 1 is present and true.
pub fn result_is_valid(bytes: &[u8]) -> bool {
    let mut pos = 0usize;
    while let Some(&key) = bytes.get(pos) {
        pos += 1;
        match key {
            0x08 => return bytes.get(pos).is_some_and(|v| *v == 1),
            // Field 2 (error text) or anything else length-delimited: skip it.
            k if k & 7 == 2 => {
                let Some((len, used)) = varint(bytes.get(pos..).unwrap_or(&[])) else {
                    return false;
                };
                pos = pos.saturating_add(used).saturating_add(len);
            }
            _ => return false,
        }
    }
    false
}

fn varint(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, b) in bytes.iter().take(5).enumerate() {
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn push_varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field(out: &mut Vec<u8>, number: u8, data: &[u8]) {
    out.push((number << 3) | 2);
    push_varint(out, data.len());
    out.extend_from_slice(data);
}

/// JOSE ECDSA `r‖s` (each exactly `n` bytes) to DER. `None` on a wrong length.
pub fn jose_to_der(sig: &[u8], n: usize) -> Option<Vec<u8>> {
    if sig.len() != 2 * n {
        return None;
    }
    let (r, s) = sig.split_at(n);
    let (r, s) = (der_integer(r), der_integer(s));
    let mut out = Vec::with_capacity(r.len() + s.len() + 3);
    out.push(0x30);
    push_der_len(&mut out, r.len() + s.len());
    out.extend_from_slice(&r);
    out.extend_from_slice(&s);
    Some(out)
}

fn der_integer(bytes: &[u8]) -> Vec<u8> {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len().saturating_sub(1));
    let trimmed = bytes.get(first..).unwrap_or(&[0]);
    let trimmed = if trimmed.is_empty() { &[0u8][..] } else { trimmed };
    let pad = trimmed.first().is_some_and(|b| b & 0x80 != 0);
    let mut out = vec![0x02];
    push_der_len(&mut out, trimmed.len() + usize::from(pad));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(trimmed);
    out
}

fn push_der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        out.push(0x81);
        out.push(len as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_encoding_of_jose_signatures() {
        let mut sig = vec![0u8; 64];
        sig[31] = 1; // r = 1
        sig[32] = 0x80; // s has the high bit set
        let der = jose_to_der(&sig, 32).unwrap();
        assert_eq!(&der[..5], &[0x30, 3 + 35, 0x02, 0x01, 0x01]);
        assert_eq!(&der[5..8], &[0x02, 33, 0x00]);
        assert_eq!(der.len(), 2 + 3 + 35);
        assert_eq!(jose_to_der(&[0u8; 63], 32), None);
        let zero = jose_to_der(&[0u8; 64], 32).unwrap();
        assert_eq!(zero, vec![0x30, 6, 0x02, 1, 0, 0x02, 1, 0]);
        let p384 = jose_to_der(&[0xffu8; 96], 48).unwrap();
        assert_eq!(&p384[..4], &[0x30, 2 * (2 + 49), 0x02, 49]);
    }

    #[test]
    fn result_parsing_requires_an_explicit_true() {
        assert!(result_is_valid(&[0x08, 0x01]));
        assert!(!result_is_valid(&[0x08, 0x00]));
        assert!(!result_is_valid(&[0x12, 0x03, b'b', b'a', b'd']));
        assert!(result_is_valid(&[0x12, 0x01, b'x', 0x08, 0x01]));
        assert!(!result_is_valid(&[]));
        assert!(!result_is_valid(&[0x12, 0xff]));
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
