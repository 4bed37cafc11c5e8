//! Google Wycheproof vectors (tests/vectors/wycheproof, Apache-2.0) through cjwt's
//! own key loading and verification. Every vector must agree with its label,
//! except the ones listed below with the reason they differ.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::config::Config;
use cjwt_core::keys::algorithm::{AlgSet, Algorithm};
use cjwt_core::keys::host_crypto::{HostCrypto, PureRust};
use cjwt_core::keys::key::{KeyMaterial, VerificationKey};
use cjwt_core::keys::native::NativeCrypto;
use cjwt_core::token::jws;
use cjwt_core::token::verify::check_signature;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/vectors/wycheproof/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect()
}

/// A JWK without its private members.
fn public(jwk: &Value) -> Map<String, Value> {
    let mut m = jwk.as_object().unwrap().clone();
    for k in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
        m.remove(k);
    }
    m
}

/// Runs `verdict` over every test and returns the tcIds whose verdict differs
/// from the label ("acceptable" accepts either verdict), with the comment.
fn disagreements(file: &str, mut verdict: impl FnMut(&Value, &Value) -> bool) -> BTreeMap<u64, String> {
    let data = load(file);
    let mut out = BTreeMap::new();
    let mut count = 0;
    for group in data["testGroups"].as_array().unwrap() {
        for test in group["tests"].as_array().unwrap() {
            count += 1;
            let ok = verdict(group, test);
            let label = test["result"].as_str().unwrap();
            if (label == "valid" && !ok) || (label == "invalid" && ok) {
                out.insert(
                    test["tcId"].as_u64().unwrap(),
                    format!("{label}: {}", test["comment"].as_str().unwrap_or("")),
                );
            }
        }
    }
    assert!(count > 0, "{file} has no tests");
    out
}

fn assert_only(file: &str, found: BTreeMap<u64, String>, expected: &[(u64, &str)]) {
    let want: Vec<u64> = expected.iter().map(|(id, _)| *id).collect();
    let got: Vec<u64> = found.keys().copied().collect();
    assert_eq!(got, want, "{file}: unexpected disagreements: {found:#?}");
}

/// Both builds' verifiers: the core's own Rust code (the wasm build's, without a
/// host) and the native module's (`ring` for RS*, PS*, ES*). Every vector must
/// get the same verdict from each.
fn backends() -> Vec<(&'static str, Box<dyn HostCrypto>)> {
    vec![("pure Rust", Box::new(PureRust)), ("native (ring)", Box::new(NativeCrypto::new()))]
}

fn jws_verdict(crypto: &dyn HostCrypto, key: &Result<VerificationKey, String>, token: &Value) -> bool {
    let (Ok(key), Some(token)) = (key, token.as_str()) else {
        return false;
    };
    match jws::parse_jws(token) {
        Ok(raw) => key.verify_with(crypto, raw.alg, raw.signing_input, &raw.signature),
        Err(_) => false,
    }
}

#[test]
fn json_web_signature_vectors() {
    for (name, crypto) in backends() {
        let found = disagreements("json_web_signature_test.json", |group, test| {
            let jwk = group.get("public").unwrap_or(&group["private"]);
            let key = VerificationKey::from_jwk(&public(jwk), None);
            jws_verdict(&*crypto, &key, &test["jws"])
        });
        eprintln!("json_web_signature_test.json with {name}");
        assert_only(
            "json_web_signature_test.json",
            found,
            &[
                (346, "RFC 7520 Figure 20: the key says PS256 but the token is PS384; cjwt binds alg to the key"),
                (347, "RFC 7520 Figure 27: ES512 / P-521, which cjwt does not support (key alg ES521)"),
                (350, "as 346, with key_ops: the key says PS256 but the token is PS384"),
                (351, "as 347, with key_ops: P-521 is not supported"),
                (367, "labelled invalid but byte-identical to the valid tcId 357 (C2SP/wycheproof#236)"),
                (370, "labelled invalid but byte-identical to the valid tcId 357 (C2SP/wycheproof#236)"),
                (372, "labelled valid but contains '?', which is not base64url"),
                (373, "labelled valid but contains '?', which is not base64url"),
            ],
        );
    }
}

#[test]
fn json_web_key_vectors() {
    for (_, crypto) in backends() {
        let found = disagreements("json_web_key_test.json", |group, test| {
            let keys: Vec<Value> =
                group["private"]["keys"].as_array().unwrap().iter().map(|k| Value::Object(public(k))).collect();
            let cfg = json!({"providers": [{"name": "p", "issuer": "i", "jwks": {"keys": keys}}]});
            let Ok(config) = Config::from_json(cfg.to_string().as_bytes()) else {
                return false;
            };
            let Ok(raw) = jws::parse_jws(test["jws"].as_str().unwrap_or("")) else {
                return false;
            };
            let provider = &config.providers()[0];
            provider.algorithms.contains(raw.alg)
                && check_signature(
                    provider,
                    None,
                    &*crypto,
                    raw.alg,
                    raw.kid.as_deref(),
                    raw.signing_input,
                    &raw.signature,
                )
                .is_ok()
        });
        assert_only("json_web_key_test.json", found, &[]);
    }
}

/// Disagreements of one file's vectors with the labels, for each backend: the
/// same for every backend, or the test fails.
fn primitive(file: &str, alg: Algorithm, jwk_field: &str) -> BTreeMap<u64, String> {
    let mut results =
        backends().into_iter().map(|(name, crypto)| (name, primitive_with(&*crypto, file, alg, jwk_field)));
    let (first_name, first) = results.next().unwrap();
    for (name, other) in results {
        assert_eq!(other, first, "{file}: {name} and {first_name} disagree");
    }
    first
}

fn primitive_with(crypto: &dyn HostCrypto, file: &str, alg: Algorithm, jwk_field: &str) -> BTreeMap<u64, String> {
    disagreements(file, |group, test| {
        let mut jwk = match group.get(jwk_field) {
            Some(j) => public(j),
            None => {
                // A few ECDSA edge-case groups carry only the uncompressed point.
                let point = hex(group["publicKey"]["uncompressed"].as_str().unwrap());
                let n = (point.len() - 1) / 2;
                let crv = if n == 32 { "P-256" } else { "P-384" };
                let b = cjwt_core::encoding::b64::encode;
                public(&json!({"kty": "EC", "crv": crv, "x": b(&point[1..1 + n]), "y": b(&point[1 + n..])}))
            }
        };
        jwk.insert("alg".into(), json!(alg.name()));
        let Ok(key) = VerificationKey::from_jwk(&jwk, None) else {
            return false;
        };
        key.verify_with(crypto, alg, &hex(test["msg"].as_str().unwrap()), &hex(test["sig"].as_str().unwrap()))
    })
}

#[test]
fn ed25519_vectors() {
    assert_only("ed25519_test.json", primitive("ed25519_test.json", Algorithm::EdDSA, "publicKeyJwk"), &[]);
}

#[test]
fn ecdsa_p1363_vectors() {
    let f = "ecdsa_secp256r1_sha256_p1363_test.json";
    assert_only(f, primitive(f, Algorithm::ES256, "publicKeyJwk"), &[]);
    let f = "ecdsa_secp384r1_sha384_p1363_test.json";
    assert_only(f, primitive(f, Algorithm::ES384, "publicKeyJwk"), &[]);
}

#[test]
fn rsa_pkcs1_vectors() {
    for (f, alg) in [
        ("rsa_signature_2048_sha256_test.json", Algorithm::RS256),
        ("rsa_signature_3072_sha384_test.json", Algorithm::RS384),
        ("rsa_signature_4096_sha512_test.json", Algorithm::RS512),
    ] {
        assert_only(f, primitive(f, alg, "keyJwk"), &[]);
    }
}

#[test]
fn rsa_pss_vectors() {
    for (f, alg) in [
        ("rsa_pss_2048_sha256_mgf1_32_test.json", Algorithm::PS256),
        ("rsa_pss_2048_sha384_mgf1_48_test.json", Algorithm::PS384),
        ("rsa_pss_4096_sha512_mgf1_64_test.json", Algorithm::PS512),
    ] {
        assert_only(f, primitive(f, alg, "publicKeyJwk"), &[]);
    }
}

/// Signatures made with salt length 0 must not verify as PS256 (salt = hash
/// length); the one vector re-signed with a 32-byte salt (tcId 69) must.
#[test]
fn rsa_pss_with_zero_salt_never_verifies_as_ps256() {
    let data = load("rsa_pss_2048_sha256_mgf1_0_test.json");
    let mut checked = 0;
    for group in data["testGroups"].as_array().unwrap() {
        let b = |h: &Value| cjwt_core::encoding::b64::encode(&hex(h.as_str().unwrap()));
        let mut jwk = public(
            &json!({"kty": "RSA", "n": b(&group["publicKey"]["modulus"]), "e": b(&group["publicKey"]["publicExponent"])}),
        );
        jwk.insert("alg".into(), json!("PS256"));
        let key = VerificationKey::from_jwk(&jwk, None).unwrap();
        for test in group["tests"].as_array().unwrap() {
            for (name, crypto) in backends() {
                let (msg, sig) = (hex(test["msg"].as_str().unwrap()), hex(test["sig"].as_str().unwrap()));
                let ok = key.verify_with(&*crypto, Algorithm::PS256, &msg, &sig);
                let salt_32 = test["tcId"] == 69 && test["comment"] == "s_len changed to 32";
                assert_eq!(ok, salt_32, "{name}: tcId {} ({})", test["tcId"], test["comment"]);
                checked += 1;
            }
        }
    }
    assert!(checked > 50);
}

#[test]
fn hmac_vectors_full_length_tags() {
    for (f, alg, bits) in [
        ("hmac_sha256_test.json", Algorithm::HS256, 256),
        ("hmac_sha384_test.json", Algorithm::HS384, 384),
        ("hmac_sha512_test.json", Algorithm::HS512, 512),
    ] {
        let found = disagreements(f, |group, test| {
            // JWS does not allow truncated tags: such groups must never verify.
            let key = VerificationKey {
                kid: None,
                algs: AlgSet::of(&[alg]),
                material: KeyMaterial::Hmac(hex(test["key"].as_str().unwrap())),
                spki_der: None,
            };
            let ok = key.verify(alg, &hex(test["msg"].as_str().unwrap()), &hex(test["tag"].as_str().unwrap()));
            if group["tagSize"].as_u64() != Some(bits) {
                assert!(!ok, "{f} tcId {}: a truncated tag verified", test["tcId"]);
                return test["result"] == "valid";
            }
            ok
        });
        assert_only(f, found, &[]);
    }
}

/// json_web_key_test tcId 7 is refused for the right reason: the ROCA fingerprint.
#[test]
fn roca_key_is_refused_as_roca() {
    let data = load("json_web_key_test.json");
    let group = data["testGroups"].as_array().unwrap().iter().find(|g| g["tests"][0]["tcId"] == 7).unwrap();
    let jwk = public(&group["private"]["keys"][0]);
    let err = VerificationKey::from_jwk(&jwk, None).unwrap_err();
    assert!(err.contains("ROCA"), "{err}");
    // A generated 2048-bit key does not carry the fingerprint.
    let ok = cjwt_core::mint::SigningKey::generate(Algorithm::RS256).unwrap().public_jwk(None);
    assert!(VerificationKey::from_jwk(ok.as_object().unwrap(), None).is_ok());
}

/// The native backend really verifies RS*, PS* and ES* (its count moves, and a
/// tampered signature fails), and leaves EdDSA to ed25519-dalek.
#[test]
fn the_native_backend_verifies_rsa_and_ecdsa_itself() {
    let native = NativeCrypto::new();
    for alg in [Algorithm::RS256, Algorithm::PS384, Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
        let signer = cjwt_core::testing::key(alg);
        let key = VerificationKey::from_jwk(signer.public_jwk(Some("k")).as_object().unwrap(), None).unwrap();
        let token = cjwt_core::mint::mint(signer, Some("k"), &json!({"sub": "x"}));
        let raw = jws::parse_jws(&token).unwrap();
        assert!(key.verify_with(&native, raw.alg, raw.signing_input, &raw.signature), "{alg:?} valid");
        let mut bad = raw.signature.clone();
        bad[5] ^= 1;
        assert!(!key.verify_with(&native, raw.alg, raw.signing_input, &bad), "{alg:?} tampered");
    }
    assert_eq!(native.calls(), 8, "two checks each for RS256, PS384, ES256, ES384; none for EdDSA");
}
