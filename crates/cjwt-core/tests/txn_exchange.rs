//! Exchanged issuing (SPEC §14): the gateway exchanges the inbound token at
//! the Txn-Token Service (RFC 8693) and verifies the answer, driven step by
//! step on a fake clock with fake answers, as both adapters execute it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::config::Config;
use cjwt_core::engine::Engine;
use cjwt_core::jwks::store::Fetched;
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::keys::host_crypto::PureRust;
use cjwt_core::lifecycle::request::{Env, RequestFlow, Step, StoreCall};
use cjwt_core::mint::{mint, SigningKey};
use cjwt_core::outcome::metrics::Counter;
use cjwt_core::outcome::plan::{Act, Plan};
use cjwt_core::outcome::Level;
use cjwt_core::reason::Reason;
use cjwt_core::request::static_host::StaticHost;
use cjwt_core::sender::replay::NoReplayCache;
use cjwt_core::testing::{txn_claims, txn_token, TRUST_DOMAIN};
use cjwt_core::txn::exchange;
use cjwt_core::usage::MemoryCounter;
use serde_json::{json, Value};
use std::sync::OnceLock;

const NOW: i64 = 1_800_000_000;
const NOW_MS: u64 = 1_800_000_000_000;
const TIMEOUT_MS: u64 = 500;

fn key(slot: usize, alg: Algorithm) -> &'static SigningKey {
    static KEYS: [OnceLock<SigningKey>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    KEYS[slot].get_or_init(|| SigningKey::generate(alg).unwrap())
}

/// The IdP's key (external tokens).
fn idp() -> &'static SigningKey {
    key(0, Algorithm::EdDSA)
}

/// The Txn-Token Service's key.
fn service() -> &'static SigningKey {
    key(1, Algorithm::ES256)
}

/// A key nobody trusts.
fn stranger() -> &'static SigningKey {
    key(2, Algorithm::ES256)
}

fn config(extra: Value) -> Value {
    let mut cfg = json!({
        "providers": [
            {"name": "corp", "issuer": "https://idp.example.com", "audiences": ["orders-api"],
             "jwks": {"keys": [idp().public_jwk(Some("k1"))]}},
            {"name": "tts", "kind": "txn_token", "trust_domain": TRUST_DOMAIN,
             "jwks": {"keys": [service().public_jwk(Some("s1"))]}}
        ],
        "transaction_tokens": {"issue": {
            "trust_domain": TRUST_DOMAIN, "workload": "gateway.mesh.example", "scope": "orders.read",
            "exchange": {"cluster": "txn-service", "authority": "tts.mesh", "timeout_ms": TIMEOUT_MS}
        }}
    });
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    cfg
}

fn gateway(extra: Value) -> Engine {
    Engine::new(Config::from_json(config(extra).to_string().as_bytes()).unwrap())
}

fn external(extra: Value) -> String {
    let mut claims = json!({"iss": "https://idp.example.com", "sub": "alice", "aud": "orders-api",
                            "iat": NOW - 60, "exp": NOW + 600});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    mint(idp(), Some("k1"), &claims)
}

fn request(token: &str) -> StaticHost {
    StaticHost::get("/orders/1").bearer(token).peer("192.0.2.10:4000").header("txn-token", "from-the-client").at(NOW)
}

fn env<'a>(host: &'a StaticHost, keys: &'a Fetched) -> Env<'a> {
    Env {
        host,
        keys,
        crypto: &PureRust,
        counter: Box::leak(Box::new(MemoryCounter::default())),
        replay: Box::leak(Box::new(NoReplayCache)),
    }
}

fn started(e: &mut Engine, flow: &mut RequestFlow, host: &StaticHost) -> StoreCall {
    match flow.start(e, env(host, &Fetched::new(2)), NOW_MS) {
        Step::AwaitStore(call) => call,
        other => panic!("expected the exchange call, got {other:?}"),
    }
}

fn answered(e: &Engine, flow: &mut RequestFlow, host: &StaticHost, status: &str, body: &str, at_ms: u64) -> Plan {
    let keys = Fetched::new(2);
    match flow.on_answer(e, env(host, &keys), Some(status), body.as_bytes(), body.len(), at_ms) {
        Step::Act(plan) => plan,
        other => panic!("expected a plan, got {other:?}"),
    }
}

fn form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            let mut out = Vec::new();
            let bytes = v.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    out.push(u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap(), 16).unwrap());
                    i += 3;
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            (k.to_string(), String::from_utf8(out).unwrap())
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {name}"))
}

/// The refusal's status and reason, or `None` when forwarded.
fn refused(plan: &Plan) -> Option<(u32, Reason)> {
    match &plan.act {
        Act::Forward(_) => None,
        Act::Refuse(r) => {
            let reason = plan.counters.iter().find_map(|c| match c {
                Counter::DeniedBy(reason) => Some(*reason),
                _ => None,
            });
            Some((r.status, reason.expect("a refusal counts its reason")))
        }
    }
}

fn forwarded_txn_token(plan: &Plan) -> Option<String> {
    match &plan.act {
        Act::Forward(ops) => ops.iter().find(|(n, _)| n == "txn-token").and_then(|(_, v)| v.clone()),
        Act::Refuse(r) => panic!("refused {r:?}"),
    }
}

/// The service's Txn-Token for `alice`, signed by `key`, with `extra` claims.
fn signed(key: &SigningKey, extra: Value) -> String {
    txn_token(key, "s1", &txn_claims(NOW, extra))
}

#[test]
fn the_exchange_is_an_rfc_8693_request_and_its_verified_answer_goes_upstream() {
    let mut e = gateway(json!({}));
    let ext = external(json!({}));
    let host = request(&ext);
    let mut flow = RequestFlow::new();
    let call = started(&mut e, &mut flow, &host);
    assert!(flow.awaits_store());
    assert_eq!(
        (call.cluster.as_str(), call.authority.as_str(), call.path.as_str()),
        ("txn-service", "tts.mesh", "/token")
    );
    assert_eq!(call.timeout_ms, TIMEOUT_MS);
    assert!(!call.records_proof && !call.counts_use);
    assert!(call.headers().contains(&("content-type", "application/x-www-form-urlencoded")));
    let fields = form(std::str::from_utf8(&call.body).unwrap());
    assert_eq!(field(&fields, "grant_type"), "urn:ietf:params:oauth:grant-type:token-exchange");
    assert_eq!(field(&fields, "audience"), TRUST_DOMAIN, "the draft requires the trust domain as audience");
    assert_eq!(field(&fields, "requested_token_type"), "urn:ietf:params:oauth:token-type:txn_token");
    assert_eq!(field(&fields, "subject_token"), ext);
    assert_eq!(field(&fields, "subject_token_type"), "urn:ietf:params:oauth:token-type:access_token");
    assert_eq!(field(&fields, "scope"), "orders.read");
    // A JSON object, form-encoded like every parameter (draft -10), not base64url.
    let context: Value = serde_json::from_str(field(&fields, "request_context")).unwrap();
    assert_eq!(context, json!({"req_ip": "192.0.2.10"}));

    let txn = signed(service(), json!({}));
    let plan = answered(&e, &mut flow, &host, "200", &exchange::answer(&txn), NOW_MS + 20);
    // The service's Txn-Token replaces the client's.
    assert_eq!(forwarded_txn_token(&plan), Some(txn));
    assert!(!flow.awaits_store());
    // A second answer, or a failure after the answer, changes nothing.
    let again = exchange::answer(&signed(service(), json!({})));
    let keys = Fetched::new(2);
    assert!(matches!(
        flow.on_answer(&e, env(&host, &keys), Some("200"), again.as_bytes(), again.len(), NOW_MS),
        Step::Nothing
    ));
    assert!(matches!(flow.on_store_failure(&e, &host, "late"), Step::Nothing));
}

#[test]
fn every_request_is_exchanged_on_its_own() {
    // A Txn-Token names one transaction: no answer is reused.
    let mut e = gateway(json!({}));
    let host = request(&external(json!({})));
    for _ in 0..2 {
        let mut flow = RequestFlow::new();
        started(&mut e, &mut flow, &host);
    }
}

#[test]
fn the_service_answering_an_error_is_503_txn_service_unavailable() {
    let mut e = gateway(json!({}));
    let host = request(&external(json!({})));
    for status in ["400", "401", "500", "503"] {
        let mut flow = RequestFlow::new();
        started(&mut e, &mut flow, &host);
        let body = json!({"error": "invalid_request"}).to_string();
        let plan = answered(&e, &mut flow, &host, status, &body, NOW_MS + 10);
        assert_eq!(refused(&plan), Some((503, Reason::TxnServiceUnavailable)), "{status}");
        assert!(plan.logs.iter().any(|(l, line)| *l == Level::Warn && line.contains(status)), "{:?}", plan.logs);
    }
}

#[test]
fn no_answer_within_timeout_ms_is_503_txn_service_unavailable() {
    let mut e = gateway(json!({}));
    let host = request(&external(json!({})));
    let mut flow = RequestFlow::new();
    started(&mut e, &mut flow, &host);
    // The host times the call out at `timeout_ms`; a lost answer is overdue a second later.
    assert!(!flow.store_overdue(NOW_MS + TIMEOUT_MS));
    assert!(flow.store_overdue(NOW_MS + TIMEOUT_MS + 1001));
    let Step::Act(plan) = flow.on_store_failure(&e, &host, "timeout") else { panic!("expected a plan") };
    assert_eq!(refused(&plan), Some((503, Reason::TxnServiceUnavailable)));
    // A call that cannot be sent at all: the same.
    let mut flow = RequestFlow::new();
    started(&mut e, &mut flow, &host);
    let Step::Act(plan) = flow.on_store_failure(&e, &host, "cluster not found") else { panic!("expected a plan") };
    assert_eq!(refused(&plan), Some((503, Reason::TxnServiceUnavailable)));
}

#[test]
fn an_answer_that_is_not_a_good_txn_token_is_503_txn_exchange_invalid() {
    let mut e = gateway(json!({}));
    let host = request(&external(json!({})));
    let good = signed(service(), json!({}));
    let cases: Vec<(&str, String)> = vec![
        ("garbage", "<html>not json</html>".to_string()),
        ("no token", json!({"issued_token_type": exchange::TXN_TOKEN_TYPE}).to_string()),
        (
            "another token type",
            json!({"access_token": good, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})
                .to_string(),
        ),
        (
            "a bearer token_type",
            json!({"access_token": good, "issued_token_type": exchange::TXN_TOKEN_TYPE, "token_type": "Bearer"})
                .to_string(),
        ),
        (
            "a refresh token beside it",
            json!({"access_token": good, "issued_token_type": exchange::TXN_TOKEN_TYPE, "token_type": "N_A",
                   "refresh_token": "r"})
            .to_string(),
        ),
        ("not a JWS", exchange::answer("abc")),
        ("a foreign key", exchange::answer(&signed(stranger(), json!({})))),
        ("another trust domain", exchange::answer(&signed(service(), json!({"aud": "other.example"})))),
        ("another subject", exchange::answer(&signed(service(), json!({"sub": "mallory"})))),
        ("expired", exchange::answer(&signed(service(), json!({"iat": NOW - 120, "exp": NOW - 60})))),
        ("too long-lived", exchange::answer(&signed(service(), json!({"exp": NOW + 3600})))),
        ("incomplete", exchange::answer(&signed(service(), json!({"txn": null})))),
        ("an access token", exchange::answer(&mint(service(), Some("s1"), &txn_claims(NOW, json!({}))))),
    ];
    for (case, body) in cases {
        let mut flow = RequestFlow::new();
        started(&mut e, &mut flow, &host);
        let plan = answered(&e, &mut flow, &host, "200", &body, NOW_MS + 10);
        assert_eq!(refused(&plan), Some((503, Reason::TxnExchangeInvalid)), "{case}");
    }
}

#[test]
fn a_request_refused_at_the_edge_is_never_exchanged() {
    let mut e = gateway(json!({}));
    let host = StaticHost::get("/orders/1").peer("192.0.2.10:4000").at(NOW);
    let mut flow = RequestFlow::new();
    match flow.start(&mut e, env(&host, &Fetched::new(2)), NOW_MS) {
        Step::Act(plan) => assert_eq!(refused(&plan), Some((401, Reason::MissingToken))),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn the_exchange_comes_before_the_usage_store() {
    let store = json!({"etcd": {"cluster": "etcd", "authority": "etcd.local", "key_prefix": "mesh/uses/", "timeout_ms": 300,
                        "api": "json"}});
    let mut e = gateway(json!({"usage_store": store}));
    let host = request(&external(json!({"jti": "once", "cnst": {"max_uses": 1}})));
    let mut flow = RequestFlow::new();
    let call = started(&mut e, &mut flow, &host);
    assert_eq!(call.cluster, "txn-service");
    let keys = Fetched::new(2);
    let body = exchange::answer(&signed(service(), json!({})));
    match flow.on_answer(&e, env(&host, &keys), Some("200"), body.as_bytes(), body.len(), NOW_MS + 10) {
        Step::AwaitStore(next) => {
            assert_eq!(next.cluster, "etcd");
            assert_eq!(next.content_type, "application/json");
        }
        other => panic!("expected the store call, got {other:?}"),
    }
    // A service that fails uses nothing mesh-wide.
    let mut flow = RequestFlow::new();
    started(&mut e, &mut flow, &host);
    let Step::Act(plan) = flow.on_store_failure(&e, &host, "timeout") else { panic!("expected a plan") };
    assert_eq!(refused(&plan), Some((503, Reason::TxnServiceUnavailable)));
}

#[test]
fn the_configuration_of_the_exchange() {
    let refused_with = |cfg: Value| Config::from_json(cfg.to_string().as_bytes()).unwrap_err().to_string();
    let mut cfg = config(json!({}));
    cfg["providers"].as_array_mut().unwrap().pop();
    assert!(refused_with(cfg).contains("kind: txn_token"));
    let mut cfg = config(json!({}));
    cfg["providers"][1]["trust_domain"] = json!("other.example");
    assert!(refused_with(cfg).contains("same `trust_domain`"));
    let mut cfg = config(json!({}));
    cfg["transaction_tokens"]["issue"]["key"] = json!({"env": "NOPE"});
    assert!(refused_with(cfg).contains("exactly one of `key`"));
    let mut cfg = config(json!({}));
    cfg["transaction_tokens"]["issue"].as_object_mut().unwrap().remove("exchange");
    assert!(refused_with(cfg).contains("exactly one of `key`"));
    for (k, v) in
        [("timeout_ms", json!(0)), ("timeout_ms", json!(10_001)), ("path", json!("token")), ("cluster", json!(""))]
    {
        let mut cfg = config(json!({}));
        cfg["transaction_tokens"]["issue"]["exchange"][k] = v;
        assert!(refused_with(cfg).contains(&format!("exchange.{k}")), "{k}");
    }
    let mut cfg = config(json!({}));
    cfg["transaction_tokens"]["issue"]["kid"] = json!("gw1");
    assert!(refused_with(cfg).contains("the service's"));
    // Defaults: the cluster as authority, `/token`, 1000 ms.
    let mut cfg = config(json!({}));
    cfg["transaction_tokens"]["issue"]["exchange"] = json!({"cluster": "tts"});
    let c = Config::from_json(cfg.to_string().as_bytes()).unwrap();
    let x = c.txn_issue().unwrap().exchange.clone().unwrap();
    assert_eq!((x.authority.as_str(), x.path.as_str(), x.timeout_ms, x.provider), ("tts", "/token", 1000, 1));
}
