//! Bypasses of issue 12, end to end through a real Envoy: each test asserts the
//! safe behaviour — the request refused with the right reason and the upstream
//! untouched, or the legitimate request let through.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::{mint, SigningKey};
use cjwt_harness::envoy::{cluster, Envoy, JwksServer, Options, Response};
use cjwt_harness::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ISS: &str = "https://idp.example.com";

/// A token signed by `key` as `kid`, unique on every call (its own `jti`), so
/// that it is never a hit in the verified-token cache.
fn fresh_bearer(key: &SigningKey, kid: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let jti = format!("fresh-{}", N.fetch_add(1, Ordering::SeqCst));
    format!("Bearer {}", mint(key, Some(kid), &claims_at(now(), json!({"iss": ISS, "jti": jti}))))
}

/// An Envoy whose one provider fetches its keys from `server` (cluster `idp`).
fn start_remote(server: &JwksServer, remote: Value) -> Envoy {
    let mut r = json!({"cluster": "idp", "path": "/jwks.json", "timeout_ms": 500});
    if let (Value::Object(base), Value::Object(extra)) = (&mut r, remote) {
        base.extend(extra);
    }
    let cfg = json!({"providers": [{"name": "idp", "issuer": ISS, "remote_jwks": r}]});
    Envoy::start(&cfg, Options { concurrency: 1, clusters: cluster("idp", server.port), ..Options::default() })
}

/// One Envoy counter (admin `/stats`), any prefix.
fn envoy_stat(envoy: &Envoy, name: &str) -> u64 {
    let last = name.rsplit('.').next().unwrap_or(name);
    let (_, body) = envoy.admin_get(&format!("/stats?filter={last}"));
    body.lines()
        .filter_map(|l| l.split_once(": "))
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A GET over HTTP/1.1 with this `Host` (the shared client always sends `api.example.com`).
fn get_with_host(envoy: &Envoy, host: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut s = TcpStream::connect(("127.0.0.1", envoy.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // Read the head, then `content-length` bytes (not up to EOF: Envoy delays its close).
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let (head, body_start, length) = loop {
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(n > 0, "connection closed before a response: {:?}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_string();
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            break (head, end + 4, length);
        }
    };
    while raw.len() < body_start + length {
        let n = s.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = String::from_utf8_lossy(&raw[body_start..]).to_string();
    Response { status, headers, body }
}

// ---- 1. Query parameters read as upstream form decoders read them ----

#[test]
fn query_custom_constraint_is_not_bypassed_by_another_spelling_of_the_name() {
    let envoy =
        Envoy::start(&config_json(json!({"custom_constraints": {"tenant": {"query": "tenant"}}})), Options::default());
    let t = bearer_now(json!({"cnst": {"tenant": ["acme"]}}));
    // Each of these reaches a form-decoding upstream with a second `tenant`
    // (decoders disagree on which one wins), so none may pass as `tenant=acme`.
    for path in [
        "/x?t%65nant=evil&tenant=acme",
        "/x?T%65NANT=x&t%65nant=evil&tenant=acme",
        "/x?tenant&tenant=acme",
        "/x?tenant=acme&tenant",
        "/x?x=1;tenant=evil&tenant=acme",
        "/x?tenant=evil;x=1&tenant=acme",
        "/x?tenant=acme;tenant=evil",
        "/x?ten%61nt=acme&tenant=acme",
        "/x?tenant=acme&t%65n%61nt=evil",
    ] {
        let r = envoy.get(path, &[("authorization", &t)]);
        assert_eq!((r.status, r.reason().as_deref()), (403, Some("custom")), "{path}: {}", r.body);
        assert_eq!(envoy.upstream.count(), 0, "{path} reached the upstream");
    }
    // The plain spelling, and a percent-encoded value the upstream decodes to `acme`.
    for path in ["/x?tenant=acme", "/x?tenant=%61cme", "/x?a=1&tenant=%61%63%6d%65&b=2"] {
        let before = envoy.upstream.count();
        let r = envoy.get(path, &[("authorization", &t)]);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(envoy.upstream.count(), before + 1);
        assert_eq!(envoy.upstream.last().unwrap().path, path, "the query reaches the upstream as sent");
    }
    // A decoded value that is not `acme` is refused, however it is spelled.
    for path in ["/x?tenant=%65vil", "/x?tenant=acme+", "/x?tenant=ac%6De%20"] {
        let r = envoy.get(path, &[("authorization", &t)]);
        assert_eq!((r.status, r.reason().as_deref()), (403, Some("custom")), "{path}: {}", r.body);
    }
    assert_eq!(envoy.upstream.count(), 3);
}

#[test]
fn a_query_credential_under_another_spelling_is_a_second_token() {
    let envoy = Envoy::start(&config_json(json!({})), Options::default());
    let t = bearer_now(json!({}));
    let other = bearer_now(json!({"sub": "mallory"}));
    let other = other.trim_start_matches("Bearer ");
    for path in [
        format!("/x?access%5Ftoken={other}"),
        format!("/x?access%5ftoken={other}"),
        format!("/x?%61ccess_token={other}"),
        format!("/x?a=1&acc%65ss%5Ftoken={other}&b=2"),
    ] {
        let r = envoy.get(&path, &[("authorization", &t)]);
        assert_eq!((r.status, r.reason().as_deref()), (401, Some("multiple_tokens")), "{path}: {}", r.body);
    }
    assert_eq!(envoy.upstream.count(), 0);
    // A valueless (or empty) `access_token` carries no credential.
    for path in ["/x?access_token", "/x?access_token=", "/x?a=1&access_token&b=2"] {
        let r = envoy.get(path, &[("authorization", &t)]);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    assert_eq!(envoy.upstream.count(), 3);
}

// ---- 2. Host names with a trailing dot ----

fn host_rule_config() -> Value {
    config_json(json!({
        "rules": [{"match": {"hosts": ["admin.example.com"]}, "require": {"roles_any": ["admin"]}}]
    }))
}

fn assert_trailing_dot_is_the_same_host(envoy: &Envoy, envoy_strips: bool) {
    let reader = bearer_now(json!({"roles": ["reader"]}));
    // The control: the plain name is guarded by the rule.
    let r = get_with_host(envoy, "admin.example.com", "/x", &[("authorization", &reader)]);
    assert_eq!((r.status, r.reason().as_deref()), (403, Some("role")), "{}", r.body);
    for host in ["admin.example.com.", "ADMIN.Example.COM.", "admin.example.com.:443"] {
        let r = get_with_host(envoy, host, "/x", &[("authorization", &reader)]);
        assert_eq!((r.status, r.reason().as_deref()), (403, Some("role")), "{host}: {} {}", r.status, r.body);
    }
    assert_eq!(envoy.upstream.count(), 0, "no request for the admin host reached the upstream");
    // An admin still gets through, and the upstream sees the name Envoy forwards.
    let admin = bearer_now(json!({"roles": ["admin"]}));
    let r = get_with_host(envoy, "admin.example.com.", "/x", &[("authorization", &admin)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = envoy.upstream.last().unwrap();
    let want = if envoy_strips { "admin.example.com" } else { "admin.example.com." };
    assert_eq!(seen.header("host"), Some(want));
    // A token bound to `api.example.com` is valid for `api.example.com.` (the same name).
    let bound = bearer_now(json!({"cnst": {"hosts": ["api.example.com"]}}));
    for host in ["api.example.com.", "api.example.com.:10000"] {
        let r = get_with_host(envoy, host, "/x", &[("authorization", &bound)]);
        assert_eq!(r.status, 200, "{host}: {}", r.body);
    }
    // ... and still not for another name.
    let r = get_with_host(envoy, "evil.example.com.", "/x", &[("authorization", &bound)]);
    assert_eq!((r.status, r.reason().as_deref()), (403, Some("host")), "{}", r.body);
}

#[test]
fn host_rule_trailing_dot_with_the_shipped_config() {
    let envoy = Envoy::start(&host_rule_config(), Options::default());
    assert_trailing_dot_is_the_same_host(&envoy, true);
}

#[test]
fn host_rule_trailing_dot_without_envoy_stripping_it() {
    let opts = Options {
        edits: vec![("strip_trailing_host_dot: true".into(), "strip_trailing_host_dot: false".into())],
        ..Options::default()
    };
    let envoy = Envoy::start(&host_rule_config(), opts);
    assert_trailing_dot_is_the_same_host(&envoy, false);
}

// ---- 3. A refetch whose request went away ----

#[test]
fn an_aborted_refetch_does_not_freeze_key_refresh() {
    let k1 = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let k2 = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let stranger = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let server = JwksServer::start(&jwks(&[(&k1, "k1")]));
    let envoy = start_remote(&server, json!({"refresh_seconds": 2, "min_refetch_seconds": 0, "timeout_ms": 3000}));
    wait_until("the first fetch", Duration::from_secs(10), || envoy.stat("cjwt.jwks.fetch_ok") >= 1);
    assert_eq!(envoy.get("/x", &[("authorization", &fresh_bearer(&k1, "k1"))]).status, 200);

    // Between two periodic refreshes (the main thread's VM and the worker's fetch
    // within milliseconds of each other, every 2 s), so that no fetch is under way:
    // a token with an unknown kid makes the request dispatch a refetch, which is slow.
    let ok = envoy.stat("cjwt.jwks.fetch_ok");
    wait_until("a periodic fetch", Duration::from_secs(10), || envoy.stat("cjwt.jwks.fetch_ok") > ok);
    std::thread::sleep(Duration::from_millis(500));
    server.delay(Duration::from_millis(1500));
    abandon_a_request_waiting_for_keys(&envoy, &server, &fresh_bearer(&stranger, "k9"));

    // The IdP now drops k1 and publishes k2; periodic refresh must pick that up.
    server.delay(Duration::ZERO);
    server.set(200, &jwks(&[(&k2, "k2")]));
    let deadline = Instant::now() + Duration::from_secs(12);
    let r = loop {
        let r = envoy.get("/x", &[("authorization", &fresh_bearer(&k1, "k1"))]);
        if r.status != 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(
        (r.status, r.reason().as_deref()),
        (401, Some("unknown_key")),
        "a k1 token is still accepted 12 s after k1 left the key set: key refresh is frozen ({} JWKS requests)",
        server.hits()
    );
    let r = envoy.get("/x", &[("authorization", &fresh_bearer(&k2, "k2"))]);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Sends a request with `auth` (an unknown kid), waits until its refetch reached
/// the JWKS server, then closes the connection before the (slow) answer; retries
/// if the request was answered first (it joined a fetch already under way).
fn abandon_a_request_waiting_for_keys(envoy: &Envoy, server: &JwksServer, auth: &str) {
    let stat = "http.ingress.downstream_cx_destroy_remote_active_rq";
    for _ in 0..3 {
        let (hits, destroyed) = (server.hits(), envoy_stat(envoy, stat));
        let mut client = TcpStream::connect(("127.0.0.1", envoy.port)).unwrap();
        write!(client, "GET /x HTTP/1.1\r\nhost: api.example.com\r\nauthorization: {auth}\r\n\r\n").unwrap();
        wait_until("the refetch", Duration::from_secs(5), || server.hits() > hits);
        // The client gives up ~200 ms in, long before the answer.
        std::thread::sleep(Duration::from_millis(200));
        client.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        if client.read(&mut [0u8; 64]).is_ok_and(|n| n > 0) {
            continue; // answered already: not the case under test
        }
        client.shutdown(Shutdown::Both).unwrap();
        drop(client);
        wait_until("Envoy to reset the abandoned stream", Duration::from_secs(5), || {
            envoy_stat(envoy, stat) > destroyed
        });
        return;
    }
    panic!("the request with an unknown kid never waited for a refetch");
}

// ---- 4. The verified-token cache and key removal ----

#[test]
fn a_cached_verification_does_not_outlive_its_key() {
    let k1 = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let k2 = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let server = JwksServer::start(&jwks(&[(&k1, "k1")]));
    let envoy = start_remote(&server, json!({"refresh_seconds": 1, "min_refetch_seconds": 60}));
    wait_until("the first fetch", Duration::from_secs(10), || envoy.stat("cjwt.jwks.fetch_ok") >= 1);
    let t = fresh_bearer(&k1, "k1");
    assert_eq!(envoy.get("/x", &[("authorization", &t)]).status, 200);
    // A later use is served by the cache, unless a refresh (every second here) came
    // between the two and bumped the key set's generation (decision 29): then it is
    // verified again, and the next use is the cache's.
    let served_by_cache = (0..5).any(|_| {
        let hits = envoy.stat("cjwt.cache.hit");
        assert_eq!(envoy.get("/x", &[("authorization", &t)]).status, 200);
        envoy.stat("cjwt.cache.hit") > hits
    });
    assert!(served_by_cache, "a later use is served by the cache");

    // k1 leaves the key set; wait until the worker's keys no longer hold it.
    server.set(200, &jwks(&[(&k2, "k2")]));
    wait_until("the refresh without k1", Duration::from_secs(10), || {
        envoy.get("/x", &[("authorization", &fresh_bearer(&k1, "k1"))]).status == 401
    });
    let before = envoy.upstream.count();
    let r = envoy.get("/x", &[("authorization", &t)]);
    assert_eq!(
        (r.status, r.reason().as_deref()),
        (401, Some("unknown_key")),
        "the cached k1 token outlives k1: {} {}",
        r.status,
        r.body
    );
    assert_eq!(envoy.upstream.count(), before);
    assert_eq!(envoy.get("/x", &[("authorization", &fresh_bearer(&k2, "k2"))]).status, 200);
}

// ---- 5. A refused OIDC discovery document ----

#[test]
fn a_refused_discovery_document_supplies_no_keys() {
    let k1 = SigningKey::generate(Algorithm::ES256).unwrap();
    let key = k1.public_jwk(Some("k1"));
    for (why, doc) in [
        (
            "another issuer",
            json!({"issuer": "https://evil.example", "jwks_uri": "https://idp.example.com/protocol/certs", "keys": [key]}),
        ),
        ("jwks_uri elsewhere", json!({"issuer": ISS, "jwks_uri": "https://evil.example/keys", "keys": [key]})),
        ("no jwks_uri", json!({"issuer": ISS, "keys": [key]})),
    ] {
        let server = JwksServer::start("{}");
        server.set(404, "not here");
        server.route("/.well-known/openid-configuration", &doc.to_string());
        let cfg = json!({"providers": [{"name": "idp", "issuer": ISS, "remote_jwks": {"cluster": "idp", "authority": "idp.example.com",
            "discovery_path": "/.well-known/openid-configuration", "timeout_ms": 500}}]});
        let envoy = Envoy::start(&cfg, Options { clusters: cluster("idp", server.port), ..Options::default() });
        // While the first fetch may still be under way (the request waits for it) ...
        let r = envoy.get("/x", &[("authorization", &fresh_bearer(&k1, "k1"))]);
        assert_eq!(r.status, 401, "{why}: the refused document's keys verified a token: {}", r.body);
        assert!(matches!(r.reason().as_deref(), Some("keys_unavailable" | "unknown_key")), "{why}: {}", r.body);
        // ... and after every VM has handled the document.
        wait_until("the discovery request", Duration::from_secs(10), || server.hits() >= 1);
        std::thread::sleep(Duration::from_millis(500));
        let r = envoy.get("/x", &[("authorization", &fresh_bearer(&k1, "k1"))]);
        assert_eq!(r.status, 401, "{why}: the refused document's keys verified a token: {}", r.body);
        assert!(matches!(r.reason().as_deref(), Some("keys_unavailable" | "unknown_key")), "{why}: {}", r.body);
        assert_eq!(envoy.stat("cjwt.jwks.fetch_ok"), 0, "{why}: no key set was accepted");
        assert_eq!(envoy.upstream.count(), 0, "{why}");
    }
}

// ---- 6. The underscore spelling of a forwarded header ----

fn forward_sub_config() -> Value {
    config_json(json!({"forward": {"claims_to_headers": [{"claim": "sub", "header": "x-cjwt-sub"}]}}))
}

#[test]
fn an_underscore_forwarded_header_is_refused_by_the_shipped_config() {
    let envoy = Envoy::start(&forward_sub_config(), Options::default());
    let t = bearer_now(json!({}));
    for name in ["x_cjwt_sub", "x-cjwt_sub"] {
        let r = envoy.get("/x", &[("authorization", &t), (name, "admin")]);
        assert_eq!(r.status, 400, "{name}: {}", r.body);
    }
    assert_eq!(envoy.upstream.count(), 0);
    assert_eq!(envoy.get("/x", &[("authorization", &t)]).status, 200);
    assert_eq!(envoy.upstream.last().unwrap().header("x-cjwt-sub"), Some("alice"));
}

#[test]
fn underscore_spellings_of_a_forwarded_header_never_reach_the_upstream() {
    let opts = Options {
        edits: vec![(
            "          common_http_protocol_options:\n            headers_with_underscores_action: REJECT_REQUEST\n"
                .into(),
            String::new(),
        )],
        ..Options::default()
    };
    let envoy = Envoy::start(&forward_sub_config(), opts);
    let t = bearer_now(json!({}));
    let r = envoy.get(
        "/x",
        &[
            ("authorization", &t),
            ("x_cjwt_sub", "admin"),
            ("X_CJWT_SUB", "root"),
            ("x-cjwt_sub", "admin"),
            ("x_cjwt-sub", "admin"),
            ("x-cjwt-sub", "admin"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = envoy.upstream.last().unwrap();
    let spellings: Vec<&(String, String)> =
        seen.headers.iter().filter(|(n, _)| n.replace('_', "-") == "x-cjwt-sub").collect();
    assert_eq!(
        spellings,
        vec![&("x-cjwt-sub".to_string(), "alice".to_string())],
        "only the verified x-cjwt-sub, no client spelling of it"
    );
}
