//! Runtime configuration (issue 16, item 2), against both builds: Envoy takes
//! cjwt's configuration at run time the way Istio pushes a `WasmPlugin` change —
//! a listener update from a file Envoy watches (LDS). A good update (a new key,
//! a new rule) applies without a restart and without failing the requests that
//! keep coming; a bad update is refused with the field named in the log while
//! the previous configuration keeps serving; `max_uses` counts and fetched keys
//! survive a good update (the identity provider down meanwhile).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::SigningKey;
use cjwt_harness::envoy::{cluster, send, Envoy, JwksServer, Options};
use cjwt_harness::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ISS: &str = "https://idp.example.com";

fn said(envoy: &Envoy, path: &str, auth: &str) -> (u16, Option<String>) {
    let r = envoy.get(path, &[("authorization", auth)]);
    (r.status, r.reason())
}

/// The provider with `keys` inline.
fn inline(keys: &[(&SigningKey, &str)], extra: Value) -> Value {
    let jwks: Vec<Value> = keys.iter().map(|(k, kid)| k.public_jwk(Some(kid))).collect();
    let mut cfg =
        json!({"providers": [{"name": "corp", "issuer": ISS, "audiences": ["orders-api"], "jwks": {"keys": jwks}}]});
    if let (Value::Object(c), Value::Object(e)) = (&mut cfg, extra) {
        c.extend(e);
    }
    cfg
}

#[test]
fn a_good_update_applies_without_restart_and_fails_no_request_meanwhile() {
    let k1 = key(Algorithm::EdDSA);
    let k2 = key(Algorithm::ES256);
    let envoy = Envoy::start_lds(&inline(&[(k1, "k1")], json!({})), Options { concurrency: 2, ..Options::default() });
    let t1 = bearer_signed(k1, "k1", &claims_at(now(), json!({})));
    let t2 = bearer_signed(k2, "k2", &claims_at(now(), json!({})));
    assert_eq!(said(&envoy, "/orders", &t2), (401, Some("unsupported_algorithm".into())), "no ES256 key yet");
    assert_eq!(said(&envoy, "/admin/users", &t1), (200, None), "no admin rule yet");
    // Traffic that keeps coming through the update, on new connections each time.
    let stop = Arc::new(AtomicBool::new(false));
    let port = envoy.port;
    let traffic: Vec<_> = (0..4)
        .map(|_| {
            let (stop, t1) = (Arc::clone(&stop), t1.clone());
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    statuses.push(send("127.0.0.1", port, "GET", "/orders", &[("authorization", &t1)]).status);
                }
                statuses
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // A new key and a new rule, pushed while the traffic runs.
    envoy.update_plugin_config(&inline(
        &[(k1, "k1"), (k2, "k2")],
        json!({"rules": [{"match": {"path": "/admin/**"}, "require": {"roles_any": ["admin"]}}]}),
    ));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let statuses: Vec<u16> = traffic.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(statuses.len() > 20, "{} requests during the update", statuses.len());
    assert!(statuses.iter().all(|s| *s == 200), "a request failed during the update: {statuses:?}");
    // Both changes apply at once, on every worker, without a restart.
    for _ in 0..8 {
        assert_eq!(said(&envoy, "/orders", &t2), (200, None), "the new key");
        assert_eq!(said(&envoy, "/admin/users", &t1), (403, Some("role".into())), "the new rule");
    }
    let admin = bearer_signed(k1, "k1", &claims_at(now(), json!({"roles": ["admin"]})));
    assert_eq!(said(&envoy, "/admin/users", &admin), (200, None));
}

#[test]
fn a_bad_update_is_refused_naming_the_field_and_the_previous_configuration_serves() {
    let k1 = key(Algorithm::EdDSA);
    let cfg = inline(
        &[(k1, "k1")],
        json!({"rules": [{"match": {"path": "/admin/**"}, "require": {"roles_any": ["admin"]}}]}),
    );
    let envoy = Envoy::start_lds(&cfg, Options { concurrency: 2, ..Options::default() });
    let t1 = bearer_signed(k1, "k1", &claims_at(now(), json!({})));
    for (bad, field) in [
        (inline(&[(k1, "k1")], json!({"clock_skew_seconds": 9999})), "clock_skew_seconds"),
        (inline(&[(k1, "k1")], json!({"rules": [{"match": {"path": "/a/**/b"}}]})), "rules[0].match.path"),
        (inline(&[(k1, "k1")], json!({"usage_store": {"etcd": {"cluster": "etcd"}}})), "usage_store.etcd.authority"),
    ] {
        assert!(envoy.try_update_plugin_config(&bad).is_err(), "{field}: the update was applied");
        assert!(envoy.wait_log(field), "the log names {field}:\n{}", envoy.log());
        // The previous configuration, rule included, keeps serving.
        assert_eq!(said(&envoy, "/orders", &t1), (200, None));
        assert_eq!(said(&envoy, "/admin/users", &t1), (403, Some("role".into())));
    }
}

#[test]
fn max_uses_counts_and_fetched_keys_survive_a_good_update() {
    let k1 = SigningKey::generate(Algorithm::ES256).unwrap();
    let server = JwksServer::start(&json!({"keys": [k1.public_jwk(Some("k1"))]}).to_string());
    let remote = |extra: Value| {
        let mut cfg = json!({"providers": [{"name": "idp", "issuer": ISS, "remote_jwks":
            {"cluster": "idp", "path": "/jwks.json", "refresh_seconds": 600, "min_refetch_seconds": 600}}]});
        if let (Value::Object(c), Value::Object(e)) = (&mut cfg, extra) {
            c.extend(e);
        }
        cfg
    };
    let opts = || Options { concurrency: 2, clusters: cluster("idp", server.port), ..Options::default() };
    let envoy = Envoy::start_lds(&remote(json!({})), opts());
    let plain = bearer_signed(&k1, "k1", &claims_at(now(), json!({})));
    let twice = bearer_signed(&k1, "k1", &claims_at(now(), json!({"jti": "twice", "cnst": {"max_uses": 2}})));
    let deadline = Instant::now() + Duration::from_secs(10);
    while said(&envoy, "/orders", &plain) != (200, None) {
        assert!(Instant::now() < deadline, "no keys");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(said(&envoy, "/orders", &twice), (200, None), "first use");
    // The identity provider goes down, then a new configuration (a new rule) is pushed.
    server.set(503, "down");
    let hits = server.hits();
    envoy.update_plugin_config(&remote(
        json!({"rules": [{"match": {"path": "/admin/**"}, "require": {"roles_any": ["admin"]}}]}),
    ));
    assert_eq!(said(&envoy, "/admin/users", &plain), (403, Some("role".into())), "the update applied");
    // The keys fetched before the update still verify (the provider answers 503 now).
    for _ in 0..8 {
        assert_eq!(said(&envoy, "/orders", &plain), (200, None), "fetched keys survive the update");
    }
    // The count carried over: one use left, then used up.
    assert_eq!(said(&envoy, "/orders", &twice), (200, None), "second use");
    assert_eq!(said(&envoy, "/orders", &twice), (403, Some("max_uses".into())), "the count survived");
    eprintln!("JWKS fetches after the update (all answered 503): {}", server.hits() - hits);
}
