//! Transaction Tokens (SPEC §14) in the core: a gateway issues one per allowed
//! request, a sidecar enforces it; every Txn-Token reason; the configuration's
//! refusals. The Envoy chain is crates/cjwt-e2e/tests/envoy_txn.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::config::Config;
use cjwt_core::encoding::b64;
use cjwt_core::engine::{Decision, Engine};
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::outcome::plan::{plan, Act};
use cjwt_core::reason::Reason;
use cjwt_core::testing::*;
use cjwt_core::usage::MemoryCounter;
use serde_json::{json, Value};

/// The gateway's Txn-Token key: the test ES256 key (the IdP signs with EdDSA `k1`).
fn gateway_key() -> &'static cjwt_core::mint::SigningKey {
    key(Algorithm::ES256)
}

/// A PEM file of the gateway key under the system temp dir.
fn gateway_key_file() -> String {
    let dir = std::env::temp_dir().join(format!("cjwt-txn-core-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.pem");
    std::fs::write(&path, gateway_key().to_pem().unwrap()).unwrap();
    path.to_string_lossy().into_owned()
}

fn gateway(extra: Value) -> Engine {
    let mut cfg = json!({
        "region": {"value": "eu-west-1"},
        "custom_constraints": {"tenant": {"header": "x-tenant"}},
        "transaction_tokens": {"issue": {
            "trust_domain": TRUST_DOMAIN, "workload": "gateway.mesh.example",
            "key": {"file": gateway_key_file()}, "kid": "gw1"
        }},
        "rules": [{"match": {"path": "/orders/**"}, "txn_scope": "orders.read"}],
        "default_rule": {"auth": "none"}
    });
    merge(&mut cfg, extra);
    engine(cfg)
}

fn sidecar(extra: Value) -> Engine {
    let mut cfg = json!({
        "providers": [{"name": "tts", "kind": "txn_token", "trust_domain": TRUST_DOMAIN,
                       "jwks": {"keys": [gateway_key().public_jwk(Some("gw1"))]}}],
        "region": {"header": "x-region"},
        "custom_constraints": {"tenant": {"header": "x-tenant"}},
        "rules": [{"match": {"path": "/ledger/**"}, "auth": "txn_token",
                   "require": {"scopes_any": ["orders.read"], "req_wl": ["gateway.mesh.example"]}}],
        "default_rule": {"auth": "txn_token"},
        "forward": {"remove_token": true}
    });
    merge(&mut cfg, extra);
    engine_for(&cfg)
}

fn merge(base: &mut Value, extra: Value) {
    if let (Value::Object(b), Value::Object(e)) = (base, extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&b64::decode(part.as_bytes()).unwrap()).unwrap()
}

/// The header operations of `engine`'s plan for `host`, or the refusal's reason.
fn forwarded(
    engine: &mut Engine,
    host: &StaticHost,
    counter: &mut MemoryCounter,
) -> Result<Vec<(String, Option<String>)>, Reason> {
    let outcome = engine.decide_with(
        host,
        &cjwt_core::token::verify::InlineOnly,
        &cjwt_core::keys::host_crypto::PureRust,
        counter,
        &mut cjwt_core::sender::replay::NoReplayCache,
    );
    if let Decision::Deny(d) = &outcome.decision {
        return Err(d.reason);
    }
    match plan(engine.config(), &outcome, host).act {
        Act::Forward(ops) => Ok(ops),
        Act::Refuse(r) => panic!("refused {r:?}"),
    }
}

fn issued(ops: &[(String, Option<String>)]) -> Option<String> {
    ops.iter().find(|(n, _)| n == "txn-token").and_then(|(_, v)| v.clone())
}

#[test]
fn the_gateway_issues_and_the_sidecar_enforces() {
    let mut gw = gateway(json!({}));
    let cnst = json!({"ip": ["192.0.2.0/24"], "region": ["eu-west-1"], "methods": ["GET"],
                      "window": [{"start": "00:00", "end": "23:59"}], "tenant": "acme", "max_uses": 1});
    let ext = eddsa(json!({"jti": "once", "cnst": cnst}));
    let host = StaticHost::get("/orders/1")
        .bearer(&ext)
        .peer("192.0.2.10:4000")
        .header("x-tenant", "acme")
        .header("txn-token", "client-supplied");
    let mut counter = MemoryCounter::default();
    let ops = forwarded(&mut gw, &host, &mut counter).unwrap();
    let txn = issued(&ops).expect("a Txn-Token is attached");
    assert_ne!(txn, "client-supplied");
    let p = payload(&txn);
    assert_eq!(p["aud"], TRUST_DOMAIN);
    assert_eq!(p["sub"], "alice");
    assert_eq!(p["scope"], "orders.read");
    assert_eq!(p["req_wl"], "gateway.mesh.example");
    assert_eq!(p["exp"].as_i64().unwrap() - p["iat"].as_i64().unwrap(), 60);
    assert_eq!(p["rctx"], json!({"req_ip": "192.0.2.10", "authn": "bearer", "region": "eu-west-1"}));
    assert_eq!(p["tctx"]["iss"], "https://idp.example.com");
    assert_eq!(p["tctx"]["jti"], "once");
    // What keeps its meaning downstream; `methods` does not, `max_uses` was used here.
    assert_eq!(
        p["tctx"]["cnst"],
        json!({"ip": ["192.0.2.0/24"], "region": ["eu-west-1"], "window": [{"start": "00:00", "end": "23:59"}], "tenant": "acme"})
    );
    assert!(p.get("iss").is_none());
    // The one use was consumed at the edge.
    assert_eq!(forwarded(&mut gw, &host, &mut counter), Err(Reason::MaxUses));
    // Two requests, two transactions.
    let other = eddsa(json!({}));
    let host2 = StaticHost::get("/orders/2").bearer(&other).peer("192.0.2.10:4000");
    let a = payload(&issued(&forwarded(&mut gw, &host2, &mut counter).unwrap()).unwrap());
    let b = payload(&issued(&forwarded(&mut gw, &host2, &mut counter).unwrap()).unwrap());
    assert_ne!(a["txn"], b["txn"]);

    // The sidecar: another peer (the relay), the region and tenant the hop's own.
    let mut sc = sidecar(json!({}));
    let at_sidecar = StaticHost::get("/ledger/7")
        .header("txn-token", &txn)
        .peer("10.9.9.9:1")
        .header("x-region", "us-east-1")
        .header("x-tenant", "acme");
    let ops = forwarded(&mut sc, &at_sidecar, &mut counter).unwrap();
    // Unchanged upstream, `remove_token` or not.
    assert!(!ops.iter().any(|(n, _)| n == "txn-token"), "{ops:?}");
    // The hop's own custom attribute still counts.
    let wrong_tenant = StaticHost::get("/ledger/7").header("txn-token", &txn).header("x-tenant", "other");
    assert_eq!(forwarded(&mut sc, &wrong_tenant, &mut counter), Err(Reason::Custom));
}

#[test]
fn a_refused_or_anonymous_request_gets_no_txn_token_and_loses_the_clients() {
    let mut gw = gateway(json!({}));
    let mut counter = MemoryCounter::default();
    let outside = eddsa(json!({"cnst": {"ip": ["192.0.2.0/24"]}}));
    let host = StaticHost::get("/orders/1").bearer(&outside).peer("198.51.100.1:1");
    assert_eq!(forwarded(&mut gw, &host, &mut counter), Err(Reason::Ip));
    let open = StaticHost::get("/health").header("txn-token", "forged");
    let ops = forwarded(&mut gw, &open, &mut counter).unwrap();
    assert_eq!(ops, vec![("txn-token".to_string(), None)]);
    // No `sub`: nothing to name, refused before anything is counted.
    let anonymous = eddsa(json!({"sub": null, "jti": "j", "cnst": {"max_uses": 1}}));
    let host = StaticHost::get("/orders/1").bearer(&anonymous).peer("192.0.2.10:1");
    assert_eq!(forwarded(&mut gw, &host, &mut counter), Err(Reason::Claim));
    let named = eddsa(json!({"jti": "j", "cnst": {"max_uses": 1}}));
    let host = StaticHost::get("/orders/1").bearer(&named).peer("192.0.2.10:1");
    assert!(forwarded(&mut gw, &host, &mut counter).is_ok(), "the anonymous request used nothing");
    // The Txn-Token never outlives the external token.
    let short = eddsa(json!({"exp": NOW + 10}));
    let host = StaticHost::get("/orders/1").bearer(&short).peer("192.0.2.10:1");
    let p = payload(&issued(&forwarded(&mut gw, &host, &mut counter).unwrap()).unwrap());
    assert_eq!(p["exp"].as_i64(), Some(NOW + 10));
}

#[test]
fn every_txn_token_refusal_has_its_reason() {
    let mut sc = sidecar(json!({}));
    let gw = gateway_key();
    let good = txn_claims(NOW, json!({}));
    let signed = |claims: &Value| txn_token(gw, "gw1", claims);
    let with = |extra: Value| signed(&txn_claims(NOW, extra));
    let at = |token: &str| StaticHost::get("/ledger/1").header("txn-token", token);
    let impostor = cjwt_core::mint::SigningKey::generate(Algorithm::ES256).unwrap();
    let cases: Vec<(&str, StaticHost, Option<Reason>)> = vec![
        ("signed by another key", at(&txn_token(&impostor, "gw1", &good)), Some(Reason::BadSignature)),
        ("valid", at(&signed(&good)), None),
        ("missing", StaticHost::get("/ledger/1"), Some(Reason::MissingTxnToken)),
        (
            "an access token instead",
            StaticHost::get("/ledger/1").bearer(&eddsa(json!({}))),
            Some(Reason::MissingTxnToken),
        ),
        (
            "in Authorization",
            StaticHost::get("/ledger/1").bearer(&signed(&good)),
            Some(Reason::TxnTokenInAuthorization),
        ),
        ("two", at(&signed(&good)).header("txn-token", &signed(&good)), Some(Reason::MultipleTokens)),
        ("another algorithm", at(&txn_token(key(Algorithm::EdDSA), "gw1", &good)), Some(Reason::UnsupportedAlgorithm)),
        ("another key", at(&txn_token(key(Algorithm::ES256), "other", &good)), Some(Reason::UnknownKey)),
        ("expired", at(&with(json!({"iat": NOW - 400, "exp": NOW - 340}))), Some(Reason::Expired)),
        ("foreign domain", at(&with(json!({"aud": "other.example"}))), Some(Reason::WrongTrustDomain)),
        ("no txn", at(&with(json!({"txn": null}))), Some(Reason::IncompleteTxnToken)),
        ("no req_wl", at(&with(json!({"req_wl": null}))), Some(Reason::IncompleteTxnToken)),
        ("long-lived", at(&with(json!({"exp": NOW + 600}))), Some(Reason::LifetimeTooLong)),
        ("purpose", at(&with(json!({"scope": "orders.write"}))), Some(Reason::Scope)),
        ("workload", at(&with(json!({"req_wl": "batch.mesh.example"}))), Some(Reason::Workload)),
        ("ip of rctx", at(&with(json!({"tctx": {"cnst": {"ip": "198.51.100.0/24"}}}))), Some(Reason::Ip)),
        ("no rctx ip", at(&with(json!({"rctx": {}, "tctx": {"cnst": {"ip": "192.0.2.0/24"}}}))), Some(Reason::Ip)),
        (
            "rctx region",
            at(&with(json!({"rctx": {"region": "eu-west-1"}, "tctx": {"cnst": {"region": "eu-west-1"}}}))),
            None,
        ),
        (
            "region",
            at(&with(json!({"rctx": {"region": "us-east-1"}, "tctx": {"cnst": {"region": "eu-west-1"}}}))),
            Some(Reason::Region),
        ),
        (
            "window",
            at(&with(json!({"tctx": {"cnst": {"window": [{"start": "00:00", "end": "00:01"}]}}}))),
            Some(Reason::Window),
        ),
        ("max_uses in tctx", at(&with(json!({"tctx": {"cnst": {"max_uses": 1}}}))), Some(Reason::MalformedConstraint)),
        ("paths in tctx", at(&with(json!({"tctx": {"cnst": {"paths": ["/x"]}}}))), Some(Reason::MalformedConstraint)),
        ("unknown in tctx", at(&with(json!({"tctx": {"cnst": {"geo": "x"}}}))), Some(Reason::UnknownConstraint)),
        ("tctx not an object", at(&with(json!({"tctx": "x"}))), Some(Reason::IncompleteTxnToken)),
    ];
    for (name, host, want) in &cases {
        assert_eq!(verdict(&mut sc, host), *want, "case: {name}");
    }
    // Wrong `typ` in the header: not a Txn-Token.
    let typed = cjwt_core::mint::mint_raw(gw, r#"{"alg":"ES256","kid":"gw1","typ":"JWT"}"#, &good.to_string());
    assert_eq!(verdict(&mut sc, &at(&typed)), Some(Reason::WrongTyp));
    // A rule that wants an access token never takes a Txn-Token for one.
    let mut mixed = sidecar(json!({"default_rule": {"auth": "required"}}));
    assert_eq!(
        verdict(&mut mixed, &StaticHost::get("/x").bearer(&signed(&good))),
        Some(Reason::TxnTokenInAuthorization)
    );
}

#[test]
fn a_txn_token_bound_to_the_caller_is_refused_from_any_other() {
    const GATEWAY: &str = "spiffe://mesh.example/ns/edge/sa/gateway";
    const ORDERS: &str = "spiffe://mesh.example/ns/shop/sa/orders";
    let gw = gateway_key();
    let token = txn_token(gw, "gw1", &txn_claims(NOW, json!({"req_wl": GATEWAY})));
    let with = |caller: Value| {
        sidecar(json!({
            "rules": [{"match": {"path": "/ledger/**"}, "auth": "txn_token", "require": {"caller": caller}}]
        }))
    };
    let at = || StaticHost::get("/ledger/1").header("txn-token", &token);
    let peer = |uri: &str| at().property(&["connection", "uri_san_peer_certificate"], uri);
    let xfcc = |value: &str| at().header("x-forwarded-client-cert", value);
    // Without `identities`, the caller must be the Txn-Token's `req_wl`.
    let mut by_req_wl = with(json!({"from": "peer"}));
    let cases: Vec<(&str, StaticHost, Option<Reason>)> = vec![
        ("the requesting workload", peer(GATEWAY), None),
        ("another workload", peer(ORDERS), Some(Reason::CallerMismatch)),
        ("no peer certificate", at(), Some(Reason::CallerUnidentified)),
        ("an empty URI SAN", peer(""), Some(Reason::CallerUnidentified)),
        // The header is not the peer: a client cannot claim an identity with it.
        ("XFCC is not read for `peer`", xfcc(&format!("URI={GATEWAY}")), Some(Reason::CallerUnidentified)),
    ];
    for (name, host, want) in &cases {
        assert_eq!(verdict(&mut by_req_wl, host), *want, "peer, req_wl: {name}");
    }
    // A listed set, read from the element the trusted hop appended.
    let mut listed = with(json!({"from": "xfcc", "trusted_hops": 1, "identities": [ORDERS]}));
    let hash = "a".repeat(64);
    let cases: Vec<(&str, StaticHost, Option<Reason>)> = vec![
        ("listed", xfcc(&format!("Hash={hash};URI={ORDERS}")), None),
        ("quoted", xfcc(&format!("Hash={hash};URI=\"{ORDERS}\"")), None),
        ("req_wl is not listed", xfcc(&format!("URI={GATEWAY}")), Some(Reason::CallerMismatch)),
        (
            "a client's element before the trusted hop's",
            xfcc(&format!("URI={ORDERS},URI={GATEWAY}")),
            Some(Reason::CallerMismatch),
        ),
        ("no URI", xfcc(&format!("Hash={hash}")), Some(Reason::CallerUnidentified)),
        ("two URIs", xfcc(&format!("URI={ORDERS};URI={ORDERS}")), Some(Reason::CallerUnidentified)),
        ("no header", at(), Some(Reason::CallerUnidentified)),
        ("the peer is not read for `xfcc`", peer(ORDERS), Some(Reason::CallerUnidentified)),
        ("malformed", xfcc(&format!("URI=\"{ORDERS}")), Some(Reason::CertificateHeaderMalformed)),
    ];
    for (name, host, want) in &cases {
        assert_eq!(verdict(&mut listed, host), *want, "xfcc, listed: {name}");
    }
    // Two trusted hops: the element two places from the right.
    let mut two = with(json!({"from": "xfcc", "trusted_hops": 2, "identities": [ORDERS]}));
    assert_eq!(verdict(&mut two, &xfcc(&format!("URI={ORDERS},URI={GATEWAY}"))), None);
    assert_eq!(verdict(&mut two, &xfcc(&format!("URI={ORDERS}"))), Some(Reason::CallerUnidentified));
    // The binding is checked before the rule's other requirements, after the token.
    let expired =
        txn_token(gw, "gw1", &txn_claims(NOW, json!({"req_wl": GATEWAY, "iat": NOW - 400, "exp": NOW - 340})));
    let host = StaticHost::get("/ledger/1").header("txn-token", &expired);
    assert_eq!(verdict(&mut by_req_wl, &host), Some(Reason::Expired));
}

#[test]
fn the_caller_binding_is_compiled_strictly() {
    let provider = json!({"name": "tts", "kind": "txn_token", "trust_domain": TRUST_DOMAIN,
                          "jwks": {"keys": [gateway_key().public_jwk(Some("gw1"))]}});
    let refused = |rule: Value| {
        let cfg = json!({"providers": [provider.clone()], "rules": [rule], "default_rule": {"auth": "none"}});
        Config::from_json(cfg.to_string().as_bytes()).unwrap_err().to_string()
    };
    let txn = |caller: Value| json!({"match": {"path": "/**"}, "auth": "txn_token", "require": {"caller": caller}});
    assert!(refused(txn(json!({"from": "xfcc"}))).contains("rules[0].require.caller.trusted_hops"));
    assert!(refused(txn(json!({"from": "xfcc", "trusted_hops": 11}))).contains("must be 1..=10"));
    assert!(refused(txn(json!({"from": "peer", "trusted_hops": 1}))).contains("only applies"));
    assert!(refused(txn(json!({"from": "header"}))).contains("rules[0].require.caller.from"));
    assert!(refused(txn(json!({"from": "peer", "identities": []}))).contains("identities"));
    assert!(refused(txn(json!({"from": "peer", "spiffe": true}))).contains("spiffe"));
    let bearer = json!({"match": {"path": "/**"}, "require": {"caller": {"from": "peer"}}});
    assert!(refused(bearer).contains("only applies to `auth: txn_token`"));
}

#[test]
fn the_configuration_refuses_what_cannot_hold() {
    let provider = json!({"name": "tts", "kind": "txn_token", "trust_domain": TRUST_DOMAIN,
                          "jwks": {"keys": [gateway_key().public_jwk(Some("gw1"))]}});
    let issue =
        json!({"trust_domain": TRUST_DOMAIN, "workload": "gw", "key": {"file": gateway_key_file()}, "scope": "s"});
    let refused = |cfg: Value| Config::from_json(cfg.to_string().as_bytes()).err().map(|e| e.field);
    let base = config_json(json!({}));
    let with = |extra: Value| {
        let mut c = base.clone();
        merge(&mut c, extra);
        c
    };
    let providers = |extra: Vec<Value>| {
        let mut list = base["providers"].as_array().unwrap().clone();
        list.extend(extra);
        json!(list)
    };
    for (cfg, field) in [
        (with(json!({"default_rule": {"auth": "txn_token"}})), "default_rule.auth"),
        (
            with(json!({"providers": providers(vec![provider.clone(), json!({"name": "tts2", "kind": "txn_token",
            "trust_domain": "x", "jwks": {"keys": [gateway_key().public_jwk(Some("gw1"))]}})])})),
            "providers[2].kind",
        ),
        (
            with(
                json!({"providers": providers(vec![json!({"name": "t", "kind": "txn_token", "jwks": {"keys": []}})])}),
            ),
            "providers[1].trust_domain",
        ),
        (with(json!({"rules": [{"require": {"req_wl": ["gw"]}}]})), "rules[0].require.req_wl"),
        (with(json!({"rules": [{"txn_scope": "s"}]})), "rules[0].txn_scope"),
        (
            with(
                json!({"transaction_tokens": {"issue": issue.clone()}, "providers": providers(vec![provider.clone()]),
                     "rules": [{"auth": "txn_token"}]}),
            ),
            "rules[0].auth",
        ),
        (
            with(json!({"transaction_tokens": {"issue": {"trust_domain": TRUST_DOMAIN, "workload": "gw",
                     "key": {"env": "CJWT_TEST_NO_SUCH_VARIABLE"}}}})),
            "transaction_tokens.issue.key.env",
        ),
        (
            with(json!({"transaction_tokens": {"issue": {"trust_domain": TRUST_DOMAIN, "workload": "gw",
                     "key": {"file": gateway_key_file()}, "lifetime_seconds": 301}}})),
            "transaction_tokens.issue.lifetime_seconds",
        ),
        (
            with(json!({"transaction_tokens": {"issue": {"trust_domain": TRUST_DOMAIN, "workload": "gw",
                     "key": {"file": gateway_key_file()}}}})),
            "default_rule.txn_scope",
        ),
    ] {
        assert_eq!(refused(cfg.clone()), Some(field.to_string()), "{cfg}");
    }
    // A key that is not Ed25519 or P-256 is refused without quoting it.
    let rsa = std::env::temp_dir().join(format!("cjwt-txn-core-rsa-{}.pem", std::process::id()));
    std::fs::write(&rsa, key(Algorithm::RS256).to_pem().unwrap()).unwrap();
    let e = Config::from_json(
        with(json!({"transaction_tokens": {"issue": {"trust_domain": TRUST_DOMAIN, "workload": "gw", "scope": "s",
            "key": {"file": rsa.to_string_lossy()}}}}))
        .to_string()
        .as_bytes(),
    )
    .unwrap_err();
    assert_eq!(e.field, "transaction_tokens.issue.key");
    assert!(!e.message.contains("BEGIN"), "{e}");
    // The key's Debug never shows it.
    let cfg = Config::from_json(with(json!({"transaction_tokens": {"issue": issue}})).to_string().as_bytes()).unwrap();
    assert!(!format!("{cfg:?}").contains("BEGIN") && format!("{cfg:?}").contains("TxnSigningKey(ES256)"));
}

/// The Txn-Token provider's keys may be fetched (`remote_jwks`), as any
/// provider's: without them the refusal names the provider, so that the
/// adapter fetches and decides again; with them the Txn-Token is allowed.
#[test]
fn a_txn_token_provider_with_remote_keys_waits_for_them() {
    let cfg = json!({
        "providers": [
            {"name": "corp", "issuer": "https://idp.example.com",
             "jwks": {"keys": [key(Algorithm::EdDSA).public_jwk(Some("k1"))]}},
            {"name": "tts", "kind": "txn_token", "trust_domain": TRUST_DOMAIN,
             "remote_jwks": {"cluster": "tts", "path": "/jwks"}}],
        "default_rule": {"auth": "txn_token"}
    });
    let mut sc = engine_for(&cfg);
    let host = StaticHost::get("/x").header("txn-token", &txn_token(gateway_key(), "gw1", &txn_claims(NOW, json!({}))));
    let mut store = cjwt_core::jwks::store::Fetched::new(2);
    let mut decide = |store: &cjwt_core::jwks::store::Fetched| {
        sc.decide_with(
            &host,
            store,
            &cjwt_core::keys::host_crypto::PureRust,
            &mut MemoryCounter::default(),
            &mut cjwt_core::sender::replay::NoReplayCache,
        )
        .decision
    };
    match decide(&store) {
        Decision::Deny(d) => assert_eq!((d.reason, d.provider), (Reason::KeysUnavailable, Some(1))),
        other => panic!("{other:?}"),
    }
    let jwk = gateway_key().public_jwk(Some("gw1"));
    let key = cjwt_core::keys::key::VerificationKey::from_jwk(jwk.as_object().unwrap(), None).unwrap();
    store.set(1, vec![key]);
    assert!(matches!(decide(&store), Decision::Allow { .. }));
}
