//! Native micro-benchmark of the core (part of `make bench`): parsing, signature
//! verification per algorithm — the core's own Rust code (what the wasm build
//! runs without a host) beside `ring` (the native module's verifier, chosen by
//! this measurement) — and the whole decision with a warm and a cold
//! verified-token cache, with either verifier. Wasm in V8 is slower than these
//! native figures; `tools/src/bin/bench.rs` measures both builds inside Envoy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::config::Config;
use cjwt_core::engine::{Decision, Engine};
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::keys::host_crypto::{HostCrypto, PureRust};
use cjwt_core::keys::native::NativeCrypto;
use cjwt_core::mint::{mint, SigningKey};
use cjwt_core::request::static_host::StaticHost;
use cjwt_core::token::verify::InlineOnly;
use cjwt_core::usage::MemoryCounter;
use cjwt_core::{keys::key::VerificationKey, token::jws};
use serde_json::json;
use std::hint::black_box;
use std::time::Instant;

fn time<F: FnMut()>(what: &str, iterations: u32, mut f: F) {
    f();
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let per = start.elapsed().as_secs_f64() * 1e6 / f64::from(iterations);
    println!("  {what:<48} {per:>10.2} µs");
}

fn main() {
    let now = 1_800_000_000;
    println!("cjwt core, native (release), per operation:");
    for alg in
        [Algorithm::EdDSA, Algorithm::ES256, Algorithm::ES384, Algorithm::RS256, Algorithm::PS256, Algorithm::HS256]
    {
        let key = SigningKey::generate(alg).expect("key");
        let jwk = key.public_jwk(Some("k"));
        let claims = json!({"iss": "https://i", "aud": "a", "sub": "s", "tenant": "acme", "iat": now, "exp": now + 600,
            "cnst": {"ip": ["127.0.0.0/8"], "methods": ["GET"], "paths": ["/v1/**"], "window": [{"start": "00:00", "end": "24:00", "tz": "Europe/Berlin"}]}});
        let token = mint(&key, Some("k"), &claims);
        let vk = VerificationKey::from_jwk(jwk.as_object().expect("jwk"), None).expect("key loads");
        let parsed = jws::parse(&token).expect("parses");
        println!("{}:", alg.name());
        time("parse (strict JWS + JSON)", 20_000, || {
            black_box(jws::parse(black_box(&token)).ok());
        });
        let n = if alg.is_rsa() || alg == Algorithm::ES384 { 300 } else { 2_000 };
        time("verify signature (pure Rust)", n, || {
            black_box(vk.verify(parsed.jws.alg, parsed.jws.signing_input, &parsed.jws.signature));
        });
        let native = NativeCrypto::new();
        time("verify signature (native build: ring, else pure Rust)", n, || {
            black_box(vk.verify_with(&native, parsed.jws.alg, parsed.jws.signing_input, &parsed.jws.signature));
        });
        let verifiers: [(&str, &dyn HostCrypto); 2] = [("pure Rust", &PureRust), ("native build", &native)];
        for ((label, cache), (who, crypto)) in
            [("decide, cache cold (verify every time)", 0), ("decide, cache warm (constraints only)", 1024)]
                .into_iter()
                .flat_map(|c| verifiers.into_iter().map(move |v| (c, v)))
        {
            let label = format!("{label}, {who}");
            let cfg = json!({"providers": [{"name": "p", "issuer": "https://i", "jwks": {"keys": [jwk]}}],
                "default_rule": {"require": {"claims": [{"claim": "tenant", "equals": "acme"}]}}, "cache": {"max_entries": cache}});
            let mut engine = Engine::new(Config::from_json(cfg.to_string().as_bytes()).expect("config"));
            let req = StaticHost::get("/v1/orders/7")
                .set_header(":authority", "api")
                .bearer(&token)
                .peer("127.0.0.1:5000")
                .at(now);
            let iterations = if cache == 0 { n } else { 50_000 };
            time(&label, iterations, || {
                let out = engine.decide_with(
                    &req,
                    &InlineOnly,
                    crypto,
                    &mut MemoryCounter::default(),
                    &mut cjwt_core::sender::replay::NoReplayCache,
                );
                assert!(matches!(out.decision, Decision::Allow { .. }));
            });
        }
    }
    dpop(now);
    chain(now);
}

/// SPEC §10: a DPoP request (token cache warm, a fresh proof each time, so its
/// signature is always verified and its `jti` recorded) beside the same token
/// as a plain bearer request, in the same run.
fn dpop(now: i64) {
    use cjwt_core::sender::replay::ProcessReplay;
    println!("DPoP (EdDSA token, cache warm), per request:");
    let issuer = SigningKey::generate(Algorithm::EdDSA).expect("key");
    let jwk = issuer.public_jwk(Some("k"));
    let cfg = json!({"providers": [{"name": "p", "issuer": "https://i", "jwks": {"keys": [jwk]}}],
        "sender_constraints": {"dpop": {"algorithms": ["ES256", "EdDSA"], "replay_cache": {"max_entries": 1_048_576}}}});
    let native = NativeCrypto::new();
    let base = || StaticHost::get("/v1/orders/7").set_header(":authority", "api").header(":scheme", "https").at(now);
    let claims = json!({"iss": "https://i", "sub": "s", "iat": now, "exp": now + 600});
    let plain = mint(&issuer, Some("k"), &claims);
    let mut engine = Engine::new(Config::from_json(cfg.to_string().as_bytes()).expect("config"));
    let req = base().bearer(&plain);
    time("bearer (no binding)", 50_000, || {
        let out = engine.decide_with(
            &req,
            &InlineOnly,
            &native,
            &mut MemoryCounter::default(),
            &mut cjwt_core::sender::replay::NoReplayCache,
        );
        assert!(matches!(out.decision, Decision::Allow { .. }));
    });
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        let holder = SigningKey::generate(alg).expect("key");
        let jkt = cjwt_core::mint::jkt(&holder).expect("thumbprint");
        let mut bound_claims = claims.clone();
        bound_claims["cnf"] = json!({"jkt": jkt});
        let token = mint(&issuer, Some("k"), &bound_claims);
        let n = 2_000u32;
        let requests: Vec<StaticHost> = (0..=n)
            .map(|i| {
                let proof = cjwt_core::mint::dpop_proof(
                    &holder,
                    "GET",
                    "https://api/v1/orders/7",
                    Some(&token),
                    now,
                    &format!("{}-{i}", alg.name()),
                    None,
                )
                .expect("proof");
                base().header("authorization", &format!("DPoP {token}")).header("dpop", &proof)
            })
            .collect();
        let mut engine = Engine::new(Config::from_json(cfg.to_string().as_bytes()).expect("config"));
        let replay = ProcessReplay::new();
        let mut next = requests.iter();
        time(&format!("DPoP, {} proof (native build verifier)", alg.name()), n, || {
            let req = next.next().expect("a fresh proof");
            let out = engine.decide_with(req, &InlineOnly, &native, &mut MemoryCounter::default(), &mut &replay);
            assert!(matches!(out.decision, Decision::Allow { .. }), "{:?}", out.decision);
        });
    }
}

/// SPEC §16: a delegation chain of 1, 2 and 4 links (ES256 holder keys, each
/// link narrowing `paths`), root token cache warm, a fresh leaf proof each
/// time: every link's signature is verified on every request, then the
/// leaf's DPoP proof. Beside it, the bound root alone (0 links).
fn chain(now: i64) {
    use cjwt_core::chain::mint::{attenuate, split, LinkSpec};
    use cjwt_core::sender::replay::ProcessReplay;
    println!("Delegation chain (EdDSA root, ES256 holders, cache warm), per request:");
    let issuer = SigningKey::generate(Algorithm::EdDSA).expect("key");
    let jwk = issuer.public_jwk(Some("k"));
    let cfg = json!({"providers": [{"name": "p", "issuer": "https://i", "jwks": {"keys": [jwk]}}],
        "sender_constraints": {"dpop": {"algorithms": ["ES256", "EdDSA"], "replay_cache": {"max_entries": 1_048_576}}}});
    let native = NativeCrypto::new();
    let holders: Vec<SigningKey> = (0..5).map(|_| SigningKey::generate(Algorithm::ES256).expect("key")).collect();
    let jkt = |k: &SigningKey| cjwt_core::mint::jkt(k).expect("thumbprint");
    let claims = json!({"iss": "https://i", "sub": "s", "jti": "root", "iat": now, "exp": now + 600,
        "cnf": {"jkt": jkt(&holders[0])}, "cnst": {"paths": ["/v1/**"]}});
    let root = mint(&issuer, Some("k"), &claims);
    for depth in [0usize, 1, 2, 4] {
        let mut credential = root.clone();
        for i in 0..depth {
            let spec = LinkSpec {
                jti: format!("l{i}"),
                iat: now,
                exp: now + 300,
                constraints: Some(json!({"paths": ["/v1/orders/**"]})),
                next_jkt: jkt(&holders[i + 1]),
            };
            credential = attenuate(&holders[i], &credential, &spec, "cnst", &[]).expect("link");
        }
        let (root_text, links) = split(&credential);
        let leaf = &holders[depth];
        let n = 2_000u32;
        let requests: Vec<StaticHost> = (0..=n)
            .map(|i| {
                let proof = cjwt_core::mint::dpop_proof(
                    leaf,
                    "GET",
                    "https://api/v1/orders/7",
                    Some(root_text),
                    now,
                    &format!("c{depth}-{i}"),
                    None,
                )
                .expect("proof");
                let req = StaticHost::get("/v1/orders/7")
                    .set_header(":authority", "api")
                    .header(":scheme", "https")
                    .at(now)
                    .header("authorization", &format!("DPoP {root_text}"))
                    .header("dpop", &proof);
                match links {
                    Some(links) => req.header("cjwt-chain", links),
                    None => req,
                }
            })
            .collect();
        let mut engine = Engine::new(Config::from_json(cfg.to_string().as_bytes()).expect("config"));
        let replay = ProcessReplay::new();
        let mut next = requests.iter();
        time(&format!("chain of {depth} link(s) + leaf proof (native build verifier)"), n, || {
            let req = next.next().expect("a fresh proof");
            let out = engine.decide_with(req, &InlineOnly, &native, &mut MemoryCounter::default(), &mut &replay);
            assert!(matches!(out.decision, Decision::Allow { .. }), "{:?}", out.decision);
        });
    }
}
