//! Sender-constrained tokens (SPEC §10) through the whole decision: the engine
//! with a replay cache, then the plan (challenge, `dpop-nonce`, `DPoP` removed,
//! `cnf.jkt` forwarded). Proofs are signed here with the p256 crate directly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::config::Config;
use cjwt_core::encoding::b64;
use cjwt_core::engine::{Decision, Engine};
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::keys::host_crypto::PureRust;
use cjwt_core::mint::mint;
use cjwt_core::outcome::plan::{plan, Act};
use cjwt_core::reason::Reason;
use cjwt_core::sender::dpop::thumbprint;
use cjwt_core::sender::replay::ProcessReplay;
use cjwt_core::testing::*;
use cjwt_core::token::verify::InlineOnly;
use cjwt_core::usage::MemoryCounter;
use p256::ecdsa::signature::Signer;
use serde_json::{json, Value};
use sha2::Digest;

const DIGEST_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn engine(sender: Value, extra: Value) -> Engine {
    let mut cfg = config_json(extra);
    cfg["sender_constraints"] = sender;
    Engine::new(Config::from_json(cfg.to_string().as_bytes()).unwrap())
}

fn holder() -> (p256::ecdsa::SigningKey, Value, String) {
    let key = p256::ecdsa::SigningKey::from_slice(&[5u8; 32]).unwrap();
    let point = key.verifying_key().to_encoded_point(false);
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64::encode(point.x().unwrap()), "y": b64::encode(point.y().unwrap())});
    let jkt = thumbprint(jwk.as_object().unwrap()).unwrap();
    (key, jwk, jkt)
}

fn proof(method: &str, htu: &str, token: &str, iat: i64, jti: &str) -> String {
    let (key, jwk, _) = holder();
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
    let ath = b64::encode(&sha2::Sha256::digest(token.as_bytes()));
    let claims = json!({"htm": method, "htu": htu, "iat": iat, "jti": jti, "ath": ath});
    let input =
        format!("{}.{}", b64::encode(header.to_string().as_bytes()), b64::encode(claims.to_string().as_bytes()));
    let sig: p256::ecdsa::Signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64::encode(&sig.to_bytes()))
}

fn bound_token() -> String {
    mint(key(Algorithm::EdDSA), Some("k1"), &claims(json!({"cnf": {"jkt": holder().2}})))
}

fn x5t() -> String {
    cjwt_core::sender::mtls::x5t_from_hex(DIGEST_HEX).unwrap()
}

fn request(token: &str, scheme: &str) -> StaticHost {
    StaticHost::get("/orders?page=2").header(":scheme", "https").header("authorization", &format!("{scheme} {token}"))
}

fn verdict(e: &mut Engine, host: &StaticHost, replay: &ProcessReplay) -> Option<Reason> {
    match e.decide_with(host, &InlineOnly, &PureRust, &mut MemoryCounter::default(), &mut &*replay).decision {
        Decision::Allow { .. } => None,
        Decision::Deny(d) | Decision::DryRunDeny(d) => Some(d.reason),
    }
}

#[test]
fn dpop_bound_tokens_need_a_fresh_proof_under_the_dpop_scheme() {
    let mut e = engine(json!({"dpop": {}}), json!({}));
    let replay = ProcessReplay::new();
    let t = bound_token();
    let url = "https://api.example.com/orders";
    let good = proof("GET", url, &t, NOW, "p1");
    let cases: Vec<(&str, StaticHost, Option<Reason>)> = vec![
        ("bound, DPoP scheme, proof", request(&t, "DPoP").header("dpop", &good), None),
        ("the same proof again", request(&t, "DPoP").header("dpop", &good), Some(Reason::DpopReplay)),
        ("scheme is case-insensitive", request(&t, "dpop").header("dpop", &proof("GET", url, &t, NOW, "p2")), None),
        (
            "bound under Bearer",
            request(&t, "Bearer").header("dpop", &proof("GET", url, &t, NOW, "p3")),
            Some(Reason::DpopRequired),
        ),
        ("no proof", request(&t, "DPoP"), Some(Reason::InvalidDpopProof)),
        (
            "two proofs",
            request(&t, "DPoP")
                .header("dpop", &proof("GET", url, &t, NOW, "p4"))
                .header("dpop", &proof("GET", url, &t, NOW, "p5")),
            Some(Reason::InvalidDpopProof),
        ),
        (
            "another method",
            request(&t, "DPoP").header("dpop", &proof("POST", url, &t, NOW, "p6")),
            Some(Reason::InvalidDpopProof),
        ),
        (
            "another URL",
            request(&t, "DPoP").header("dpop", &proof("GET", "https://api.example.com/other", &t, NOW, "p7")),
            Some(Reason::InvalidDpopProof),
        ),
        (
            "stale",
            request(&t, "DPoP").header("dpop", &proof("GET", url, &t, NOW - 61, "p8")),
            Some(Reason::InvalidDpopProof),
        ),
        (
            "for another token",
            request(&t, "DPoP").header("dpop", &proof("GET", url, "other", NOW, "p9")),
            Some(Reason::InvalidDpopProof),
        ),
    ];
    for (name, host, want) in &cases {
        assert_eq!(verdict(&mut e, host, &replay), *want, "case: {name}");
    }
    // Unbound tokens: the DPoP scheme, or a DPoP header, is unexpected.
    let plain = mint(key(Algorithm::EdDSA), Some("k1"), &claims(json!({})));
    let p = proof("GET", url, &plain, NOW, "q1");
    assert_eq!(verdict(&mut e, &request(&plain, "DPoP").header("dpop", &p), &replay), Some(Reason::UnexpectedDpop));
    assert_eq!(verdict(&mut e, &request(&plain, "Bearer").header("dpop", &p), &replay), Some(Reason::UnexpectedDpop));
    assert_eq!(verdict(&mut e, &request(&plain, "Bearer"), &replay), None);
    // Both schemes at once are two credentials.
    let both = request(&t, "DPoP").header("authorization", &format!("Bearer {plain}"));
    assert_eq!(verdict(&mut e, &both, &replay), Some(Reason::MultipleTokens));
    // Without a replay cache a proof cannot be accepted.
    let host = request(&t, "DPoP").header("dpop", &proof("GET", url, &t, NOW, "r1"));
    match cjwt_core::testing::decide_inline(&mut e, &host).decision {
        Decision::Deny(d) => assert_eq!(d.reason, Reason::DpopReplay),
        other => panic!("{other:?}"),
    }
}

#[test]
fn public_origin_replaces_the_request_origin() {
    let mut e = engine(json!({"dpop": {"public_origin": "https://API.example.net:443"}}), json!({}));
    let replay = ProcessReplay::new();
    let t = bound_token();
    let public = proof("GET", "https://api.example.net/orders", &t, NOW, "o1");
    assert_eq!(verdict(&mut e, &request(&t, "DPoP").header("dpop", &public), &replay), None);
    let internal = proof("GET", "https://api.example.com/orders", &t, NOW, "o2");
    assert_eq!(
        verdict(&mut e, &request(&t, "DPoP").header("dpop", &internal), &replay),
        Some(Reason::InvalidDpopProof)
    );
}

#[test]
fn the_plan_challenges_strips_the_proof_and_forwards_the_binding() {
    let mut e = engine(
        json!({"dpop": {"algorithms": ["ES256", "EdDSA"], "nonce": {"secret": b64::encode(&[9u8; 32])}}}),
        json!({"forward": {"claims_to_headers": [{"claim": "cnf.jkt", "header": "x-cjwt-jkt"}]}}),
    );
    let replay = ProcessReplay::new();
    let t = bound_token();
    // No nonce: use_dpop_nonce with a fresh nonce.
    let host = request(&t, "DPoP").header("dpop", &proof("GET", "https://api.example.com/orders", &t, NOW, "n1"));
    let outcome = e.decide_with(&host, &InlineOnly, &PureRust, &mut MemoryCounter::default(), &mut &replay);
    let Act::Refuse(r) = plan(e.config(), &outcome, &host).act else { panic!("refused") };
    assert_eq!(r.status, 401);
    assert_eq!(
        r.headers[0].1,
        "DPoP realm=\"cjwt\", error=\"use_dpop_nonce\", error_description=\"use_dpop_nonce\", algs=\"ES256 EdDSA\""
    );
    let nonce = r.headers.iter().find(|(n, _)| *n == "dpop-nonce").map(|(_, v)| v.clone()).expect("a nonce");
    // With it: allowed; the proof is removed and the binding forwarded.
    let (key, jwk, jkt) = holder();
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
    let ath = b64::encode(&sha2::Sha256::digest(t.as_bytes()));
    let c = json!({"htm": "GET", "htu": "https://api.example.com/orders", "iat": NOW, "jti": "n2", "ath": ath, "nonce": nonce});
    let input = format!("{}.{}", b64::encode(header.to_string().as_bytes()), b64::encode(c.to_string().as_bytes()));
    let sig: p256::ecdsa::Signature = key.sign(input.as_bytes());
    let host = request(&t, "DPoP").header("dpop", &format!("{input}.{}", b64::encode(&sig.to_bytes())));
    let outcome = e.decide_with(&host, &InlineOnly, &PureRust, &mut MemoryCounter::default(), &mut &replay);
    let Act::Forward(ops) = plan(e.config(), &outcome, &host).act else { panic!("allowed: {:?}", outcome.decision) };
    assert!(ops.contains(&("dpop".to_string(), None)), "{ops:?}");
    assert!(ops.contains(&("x-cjwt-jkt".to_string(), Some(jkt))), "{ops:?}");
    // A request without a proof costs no removal.
    let plain = mint(cjwt_core::testing::key(Algorithm::EdDSA), Some("k1"), &claims(json!({})));
    let host = request(&plain, "Bearer");
    let outcome = e.decide_with(&host, &InlineOnly, &PureRust, &mut MemoryCounter::default(), &mut &replay);
    let Act::Forward(ops) = plan(e.config(), &outcome, &host).act else { panic!("allowed: {:?}", outcome.decision) };
    assert!(!ops.iter().any(|(n, _)| n == "dpop"), "{ops:?}");
    // A DPoP refusal without nonce: invalid_dpop_proof with algs, no nonce header.
    let host = request(&t, "Bearer");
    let outcome = e.decide_with(&host, &InlineOnly, &PureRust, &mut MemoryCounter::default(), &mut &replay);
    let Act::Refuse(r) = plan(e.config(), &outcome, &host).act else { panic!("refused") };
    assert_eq!(
        r.headers[0].1,
        "DPoP realm=\"cjwt\", error=\"invalid_dpop_proof\", error_description=\"dpop_required\", algs=\"ES256 EdDSA\""
    );
    assert!(!r.headers.iter().any(|(n, _)| *n == "dpop-nonce"));
}

#[test]
fn certificate_bound_tokens() {
    let replay = ProcessReplay::new();
    let t = mint(key(Algorithm::EdDSA), Some("k1"), &claims(json!({"cnf": {"x5t#S256": x5t()}})));
    let peer = ["connection", "sha256_peer_certificate_digest"];
    let mut e = engine(json!({"mtls": {"from": "peer"}}), json!({}));
    let other = DIGEST_HEX.replace('0', "f");
    assert_eq!(verdict(&mut e, &StaticHost::get("/").bearer(&t).property(&peer, DIGEST_HEX), &replay), None);
    assert_eq!(
        verdict(&mut e, &StaticHost::get("/").bearer(&t).property(&peer, &other), &replay),
        Some(Reason::CertificateMismatch)
    );
    assert_eq!(verdict(&mut e, &StaticHost::get("/").bearer(&t), &replay), Some(Reason::CertificateRequired));
    let mut x = engine(json!({"mtls": {"from": "xfcc", "trusted_hops": 1}}), json!({}));
    let xfcc = |h: &str| StaticHost::get("/").bearer(&t).header("x-forwarded-client-cert", h);
    assert_eq!(verdict(&mut x, &xfcc(&format!("By=spiffe://a;Hash={DIGEST_HEX}")), &replay), None);
    assert_eq!(
        verdict(&mut x, &xfcc(&format!("Hash={DIGEST_HEX},By=spiffe://gw;Hash={other}")), &replay),
        Some(Reason::CertificateMismatch),
        "an element before the trusted hop's is not trusted"
    );
    // Bindings the configuration does not enable, and unknown ones.
    let mut none = Engine::new(Config::from_json(config_json(json!({})).to_string().as_bytes()).unwrap());
    assert_eq!(
        verdict(&mut none, &StaticHost::get("/").bearer(&t).property(&peer, DIGEST_HEX), &replay),
        Some(Reason::UnsupportedBinding)
    );
    let jwk_bound = mint(key(Algorithm::EdDSA), Some("k1"), &claims(json!({"cnf": {"jwk": {"kty": "EC"}}})));
    assert_eq!(verdict(&mut e, &StaticHost::get("/").bearer(&jwk_bound), &replay), Some(Reason::UnsupportedBinding));
    // The DPoP binding with only mtls enabled.
    assert_eq!(verdict(&mut e, &request(&bound_token(), "Bearer"), &replay), Some(Reason::UnsupportedBinding));
}

#[test]
fn sender_checks_come_before_require_and_constraints() {
    let mut e = engine(
        json!({"mtls": {"from": "peer"}}),
        json!({"rules": [{"match": {"path": "/admin"}, "require": {"roles_any": ["admin"]}}]}),
    );
    let replay = ProcessReplay::new();
    let t = mint(
        key(Algorithm::EdDSA),
        Some("k1"),
        &claims(json!({"cnf": {"x5t#S256": x5t()}, "cnst": {"methods": ["POST"]}})),
    );
    assert_eq!(verdict(&mut e, &StaticHost::get("/admin").bearer(&t), &replay), Some(Reason::CertificateRequired));
    let peer = ["connection", "sha256_peer_certificate_digest"];
    let host = StaticHost::get("/admin").bearer(&t).property(&peer, DIGEST_HEX);
    assert_eq!(verdict(&mut e, &host, &replay), Some(Reason::Role));
    let expired =
        mint(key(Algorithm::EdDSA), Some("k1"), &claims(json!({"cnf": {"x5t#S256": x5t()}, "exp": NOW - 3600})));
    assert_eq!(verdict(&mut e, &StaticHost::get("/").bearer(&expired), &replay), Some(Reason::Expired));
}

#[test]
fn configuration_is_strict_and_names_the_field() {
    let load = |sender: Value| {
        let mut cfg = config_json(json!({}));
        cfg["sender_constraints"] = sender;
        Config::from_json(cfg.to_string().as_bytes()).map(|_| ()).map_err(|e| e.field)
    };
    assert_eq!(load(json!({"dpop": {}})), Ok(()));
    assert_eq!(load(json!({"mtls": {"from": "peer"}})), Ok(()));
    let d = "sender_constraints.dpop";
    for (sender, field) in [
        (json!({}), "sender_constraints".to_string()),
        (json!({"dpop": {"algorithms": ["HS256"]}}), format!("{d}.algorithms[0]")),
        (json!({"dpop": {"algorithms": ["none"]}}), format!("{d}.algorithms[0]")),
        (json!({"dpop": {"algorithms": []}}), format!("{d}.algorithms")),
        (json!({"dpop": {"max_age_seconds": 0}}), format!("{d}.max_age_seconds")),
        (json!({"dpop": {"max_age_seconds": 601}}), format!("{d}.max_age_seconds")),
        (json!({"dpop": {"public_origin": "https://a/path"}}), format!("{d}.public_origin")),
        (json!({"dpop": {"nonce": {"secret": "c2hvcnQ"}}}), format!("{d}.nonce.secret")),
        (json!({"dpop": {"nonce": {}}}), format!("{d}.nonce.secret")),
        (
            json!({"dpop": {"nonce": {"secret": b64::encode(&[1u8; 32]), "rotate_seconds": 1}}}),
            format!("{d}.nonce.rotate_seconds"),
        ),
        (json!({"dpop": {"replay_cache": {"max_entries": 0}}}), format!("{d}.replay_cache.max_entries")),
        (json!({"mtls": {"from": "xfcc"}}), "sender_constraints.mtls.trusted_hops".to_string()),
        (json!({"mtls": {"from": "peer", "trusted_hops": 1}}), "sender_constraints.mtls.trusted_hops".to_string()),
        (json!({"mtls": {"from": "xfcc", "trusted_hops": 11}}), "sender_constraints.mtls.trusted_hops".to_string()),
        (json!({"mtls": {"from": "header"}}), "sender_constraints.mtls.from".to_string()),
    ] {
        assert_eq!(load(sender.clone()), Err(field), "{sender}");
    }
    // Unknown fields are refused by the strict parser, with the path.
    for sender in [json!({"dpop": {"iat_window": 1}}), json!({"mtls": {"from": "peer", "x": 1}}), json!({"jwk": {}})] {
        let err = load(sender.clone()).unwrap_err();
        assert!(err.starts_with("sender_constraints"), "{sender}: {err}");
    }
}

/// Issue 24 item 3: with `replay_cache.store: "usage_store"` the proof is not
/// remembered here but recorded in the mesh's etcd with the request's store
/// call: first the proof, then the token's use; the store's answer decides
/// (`dpop_replay` when another Envoy recorded it, 503 when the store fails).
#[test]
fn proofs_recorded_in_the_usage_store_for_the_mesh() {
    use cjwt_core::engine::settle;
    use cjwt_core::sender::replay::ProofId;
    use cjwt_core::usage::etcd::{Step, UseAnswer};
    let store = json!({"etcd": {"cluster": "etcd", "authority": "etcd", "key_prefix": "mesh/uses/", "api": "json"}});
    let mut e = engine(
        json!({"dpop": {"replay_cache": {"store": "usage_store"}}}),
        json!({"usage_store": store, "clock_skew_seconds": 30}),
    );
    let replay = ProcessReplay::new();
    let t = bound_token();
    let url = "https://api.example.com/orders";
    let host = request(&t, "DPoP").header("dpop", &proof("GET", url, &t, NOW, "m1"));
    let key_of = |body: &[u8]| {
        let v: Value = serde_json::from_slice(body).unwrap();
        let key = v["compare"][0]["key"].as_str().unwrap().to_string();
        use base64::Engine as _;
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(key).unwrap()).unwrap()
    };
    let want_key = format!("mesh/uses/dpop/{}", ProofId::new(&holder().2, "m1").hex());
    // Every decision of the same proof waits for the store: nothing is remembered here.
    for _ in 0..2 {
        let o = e.decide_with(&host, &InlineOnly, &PureRust, &mut MemoryCounter::default(), &mut &replay);
        assert!(matches!(o.decision, Decision::Allow { .. }), "{:?}", o.decision);
        let call = o.pending_use.expect("waits for the store");
        assert_eq!(key_of(&call.first().body), want_key);
        // The lease covers the proof's max_age plus the clock skew.
        let grant = match call.clone().on_answer(Some("404"), br#"{"error":"etcdserver: requested lease not found"}"#) {
            Step::Send(grant) => grant,
            other => panic!("{other:?}"),
        };
        let ttl: i64 = serde_json::from_slice::<Value>(&grant.body).unwrap()["TTL"].as_str().unwrap().parse().unwrap();
        assert!(ttl >= 60 + 30, "lease TTL {ttl}");
    }
    assert!(replay.is_empty(), "the local cache is not used");
    // The store's answers.
    for (answer, want) in [
        (UseAnswer::Counted, None),
        (UseAnswer::Replayed, Some((Reason::DpopReplay, 401))),
        (UseAnswer::Unavailable("no leader".into()), Some((Reason::UsageUnavailable, 503))),
    ] {
        let o = e.decide_with(&host, &InlineOnly, &PureRust, &mut MemoryCounter::default(), &mut &replay);
        let o = settle(e.config().mode(), o, &answer);
        let p = plan(e.config(), &o, &host);
        match (want, p.act) {
            (None, Act::Forward(_)) => {}
            (Some((reason, status)), Act::Refuse(r)) => {
                assert_eq!(r.status, status, "{answer:?}");
                assert!(r.body.contains(reason.code()), "{answer:?}: {}", r.body);
            }
            (want, act) => panic!("{answer:?}: want {want:?}, got {act:?}"),
        }
    }
    // A refused proof is never sent to the store.
    let stale = request(&t, "DPoP").header("dpop", &proof("GET", url, &t, NOW - 61, "m2"));
    let o = e.decide_with(&stale, &InlineOnly, &PureRust, &mut MemoryCounter::default(), &mut &replay);
    assert!(o.pending_use.is_none());
    // A configuration built by hand with the mesh's store missing: refused, never unrecorded.
    let config = cjwt_core::testing::without_usage_store(e.config().clone());
    let host = request(&t, "DPoP").header("dpop", &proof("GET", url, &t, NOW, "m4"));
    assert_eq!(verdict(&mut Engine::new(config), &host, &replay), Some(Reason::DpopReplay));
    assert!(replay.is_empty());
    // The local cache stays the default.
    let mut local = engine(json!({"dpop": {}}), json!({"usage_store": store}));
    let host = request(&t, "DPoP").header("dpop", &proof("GET", url, &t, NOW, "m3"));
    let o = local.decide_with(&host, &InlineOnly, &PureRust, &mut MemoryCounter::default(), &mut &replay);
    assert!(o.pending_use.is_none() && replay.len() == 1);
}

#[test]
fn the_mesh_replay_store_needs_the_usage_store() {
    let load = |dpop: Value, extra: Value| {
        let mut cfg = config_json(extra);
        cfg["sender_constraints"] = json!({"dpop": dpop});
        Config::from_json(cfg.to_string().as_bytes()).map(|_| ()).map_err(|e| e.field)
    };
    let store = json!({"usage_store": {"etcd": {"cluster": "etcd", "authority": "etcd"}}});
    let field = "sender_constraints.dpop.replay_cache";
    assert_eq!(load(json!({"replay_cache": {"store": "usage_store"}}), store.clone()), Ok(()));
    assert_eq!(load(json!({"replay_cache": {"store": "local", "max_entries": 2048}}), json!({})), Ok(()));
    assert_eq!(load(json!({"replay_cache": {"store": "usage_store"}}), json!({})), Err(format!("{field}.store")));
    assert_eq!(
        load(json!({"replay_cache": {"store": "usage_store", "max_entries": 2048}}), store.clone()),
        Err(format!("{field}.max_entries"))
    );
    assert_eq!(load(json!({"replay_cache": {"store": "etcd"}}), store), Err(format!("{field}.store")));
}
