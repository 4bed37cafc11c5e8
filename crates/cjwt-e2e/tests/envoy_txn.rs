//! Transaction Tokens (SPEC §14) through a chain of real Envoys on loopback,
//! in the build `CJWT_BUILD` names: a client calls the gateway Envoy (cjwt
//! verifies the external token and issues a Txn-Token), which forwards to a
//! workload (the harness [`Relay`]: it propagates `Txn-Token` only), which
//! calls the sidecar Envoy (cjwt enforces the Txn-Token) in front of the
//! service (the sidecar's echo upstream: "the end").
//! Requires `make build` and the project virtualenv (`make envoy`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::encoding::b64;
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::{mint, SigningKey};
use cjwt_harness::envoy::{build, cluster, Build, Envoy, Options, Relay};
use cjwt_harness::txn_service::{TxnService, KID};
use cjwt_harness::*;
use serde_json::{json, Value};

/// The environment variable the gateway reads its signing key from.
const KEY_ENV: &str = "CJWT_TXN_KEY";

/// The gateway's key: the test ES256 key (the IdP signs with EdDSA `k1`).
fn gateway_key() -> &'static SigningKey {
    key(Algorithm::ES256)
}

struct Chain {
    gateway: Envoy,
    relay: Relay,
    sidecar: Envoy,
}

fn sidecar_config() -> Value {
    json!({
        "providers": [{"name": "tts", "kind": "txn_token", "trust_domain": TRUST_DOMAIN,
                       "jwks": {"keys": [gateway_key().public_jwk(Some("gw1"))]}}],
        "clock_skew_seconds": 0,
        "default_rule": {"auth": "txn_token",
                         "require": {"scopes_any": ["orders.read"], "req_wl": ["gateway.mesh.example"]}}
    })
}

/// The three hops. The gateway allows `/orders/**` with an external token
/// (Txn-Token scope `orders.read`) and everything else without one.
fn chain() -> Chain {
    let sidecar = Envoy::start(&sidecar_config(), Options::default());
    let relay = Relay::start(sidecar.port);
    let gateway_config = config_json(json!({
        "clock_skew_seconds": 0,
        "transaction_tokens": {"issue": {
            "trust_domain": TRUST_DOMAIN, "workload": "gateway.mesh.example",
            "key": {"env": KEY_ENV}, "kid": "gw1"
        }},
        "rules": [{"match": {"path": "/orders/**"}, "txn_scope": "orders.read"}],
        "default_rule": {"auth": "none"}
    }));
    let mut edits = vec![("route: { cluster: upstream }".to_string(), "route: { cluster: relay }".to_string())];
    if build() == Build::Wasm {
        // The wasm VM sees only the environment variables its vm_config names.
        edits.push((
            "runtime: envoy.wasm.runtime.v8".to_string(),
            format!("runtime: envoy.wasm.runtime.v8\n                  environment_variables: {{ host_env_keys: [{KEY_ENV}] }}"),
        ));
    }
    let gateway = Envoy::start(
        &gateway_config,
        Options {
            edits,
            clusters: cluster("relay", relay.port),
            env: vec![(KEY_ENV.to_string(), gateway_key().to_pem().unwrap())],
            ..Options::default()
        },
    );
    Chain { gateway, relay, sidecar }
}

fn external(extra: Value) -> String {
    bearer(&mint(key(Algorithm::EdDSA), Some("k1"), &claims_at(now(), extra)))
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&b64::decode(part.as_bytes()).unwrap()).unwrap()
}

/// The Txn-Token the end received last.
fn last_txn_token(chain: &Chain) -> String {
    chain.sidecar.upstream.last().unwrap().header("txn-token").unwrap().to_string()
}

#[test]
fn an_allowed_ip_reaches_the_end_and_a_refused_one_stops_at_the_gateway() {
    let chain = chain();
    let auth = external(json!({"cnst": {"ip": ["127.0.0.2/32"]}}));
    let r = chain.gateway.request("127.0.0.2", "GET", "/orders/1", &[("authorization", &auth)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(chain.sidecar.upstream.count(), 1, "the request reached the end");
    // The Txn-Token the gateway issued reached the end unchanged.
    let at_relay = chain.relay.received.lock().unwrap()[0].header("txn-token").unwrap().to_string();
    let txn = last_txn_token(&chain);
    assert_eq!(txn, at_relay);
    let p = payload(&txn);
    assert_eq!(p["rctx"]["req_ip"], "127.0.0.2", "the client address the gateway decided with");
    assert_eq!(p["rctx"]["authn"], "bearer");
    assert_eq!(p["tctx"]["cnst"], json!({"ip": ["127.0.0.2/32"]}));
    assert_eq!(
        (p["aud"].as_str(), p["scope"].as_str(), p["sub"].as_str()),
        (Some(TRUST_DOMAIN), Some("orders.read"), Some("alice"))
    );
    // The sidecar's peer is the relay (127.0.0.1): the `ip` held for rctx.req_ip.
    assert_eq!(chain.sidecar.stat("cjwt.allowed"), 1);

    let r = chain.gateway.request("127.0.0.3", "GET", "/orders/1", &[("authorization", &auth)]);
    assert_eq!((r.status, r.reason().as_deref()), (403, Some("ip")));
    assert_eq!(chain.relay.count(), 1, "stopped at the gateway");
    assert_eq!(chain.gateway.stat("cjwt.denied.ip"), 1);
}

#[test]
fn a_one_time_token_makes_exactly_one_transaction() {
    let chain = chain();
    let auth = external(json!({"jti": format!("once-{}", std::process::id()), "cnst": {"max_uses": 1}}));
    let r = chain.gateway.get("/orders/1", &[("authorization", &auth)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = chain.gateway.get("/orders/1", &[("authorization", &auth)]);
    assert_eq!((r.status, r.reason().as_deref()), (403, Some("max_uses")));
    assert_eq!(chain.relay.count(), 1);
    assert_eq!(chain.sidecar.upstream.count(), 1, "exactly one transaction reached the end");
    // The use was consumed at the edge: the Txn-Token carries no `max_uses`,
    // and the sidecar counted nothing.
    let p = payload(&last_txn_token(&chain));
    assert!(p["tctx"].get("cnst").is_none(), "{p}");
    assert_eq!(chain.sidecar.stat("cjwt.allowed"), 1);
    assert_eq!(chain.sidecar.stat("cjwt.denied"), 0);
    // The same Txn-Token again, straight to the sidecar (within its lifetime):
    // nothing there counts uses.
    let txn = last_txn_token(&chain);
    assert_eq!(chain.sidecar.get("/orders/1", &[("txn-token", &txn)]).status, 200);
}

#[test]
fn txn_tokens_the_sidecar_refuses() {
    let chain = chain();
    // One good Txn-Token, from the gateway, that expires 2 s from now (it never
    // outlives the external token).
    let auth = external(json!({"exp": now() + 2}));
    assert_eq!(chain.gateway.get("/orders/1", &[("authorization", &auth)]).status, 200);
    let txn = last_txn_token(&chain);
    let claims = payload(&txn);
    let sign = |k: &SigningKey, claims: &Value| txn_token(k, "gw1", claims);
    let impostor = SigningKey::generate(Algorithm::ES256).unwrap();
    let mut foreign = claims.clone();
    foreign["aud"] = json!("other.example");
    let bearer_txn = format!("Bearer {txn}");
    // (case, headers, status, reason)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("signed by another key", vec![("txn-token", sign(&impostor, &claims))], 401, "bad_signature"),
        ("foreign trust domain", vec![("txn-token", sign(gateway_key(), &foreign))], 401, "wrong_trust_domain"),
        ("carried in Authorization", vec![("authorization", bearer_txn)], 401, "txn_token_in_authorization"),
        ("the external token straight to the sidecar", vec![("authorization", auth.clone())], 401, "missing_txn_token"),
    ];
    for (name, headers, status, reason) in &cases {
        let refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let r = chain.sidecar.get("/orders/1", &refs);
        assert_eq!((r.status, r.reason().as_deref()), (*status, Some(*reason)), "{name}: {}", r.body);
        assert_eq!(chain.sidecar.stat(&format!("cjwt.denied.{reason}")), 1, "{name}");
    }
    // Replayed after `exp`.
    std::thread::sleep(std::time::Duration::from_millis(3100));
    let r = chain.sidecar.get("/orders/1", &[("txn-token", &txn)]);
    assert_eq!((r.status, r.reason().as_deref()), (401, Some("expired")));
    assert_eq!(chain.sidecar.upstream.count(), 1, "only the gateway's request reached the end");
}

#[test]
fn a_client_supplied_txn_token_is_stripped_at_the_gateway() {
    let chain = chain();
    // A Txn-Token the client made itself with the gateway's key: valid at the
    // sidecar, but the gateway is the only source of Txn-Tokens.
    let forged = txn_token(gateway_key(), "gw1", &txn_claims(now(), json!({"sub": "mallory"})));
    assert_eq!(chain.sidecar.get("/orders/1", &[("txn-token", &forged)]).status, 200, "the forgery is well made");
    let auth = external(json!({}));
    let r = chain.gateway.get("/orders/1", &[("authorization", &auth), ("txn-token", &forged)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let at_relay = chain.relay.received.lock().unwrap()[0].clone();
    assert_eq!(at_relay.header_count("txn-token"), 1);
    assert_ne!(at_relay.header("txn-token"), Some(forged.as_str()));
    assert_eq!(payload(&last_txn_token(&chain))["sub"], "alice");
    // Where the gateway lets a request through without a token, the client's
    // Txn-Token is removed all the same: the sidecar sees none.
    let r = chain.gateway.get("/health", &[("txn-token", &forged)]);
    assert_eq!((r.status, r.reason().as_deref()), (401, Some("missing_txn_token")));
    assert_eq!(chain.relay.received.lock().unwrap()[1].header_count("txn-token"), 0);
}

/// The Txn-Token Service's key (exchanged issuing).
fn service_key() -> &'static SigningKey {
    static KEY: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate(Algorithm::EdDSA).unwrap())
}

struct ExchangeChain {
    gateway: Envoy,
    service: TxnService,
    relay: Relay,
    sidecar: Envoy,
}

/// The three hops, the gateway exchanging at the harness' Txn-Token Service
/// (its keys inline at the gateway and the sidecar) instead of signing.
fn exchange_chain() -> ExchangeChain {
    let service = TxnService::start(service_key(), TRUST_DOMAIN, "gateway.mesh.example");
    let tts = json!({"name": "tts", "kind": "txn_token", "trust_domain": TRUST_DOMAIN, "jwks": service.jwks()});
    let mut sidecar_cfg = sidecar_config();
    sidecar_cfg["providers"] = json!([tts]);
    let sidecar = Envoy::start(&sidecar_cfg, Options::default());
    let relay = Relay::start(sidecar.port);
    let mut gateway_config = config_json(json!({
        "clock_skew_seconds": 0,
        "transaction_tokens": {"issue": {
            "trust_domain": TRUST_DOMAIN, "workload": "gateway.mesh.example",
            "exchange": {"cluster": "txn_service", "timeout_ms": 1000}
        }},
        "rules": [{"match": {"path": "/orders/**"}, "txn_scope": "orders.read"}],
        "default_rule": {"auth": "none"}
    }));
    gateway_config["providers"].as_array_mut().unwrap().push(tts);
    let gateway = Envoy::start(
        &gateway_config,
        Options {
            edits: vec![("route: { cluster: upstream }".to_string(), "route: { cluster: relay }".to_string())],
            clusters: format!("{}{}", cluster("relay", relay.port), cluster("txn_service", service.port)),
            ..Options::default()
        },
    );
    ExchangeChain { gateway, service, relay, sidecar }
}

#[test]
fn an_exchanged_txn_token_crosses_the_chain() {
    let chain = exchange_chain();
    let auth = external(json!({"cnst": {"ip": ["127.0.0.2/32"]}}));
    let r = chain.gateway.request(
        "127.0.0.2",
        "GET",
        "/orders/1",
        &[("authorization", &auth), ("txn-token", "from-the-client")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(chain.service.issued(), 1, "one exchange per request");
    assert_eq!(chain.sidecar.upstream.count(), 1, "the request reached the end");
    let at_relay = chain.relay.received.lock().unwrap()[0].clone();
    assert_eq!(at_relay.header_count("txn-token"), 1, "the client's Txn-Token was replaced");
    let txn = chain.sidecar.upstream.last().unwrap().header("txn-token").unwrap().to_string();
    assert_eq!(at_relay.header("txn-token"), Some(txn.as_str()));
    let p = payload(&txn);
    assert!(p["txn"].as_str().unwrap().starts_with("tts-"), "the service's Txn-Token: {p}");
    assert_eq!(p["rctx"]["req_ip"], "127.0.0.2", "request_context carried the client address");
    assert_eq!((p["sub"].as_str(), p["scope"].as_str()), (Some("alice"), Some("orders.read")));
    let header: Value =
        serde_json::from_slice(&b64::decode(txn.split('.').next().unwrap().as_bytes()).unwrap()).unwrap();
    assert_eq!(header["kid"], KID);
    assert_eq!(chain.sidecar.stat("cjwt.allowed"), 1);
    // A refused request is never exchanged.
    let r = chain.gateway.request("127.0.0.3", "GET", "/orders/1", &[("authorization", &auth)]);
    assert_eq!((r.status, r.reason().as_deref()), (403, Some("ip")));
    assert_eq!(chain.service.issued(), 1);
}

#[test]
fn the_txn_token_service_down_is_503_and_nothing_reaches_the_upstream() {
    let chain = exchange_chain();
    chain.service.set_down(true);
    let auth = external(json!({}));
    let r = chain.gateway.get("/orders/1", &[("authorization", &auth)]);
    assert_eq!((r.status, r.reason().as_deref()), (503, Some("txn_service_unavailable")), "{}", r.body);
    assert_eq!(chain.relay.count(), 0, "nothing went upstream without a Txn-Token");
    assert_eq!(chain.sidecar.upstream.count(), 0);
    assert_eq!(chain.gateway.stat("cjwt.denied.txn_service_unavailable"), 1);
    // Up again: the next request goes through.
    chain.service.set_down(false);
    let r = chain.gateway.get("/orders/1", &[("authorization", &auth)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(chain.sidecar.upstream.count(), 1);
}

/// `require.caller` (SPEC §14): a sidecar behind mTLS accepts a Txn-Token only
/// from the workloads it names, by the URI SAN of the caller's certificate
/// (what Istio's `ISTIO_MUTUAL` gives each sidecar), or from the Txn-Token's
/// `req_wl`, read from the XFCC element Envoy itself appends. A Txn-Token
/// lifted from the mesh is refused from anywhere else.
#[test]
fn a_txn_token_bound_to_the_caller_is_refused_from_any_other() {
    const ORDERS: &str = "spiffe://mesh.example/ns/shop/sa/orders";
    const BATCH: &str = "spiffe://mesh.example/ns/shop/sa/batch";
    const GATEWAY: &str = "spiffe://mesh.example/ns/edge/sa/gateway";
    let pki = cjwt_harness::pki::Pki::with_clients(&[
        ("orders", Some(ORDERS)),
        ("batch", Some(BATCH)),
        ("gateway", Some(GATEWAY)),
        ("plain", None),
    ]);
    let sidecar = |caller: Value, mut edits: Vec<(String, String)>| {
        edits.push(pki.tls_edit());
        let config = json!({
            "providers": [{"name": "tts", "kind": "txn_token", "trust_domain": TRUST_DOMAIN,
                           "jwks": {"keys": [gateway_key().public_jwk(Some("gw1"))]}}],
            "default_rule": {"auth": "txn_token", "require": {"caller": caller}}
        });
        Envoy::start(&config, Options { edits, ..Options::default() })
    };
    let txn = txn_token(gateway_key(), "gw1", &txn_claims(now(), json!({"req_wl": GATEWAY})));
    let call = |envoy: &Envoy, cert: Option<&str>, xfcc: Option<&str>| {
        let files = cert.map(|c| pki.client(c));
        let mut headers = vec![("txn-token", txn.as_str())];
        if let Some(x) = xfcc {
            headers.push(("x-forwarded-client-cert", x));
        }
        let (status, body) =
            cjwt_harness::pki::https(envoy.port, files.as_ref().map(|(c, k)| (c.as_path(), k.as_path())), &headers);
        (status, body["reason"].as_str().map(str::to_string))
    };
    let refused = |reason: &str| (401, Some(reason.to_string()));

    // From the peer certificate, a listed identity.
    let listed = sidecar(json!({"from": "peer", "identities": [ORDERS]}), vec![]);
    assert_eq!(call(&listed, Some("orders"), None), (200, None));
    assert_eq!(call(&listed, Some("batch"), None), refused("caller_mismatch"));
    assert_eq!(call(&listed, Some("gateway"), None), refused("caller_mismatch"), "req_wl is not listed");
    assert_eq!(call(&listed, Some("plain"), None), refused("caller_unidentified"), "a certificate without URI SAN");
    assert_eq!(call(&listed, None, None), refused("caller_unidentified"), "no certificate");
    let claimed = format!("URI={ORDERS}");
    assert_eq!(call(&listed, None, Some(&claimed)), refused("caller_unidentified"), "a header is not the peer");
    assert_eq!(listed.upstream.count(), 1);
    assert_eq!(listed.stat("cjwt.denied.caller_mismatch"), 2);
    assert_eq!(listed.stat("cjwt.denied.caller_unidentified"), 3);

    // From the element Envoy appends to `x-forwarded-client-cert` (the sidecar
    // setting), no identities listed: the caller must be the `req_wl`.
    let append = (
        "use_remote_address: true".to_string(),
        "use_remote_address: true\n          forward_client_cert_details: APPEND_FORWARD\n          set_current_client_cert_details: { uri: true }".to_string(),
    );
    let appended = sidecar(json!({"from": "xfcc", "trusted_hops": 1}), vec![append]);
    assert_eq!(call(&appended, Some("gateway"), None), (200, None));
    assert_eq!(call(&appended, Some("orders"), None), refused("caller_mismatch"));
    // A client's own element naming the gateway comes before Envoy's.
    let forged = format!("URI={GATEWAY}");
    assert_eq!(call(&appended, Some("orders"), Some(&forged)), refused("caller_mismatch"));
    // Without mTLS Envoy drops a client's header: nobody is named.
    assert_eq!(call(&appended, None, Some(&forged)), refused("caller_unidentified"));
    assert_eq!(appended.upstream.count(), 1);
    let at_end = appended.upstream.last().unwrap();
    assert!(
        at_end.header("x-forwarded-client-cert").is_some_and(|x| x.contains(&format!("URI={GATEWAY}"))),
        "Envoy wrote the caller's URI SAN: {:?}",
        at_end.header("x-forwarded-client-cert")
    );
}
