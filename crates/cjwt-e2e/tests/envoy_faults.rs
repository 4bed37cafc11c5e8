//! Fail closed in a real Envoy: a VM fault gives 503 and the upstream sees
//! nothing; under FAIL_RELOAD the next request gets a fresh VM; and a fresh VM
//! does not hand out fresh `max_uses` (the counters live in shared data).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::mint;
use cjwt_harness::envoy::{fault_build_path, Envoy, Options};
use cjwt_harness::*;
use serde_json::json;
use std::time::Duration;

/// FAIL_RELOAD: after the reload backoff (1 s by default) a request gets a fresh
/// VM (the native module serves at once). Probes without a token: 503 while there
/// is no VM, 401 from a fresh one; nothing else.
fn wait_for_a_fresh_vm(envoy: &Envoy) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let probe = envoy.get("/x", &[]);
        if probe.status == 401 {
            return;
        }
        assert_eq!(probe.status, 503, "without a VM, refused");
        assert!(std::time::Instant::now() < deadline, "no fresh VM within 15 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn vm_fault_is_503_then_a_fresh_vm_serves_and_usage_survives() {
    let envoy =
        Envoy::start(&config_json(json!({})), Options { artifact: Some(fault_build_path()), ..Options::default() });
    let t = format!(
        "Bearer {}",
        mint(key(Algorithm::EdDSA), Some("k1"), &claims_at(now(), json!({"jti": "reload-1", "cnst": {"max_uses": 2}})))
    );
    assert_eq!(envoy.get("/x", &[("authorization", &t)]).status, 200, "use 1");
    let crashed = envoy.get("/x", &[("authorization", &t), ("x-cjwt-fault", "panic")]);
    assert_eq!(crashed.status, 503, "a VM fault fails closed: {}", crashed.body);
    assert_eq!(envoy.upstream.count(), 1, "the faulting request never reached the upstream");
    assert!(envoy.wait_log("injected fault"), "the panic is in Envoy's log");
    wait_for_a_fresh_vm(&envoy);
    assert_eq!(envoy.get("/x", &[("authorization", &t)]).status, 200, "use 2, on a fresh VM");
    let third = envoy.get("/x", &[("authorization", &t)]);
    assert_eq!(third.status, 403, "the reloaded VM must not hand out fresh uses");
    assert_eq!(third.reason().as_deref(), Some("max_uses"));
    assert_eq!(envoy.upstream.count(), 2);
}

/// Right after a fault, inside the reload backoff, no request passes unchecked:
/// without a token it is refused (503 without a VM, or 401 from a fresh one).
#[test]
fn right_after_a_fault_nothing_passes_unchecked() {
    let envoy =
        Envoy::start(&config_json(json!({})), Options { artifact: Some(fault_build_path()), ..Options::default() });
    let t = format!("Bearer {}", mint(key(Algorithm::EdDSA), Some("k1"), &claims_at(now(), json!({}))));
    assert_eq!(envoy.get("/x", &[("authorization", &t), ("x-cjwt-fault", "panic")]).status, 503);
    let mut seen = Vec::new();
    for _ in 0..5 {
        let r = envoy.get("/x", &[]);
        assert!(r.status == 503 || r.status == 401, "unauthenticated request got {}", r.status);
        seen.push(r.status);
    }
    eprintln!("statuses right after the fault: {seen:?}");
    assert_eq!(envoy.upstream.count(), 0);
}

/// SPEC §12: a VM reloaded after a fault starts with the last good key set. Keys
/// are fetched, the identity provider then fails, a fault reloads the VM (wasm;
/// the native module keeps its process memory): a valid token is still accepted,
/// never 401 `keys_unavailable` because the new VM's first fetch failed.
#[test]
fn after_a_fault_the_last_good_keys_serve_while_the_identity_provider_is_down() {
    let k = cjwt_core::mint::SigningKey::generate(Algorithm::EdDSA).unwrap();
    let jwks = json!({"keys": [k.public_jwk(Some("r1"))]}).to_string();
    let server = cjwt_harness::envoy::JwksServer::start(&jwks);
    let iss = "https://idp.example.com";
    let cfg = json!({"providers": [{"name": "idp", "issuer": iss,
        "remote_jwks": {"cluster": "idp", "path": "/jwks.json", "timeout_ms": 500}}]});
    let opts = Options {
        artifact: Some(fault_build_path()),
        clusters: cjwt_harness::envoy::cluster("idp", server.port),
        ..Options::default()
    };
    let envoy = Envoy::start(&cfg, opts);
    let t = format!("Bearer {}", mint(&k, Some("r1"), &claims_at(now(), json!({"iss": iss}))));
    assert_eq!(envoy.get("/x", &[("authorization", &t)]).status, 200, "keys fetched");
    server.set(500, "identity provider down");
    assert_eq!(envoy.get("/x", &[("authorization", &t), ("x-cjwt-fault", "panic")]).status, 503);
    wait_for_a_fresh_vm(&envoy);
    let r = envoy.get("/x", &[("authorization", &t)]);
    assert_eq!((r.status, r.reason()), (200, None), "the last good keys serve after the reload: {}", r.body);
}
