//! cjwt's own RSA verification (`core::rsa_verify`, Montgomery arithmetic over
//! 32-bit limbs) agrees with the `rsa` crate on valid, tampered and random
//! signatures for every RS*/PS* algorithm and key size. (Wycheproof's RSA
//! vectors check it against expected answers in `vectors_wycheproof.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::encoding::b64;
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::keys::rsa::RsaVerifier;
use cjwt_core::mint::{mint, SigningKey};
use cjwt_core::testing::reference::rsa_verify;
use serde_json::json;

#[test]
fn agrees_with_the_rsa_crate_on_valid_tampered_and_random_signatures() {
    let algs =
        [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];
    let (mut valid, mut checked) = (0, 0);
    for alg in algs {
        let key = SigningKey::generate(alg).unwrap();
        let jwk = key.public_jwk(None);
        let part = |m: &str| b64::decode(jwk[m].as_str().unwrap().as_bytes()).unwrap();
        let (n, e) = (part("n"), part("e"));
        let ours = RsaVerifier::new(&n, &e).unwrap();
        for i in 0..6u8 {
            let token = mint(&key, None, &json!({"i": i}));
            let (input, sig) = token.rsplit_once('.').unwrap();
            let sig = b64::decode(sig.as_bytes()).unwrap();
            let mut variants = vec![sig.clone(), sig[1..].to_vec(), vec![0u8; sig.len()], n.clone()];
            let mut flipped = sig.clone();
            flipped[usize::from(i) * 7 % sig.len()] ^= 1 << (i % 8);
            variants.push(flipped);
            let mut garbage = sig.clone();
            for (j, b) in garbage.iter_mut().enumerate() {
                *b = b.wrapping_mul(31).wrapping_add(j as u8 ^ i);
            }
            variants.push(garbage);
            for (v, candidate) in variants.iter().enumerate() {
                for message in [input.as_bytes(), b"another message".as_slice()] {
                    let want = rsa_verify(&n, &e, alg, message, candidate).unwrap();
                    assert_eq!(ours.verify(alg, message, candidate), want, "{alg:?} token {i} variant {v}");
                    valid += usize::from(want);
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(valid, algs.len() * 6, "exactly the untouched signatures verify");
    assert_eq!(checked, algs.len() * 6 * 12);
}
