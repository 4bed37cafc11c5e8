//! `make docker-test` (CJWT_BUILD=wasm; the native build runs too): Transaction
//! Tokens (SPEC §14) across containers. Three Envoys of the locally built
//! `cjwt-envoy` image on a Docker network the test creates and removes: the
//! gateway (issues), A's sidecar and B's sidecar (enforce), with two workloads
//! between them (harness relays on this host, reached by the containers through
//! the network's gateway address, passing on the `Txn-Token` header only):
//!
//! ```text
//! client ─► gateway ─► relay A ─► A's sidecar ─► relay B ─► B's sidecar ─► echo
//! ```
//!
//! The client is this host: every Envoy sees it as the network's gateway address.
//! A second gateway exchanges the external token at the trust domain's
//! Txn-Token Service (the harness's, RFC 8693, on this host) instead of signing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::{mint, SigningKey};
use cjwt_harness::docker::{self, Container, ContainerSpec, Network};
use cjwt_harness::envoy::{build, module_dir, repo_root, wasm_path, Build, Relay};
use cjwt_harness::etcd::http_with;
use cjwt_harness::said::wait_until;
use cjwt_harness::txn_service::{TxnService, KID};
use cjwt_harness::*;
use serde_json::{json, Value};
use std::time::Duration;

const LISTENER: u16 = 10000;
const ADMIN: u16 = 9901;
/// The environment variable the gateway reads its signing key from.
const KEY_ENV: &str = "CJWT_TXN_KEY";

/// The gateway's key: the test ES256 key (the IdP signs with EdDSA `k1`).
fn gateway_key() -> &'static SigningKey {
    key(Algorithm::ES256)
}

/// The Txn-Token Service's key.
fn service_key() -> &'static SigningKey {
    static KEY: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate(Algorithm::EdDSA).unwrap())
}

struct Chain {
    gateway: Container,
    /// The gateway that exchanges at `service` instead of signing.
    exchanger: Container,
    service: TxnService,
    a: Container,
    b: Container,
    relay_a: Relay,
    relay_b: Relay,
    /// The client's address as the Envoys see it.
    client: String,
    _echo: Container,
    dir: std::path::PathBuf,
    // Dropped last: the containers above go first.
    net: Network,
}

/// The Txn-Token provider of the trust domain: the signing gateway's key and the service's.
fn txn_provider() -> Value {
    json!({"name": "tts", "kind": "txn_token", "trust_domain": TRUST_DOMAIN,
           "jwks": {"keys": [gateway_key().public_jwk(Some("gw1")), service_key().public_jwk(Some(KID))]}})
}

fn sidecar_plugin() -> Value {
    json!({
        "providers": [txn_provider()],
        "clock_skew_seconds": 0,
        "default_rule": {"auth": "txn_token",
                         "require": {"scopes_any": ["orders.read"], "req_wl": ["gateway.mesh.example"]}}
    })
}

fn gateway_plugin() -> Value {
    config_json(json!({
        "clock_skew_seconds": 0,
        "transaction_tokens": {"issue": {
            "trust_domain": TRUST_DOMAIN, "workload": "gateway.mesh.example",
            "key": {"env": KEY_ENV}, "kid": "gw1"
        }},
        "rules": [{"match": {"path": "/orders/**"}, "txn_scope": "orders.read"}],
        "default_rule": {"auth": "none"}
    }))
}

/// The gateway that exchanges at the Txn-Token Service (cluster `txn_service`).
fn exchanger_plugin() -> Value {
    let mut plugin = gateway_plugin();
    plugin["transaction_tokens"]["issue"] = json!({
        "trust_domain": TRUST_DOMAIN, "workload": "gateway.mesh.example",
        "exchange": {"cluster": "txn_service", "timeout_ms": 1000}
    });
    plugin["providers"].as_array_mut().unwrap().push(txn_provider());
    plugin
}

/// The shipped Docker configuration of the build under test with `plugin`,
/// and `clusters` (name, host, port) added; a cluster named `relay` takes the
/// route to the upstream (else the echo).
fn envoy_yaml(plugin: &Value, clusters: &[(&str, &str, u16)], key_env: bool) -> String {
    let mut out = docker::shipped_config(plugin);
    for (name, host, port) in clusters {
        if *name == "relay" {
            let from = "route: { cluster: upstream }";
            assert!(out.contains(from));
            out = out.replace(from, "route: { cluster: relay }");
        }
        out.push_str(&format!(
            "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: {host}, port_value: {port} }}\n"
        ));
    }
    if key_env && build() == Build::Wasm {
        // The wasm VM sees only the environment variables its vm_config names.
        let from = "runtime: envoy.wasm.runtime.v8";
        assert!(out.contains(from));
        out = out.replace(
            from,
            &format!("{from}\n                  environment_variables: {{ host_env_keys: [{KEY_ENV}] }}"),
        );
    }
    out
}

fn envoy(net: &Network, dir: &std::path::Path, name: &str, host: u8, yaml: &str, key: bool) -> Container {
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(&config, yaml).unwrap();
    let mut spec = ContainerSpec::new(&docker::envoy_image(), name)
        .on(net, host)
        .mount(&config, "/etc/envoy/envoy.yaml", true)
        .args(["envoy", "-c", "/etc/envoy/envoy.yaml", "--concurrency", "1", "-l", "info"]);
    spec = match build() {
        Build::Wasm => spec.mount(wasm_path(), "/etc/envoy/cjwt.wasm", true),
        Build::Native => spec
            .mount(module_dir(), "/etc/envoy/module", true)
            .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", "/etc/envoy/module"),
    };
    if key {
        spec = spec.env(KEY_ENV, &gateway_key().to_pem().unwrap());
    }
    Container::run(spec)
}

impl Chain {
    fn start() -> Chain {
        docker::require_engine();
        docker::require_image(&docker::envoy_image());
        assert!(wasm_path().exists(), "{} is missing: run `make build`", wasm_path().display());
        let net = Network::create("txn");
        let dir = scratch(&format!("docker-txn-{}", std::process::id()));
        let client = net.gateway();
        let echo = Container::run(
            ContainerSpec::new(&docker::envoy_image(), "echo")
                .on(&net, 5)
                .mount(repo_root().join("docker/echo/echo.yaml"), "/etc/envoy/echo.yaml", true)
                .args(["envoy", "-c", "/etc/envoy/echo.yaml", "--concurrency", "1", "-l", "warning"]),
        );
        let (ip_gw, ip_a, ip_b) = (net.ip(21), net.ip(22), net.ip(23));
        let b = envoy(&net, &dir, "sidecar-b", 23, &envoy_yaml(&sidecar_plugin(), &[], false), false);
        let relay_b = Relay::start_between("0.0.0.0:0", &ip_b, LISTENER);
        let a = envoy(
            &net,
            &dir,
            "sidecar-a",
            22,
            &envoy_yaml(&sidecar_plugin(), &[("relay", &client, relay_b.port)], false),
            false,
        );
        let relay_a = Relay::start_between("0.0.0.0:0", &ip_a, LISTENER);
        let gateway = envoy(
            &net,
            &dir,
            "gateway",
            21,
            &envoy_yaml(&gateway_plugin(), &[("relay", &client, relay_a.port)], true),
            true,
        );
        let _ = ip_gw;
        let service = TxnService::start_on("0.0.0.0:0", service_key(), TRUST_DOMAIN, "gateway.mesh.example");
        let clusters = [("relay", client.as_str(), relay_a.port), ("txn_service", client.as_str(), service.port)];
        let exchanger = envoy(&net, &dir, "exchanger", 24, &envoy_yaml(&exchanger_plugin(), &clusters, false), false);
        let chain = Chain { gateway, exchanger, service, a, b, relay_a, relay_b, client, _echo: echo, dir, net };
        for c in [&chain.gateway, &chain.exchanger, &chain.a, &chain.b] {
            let ip = c.ip().unwrap().to_string();
            wait_until(&format!("{} serving", c.name()), Duration::from_secs(60), || {
                http_with(&ip, ADMIN, "GET", "/ready", &[], None, Duration::from_secs(2)).is_ok_and(|r| r.status == 200)
            });
        }
        // The whole chain forwards (the echo listening, the relays reachable).
        let auth = external(json!({}));
        wait_until("the chain forwarding to the echo", Duration::from_secs(60), || {
            chain.ask(&chain.gateway, "/orders/ready", &[("authorization", &auth)]).0 == 200
        });
        chain
    }

    /// GET `path` at `envoy`: the status and the refusal's reason.
    fn ask(&self, envoy: &Container, path: &str, headers: &[(&str, &str)]) -> (u16, Option<String>) {
        let ip = envoy.ip().unwrap();
        let got = http_with(ip, LISTENER, "GET", path, headers, None, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{} at {ip}: {e}", envoy.name()));
        (got.status, got.json().get("reason").and_then(Value::as_str).map(str::to_owned))
    }

    /// cjwt's counter `name` at `envoy` (wasm: `wasmcustom.` names).
    fn stat(&self, envoy: &Container, name: &str) -> u64 {
        let prefix = if build() == Build::Wasm { "wasmcustom." } else { "" };
        let path = format!("/stats?filter=^{prefix}{name}$");
        let got = http_with(envoy.ip().unwrap(), ADMIN, "GET", &path, &[], None, Duration::from_secs(5)).unwrap();
        got.body.lines().filter_map(|l| l.split_once(": ")).filter_map(|(_, v)| v.trim().parse::<u64>().ok()).sum()
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = &self.net;
    }
}

fn external(extra: Value) -> String {
    bearer(&mint(key(Algorithm::EdDSA), Some("k1"), &claims_at(now(), extra)))
}

fn unique(name: &str) -> String {
    format!("{name}-{}-{}", std::process::id(), now())
}

#[test]
fn a_transaction_across_three_envoys() {
    let chain = Chain::start();
    let (a0, b0) = (chain.relay_a.count(), chain.relay_b.count());
    let b_allowed = chain.stat(&chain.b, "cjwt.allowed");

    // An allowed IP reaches B; a refused one stops at the gateway.
    let mine = external(json!({"cnst": {"ip": [format!("{}/32", chain.client)]}}));
    assert_eq!(chain.ask(&chain.gateway, "/orders/1", &[("authorization", &mine)]), (200, None));
    assert_eq!((chain.relay_a.count(), chain.relay_b.count()), (a0 + 1, b0 + 1), "through A to B");
    assert_eq!(chain.stat(&chain.b, "cjwt.allowed"), b_allowed + 1);
    let elsewhere = external(json!({"cnst": {"ip": ["192.0.2.0/24"]}}));
    assert_eq!(chain.ask(&chain.gateway, "/orders/1", &[("authorization", &elsewhere)]), (403, Some("ip".into())));
    assert_eq!(chain.relay_a.count(), a0 + 1, "stopped at the gateway");

    // A one-time token makes exactly one transaction, which reaches B; A and B count nothing.
    let once = external(json!({"jti": unique("once"), "cnst": {"max_uses": 1}}));
    assert_eq!(chain.ask(&chain.gateway, "/orders/1", &[("authorization", &once)]), (200, None));
    assert_eq!(chain.ask(&chain.gateway, "/orders/1", &[("authorization", &once)]), (403, Some("max_uses".into())));
    assert_eq!(chain.relay_b.count(), b0 + 2, "exactly one more transaction reached B");
    for sidecar in [&chain.a, &chain.b] {
        assert_eq!(chain.stat(sidecar, "cjwt.denied"), 0, "{}", sidecar.name());
        assert_eq!(chain.stat(sidecar, "cjwt.denied.max_uses"), 0, "{}", sidecar.name());
    }

    // A client-supplied Txn-Token never reaches A: the gateway's replaces it.
    let forged = txn_token(gateway_key(), "gw1", &txn_claims(now(), json!({"sub": "mallory"})));
    let plain = external(json!({}));
    assert_eq!(
        chain.ask(&chain.gateway, "/orders/1", &[("authorization", &plain), ("txn-token", &forged)]),
        (200, None)
    );
    let at_a = chain.relay_a.received.lock().unwrap().last().unwrap().clone();
    assert_eq!(at_a.header_count("txn-token"), 1);
    assert_ne!(at_a.header("txn-token"), Some(forged.as_str()));
    // Where the gateway needs no token, the client's Txn-Token is removed all the same.
    assert_eq!(
        chain.ask(&chain.gateway, "/health", &[("txn-token", &forged)]),
        (401, Some("missing_txn_token".into()))
    );
    assert_eq!(chain.relay_a.received.lock().unwrap().last().unwrap().header_count("txn-token"), 0);

    // Txn-Tokens A's sidecar refuses, sent to it straight.
    let claims = |extra: Value| txn_claims(now(), extra);
    let impostor = SigningKey::generate(Algorithm::ES256).unwrap();
    let expired = txn_token(gateway_key(), "gw1", &claims(json!({"iat": now() - 120, "exp": now() - 60})));
    let foreign_key = txn_token(&impostor, "gw1", &claims(json!({})));
    let foreign_domain = txn_token(gateway_key(), "gw1", &claims(json!({"aud": "other.example"})));
    let good = txn_token(gateway_key(), "gw1", &claims(json!({})));
    let in_authorization = format!("Bearer {good}");
    let cases: [(&str, (&str, &str), &str); 5] = [
        ("expired", ("txn-token", &expired), "expired"),
        ("signed by another key", ("txn-token", &foreign_key), "bad_signature"),
        ("another trust domain", ("txn-token", &foreign_domain), "wrong_trust_domain"),
        ("carried in Authorization", ("authorization", &in_authorization), "txn_token_in_authorization"),
        ("the external token straight to A", ("authorization", &plain), "missing_txn_token"),
    ];
    let b_before = chain.relay_b.count();
    for (what, header, reason) in cases {
        assert_eq!(chain.ask(&chain.a, "/orders/1", &[header]), (401, Some(reason.to_string())), "{what}");
    }
    assert_eq!(chain.relay_b.count(), b_before, "nothing refused at A went on to B");
    // The good one, straight to A, goes on to B.
    assert_eq!(chain.ask(&chain.a, "/orders/1", &[("txn-token", &good)]), (200, None));

    // Exchanged at the Txn-Token Service instead of signed: the service's
    // Txn-Token crosses A and B.
    let (a1, b1, issued) = (chain.relay_a.count(), chain.relay_b.count(), chain.service.issued());
    assert_eq!(chain.ask(&chain.exchanger, "/orders/1", &[("authorization", &mine)]), (200, None));
    assert_eq!((chain.relay_a.count(), chain.relay_b.count()), (a1 + 1, b1 + 1), "through A to B");
    assert_eq!(chain.service.issued(), issued + 1);
    let at_b = chain.relay_b.received.lock().unwrap().last().unwrap().header("txn-token").unwrap().to_string();
    let header = at_b.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&cjwt_core::encoding::b64::decode(header.as_bytes()).unwrap()).unwrap();
    assert_eq!(header["kid"], KID, "the service signed the Txn-Token B received");
    // An external token refused at the edge is never exchanged.
    assert_eq!(chain.ask(&chain.exchanger, "/orders/1", &[("authorization", &elsewhere)]), (403, Some("ip".into())));
    assert_eq!(chain.service.issued(), issued + 1);
    // The service down: 503, nothing let through.
    chain.service.set_down(true);
    assert_eq!(
        chain.ask(&chain.exchanger, "/orders/1", &[("authorization", &mine)]),
        (503, Some("txn_service_unavailable".into()))
    );
    assert_eq!(chain.relay_a.count(), a1 + 1, "nothing passed the gateway without a Txn-Token");
    chain.service.set_down(false);
    assert_eq!(chain.ask(&chain.exchanger, "/orders/1", &[("authorization", &mine)]), (200, None));
}
