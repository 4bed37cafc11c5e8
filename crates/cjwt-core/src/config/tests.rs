//! (A unit test module: the compiled fields are the crate's own.)
//! Configuration compiled once, refused with the field named; key loading with
//! every configuration-time refusal of SPEC §2; RFC 7515 / RFC 8037 examples.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use crate::config::{Config, Mode};
use crate::keys::algorithm::{AlgSet, Algorithm};
use crate::keys::key::VerificationKey;
use crate::testing::*;
use crate::token::jws;
use serde_json::{json, Value};

fn compile(v: Value) -> Result<Config, String> {
    Config::from_json(v.to_string().as_bytes()).map_err(|e| e.to_string())
}

fn refused(v: Value) -> String {
    match compile(v) {
        Ok(_) => panic!("configuration was accepted"),
        Err(e) => e,
    }
}

fn provider_with(jwk: Value) -> Value {
    json!({"providers": [{"name": "p", "issuer": "https://i", "jwks": {"keys": [jwk]}}]})
}

#[test]
fn defaults_match_the_spec() {
    let c = compile(config_json(json!({}))).unwrap();
    assert_eq!(c.clock_skew_seconds, 60);
    assert!(c.require_expiration);
    assert_eq!(c.max_token_bytes, 8192);
    assert_eq!(
        (c.roles_claim.as_str(), c.scopes_claim.as_str(), c.constraints_claim.as_str()),
        ("roles", "scope", "cnst")
    );
    assert_eq!(c.mode, Mode::Enforce);
    assert_eq!(c.cache_max_entries, 1024);
    assert_eq!(c.cache_max_bytes, 16 << 20);
    assert_eq!((c.realm.as_str(), c.detail), ("cjwt", true));
    assert!(c.rules.is_empty());
}

#[test]
fn partial_nested_objects_keep_other_defaults() {
    let c =
        compile(config_json(json!({"claim_names": {"roles": "realm_access.roles"}, "response": {"detail": false}})))
            .unwrap();
    assert_eq!(c.roles_claim, "realm_access.roles");
    assert_eq!(c.scopes_claim, "scope");
    assert_eq!(c.realm, "cjwt");
    assert!(!c.detail);
}

#[test]
fn the_spec_example_compiles() {
    let pem = key(Algorithm::ES256).public_jwk(None);
    let _ = pem;
    let cfg = config_json(json!({
        "token_from": [{"header": "authorization", "prefix": "Bearer "}],
        "clock_skew_seconds": 60, "require_expiration": true, "max_lifetime_seconds": null, "required_typ": null,
        "max_token_bytes": 8192,
        "claim_names": {"roles": "roles", "scopes": "scope", "constraints": "cnst"},
        "client_ip": {"from": "peer"}, "region": null,
        "custom_constraints": {"tenant": {"header": "x-tenant-id"}},
        "rules": [
            {"match": {"path": "/healthz", "methods": ["GET"]}, "auth": "none"},
            {"match": {"path": "/admin/**"}, "require": {"roles_any": ["admin"]}},
            {"match": {"path": "/v1/orders/**", "methods": ["POST"]}, "require": {"scopes_all": ["orders:write"], "claims": [{"claim": "tenant", "equals_header": "x-tenant-id"}]}}
        ],
        "default_rule": {"auth": "required"},
        "forward": {"claims_to_headers": [{"claim": "sub", "header": "x-cjwt-sub"}], "payload_header": null, "remove_token": false},
        "mode": "enforce", "cache": {"max_entries": 1024}, "response": {"realm": "cjwt", "detail": true}
    }));
    compile(cfg).unwrap();
}

#[test]
fn errors_name_the_field() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "providers: missing field"),
        (json!({"providers": []}), "providers: at least one provider"),
        (config_json(json!({"clock_skew_seconds": 301})), "clock_skew_seconds: must be 0..=300"),
        (config_json(json!({"clock_skew": 1})), "clock_skew: unknown field `clock_skew`"),
        (
            config_json(json!({"token_from": [{"header": "authorization", "cookie": "x"}]})),
            "token_from[0]: exactly one",
        ),
        (config_json(json!({"client_ip": {"from": "xff"}})), "client_ip.trusted_hops: is required"),
        (config_json(json!({"client_ip": {"from": "header"}})), "client_ip.from"),
        (config_json(json!({"region": {"value": "a", "header": "b"}})), "region: exactly one"),
        (config_json(json!({"custom_constraints": {"ip": {"header": "x"}}})), "custom_constraints.ip"),
        (config_json(json!({"rules": [{"match": {"path": "/a/**/b"}}]})), "rules[0].match.path"),
        (
            config_json(json!({"rules": [{"match": {"path": "/a", "paths": []}}]})),
            "rules[0].match.paths: unknown field",
        ),
        (config_json(json!({"rules": [{"require": {"issuers": ["nobody"]}}]})), "rules[0].require.issuers[0]"),
        (
            config_json(json!({"rules": [{"auth": "none", "require": {"roles_any": ["a"]}}]})),
            "rules[0].require: cannot be combined",
        ),
        (
            config_json(json!({"rules": [{"require": {"claims": [{"claim": "a", "equals": 1, "present": true}]}}]})),
            "rules[0].require.claims[0]",
        ),
        (config_json(json!({"rules": [{"auth": "sometimes"}]})), "rules[0].auth: unknown variant"),
        (config_json(json!({"mode": "audit"})), "mode: unknown variant"),
        (config_json(json!({"tracing": {"tags": ["reason", "sub"]}})), "tracing.tags[1]: must be one of"),
        (config_json(json!({"tracing": {"tags": ["rule", "rule"]}})), "tracing.tags[1]: \"rule\" is listed twice"),
        (config_json(json!({"tracing": {"subject": true}})), "tracing.subject: unknown field"),
        (config_json(json!({"cache": {"max_entries": 1_000_000}})), "cache.max_entries"),
        (config_json(json!({"cache": {"max_bytes": 100}})), "cache.max_bytes"),
        (
            config_json(
                json!({"default_rule": {"require": {"claims": [{"claim": "sub", "prefix": "a", "equals": "b"}]}}}),
            ),
            "default_rule.require.claims[0]",
        ),
        (
            config_json(json!({"forward": {"claims_to_headers": [{"claim": "sub", "header": "authorization"}]}})),
            "forward: header \"authorization\"",
        ),
        (
            config_json(json!({"forward": {"claims_to_headers": [{"claim": "sub", "header": "bad header"}]}})),
            "forward.claims_to_headers[0].header",
        ),
        (config_json(json!({"response": {"realm": "a\"b"}})), "response.realm"),
        (config_json(json!({"max_token_bytes": 1_000_000})), "max_token_bytes"),
        (config_json(json!({"usage_store": {}})), "usage_store: needs a store"),
        (config_json(json!({"usage_store": {"redis": {}}})), "usage_store.redis: unknown field"),
        (config_json(json!({"usage_store": {"etcd": {"authority": "etcd"}}})), "usage_store.etcd.cluster: is required"),
        (config_json(json!({"usage_store": {"etcd": {"cluster": "etcd"}}})), "usage_store.etcd.authority: is required"),
        (config_json(json!({"usage_store": {"etcd": {"cluster": "", "authority": "e"}}})), "usage_store.etcd.cluster"),
        (
            config_json(json!({"usage_store": {"etcd": {"cluster": "e", "authority": "e", "timeout_ms": 0}}})),
            "usage_store.etcd.timeout_ms: must be 1..=5000",
        ),
        (
            config_json(json!({"usage_store": {"etcd": {"cluster": "e", "authority": "e", "timeout_ms": 5001}}})),
            "usage_store.etcd.timeout_ms: must be 1..=5000",
        ),
        (
            config_json(json!({"usage_store": {"etcd": {"cluster": "e", "authority": "e", "allowance": {}}}})),
            "usage_store.etcd.allowance.from_max_uses: is required",
        ),
        (
            config_json(
                json!({"usage_store": {"etcd": {"cluster": "e", "authority": "e", "allowance": {"from_max_uses": 1}}}}),
            ),
            "usage_store.etcd.allowance.from_max_uses: must be at least 2",
        ),
        (
            config_json(json!({"usage_store": {"etcd": {"cluster": "e", "authority": "e",
                "allowance": {"from_max_uses": 10, "batch": 1_000_001}}}})),
            "usage_store.etcd.allowance.batch: must be 2..=1000000",
        ),
        (
            config_json(json!({"usage_store": {"etcd": {"cluster": "e", "authority": "e",
                "allowance": {"from_max_uses": 10, "batch": 8, "refill_below": 9}}}})),
            "usage_store.etcd.allowance.refill_below: must be 0..=batch",
        ),
        (
            config_json(json!({"usage_store": {"etcd": {"cluster": "e", "authority": "e", "api_prefix": "v3/"}}})),
            "usage_store.etcd.api_prefix",
        ),
        (
            config_json(json!({"usage_store": {"etcd": {"cluster": "e", "authority": "e", "key_prefix": ""}}})),
            "usage_store.etcd.key_prefix",
        ),
        (
            config_json(json!({"usage_store": {"etcd": {"cluster": "e", "authority": "e", "ttl": 5}}})),
            "usage_store.etcd.ttl: unknown field",
        ),
    ];
    for (cfg, want) in cases {
        let e = refused(cfg.clone());
        assert!(e.contains(want), "want {want:?} in {e:?}");
    }
    // The largest batch is accepted (decision 127: batches sized for a token's peak rate).
    let largest = json!({"usage_store": {"etcd": {"cluster": "e", "authority": "e",
        "allowance": {"from_max_uses": 10, "batch": 1_000_000}}}});
    let c = compile(config_json(largest)).unwrap();
    let a = c.usage_store.as_ref().and_then(|s| s.allowance).unwrap();
    assert_eq!((a.batch, a.refill_below), (1_000_000, 500_000));
}

#[test]
fn duplicate_members_in_configuration_are_refused() {
    let text = r#"{"providers": [], "providers": []}"#;
    assert!(Config::from_json(text.as_bytes()).is_err());
}

#[test]
fn key_refusals_at_configuration() {
    let ed = key(Algorithm::EdDSA).public_jwk(Some("k"));
    let ec = key(Algorithm::ES256).public_jwk(Some("k"));
    let rsa = key(Algorithm::RS256).public_jwk(Some("k"));
    let with = |base: &Value, k: &str, v: Value| {
        let mut j = base.clone();
        j[k] = v;
        j
    };
    let without = |base: &Value, k: &str| {
        let mut j = base.clone();
        j.as_object_mut().unwrap().remove(k);
        j
    };
    let cases: Vec<(Value, &str)> = vec![
        (with(&ed, "use", json!("enc")), "`use` is \"enc\""),
        (with(&ed, "key_ops", json!(["sign"])), "`key_ops` does not include"),
        (with(&ed, "d", json!("AAAA")), "private key material"),
        (with(&rsa, "d", json!("AAAA")), "private key material"),
        (with(&ec, "crv", json!("P-384")), "contradicts P-384"),
        (without(&with(&ec, "crv", json!("P-384")), "alg"), "must be 48 bytes"),
        (with(&ec, "alg", json!("ES384")), "contradicts P-256"),
        (with(&ed, "alg", json!("ES256")), "contradicts Ed25519"),
        (with(&ec, "alg", json!("ES512")), "unsupported `alg`"),
        (with(&rsa, "alg", json!("ES256")), "does not fit an RSA key"),
        (with(&ec, "y", json!(crate::encoding::b64::encode(&[1u8; 32]))), "not on P-256"),
        (with(&ed, "crv", json!("X25519")), "unsupported OKP curve"),
        (without(&ec, "x"), "missing `x`"),
        (with(&ed, "kty", json!("DSA")), "unsupported `kty`"),
        (json!({"kty": "oct", "alg": "HS256", "k": crate::encoding::b64::encode(&[7u8; 31])}), "at least 32"),
        (json!({"kty": "oct", "alg": "HS512", "k": crate::encoding::b64::encode(&[7u8; 63])}), "at least 64"),
        (json!({"kty": "oct", "alg": "HS256", "k": ""}), "at least 32"),
        (json!({"kty": "oct", "k": crate::encoding::b64::encode(&[7u8; 64])}), "needs `alg`"),
        (json!({"kty": "oct", "alg": "A256GCM", "k": crate::encoding::b64::encode(&[7u8; 32])}), "unsupported `alg`"),
        (with(&rsa, "e", json!("AQ")), "exponent must be odd and at least 3"),
        (with(&rsa, "e", json!("AAEAAA")), "exponent"),
        (with(&rsa, "n", json!(crate::encoding::b64::encode(&[0xffu8; 128]))), "at least 2048"),
    ];
    for (jwk, want) in cases {
        let e = refused(provider_with(jwk.clone()));
        assert!(e.starts_with("providers[0].jwks.keys[0]: "), "{e}");
        assert!(e.contains(want), "want {want:?} in {e:?} for {jwk}");
    }
}

#[test]
fn provider_level_refusals() {
    let ed = key(Algorithm::EdDSA).public_jwk(Some("k"));
    let hs = key(Algorithm::HS256).public_jwk(Some("h"));
    let e = refused(json!({"providers": [{"name": "p", "issuer": "i", "jwks": {"keys": [ed, ed]}}]}));
    assert!(e.contains("providers[0]: duplicate kid \"k\""), "{e}");
    let e = refused(json!({"providers": [{"name": "p", "issuer": "i", "jwks": {"keys": [ed, hs]}}]}));
    assert!(e.contains("must not be mixed"), "{e}");
    let e = refused(json!({"providers": [{"name": "p", "issuer": "i"}]}));
    assert!(e.contains("needs keys"), "{e}");
    let e = refused(
        json!({"providers": [{"name": "p", "issuer": "i", "jwks": {"keys": [ed]}}, {"name": "p", "issuer": "j", "jwks": {"keys": [ed]}}]}),
    );
    assert!(e.contains("providers[1].name: duplicate"), "{e}");
    let e =
        refused(json!({"providers": [{"name": "p", "issuer": "i", "algorithms": ["RS256"], "jwks": {"keys": [ed]}}]}));
    assert!(e.contains("not in the provider's `algorithms`"), "{e}");
    let e =
        refused(json!({"providers": [{"name": "p", "issuer": "i", "algorithms": ["none"], "jwks": {"keys": [ed]}}]}));
    assert!(e.contains("providers[0].algorithms[0]"), "{e}");
}

#[test]
fn jwks_may_be_a_json_string() {
    let ed = key(Algorithm::EdDSA).public_jwk(Some("k"));
    let text = json!({"keys": [ed]}).to_string();
    compile(json!({"providers": [{"name": "p", "issuer": "i", "jwks": text}]})).unwrap();
}

#[test]
fn rsa_key_algorithms_come_from_alg_then_provider_then_rs256() {
    let mut jwk = key(Algorithm::RS256).public_jwk(None);
    jwk.as_object_mut().unwrap().remove("alg");
    let map = jwk.as_object().unwrap();
    let default = VerificationKey::from_jwk(map, None).unwrap();
    assert_eq!(default.algs, AlgSet::of(&[Algorithm::RS256]));
    let from_provider =
        VerificationKey::from_jwk(map, Some(AlgSet::of(&[Algorithm::PS256, Algorithm::RS512]))).unwrap();
    assert_eq!(from_provider.algs, AlgSet::of(&[Algorithm::PS256, Algorithm::RS512]));
}

#[test]
fn pem_keys_are_loaded_and_private_or_certificate_pem_refused() {
    use pkcs8::EncodePublicKey;
    let ec = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let pem = ec.verifying_key().to_public_key_pem(pkcs8::LineEnding::LF).unwrap();
    compile(
        json!({"providers": [{"name": "p", "issuer": "i", "pem_keys": [{"kid": "e", "alg": "ES256", "pem": pem}]}]}),
    )
    .unwrap();
    let e = refused(json!({"providers": [{"name": "p", "issuer": "i", "pem_keys": [{"alg": "ES384", "pem": pem}]}]}));
    assert!(e.contains("providers[0].pem_keys[0]: not a P-384 public key"), "{e}");
    let private = key(Algorithm::EdDSA).to_pem().unwrap();
    let e =
        refused(json!({"providers": [{"name": "p", "issuer": "i", "pem_keys": [{"alg": "EdDSA", "pem": private}]}]}));
    assert!(e.contains("private key material"), "{e}");
    let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let e = refused(json!({"providers": [{"name": "p", "issuer": "i", "pem_keys": [{"alg": "RS256", "pem": cert}]}]}));
    assert!(e.contains("certificates are not supported"), "{e}");
}

/// RFC 7515 Appendix A.1: HS256, header JSON with CRLF and spaces, verified over the received bytes.
#[test]
fn rfc7515_a1_hs256_example_verifies() {
    let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let jwk = json!({"kty": "oct", "alg": "HS256", "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"});
    let key = VerificationKey::from_jwk(jwk.as_object().unwrap(), None).unwrap();
    let t = jws::parse(token).unwrap();
    assert_eq!(t.claims["iss"], "joe");
    assert!(key.verify(t.jws.alg, t.jws.signing_input, &t.jws.signature));
    // The same header re-serialised compactly, old signature kept: refused.
    let compact = format!(
        "{}.{}",
        crate::encoding::b64::encode(br#"{"typ":"JWT","alg":"HS256"}"#),
        &token[token.find('.').unwrap() + 1..]
    );
    let t2 = jws::parse(&compact).unwrap();
    assert!(!key.verify(t2.jws.alg, t2.jws.signing_input, &t2.jws.signature));
    // Through the whole decision with a fixed clock before its exp (1300819380).
    let cfg =
        json!({"providers": [{"name": "joe", "issuer": "joe", "jwks": {"keys": [jwk]}}], "max_token_bytes": 8192});
    let mut engine = crate::engine::Engine::new(Config::from_json(cfg.to_string().as_bytes()).unwrap());
    let host = StaticHost::get("/x").bearer(token).at(1_300_819_000);
    let out = engine.decide_with(
        &host,
        &crate::token::verify::InlineOnly,
        &crate::keys::host_crypto::PureRust,
        &mut crate::usage::MemoryCounter::default(),
        &mut crate::sender::replay::NoReplayCache,
    );
    assert!(matches!(out.decision, crate::engine::Decision::Allow { .. }), "{:?}", out.decision);
}

/// RFC 8037 Appendix A.4: Ed25519 over the non-JSON payload "Example of Ed25519 signing".
#[test]
fn rfc8037_a4_ed25519_example_verifies_at_the_jws_layer() {
    let token = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
    let key = VerificationKey::from_jwk(jwk.as_object().unwrap(), None).unwrap();
    let raw = jws::parse_jws(token).unwrap();
    assert_eq!(raw.payload, b"Example of Ed25519 signing");
    assert!(key.verify(raw.alg, raw.signing_input, &raw.signature));
    assert_eq!(jws::parse(token).err(), Some(jws::ParseError::Malformed), "a non-JSON payload is no JWT");
}

#[test]
fn algorithm_confusion_public_key_as_hmac_secret_fails() {
    // An HS256 token MAC'd with the Ed25519 public key bytes, against the Ed25519 key.
    let ed = key(Algorithm::EdDSA);
    let x = ed.public_jwk(None)["x"].as_str().unwrap().to_string();
    let secret = crate::encoding::b64::decode(x.as_bytes()).unwrap();
    let mut padded = secret.clone();
    padded.resize(32, 0);
    let hs = crate::mint::SigningKey::Hmac(padded, Algorithm::HS256);
    let t = crate::mint::mint(&hs, Some("k1"), &claims(json!({})));
    let mut engine =
        crate::engine::Engine::new(Config::from_json(config_json(json!({})).to_string().as_bytes()).unwrap());
    let out = engine.decide_with(
        &StaticHost::get("/x").bearer(&t),
        &crate::token::verify::InlineOnly,
        &crate::keys::host_crypto::PureRust,
        &mut crate::usage::MemoryCounter::default(),
        &mut crate::sender::replay::NoReplayCache,
    );
    match out.decision {
        crate::engine::Decision::Deny(d) => assert_eq!(d.reason, crate::reason::Reason::UnsupportedAlgorithm),
        other => panic!("{other:?}"),
    }
}

mod remote_jwks {
    use super::*;
    use crate::jwks::parse::parse_remote_jwks;
    use crate::jwks::store::Fetched;

    fn remote_config() -> Config {
        let cfg = json!({"providers": [{"name": "idp", "issuer": "https://idp.example.com", "algorithms": ["EdDSA", "ES256"],
            "remote_jwks": {"cluster": "idp", "path": "/jwks"}}]});
        Config::from_json(cfg.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn unusable_keys_are_skipped_but_usable_ones_kept() {
        let c = remote_config();
        let ed = key(Algorithm::EdDSA).public_jwk(Some("a"));
        let mut enc = key(Algorithm::ES256).public_jwk(Some("enc"));
        enc["use"] = json!("enc");
        let rsa = key(Algorithm::RS256).public_jwk(Some("rsa-not-allowed"));
        let body = json!({"keys": [ed, enc, rsa, {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}]}).to_string();
        let got = parse_remote_jwks(&c, 0, body.as_bytes()).unwrap();
        assert_eq!(got.keys.len(), 1);
        assert_eq!(got.skipped, 3);
    }

    #[test]
    fn bad_sets_are_refused() {
        let c = remote_config();
        let ed = key(Algorithm::EdDSA).public_jwk(Some("a"));
        let mut private = ed.clone();
        private["d"] = json!("AAAA");
        let oct = json!({"kty": "oct", "alg": "HS256", "k": crate::encoding::b64::encode(&[1u8; 32])});
        for (body, want) in [
            ("not json".to_string(), "not a JSON object"),
            (json!({"keys": [ed, ed]}).to_string(), "duplicate kid"),
            (json!({"keys": [private]}).to_string(), "private key material"),
            (json!({"keys": [oct]}).to_string(), "symmetric keys are never accepted"),
            (json!({"keys": []}).to_string(), "no usable signing key"),
            (json!({"nokeys": []}).to_string(), "no `keys` array"),
            (format!("{{\"keys\":[],\"pad\":\"{}\"}}", "a".repeat(300_000)), "at most"),
        ] {
            let e = parse_remote_jwks(&c, 0, body.as_bytes()).unwrap_err();
            assert!(e.contains(want), "want {want:?} in {e:?}");
        }
    }

    #[test]
    fn fetched_keys_verify_and_a_missing_kid_names_the_provider() {
        let c = remote_config();
        let k = key(Algorithm::EdDSA);
        let body = json!({"keys": [k.public_jwk(Some("a"))]}).to_string();
        let mut store = Fetched::new(1);
        store.set(0, parse_remote_jwks(&c, 0, body.as_bytes()).unwrap().keys);
        let mut engine = crate::engine::Engine::new(c);
        let ok = crate::mint::mint(k, Some("a"), &claims(json!({})));
        let host = StaticHost::get("/x").bearer(&ok);
        let out = engine.decide_with(
            &host,
            &store,
            &crate::keys::host_crypto::PureRust,
            &mut crate::usage::MemoryCounter::default(),
            &mut crate::sender::replay::NoReplayCache,
        );
        assert!(matches!(out.decision, crate::engine::Decision::Allow { .. }), "{:?}", out.decision);
        let rotated = crate::mint::mint(k, Some("b"), &claims(json!({})));
        let host = StaticHost::get("/x").bearer(&rotated);
        match engine
            .decide_with(
                &host,
                &store,
                &crate::keys::host_crypto::PureRust,
                &mut crate::usage::MemoryCounter::default(),
                &mut crate::sender::replay::NoReplayCache,
            )
            .decision
        {
            crate::engine::Decision::Deny(d) => {
                assert_eq!(d.reason, crate::reason::Reason::UnknownKey);
                assert_eq!(d.provider, Some(0));
            }
            other => panic!("{other:?}"),
        }
    }
}

mod discovery {
    use crate::jwks::parse::jwks_path_from_discovery;
    use serde_json::json;

    #[test]
    fn jwks_uri_must_be_on_the_configured_authority_and_issuer_must_match() {
        let doc = |iss: &str, uri: &str| json!({"issuer": iss, "jwks_uri": uri}).to_string();
        let ok = jwks_path_from_discovery(
            doc("https://i", "https://idp.example.com/k?x=1").as_bytes(),
            "https://i",
            "idp.example.com",
        );
        assert_eq!(ok.unwrap(), "/k?x=1");
        let upper = jwks_path_from_discovery(
            doc("https://i", "https://IDP.example.com/k").as_bytes(),
            "https://i",
            "idp.example.com",
        );
        assert_eq!(upper.unwrap(), "/k");
        for (d, want) in [
            (doc("https://other", "https://idp.example.com/k"), "another issuer"),
            (doc("https://i", "https://evil.example/k"), "not on the configured authority"),
            (doc("https://i", "ftp://idp.example.com/k"), "not an http(s) URL"),
            (json!({"issuer": "https://i"}).to_string(), "no `jwks_uri`"),
            ("{".to_string(), "not a JSON object"),
        ] {
            let e = jwks_path_from_discovery(d.as_bytes(), "https://i", "idp.example.com").unwrap_err();
            assert!(e.contains(want), "want {want:?} in {e:?}");
        }
    }
}
