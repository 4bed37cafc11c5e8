//! Reference implementations that cjwt's own code is checked against (tests and
//! fuzzing; feature `testing`, never in the wasm module).

use crate::keys::algorithm::Algorithm;
use rsa::{BigUint, Pkcs1v15Sign, Pss, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// The `rsa` crate's verification of an RS*/PS* signature (PSS salt = hash
/// length, RFC 7518 §3.5), for a key given as big-endian modulus and exponent.
/// `None` when the `rsa` crate refuses the key.
pub fn rsa_verify(n: &[u8], e: &[u8], alg: Algorithm, input: &[u8], sig: &[u8]) -> Option<bool> {
    let key = RsaPublicKey::new(BigUint::from_bytes_be(n), BigUint::from_bytes_be(e)).ok()?;
    let result = match alg {
        Algorithm::RS256 => key.verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input), sig),
        Algorithm::RS384 => key.verify(Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(input), sig),
        Algorithm::RS512 => key.verify(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(input), sig),
        Algorithm::PS256 => key.verify(Pss::new_with_salt::<Sha256>(32), &Sha256::digest(input), sig),
        Algorithm::PS384 => key.verify(Pss::new_with_salt::<Sha384>(48), &Sha384::digest(input), sig),
        Algorithm::PS512 => key.verify(Pss::new_with_salt::<Sha512>(64), &Sha512::digest(input), sig),
        _ => return None,
    };
    Some(result.is_ok())
}
