//! Differential: cjwt's own RSA verification (`core::rsa_verify`) and the `rsa`
//! crate give the same answer for any signature bytes — random ones, and valid
//! signatures with fuzzed corruption — for every RS*/PS* algorithm; neither panics.
#![no_main]

use cjwt_core::encoding::b64;
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::keys::rsa::RsaVerifier;
use cjwt_core::mint::{mint, SigningKey};
use cjwt_core::testing::reference::rsa_verify;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const ALGS: [Algorithm; 6] =
    [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];

struct Fixture {
    ours: RsaVerifier,
    n: Vec<u8>,
    e: Vec<u8>,
    /// Per algorithm: a signing input and its valid signature.
    signed: Vec<(String, Vec<u8>)>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // A fixed test key (fuzzing only): generating one costs seconds of every short run.
        let key = SigningKey::from_pem(Algorithm::RS256, include_str!("rsa-test-key.pem")).expect("key");
        let jwk = key.public_jwk(None);
        let part = |m: &str| b64::decode(jwk[m].as_str().expect("jwk").as_bytes()).expect("b64");
        let (n, e) = (part("n"), part("e"));
        let signed = ALGS
            .iter()
            .map(|alg| {
                let k = match key {
                    SigningKey::Rsa(ref k, _) => SigningKey::Rsa(k.clone(), *alg),
                    _ => unreachable!(),
                };
                let token = mint(&k, None, &serde_json::json!({"sub": "fuzz"}));
                let (input, sig) = token.rsplit_once('.').expect("token");
                (input.to_string(), b64::decode(sig.as_bytes()).expect("sig"))
            })
            .collect();
        Fixture { ours: RsaVerifier::new(&n, &e).expect("verifier"), n, e, signed }
    })
}

fuzz_target!(|data: &[u8]| {
    let (Some(&pick), Some(&mode), Some(rest)) = (data.first(), data.get(1), data.get(2..)) else {
        return;
    };
    let f = fixture();
    let i = usize::from(pick) % ALGS.len();
    let alg = ALGS[i];
    let (input, valid) = &f.signed[i];
    let sig: Vec<u8> = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        // The valid signature with the fuzz bytes XORed in (cycled): near-valid encodings.
        let mut s = valid.clone();
        if !rest.is_empty() {
            for (j, b) in s.iter_mut().enumerate() {
                *b ^= rest[j % rest.len()] & if mode & 2 == 0 { 0x01 } else { 0xff };
            }
        }
        s
    };
    let ours = f.ours.verify(alg, input.as_bytes(), &sig);
    let theirs = rsa_verify(&f.n, &f.e, alg, input.as_bytes(), &sig).expect("key");
    assert_eq!(ours, theirs, "{alg:?} disagree");
});
