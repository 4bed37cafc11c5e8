//! Remote JWKS end to end: a real Envoy fetching keys from a local JWKS server
//! through a cluster — first fetch, periodic refresh, rotation, failures, and a
//! flood of unknown `kid`s that must not become a flood of fetches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::SigningKey;
use cjwt_harness::envoy::{cluster, Envoy, JwksServer, Options};
use cjwt_harness::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ISS: &str = "https://idp.example.com";

fn start(server: &JwksServer, remote: Value, concurrency: u32) -> Envoy {
    let mut r = json!({"cluster": "idp", "path": "/jwks.json", "timeout_ms": 500});
    if let (Value::Object(base), Value::Object(extra)) = (&mut r, remote) {
        base.extend(extra);
    }
    let cfg = json!({"providers": [{"name": "idp", "issuer": ISS, "remote_jwks": r}]});
    Envoy::start(&cfg, Options { concurrency, clusters: cluster("idp", server.port), ..Options::default() })
}

fn bearer_for(key: &SigningKey, kid: &str) -> String {
    bearer_signed(key, kid, &claims_at(now(), json!({"iss": ISS})))
}

#[test]
fn keys_are_fetched_and_rotation_refetches_once() {
    let k1 = SigningKey::generate(Algorithm::ES256).unwrap();
    let k2 = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let server = JwksServer::start(&jwks(&[(&k1, "k1")]));
    let envoy = start(&server, json!({"min_refetch_seconds": 0}), 1);
    // The request waits for the first fetch if it is still under way.
    let r = envoy.get("/x", &[("authorization", &bearer_for(&k1, "k1"))]);
    assert_eq!(r.status, 200, "{}", r.body);
    wait_until("a successful fetch", Duration::from_secs(10), || envoy.stat("cjwt.jwks.fetch_ok") >= 1);
    let before = server.hits();
    // Rotation: the IdP publishes k2; a token signed with it triggers one refetch and waits for it.
    server.set(200, &jwks(&[(&k1, "k1"), (&k2, "k2")]));
    let r = envoy.get("/x", &[("authorization", &bearer_for(&k2, "k2"))]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(server.hits(), before + 1, "exactly one refetch for the new kid");
    // The old key still works, the new one is now known without fetching.
    assert_eq!(envoy.get("/x", &[("authorization", &bearer_for(&k1, "k1"))]).status, 200);
    assert_eq!(envoy.get("/x", &[("authorization", &bearer_for(&k2, "k2"))]).status, 200);
    assert_eq!(server.hits(), before + 1);
}

#[test]
fn a_flood_of_unknown_kids_is_rate_limited() {
    let k1 = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let server = JwksServer::start(&jwks(&[(&k1, "k1")]));
    let envoy = start(&server, json!({"min_refetch_seconds": 60}), 1);
    wait_until("the first fetch", Duration::from_secs(10), || envoy.stat("cjwt.jwks.fetch_ok") >= 1);
    let before = server.hits();
    let stranger = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let mut unknown = 0;
    for i in 0..30 {
        let r = envoy.get("/x", &[("authorization", &bearer_for(&stranger, &format!("random-{i}")))]);
        assert_eq!(r.status, 401);
        unknown += usize::from(r.reason().as_deref() == Some("unknown_key"));
    }
    assert_eq!(unknown, 30);
    assert!(server.hits() <= before + 1, "{} fetches for 30 unknown kids", server.hits() - before);
    assert_eq!(envoy.get("/x", &[("authorization", &bearer_for(&k1, "k1"))]).status, 200);
}

#[test]
fn periodic_refresh_and_failed_refresh_keeps_old_keys() {
    let k1 = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let server = JwksServer::start(&jwks(&[(&k1, "k1")]));
    let envoy = start(&server, json!({"refresh_seconds": 1, "min_refetch_seconds": 60}), 1);
    wait_until("two periodic fetches", Duration::from_secs(10), || envoy.stat("cjwt.jwks.fetch_ok") >= 2);
    // The server breaks: garbage, then an error status, then a huge body.
    for (status, body) in [
        (200, "not json".to_string()),
        (503, "{}".to_string()),
        (200, format!("{{\"keys\":[],\"x\":\"{}\"}}", "a".repeat(300_000))),
    ] {
        let failed = envoy.stat("cjwt.jwks.fetch_failed");
        server.set(status, &body);
        wait_until("a failed refresh", Duration::from_secs(10), || envoy.stat("cjwt.jwks.fetch_failed") > failed);
        assert_eq!(
            envoy.get("/x", &[("authorization", &bearer_for(&k1, "k1"))]).status,
            200,
            "old keys kept after {status}"
        );
    }
}

#[test]
fn no_keys_ever_is_keys_unavailable_and_slow_servers_time_out() {
    let k1 = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let server = JwksServer::start(&jwks(&[(&k1, "k1")]));
    // The server answers after 6 s; the wait is bounded by timeout_ms (300) with margin
    // for a loaded machine (tests run in parallel).
    server.delay(Duration::from_secs(6));
    let envoy = start(&server, json!({"timeout_ms": 300, "min_refetch_seconds": 0}), 1);
    let started = Instant::now();
    let r = envoy.get("/x", &[("authorization", &bearer_for(&k1, "k1"))]);
    assert_eq!(r.status, 401);
    assert_eq!(r.reason().as_deref(), Some("keys_unavailable"));
    assert!(started.elapsed() < Duration::from_secs(4), "the wait is bounded by timeout_ms: {:?}", started.elapsed());
    assert_eq!(envoy.upstream.count(), 0);
    server.delay(Duration::ZERO);
    wait_until("keys after the server recovers", Duration::from_secs(10), || {
        envoy.get("/x", &[("authorization", &bearer_for(&k1, "k1"))]).status == 200
    });
}

#[test]
fn every_worker_gets_the_keys() {
    let k1 = SigningKey::generate(Algorithm::RS256).unwrap();
    let server = JwksServer::start(&jwks(&[(&k1, "k1")]));
    // With the suites' 500 ms, parallel test load once made the start-up fetch time
    // out; the 16 requests then refetched for their kid: 2 fetches (CI, native). What
    // this test checks, one fetch per Envoy, needs that first fetch to answer: 5 s.
    let envoy = start(&server, json!({"timeout_ms": 5000}), 2);
    let t = bearer_for(&k1, "k1");
    let port = envoy.port;
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || {
                cjwt_harness::envoy::send("127.0.0.1", port, "GET", "/x", &[("authorization", &t)]).status
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    std::thread::sleep(Duration::from_millis(500));
    let hits = server.hits();
    eprintln!("JWKS fetches with --concurrency 2: {hits}");
    // One fetch per Envoy (SPEC §12): the wasm VMs share the set one of them
    // fetched (proxy-wasm shared data and a fetch lease); the native workers share
    // the main thread's key store.
    assert_eq!(hits, 1, "{hits} fetches");
}

/// The operator's scenario of issue 16: two workers, and an identity provider
/// that answers 500 right after Envoy starts. Before, each worker fetched for
/// itself: once one worker's retry succeeded it accepted a token that the other
/// refused with 401 `keys_unavailable` until its own retry. Now the first set
/// any worker loads serves every worker: from the first 200 on, no request is
/// refused, through either worker.
#[test]
fn one_answer_per_envoy_when_the_identity_provider_fails_at_start() {
    let k1 = SigningKey::generate(Algorithm::ES256).unwrap();
    let server = JwksServer::start(&jwks(&[(&k1, "k1")]));
    server.set(500, "starting");
    // One refetch for missing keys at most (min_refetch_seconds 3600; it fails
    // too while the IdP fails): then only the retry schedule brings keys.
    let envoy = start(&server, json!({"min_refetch_seconds": 3600, "refresh_seconds": 600}), 2);
    let t = bearer_for(&k1, "k1");
    let port = envoy.port;
    let ask = |n: usize| -> Vec<(u16, Option<String>)> {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    let r = cjwt_harness::envoy::send("127.0.0.1", port, "GET", "/x", &[("authorization", &t)]);
                    (r.status, r.reason())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    };
    // While the identity provider fails: keys_unavailable everywhere.
    wait_until("a failed first fetch", Duration::from_secs(10), || envoy.stat("cjwt.jwks.fetch_failed") >= 1);
    assert!(ask(8).iter().all(|(s, r)| *s == 401 && r.as_deref() == Some("keys_unavailable")));
    server.set(200, &jwks(&[(&k1, "k1")]));
    // The retry (5 s after the failure) brings the keys to one worker...
    let deadline = Instant::now() + Duration::from_secs(15);
    while envoy.stat("cjwt.jwks.fetch_ok") == 0 {
        assert!(Instant::now() < deadline, "no successful fetch");
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...and every worker serves with them at once (a worker takes the set over
    // before it refuses for missing keys): 64 new connections, both workers, all 200.
    let said = ask(64);
    assert!(said.iter().all(|(s, _)| *s == 200), "{said:?}");
    assert_eq!(envoy.stat("cjwt.jwks.fetch_ok"), 1, "one fetch for the Envoy");
}

/// Fetches per refresh with 2 and 8 workers: one per Envoy, whatever the
/// number of workers (before: one per worker VM plus the main thread's).
#[test]
fn one_fetch_per_refresh_whatever_the_number_of_workers() {
    for workers in [2u32, 8] {
        let k1 = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let server = JwksServer::start(&jwks(&[(&k1, "k1")]));
        let envoy = start(&server, json!({"refresh_seconds": 1, "min_refetch_seconds": 60}), workers);
        wait_until("the first fetch", Duration::from_secs(10), || server.hits() >= 1);
        let first = server.hits();
        let started = Instant::now();
        std::thread::sleep(Duration::from_secs(6));
        let elapsed = started.elapsed().as_secs_f64();
        let fetches = server.hits() - first;
        // Every worker keeps serving through the refreshes.
        for _ in 0..16 {
            assert_eq!(envoy.get("/x", &[("authorization", &bearer_for(&k1, "k1"))]).status, 200);
        }
        let per_refresh = fetches as f64 / elapsed;
        eprintln!("{workers} workers: {fetches} fetches in {elapsed:.1} s with refresh_seconds 1 ({per_refresh:.2} per refresh)");
        // One per refresh (a refresh is timed from its fetch and the tick is 200 ms, so
        // slightly fewer than one a second); one per worker would be 2 or 8 times as many.
        assert!((4..=8).contains(&fetches), "{workers} workers: {fetches} fetches in {elapsed:.1} s");
    }
}

#[test]
fn oidc_discovery_finds_the_jwks() {
    let k1 = SigningKey::generate(Algorithm::ES256).unwrap();
    let server = JwksServer::start("{}");
    server.set(404, "not here");
    server.route(
        "/.well-known/openid-configuration",
        &json!({"issuer": ISS, "jwks_uri": "https://idp.example.com/protocol/certs"}).to_string(),
    );
    server.route("/protocol/certs", &jwks(&[(&k1, "k1")]));
    let cfg = json!({"providers": [{"name": "idp", "issuer": ISS, "remote_jwks": {"cluster": "idp", "authority": "idp.example.com",
        "discovery_path": "/.well-known/openid-configuration", "timeout_ms": 500}}]});
    let envoy = Envoy::start(&cfg, Options { clusters: cluster("idp", server.port), ..Options::default() });
    let r = envoy.get("/x", &[("authorization", &bearer_for(&k1, "k1"))]);
    assert_eq!(r.status, 200, "{}", r.body);
    let paths = server.paths.lock().unwrap().clone();
    assert_eq!(paths.first().map(String::as_str), Some("/.well-known/openid-configuration"), "{paths:?}");
    assert!(paths.iter().any(|p| p == "/protocol/certs"), "{paths:?}");
}

#[test]
fn discovery_pointing_elsewhere_is_refused() {
    let k1 = SigningKey::generate(Algorithm::ES256).unwrap();
    let server = JwksServer::start(&jwks(&[(&k1, "k1")]));
    server.route(
        "/.well-known/openid-configuration",
        &json!({"issuer": ISS, "jwks_uri": "https://evil.example/keys"}).to_string(),
    );
    let cfg = json!({"providers": [{"name": "idp", "issuer": ISS, "remote_jwks": {"cluster": "idp", "authority": "idp.example.com",
        "discovery_path": "/.well-known/openid-configuration", "timeout_ms": 500}}]});
    let envoy = Envoy::start(&cfg, Options { clusters: cluster("idp", server.port), ..Options::default() });
    let r = envoy.get("/x", &[("authorization", &bearer_for(&k1, "k1"))]);
    assert_eq!(r.reason().as_deref(), Some("keys_unavailable"));
    assert!(envoy.wait_log("not on the configured authority"), "{}", envoy.log());
    assert!(
        server.paths.lock().unwrap().iter().all(|p| p == "/.well-known/openid-configuration"),
        "never fetched a key set"
    );
}

#[test]
fn a_body_arriving_while_keys_are_fetched_does_not_release_the_request() {
    // The proxy-wasm SDK's default body callback answers Continue, which in Envoy
    // resumes a request paused in its headers: a POST whose decision waits for keys
    // would reach the upstream unchecked. It must stay held until the decision.
    let k1 = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let stranger = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let server = JwksServer::start(&jwks(&[(&k1, "k1")]));
    server.delay(Duration::from_millis(1500));
    let envoy = start(&server, json!({"timeout_ms": 3000, "min_refetch_seconds": 0}), 1);
    let forged = bearer_for(&stranger, "k1");
    let body = vec![b'x'; 20_000];
    let started = Instant::now();
    let r = cjwt_harness::envoy::send_with_body(
        "127.0.0.1",
        envoy.port,
        "POST",
        "/orders",
        &[("authorization", &forged), ("content-type", "application/octet-stream")],
        Some(&body),
    );
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.reason().as_deref(), Some("bad_signature"));
    assert!(started.elapsed() > Duration::from_millis(300), "the request did wait: {:?}", started.elapsed());
    assert_eq!(envoy.upstream.count(), 0, "the upstream saw the request before the decision");
    // The genuine token, with a body, is still let through once keys are known.
    let r = cjwt_harness::envoy::send_with_body(
        "127.0.0.1",
        envoy.port,
        "POST",
        "/orders",
        &[("authorization", &bearer_for(&k1, "k1"))],
        Some(b"hello"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(envoy.upstream.count(), 1);
}

/// Sends a GET with `authorization` on a new connection, waits `after`, then
/// resets the connection (RST: linger 0) without reading the answer: a client
/// that gives up while its request waits for keys.
fn send_then_reset(port: u16, authorization: &str, after: Duration) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let req = format!("GET /x HTTP/1.1\r\nhost: api.example.com\r\nauthorization: {authorization}\r\n\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    std::thread::sleep(after);
    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).unwrap();
    drop(stream);
}

/// Issue 24, item 2: a refetch started by a request whose client then resets
/// must still load the keys. In the wasm build the fetch was dispatched from the
/// stream (proxy-wasm 0.2 files a call under the context that is running, not the
/// effective one), so its answer died with the stream: the next client waited
/// for the call to be given up (timeout + 2 s) and got 401 `unknown_key`, and an
/// attacker could suppress every refetch this way.
#[test]
fn a_refetch_outlives_the_client_that_started_it() {
    let k1 = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let k2 = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let server = JwksServer::start(&jwks(&[(&k1, "k1")]));
    let envoy = start(&server, json!({"timeout_ms": 4000, "min_refetch_seconds": 0}), 1);
    wait_until("the first fetch", Duration::from_secs(10), || envoy.stat("cjwt.jwks.fetch_ok") >= 1);
    assert_eq!(envoy.get("/x", &[("authorization", &bearer_for(&k1, "k1"))]).status, 200);
    // The IdP rotates, and answers slowly.
    server.delay(Duration::from_millis(1500));
    server.set(200, &jwks(&[(&k1, "k1"), (&k2, "k2")]));
    let before = server.hits();
    let token = bearer_for(&k2, "k2");
    let port = envoy.port;
    let a = {
        let token = token.clone();
        std::thread::spawn(move || send_then_reset(port, &token, Duration::from_millis(100)))
    };
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let r = envoy.get("/x", &[("authorization", &token)]);
    let elapsed = started.elapsed();
    a.join().unwrap();
    eprintln!("client B: {} {:?} after {elapsed:?}", r.status, r.reason());
    assert_eq!(r.status, 200, "{:?} after {elapsed:?}", r.reason());
    assert!(elapsed < Duration::from_secs(3), "B waited for the fetch A started: {elapsed:?}");
    assert_eq!(server.hits(), before + 1, "one refetch, started by A, answered B");
}

/// Issue 24, item 2, at start-up: clients that reset while they wait for the
/// first key set must not lose it for the others.
#[test]
fn the_first_fetch_outlives_clients_that_reset_while_waiting() {
    let k1 = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let server = JwksServer::start(&jwks(&[(&k1, "k1")]));
    server.delay(Duration::from_millis(1500));
    let envoy = start(&server, json!({"timeout_ms": 4000, "min_refetch_seconds": 0}), 1);
    let token = bearer_for(&k1, "k1");
    let port = envoy.port;
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let token = token.clone();
            std::thread::spawn(move || send_then_reset(port, &token, Duration::from_millis(100)))
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(3400));
    let started = Instant::now();
    let r = envoy.get("/x", &[("authorization", &token)]);
    let elapsed = started.elapsed();
    eprintln!("valid request 3.5 s after start: {} {:?} after {elapsed:?}", r.status, r.reason());
    assert_eq!(r.status, 200, "{:?} after {elapsed:?}", r.reason());
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

/// Issue 24, item 7: a key published right after the start-up fetch is picked
/// up by the first token that names it, in both builds: only on-demand refetches
/// count against `min_refetch_seconds` (deviation 14), not the start-up or
/// periodic fetch. Before, the native build refused it for up to
/// `min_refetch_seconds` (29–30 s), the wasm build for 1.5–3.5 s.
#[test]
fn a_key_published_right_after_the_first_fetch_is_accepted_at_once() {
    let k1 = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let k2 = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let server = JwksServer::start(&jwks(&[(&k1, "k1")]));
    let envoy = start(&server, json!({"min_refetch_seconds": 30, "refresh_seconds": 600}), 1);
    wait_until("the first fetch", Duration::from_secs(10), || envoy.stat("cjwt.jwks.fetch_ok") >= 1);
    server.set(200, &jwks(&[(&k1, "k1"), (&k2, "k2")]));
    let before = server.hits();
    let started = Instant::now();
    let mut last = (0, None);
    while started.elapsed() < Duration::from_secs(10) {
        let r = envoy.get("/x", &[("authorization", &bearer_for(&k2, "k2"))]);
        last = (r.status, r.reason());
        if r.status == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = started.elapsed();
    eprintln!("k2 published after the first fetch: {last:?} after {elapsed:?}");
    assert_eq!(last.0, 200, "{last:?} after {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "accepted {elapsed:?} after publishing (min_refetch_seconds 30)");
    assert_eq!(server.hits(), before + 1, "one refetch");
    // The next unknown kid is rate-limited against that refetch: no fetch.
    let stranger = SigningKey::generate(Algorithm::EdDSA).unwrap();
    for i in 0..5 {
        let r = envoy.get("/x", &[("authorization", &bearer_for(&stranger, &format!("random-{i}")))]);
        assert_eq!((r.status, r.reason().as_deref()), (401, Some("unknown_key")));
    }
    assert_eq!(server.hits(), before + 1, "unknown kids after the refetch fetch nothing");
}

/// How long a request whose `kid` is unknown waits for the refetch it starts
/// (IdP answering at once), against a request whose key is known: in the wasm
/// build the root context dispatches the call on a tick the stream brings
/// forward (issue 24, item 2).
#[test]
fn a_kid_miss_refetch_answers_promptly() {
    let keys: Vec<SigningKey> = (0..11).map(|_| SigningKey::generate(Algorithm::EdDSA).unwrap()).collect();
    let server = JwksServer::start(&jwks(&[(&keys[0], "k0")]));
    let envoy = start(&server, json!({"min_refetch_seconds": 0}), 1);
    wait_until("the first fetch", Duration::from_secs(10), || envoy.stat("cjwt.jwks.fetch_ok") >= 1);
    let (mut misses, mut known) = (Vec::new(), Vec::new());
    for i in 1..keys.len() {
        let published: Vec<(&SigningKey, String)> = (0..=i).map(|j| (&keys[j], format!("k{j}"))).collect();
        let refs: Vec<(&SigningKey, &str)> = published.iter().map(|(k, kid)| (*k, kid.as_str())).collect();
        server.set(200, &jwks(&refs));
        let token = bearer_for(&keys[i], &format!("k{i}"));
        let started = Instant::now();
        let r = envoy.get("/x", &[("authorization", &token)]);
        misses.push(started.elapsed());
        assert_eq!(r.status, 200, "{:?}", r.reason());
        let started = Instant::now();
        assert_eq!(envoy.get("/x", &[("authorization", &token)]).status, 200);
        known.push(started.elapsed());
    }
    assert_eq!(server.hits(), keys.len(), "one fetch per rotation");
    misses.sort();
    known.sort();
    let (miss, base) = (misses[misses.len() / 2], known[known.len() / 2]);
    eprintln!("kid-miss refetch: median {miss:?} (sorted {misses:?}); known key: median {base:?} (sorted {known:?})");
    assert!(miss < Duration::from_millis(500), "{misses:?}");
}
