//! SPEC §11 end to end, against both builds (`CJWT_BUILD=wasm|native`):
//! deny-lists pushed as a configuration update to a running Envoy (its listener
//! from a file it watches, LDS) revoke at once, cached tokens included; Token
//! Status Lists fetched from a local list server through a cluster — revoked and
//! suspended entries, an index out of range, an unconfigured list, and every bad
//! list (wrong key, expired, garbage, too large, a compression bomb) keeping the
//! last good list until it expires, or `status_unavailable` without one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::{mint, mint_raw, SigningKey};
use cjwt_core::revocation::status_list::encode_status_list;
use cjwt_harness::envoy::{cluster, Envoy, JwksServer, Options, Response};
use cjwt_harness::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ISS: &str = "https://idp.example.com";
const URI: &str = "https://idp.example.com/statuslists/1";

fn get(envoy: &Envoy, auth: &str) -> Response {
    envoy.get("/orders", &[("authorization", auth)])
}

fn outcome(r: &Response) -> (u16, Option<String>) {
    (r.status, r.reason())
}

fn refused(reason: &str) -> (u16, Option<String>) {
    (401, Some(reason.to_string()))
}

const ALLOWED: (u16, Option<String>) = (200, None);

/// Polls until the request gets `want` (within `secs`); returns how long it took.
fn wait_for(envoy: &Envoy, auth: &str, want: &(u16, Option<String>), secs: u64) -> Duration {
    let started = Instant::now();
    loop {
        let got = outcome(&get(envoy, auth));
        if got == *want {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(secs), "still {got:?} after {secs} s, want {want:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---- Deny-lists pushed by configuration ----

#[test]
fn a_configuration_update_revokes_a_token_and_a_subject_at_once_cached_or_not() {
    let envoy = Envoy::start_lds(&config_json(json!({})), Options { concurrency: 2, ..Options::default() });
    let now = now();
    let leaked =
        bearer_signed(key(Algorithm::EdDSA), "k1", &claims_at(now, json!({"jti": "leaked-1", "sub": "alice"})));
    let bot = bearer_signed(key(Algorithm::EdDSA), "k1", &claims_at(now, json!({"sub": "build-bot", "iat": now - 60})));
    let other = bearer_signed(key(Algorithm::EdDSA), "k1", &claims_at(now, json!({"jti": "fine", "sub": "alice"})));
    // Allowed, several times: verified once per worker, then from the cache.
    for _ in 0..4 {
        for t in [&leaked, &bot, &other] {
            assert_eq!(outcome(&get(&envoy, t)), ALLOWED);
        }
    }
    assert!(envoy.stat("cjwt.cache.hit") >= 3, "the tokens were cached: {:?}", envoy.stats());
    let started = envoy.server_stat("server.uptime");

    // The push: one jti and one subject (tokens issued before now - 30).
    let cut_off = now - 30;
    envoy.update_plugin_config(&config_json(json!({"revocation": {
        "jti": [{"iss": ISS, "jti": "leaked-1"}],
        "subjects": [{"iss": ISS, "sub": "build-bot", "issued_before": cut_off}]}})));
    // Right after the update, every time (both workers, new connections each time).
    for _ in 0..6 {
        assert_eq!(outcome(&get(&envoy, &leaked)), refused("revoked"));
        assert_eq!(outcome(&get(&envoy, &bot)), refused("revoked"));
        assert_eq!(outcome(&get(&envoy, &other)), ALLOWED);
    }
    // The subject's tokens issued after the cut-off are fine.
    let fresh =
        bearer_signed(key(Algorithm::EdDSA), "k1", &claims_at(now, json!({"sub": "build-bot", "iat": cut_off + 1})));
    assert_eq!(outcome(&get(&envoy, &fresh)), ALLOWED);
    assert!(envoy.stat("cjwt.denied.revoked") >= 12, "{:?}", envoy.stats());
    assert!(envoy.server_stat("server.uptime") >= started, "the same Envoy, never restarted");

    // An invalid update is refused, and the previous configuration keeps serving.
    let bad = config_json(json!({"revocation": {"jti": [{"iss": "https://typo.example", "jti": "x"}]}}));
    assert!(envoy.try_update_plugin_config(&bad).is_err(), "an invalid configuration is rejected");
    assert!(envoy.wait_log("is no provider's issuer"), "the log names why");
    assert_eq!(outcome(&get(&envoy, &leaked)), refused("revoked"));
    assert_eq!(outcome(&get(&envoy, &other)), ALLOWED);

    // Taking the entries out again lets the tokens through again.
    envoy.update_plugin_config(&config_json(json!({})));
    assert_eq!(outcome(&get(&envoy, &leaked)), ALLOWED);
    assert_eq!(outcome(&get(&envoy, &bot)), ALLOWED);
    assert_eq!(
        envoy.upstream.received.lock().unwrap().iter().filter(|r| r.path == "/orders").count(),
        4 * 3 + 6 + 1 + 1 + 2
    );
}

// ---- Token Status Lists ----

/// A Status List Token for [`URI`] signed by `signer` as `k1`.
fn list_jwt(signer: &SigningKey, bits: u8, statuses: &[u8], extra: Value) -> String {
    let now = now();
    let mut claims = json!({"sub": URI, "iss": ISS, "iat": now, "exp": now + 3600, "ttl": 300,
        "status_list": encode_status_list(bits, statuses).unwrap()});
    if let (Value::Object(c), Value::Object(e)) = (&mut claims, extra) {
        for (k, v) in e {
            if v.is_null() {
                c.remove(&k);
            } else {
                c.insert(k, v);
            }
        }
    }
    mint_raw(
        signer,
        &json!({"alg": signer.alg().name(), "kid": "k1", "typ": "statuslist+jwt"}).to_string(),
        &claims.to_string(),
    )
}

fn good_list(statuses: &[u8], extra: Value) -> String {
    list_jwt(key(Algorithm::EdDSA), 2, statuses, extra)
}

/// The plugin configuration with one status list (merged with `list`) and `extra` top-level fields.
fn lists_config(list: Value, extra: Value) -> Value {
    let mut l = json!({"uri": URI, "provider": "corp", "cluster": "lists", "authority": "idp.example.com",
        "path": "/statuslists/1", "refresh_seconds": 1, "timeout_ms": 500, "max_bytes": 4096});
    if let (Value::Object(b), Value::Object(e)) = (&mut l, list) {
        b.extend(e);
    }
    let mut cfg = config_json(json!({"status_lists": [l]}));
    if let (Value::Object(c), Value::Object(e)) = (&mut cfg, extra) {
        c.extend(e);
    }
    cfg
}

/// Envoy with the list server as cluster `lists`, its listener from a watched file.
fn start_with_lists(server: &JwksServer, list: Value, concurrency: u32) -> Envoy {
    let opts = Options { concurrency, clusters: cluster("lists", server.port), ..Options::default() };
    Envoy::start_lds(&lists_config(list, json!({})), opts)
}

fn with_status(idx: u64, uri: &str) -> String {
    bearer_signed(
        key(Algorithm::EdDSA),
        "k1",
        &claims_at(now(), json!({"status": {"status_list": {"idx": idx, "uri": uri}}})),
    )
}

#[test]
fn status_list_entries_decide_and_a_token_revoked_mid_run_is_refused_after_the_next_refresh() {
    // 16 entries of 2 bits: 3 suspended, 5 revoked, 7 an application value (revoked).
    let mut statuses = vec![0u8; 16];
    statuses[3] = 2;
    statuses[5] = 1;
    statuses[7] = 3;
    let server = JwksServer::start(&good_list(&statuses, json!({})));
    let envoy = start_with_lists(&server, json!({}), 1);
    let first = with_status(0, URI);
    wait_for(&envoy, &first, &ALLOWED, 10);
    for (idx, want) in [
        (0, ALLOWED),
        (1, ALLOWED),
        (3, refused("suspended")),
        (5, refused("revoked")),
        (7, refused("revoked")),
        (15, ALLOWED),
        (16, refused("revoked")),
        (1_000_000, refused("revoked")),
    ] {
        assert_eq!(outcome(&get(&envoy, &with_status(idx, URI))), want, "idx {idx}");
    }
    assert_eq!(
        outcome(&get(&envoy, &with_status(0, "https://idp.example.com/statuslists/2"))),
        refused("unknown_status_list")
    );
    // A token without `status` does not depend on any list.
    assert_eq!(
        outcome(&get(&envoy, &bearer_signed(key(Algorithm::EdDSA), "k1", &claims_at(now(), json!({}))))),
        ALLOWED
    );
    let paths = server.paths.lock().unwrap().clone();
    assert!(paths.iter().all(|p| p == "/statuslists/1"), "only the configured list is fetched: {paths:?}");

    // The identity provider revokes entry 0 and lifts the suspension of 3.
    statuses[0] = 1;
    statuses[3] = 0;
    server.set(200, &good_list(&statuses, json!({})));
    let took = wait_for(&envoy, &first, &refused("revoked"), 10);
    eprintln!("revoked {took:?} after the list was published (refresh_seconds 1)");
    for _ in 0..5 {
        assert_eq!(outcome(&get(&envoy, &first)), refused("revoked"), "and stays revoked");
    }
    assert_eq!(outcome(&get(&envoy, &with_status(3, URI))), ALLOWED);
    assert!(envoy.stat("cjwt.status_list.fetch_ok") >= 2, "{:?}", envoy.stats());
    assert!(envoy.stat("cjwt.denied.suspended") >= 1 && envoy.stat("cjwt.denied.unknown_status_list") >= 1);

    // A configuration pushed at run time starts with the last good list: while its own
    // first fetch cannot answer (the server now answers after 3 s, past timeout_ms),
    // decisions go on with the list fetched under the previous configuration.
    server.delay(Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(1200));
    envoy
        .update_plugin_config(&lists_config(json!({}), json!({"revocation": {"jti": [{"iss": ISS, "jti": "other"}]}})));
    assert_eq!(outcome(&get(&envoy, &first)), refused("revoked"), "not status_unavailable");
    assert_eq!(outcome(&get(&envoy, &with_status(3, URI))), ALLOWED);
    assert_eq!(outcome(&get(&envoy, &with_status(5, URI))), refused("revoked"));
    assert!(envoy.wait_log("from the last good copy"), "the new configuration loaded the last good list");
    server.delay(Duration::ZERO);
}

#[test]
fn bad_lists_keep_the_last_good_one_until_it_expires_and_without_one_status_is_unavailable() {
    let server = JwksServer::start("not a list");
    // Refreshed (and failed fetches retried) every second, so that each bad list below is
    // fetched well within the good list's ttl.
    let envoy = start_with_lists(&server, json!({"refresh_seconds": 1}), 1);
    let valid = with_status(0, URI);
    let revoked = with_status(5, URI);
    // Never a good list: fail closed.
    let started = Instant::now();
    while envoy.stat("cjwt.status_list.fetch_failed") < 1 {
        assert!(started.elapsed() < Duration::from_secs(10), "no failed fetch counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(outcome(&get(&envoy, &valid)), refused("status_unavailable"));
    assert_eq!(envoy.upstream.count(), 0);

    // A good list with a short ttl: it serves while every bad list that follows is refused.
    let mut statuses = vec![0u8; 8];
    statuses[5] = 1;
    server.set(200, &good_list(&statuses, json!({"ttl": 20})));
    wait_for(&envoy, &valid, &ALLOWED, 10);
    let good_at = Instant::now();
    let stranger = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let bomb = json!({"bits": 8, "lst": encode_status_list(8, &vec![0u8; 8 << 20]).unwrap()["lst"]});
    let now = now();
    for (name, status, body, why) in [
        ("signed by another key", 200, list_jwt(&stranger, 2, &[0; 8], json!({})), "signature"),
        ("expired", 200, good_list(&[0; 8], json!({"iat": now - 7200, "exp": now - 3600})), "expired"),
        ("garbage", 200, "garbage".to_string(), "not a compact JWS"),
        ("too large", 200, good_list(&[0; 8], json!({"pad": "x".repeat(80_000)})), "at most"),
        ("a compression bomb", 200, good_list(&[0; 8], json!({"status_list": bomb})), "inflates past max_bytes"),
        ("HTTP 503", 503, good_list(&[0; 8], json!({})), "HTTP status 503"),
    ] {
        let seen = envoy.log().matches(why).count();
        server.set(status, &body);
        // Refused by a fetch made after the change (a fetch already under way when the
        // server changed may still bring the previous body): its reason logged once more.
        let t = Instant::now();
        while envoy.log().matches(why).count() <= seen {
            assert!(t.elapsed() < Duration::from_secs(10), "{name}: not refused");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(outcome(&get(&envoy, &valid)), ALLOWED, "{name}: the last good list is kept");
        assert_eq!(outcome(&get(&envoy, &revoked)), refused("revoked"), "{name}: and still revokes");
    }
    for why in ["signature", "expired", "not a compact JWS", "at most", "inflates past max_bytes", "HTTP status 503"] {
        assert!(envoy.wait_log(why), "the log says {why:?}");
    }
    assert!(good_at.elapsed() < Duration::from_secs(20), "the bad lists took {:?}: ttl too short", good_at.elapsed());
    // The last good list's ttl (20 s from its fetch) ends: nothing trusted, fail closed.
    let took = wait_for(&envoy, &valid, &refused("status_unavailable"), 30);
    assert!(good_at.elapsed() >= Duration::from_secs(18), "kept until its ttl: {:?}", good_at.elapsed());
    eprintln!("status_unavailable {took:?} later, {:?} after the last good list", good_at.elapsed());
    assert_eq!(outcome(&get(&envoy, &revoked)), refused("status_unavailable"));
    // A good list again: service resumes by itself.
    server.set(200, &good_list(&statuses, json!({})));
    wait_for(&envoy, &valid, &ALLOWED, 10);
}

#[test]
fn lists_are_fetched_once_per_envoy() {
    let server = JwksServer::start(&good_list(&[0; 8], json!({})));
    let envoy = start_with_lists(&server, json!({"refresh_seconds": 600}), 2);
    let valid = with_status(0, URI);
    let port = envoy.port;
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let t = valid.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                loop {
                    let r = cjwt_harness::envoy::send("127.0.0.1", port, "GET", "/x", &[("authorization", &t)]);
                    if r.status == 200 || started.elapsed() > Duration::from_secs(10) {
                        return r.status;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    std::thread::sleep(Duration::from_millis(500));
    let hits = server.hits();
    eprintln!("status list fetches with --concurrency 2: {hits}");
    // One fetch per Envoy: the native workers share the main thread's store, the
    // wasm VMs the list one of them fetched (shared data and a fetch lease).
    assert_eq!(hits, 1, "{hits} fetches");
}

/// Issue 24 item 4: an older, still unexpired Status List Token served after a
/// newer one (a stale cache in front of the identity provider) is refused as a
/// failed refresh and the newer list stays, across a configuration hand-over too.
/// Item 6: the Status List Token itself is not an access token.
#[test]
fn an_older_list_does_not_roll_back_and_a_list_is_not_an_access_token() {
    let now = now();
    let mut statuses = vec![0u8; 8];
    let v1 = good_list(&statuses, json!({"iat": now - 120}));
    statuses[3] = 1;
    let v2 = good_list(&statuses, json!({"iat": now}));
    let server = JwksServer::start(&v1);
    // The provider names no audience: the list document would otherwise be refused
    // `wrong_audience` before its type is looked at.
    let no_audience = |extra: Value| {
        let mut e = json!({"providers": [{"name": "corp", "issuer": ISS,
            "jwks": {"keys": [key(Algorithm::EdDSA).public_jwk(Some("k1"))]}}]});
        if let (Value::Object(b), Value::Object(x)) = (&mut e, extra) {
            b.extend(x);
        }
        lists_config(json!({"refresh_seconds": 1}), e)
    };
    let opts = Options { concurrency: 2, clusters: cluster("lists", server.port), ..Options::default() };
    let envoy = Envoy::start_lds(&no_audience(json!({})), opts);
    let third = with_status(3, URI);
    wait_for(&envoy, &third, &ALLOWED, 10);
    server.set(200, &v2);
    wait_for(&envoy, &third, &refused("revoked"), 10);
    // v1 served again: every refresh is refused, entry 3 stays revoked.
    server.set(200, &v1);
    assert!(envoy.wait_log("a rollback is refused"), "the refusal is logged");
    let failed = envoy.stat("cjwt.status_list.fetch_failed");
    let t = Instant::now();
    while envoy.stat("cjwt.status_list.fetch_failed") < failed + 2 {
        assert_eq!(outcome(&get(&envoy, &third)), refused("revoked"), "rolled back");
        assert!(t.elapsed() < Duration::from_secs(15), "no further refused refresh");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A configuration pushed now starts from the last good list (v2) and refuses v1 too.
    envoy.update_plugin_config(&no_audience(json!({"revocation": {"jti": [{"iss": ISS, "jti": "other"}]}})));
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        assert_eq!(outcome(&get(&envoy, &third)), refused("revoked"), "rolled back after the hand-over");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A newer list is taken as before.
    statuses[3] = 0;
    server.set(200, &good_list(&statuses, json!({"iat": now + 1})));
    wait_for(&envoy, &third, &ALLOWED, 10);

    // Item 6: the list document, signed by the provider with `iss`, presented as a
    // bearer token; and an untyped JWT carrying a `status_list` claim.
    for (name, auth) in [
        ("statuslist+jwt", format!("Bearer {v2}")),
        (
            "status_list claim",
            format!(
                "Bearer {}",
                mint(
                    key(Algorithm::EdDSA),
                    Some("k1"),
                    &claims_at(now, json!({"status_list": {"bits": 1, "lst": "eNrbuRgAAhcBXQ"}}))
                )
            ),
        ),
    ] {
        assert_eq!(outcome(&get(&envoy, &auth)), refused("wrong_typ"), "{name}");
    }
    assert_eq!(envoy.stat("cjwt.denied.wrong_typ"), 2);
}
