//! The mesh-wide usage count (SPEC §8 v2, issue 13) through real Envoys and a
//! real three-member etcd cluster on loopback (Debian's etcd 3.4, started by
//! the test; `make test` installs it): exact counts under concurrent bursts
//! through several Envoys, a leader killed during a burst, quorum lost and
//! regained, an etcd that never answers, hostile etcd answers, keys gone after
//! the token's expiry and no fresh uses from a restarted Envoy, replays of a
//! spent token refused without the store (the free deny path). Every response's
//! status and reason is checked. Nothing is mocked at the network level except
//! where the point is a broken store (a listener that never answers, a server
//! that answers garbage), and those are real sockets through Envoy's cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_harness::envoy::{cluster, send, Envoy, JwksServer, Options};
use cjwt_harness::etcd::EtcdCluster;
use cjwt_harness::said::{count, tally, wait_until, Said};
use cjwt_harness::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The plugin counting in etcd over `api` (`"grpc"`, the default, or `"json"`).
fn plugin_over(timeout_ms: u64, api: &str) -> Value {
    config_json(json!({
        "clock_skew_seconds": 0,
        "usage_store": {"etcd": {"cluster": "etcd", "authority": "etcd", "timeout_ms": timeout_ms, "api": api}}
    }))
}

/// `n` Envoys (two workers each) counting in the store behind `clusters`, each
/// returned once its health checks found every store member healthy (until then
/// Envoy has no host to call, and answers 503 `usage_unavailable`).
fn envoys(n: usize, timeout_ms: u64, clusters: &str) -> Vec<Envoy> {
    envoys_over(n, timeout_ms, clusters, "grpc")
}

/// [`envoys`] over `api`.
fn envoys_over(n: usize, timeout_ms: u64, clusters: &str, api: &str) -> Vec<Envoy> {
    (0..n)
        .map(|_| {
            let envoy = Envoy::start(
                &plugin_over(timeout_ms, api),
                Options { concurrency: 2, clusters: clusters.to_string(), ..Options::default() },
            );
            wait_until("the etcd members healthy in Envoy", Duration::from_secs(10), || {
                let (_, clusters) = envoy.admin_get("/clusters");
                let flags: Vec<&str> =
                    clusters.lines().filter(|l| l.starts_with("etcd::") && l.contains("::health_flags::")).collect();
                !flags.is_empty() && flags.iter().all(|l| l.ends_with("::healthy"))
            });
            envoy
        })
        .collect()
}

fn ask(port: u16, token: &str) -> Said {
    let r = send("127.0.0.1", port, "GET", "/x", &[("authorization", token)]);
    if r.status == 503 {
        assert_eq!(r.header("retry-after"), Some("1"), "a 503 says when to retry: {:?}", r.headers);
    }
    (r.status, r.reason())
}

/// `clients` concurrent clients, each sending `each` requests with `token`,
/// round-robin over `ports`.
fn burst(ports: &[u16], token: &str, clients: usize, each: usize) -> Vec<Said> {
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let ports = ports.to_vec();
            let token = token.to_string();
            std::thread::spawn(move || (0..each).map(|i| ask(ports[(c + i) % ports.len()], &token)).collect::<Vec<_>>())
        })
        .collect();
    threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
}

#[test]
fn a_token_is_let_through_exactly_max_uses_times_across_envoys() {
    let etcd = EtcdCluster::start(3);
    let envoys = envoys(3, 2000, &etcd.envoy_cluster("etcd"));
    let ports: Vec<u16> = envoys.iter().map(|e| e.port).collect();
    for (limit, rounds, clients, each) in [(1u64, 20, 9, 2), (50, 5, 15, 5)] {
        for round in 0..rounds {
            let t = use_token(&unique_jti("exact"), Some(limit), 120);
            let said = burst(&ports, &t, clients, each);
            let allowed = count(&said, 200, None);
            let used_up = count(&said, 403, Some("max_uses"));
            assert_eq!(
                (allowed, used_up),
                (limit as usize, said.len() - limit as usize),
                "max_uses {limit}, round {round}: {:?}",
                tally(&said)
            );
        }
    }
    // Tokens without max_uses never touch the store.
    let before: u64 = envoys.iter().map(|e| e.stat("cjwt.usage_store.ok")).sum();
    let plain = use_token(&unique_jti("plain"), None, 120);
    assert!(burst(&ports, &plain, 6, 5).iter().all(|s| *s == (200, None)));
    let after: u64 = envoys.iter().map(|e| e.stat("cjwt.usage_store.ok")).sum();
    assert_eq!(after, before, "no store call for a token without max_uses");
    // Every store answer was counted as ok, none failed; every allowed use asked
    // the store, and a replay of a token an Envoy learned was spent did not.
    let expected = 20 * 9 * 2 + 5 * 15 * 5;
    let asked = before as usize;
    assert!((20 + 5 * 50..=expected).contains(&asked), "cjwt.usage_store.ok over the three Envoys: {asked}");
    assert_eq!(envoys.iter().map(|e| e.stat("cjwt.usage_store.failed")).sum::<u64>(), 0);
}

#[test]
fn a_leader_killed_during_a_burst_never_lets_a_token_through_more_than_max_uses() {
    let mut etcd = EtcdCluster::start(3);
    let envoys = envoys(3, 500, &etcd.envoy_cluster("etcd"));
    let ports: Vec<u16> = envoys.iter().map(|e| e.port).collect();
    let limit = 20;
    let t = use_token(&unique_jti("election"), Some(limit), 300);
    let leader = etcd.wait_leader(Duration::from_secs(10));
    // The burst runs while the leader dies.
    let burst_ports = ports.clone();
    let burst_token = t.clone();
    let during = std::thread::spawn(move || burst(&burst_ports, &burst_token, 8, 10));
    std::thread::sleep(Duration::from_millis(150));
    etcd.kill(leader);
    // Fresh one-time tokens during the election: allowed or 503, never 403.
    let mut election = Vec::new();
    for _ in 0..20 {
        election.push(ask(ports[election.len() % 3], &use_token(&unique_jti("fresh"), Some(1), 300)));
        std::thread::sleep(Duration::from_millis(50));
    }
    let during = during.join().unwrap();
    for said in during.iter().chain(&election) {
        assert!(
            matches!(
                (said.0, said.1.as_deref()),
                (200, None) | (403, Some("max_uses")) | (503, Some("usage_unavailable"))
            ),
            "unexpected answer {said:?}"
        );
    }
    assert!(count(&during, 200, None) <= limit as usize, "over max_uses: {:?}", tally(&during));
    assert_eq!(count(&election, 403, Some("max_uses")), 0, "a fresh token refused as used: {:?}", tally(&election));
    // Service resumes by itself once a new leader is elected.
    etcd.wait_leader(Duration::from_secs(15));
    wait_until("a fresh one-time token allowed after the election", Duration::from_secs(15), || {
        ask(ports[0], &use_token(&unique_jti("after"), Some(1), 300)) == (200, None)
    });
    // All Envoys serve again; the burst token is never let through more than its limit.
    for port in &ports {
        wait_until("every Envoy serves again", Duration::from_secs(10), || {
            ask(*port, &use_token(&unique_jti("after"), Some(1), 300)) == (200, None)
        });
    }
    let rest = burst(&ports, &t, 6, 10);
    let total = count(&during, 200, None) + count(&rest, 200, None);
    assert!(total <= limit as usize, "over max_uses: {total} > {limit}");
    assert!(
        rest.iter().all(|s| matches!((s.0, s.1.as_deref()), (200, None) | (403, Some("max_uses")))),
        "{:?}",
        tally(&rest)
    );
}

#[test]
fn without_quorum_max_uses_tokens_get_503_and_others_pass_until_a_member_returns() {
    let mut etcd = EtcdCluster::start(3);
    let envoys = envoys(2, 300, &etcd.envoy_cluster("etcd"));
    let ports: Vec<u16> = envoys.iter().map(|e| e.port).collect();
    assert_eq!(ask(ports[0], &use_token(&unique_jti("before"), Some(1), 300)), (200, None));
    let leader = etcd.wait_leader(Duration::from_secs(10));
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    etcd.stop(others[0]);
    etcd.stop(leader);
    let plain = use_token(&unique_jti("plain"), None, 300);
    for round in 0..10 {
        for port in &ports {
            let started = Instant::now();
            let said = ask(*port, &use_token(&unique_jti("noquorum"), Some(3), 300));
            assert_eq!(said, (503, Some("usage_unavailable".to_string())), "round {round}");
            // Bounded by timeout_ms (300) whatever etcd does (its own timeout is 7 s), with
            // margin for a loaded machine (tests run in parallel).
            assert!(started.elapsed() < Duration::from_millis(3500), "waited {:?}", started.elapsed());
            assert_eq!(ask(*port, &plain), (200, None), "a token without max_uses is unaffected");
        }
    }
    assert!(envoys
        .iter()
        .all(|e| e.stat("cjwt.usage_store.failed") >= 10 && e.stat("cjwt.denied.usage_unavailable") >= 10));
    etcd.restart(leader);
    for port in &ports {
        wait_until("service back with quorum", Duration::from_secs(20), || {
            ask(*port, &use_token(&unique_jti("back"), Some(1), 300)) == (200, None)
        });
    }
}

#[test]
fn a_store_that_never_answers_costs_at_most_timeout_ms_and_blocks_nobody_else() {
    // A listener that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming().take(64).flatten() {
            held.push(conn);
        }
        held
    });
    // A store timeout long enough that "blocked behind the waiting requests" and
    // "answered at once" stay apart on a loaded machine (tests run in parallel).
    let envoy = &envoys(1, 1000, &cluster("etcd", port))[0];
    let plain = use_token(&unique_jti("plain"), None, 300);
    let waiting: Vec<_> = (0..4)
        .map(|_| {
            let p = envoy.port;
            std::thread::spawn(move || {
                let started = Instant::now();
                let said = ask(p, &use_token(&unique_jti("silent"), Some(1), 300));
                (said, started.elapsed())
            })
        })
        .collect();
    // While those wait, requests without max_uses are answered at once.
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    assert_eq!(ask(envoy.port, &plain), (200, None));
    assert!(started.elapsed() < Duration::from_millis(600), "blocked for {:?}", started.elapsed());
    for w in waiting {
        let (said, took) = w.join().unwrap();
        assert_eq!(said, (503, Some("usage_unavailable".to_string())));
        assert!(took >= Duration::from_millis(990) && took < Duration::from_millis(3000), "took {took:?}");
    }
    drop(hold);
}

#[test]
fn hostile_store_answers_never_let_a_request_through() {
    let fake = JwksServer::start("{}");
    // The JSON gateway's answers, to an Envoy counting over the gateway.
    let envoy = &envoys_over(1, 1000, &cluster("etcd", fake.port), "json")[0];
    let header = r#""header":{"revision":"7"}"#;
    let huge = format!(r#"{{{header},"succeeded":true,"pad":"{}"}}"#, "a".repeat(100_000));
    let hostile: Vec<(u16, String)> = vec![
        (200, "{}".into()),
        (200, format!(r#"{{{header},"responses":[]}}"#)),
        (200, format!(r#"{{{header},"succeeded":"true"}}"#)),
        (200, format!(r#"{{{header},"succeeded":1}}"#)),
        (200, r#"{"header":{"revision":"-3"},"responses":[{"response_txn":{"succeeded":-1}}]}"#.into()),
        (200, format!(r#"{{{header},"responses":[{{"response_txn":{{"succeeded":true}}}},{{}}]}}"#)),
        (200, huge),
        (200, "not json".into()),
        (200, r#"{"succeeded":true"#.into()),
        (500, r#"{"error":"etcdserver: no leader","code":14}"#.into()),
        (404, r#"{"error":"etcdserver: requested lease not found","code":5}"#.into()),
        (302, String::new()),
    ];
    for (status, body) in &hostile {
        fake.set(*status, body);
        let said = ask(envoy.port, &use_token(&unique_jti("hostile"), Some(5), 300));
        assert_eq!(
            said,
            (503, Some("usage_unavailable".to_string())),
            "etcd answered {status} {}",
            &body[..body.len().min(80)]
        );
    }
    // An etcd answer saying the use was counted lets it through (the same fake, a recorded answer).
    let recorded_counted =
        r#"{"header":{"revision":"2"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"2"}}}]}"#;
    fake.set(200, recorded_counted);
    assert_eq!(ask(envoy.port, &use_token(&unique_jti("ok"), Some(5), 300)), (200, None));
    assert_eq!(envoy.stat("cjwt.usage_store.failed"), hostile.len() as u64);
    assert_eq!(envoy.stat("cjwt.usage_store.ok"), 1);
    // An Envoy counting over gRPC refuses every one of them, the gateway's
    // "counted" too: none is a gRPC answer (no frame, HTTP/1.1, no grpc-status).
    let grpc = &envoys(1, 1000, &cluster("etcd", fake.port))[0];
    for (status, body) in hostile.iter().chain([&(200, recorded_counted.to_string())]) {
        fake.set(*status, body);
        let said = ask(grpc.port, &use_token(&unique_jti("hostile-grpc"), Some(5), 300));
        assert_eq!(
            said,
            (503, Some("usage_unavailable".to_string())),
            "gRPC: {status} {}",
            &body[..body.len().min(80)]
        );
    }
    assert_eq!(grpc.stat("cjwt.usage_store.failed"), hostile.len() as u64 + 1);
    assert_eq!(grpc.stat("cjwt.usage_store.ok"), 0);
}

#[test]
fn keys_expire_with_their_token_and_a_restarted_envoy_hands_out_no_fresh_uses() {
    let etcd = EtcdCluster::start(3);
    let clusters = etcd.envoy_cluster("etcd");
    let first = envoys(1, 2000, &clusters).remove(0);
    let short = use_token(&unique_jti("short"), Some(2), 4);
    let long = use_token(&unique_jti("long"), Some(2), 300);
    for t in [&short, &long] {
        assert_eq!(ask(first.port, t), (200, None));
        assert_eq!(ask(first.port, t), (200, None));
        assert_eq!(ask(first.port, t), (403, Some("max_uses".to_string())));
    }
    assert_eq!(etcd.keys_under(b"cjwt/uses/").len(), 2);
    // A new Envoy process (a restart) sees the same counts.
    drop(first);
    let second = envoys(1, 2000, &clusters).remove(0);
    assert_eq!(ask(second.port, &long), (403, Some("max_uses".to_string())));
    // The short token's key is gone after its exp (+0 skew) plus at most two lease buckets.
    let listed = || etcd.etcdctl(&["get", "--prefix", "--keys-only", "cjwt/uses/"]);
    wait_until("the expired token's key deleted by its lease", Duration::from_secs(40), || {
        listed().lines().filter(|l| !l.trim().is_empty()).count() == 1
    });
    assert_eq!(etcd.keys_under(b"cjwt/uses/").len(), 1, "the live token's key stays");
}

/// The free deny path (issue 27 item 4): once the store said a token is spent,
/// each Envoy (all its workers) refuses its replays locally until it expires,
/// so a flood of replays of a spent one-time token never reaches etcd.
#[test]
fn replays_of_a_spent_token_are_refused_without_asking_the_store() {
    let etcd = EtcdCluster::start(3);
    let envoys = envoys(3, 2000, &etcd.envoy_cluster("etcd"));
    let ports: Vec<u16> = envoys.iter().map(|e| e.port).collect();
    let asked = || envoys.iter().map(|e| e.stat("cjwt.usage_store.ok")).sum::<u64>();
    let once = use_token(&unique_jti("spent"), Some(1), 8);
    assert_eq!(ask(ports[0], &once), (200, None));
    // Each Envoy learns it from the store once (a worker's answer is every worker's).
    for port in &ports {
        assert_eq!(ask(*port, &once), (403, Some("max_uses".to_string())));
    }
    let learned = asked();
    assert_eq!(learned, 4, "one use and one refusal per Envoy asked the store");
    let flood = burst(&ports, &once, 12, 25);
    assert!(flood.iter().all(|s| *s == (403, Some("max_uses".to_string()))), "{:?}", tally(&flood));
    assert_eq!(asked(), learned, "300 replays, no store call");
    assert_eq!(envoys.iter().map(|e| e.stat("cjwt.denied.max_uses")).sum::<u64>(), 303);
    // Another token with room still asks the store.
    assert_eq!(ask(ports[1], &use_token(&unique_jti("room"), Some(2), 300)), (200, None));
    assert_eq!(asked(), learned + 1);
    // After its expiry the token is refused as expired, whatever the set remembers.
    std::thread::sleep(Duration::from_secs(9));
    for port in &ports {
        let (status, reason) = ask(*port, &once);
        assert_eq!(status, 401, "{reason:?}");
        assert_ne!(reason.as_deref(), Some("max_uses"));
    }
    assert_eq!(asked(), learned + 1);
}

/// `n` Envoys counting tokens with `max_uses` of 20 or more in batches of 16.
fn leasing_envoys(n: usize, clusters: &str) -> Vec<Envoy> {
    let plugin = config_json(json!({
        "clock_skew_seconds": 0,
        "usage_store": {"etcd": {"cluster": "etcd", "authority": "etcd", "timeout_ms": 2000,
            "allowance": {"from_max_uses": 20, "batch": 16}}}
    }));
    (0..n)
        .map(|_| {
            let envoy =
                Envoy::start(&plugin, Options { concurrency: 2, clusters: clusters.to_string(), ..Options::default() });
            wait_until("the etcd members healthy in Envoy", Duration::from_secs(10), || {
                let (_, clusters) = envoy.admin_get("/clusters");
                let flags: Vec<&str> =
                    clusters.lines().filter(|l| l.starts_with("etcd::") && l.contains("::health_flags::")).collect();
                !flags.is_empty() && flags.iter().all(|l| l.ends_with("::healthy"))
            });
            envoy
        })
        .collect()
}

/// Leased allowances (issue 27 item 3): bursts across three Envoys never let
/// a token through more than `max_uses` times, lose at most (Envoys × (batch +
/// refill_below − 1)) uses (`refill_below` by default half a batch), and reach the store far less often than once a use; an Envoy
/// stopped holding an allowance loses its uses, never hands them out twice.
#[test]
fn leased_allowances_never_let_a_token_through_more_than_max_uses() {
    let etcd = EtcdCluster::start(3);
    let mut envoys = leasing_envoys(3, &etcd.envoy_cluster("etcd"));
    let ports: Vec<u16> = envoys.iter().map(|e| e.port).collect();
    // What one Envoy may hold: a batch and the refill mark (8 by default) less one.
    let (held, n_envoys) = (16usize + 8 - 1, 3usize);
    // Failed store calls (a request's or a refill's): there is no fault here, but a
    // loaded machine may push a call past its deadline. Its request gets 503 (fail
    // closed) and a failed batch's uses are lost: both are allowed only with a
    // failed call to show for them.
    let failed = |envoys: &[Envoy]| {
        envoys.iter().map(|e| e.stat("cjwt.usage_store.failed") + e.stat("cjwt.usage_store.refill_failed")).sum::<u64>()
    };
    for (limit, clients, each) in [(200u64, 12, 25), (20, 9, 4), (64, 16, 8)] {
        let t = use_token(&unique_jti("leased"), Some(limit), 120);
        let before: u64 = envoys.iter().map(|e| e.stat("cjwt.usage_store.ok")).sum();
        let failed_before = failed(&envoys);
        let said = burst(&ports, &t, clients, each);
        let failures = (failed(&envoys) - failed_before) as usize;
        let allowed = count(&said, 200, None);
        let used_up = count(&said, 403, Some("max_uses"));
        let unavailable = count(&said, 503, Some("usage_unavailable"));
        assert_eq!(allowed + used_up + unavailable, said.len(), "max_uses {limit}: {:?}", tally(&said));
        assert!(unavailable <= failures, "max_uses {limit}: a 503 without a failed store call: {:?}", tally(&said));
        assert!(allowed <= limit as usize, "max_uses {limit}: {allowed} let through");
        assert!(
            allowed + n_envoys * held + 16 * failures >= limit as usize,
            "max_uses {limit}: {allowed} let through, more lost than the bound ({failures} failed calls)"
        );
        let asked = envoys.iter().map(|e| e.stat("cjwt.usage_store.ok")).sum::<u64>() - before;
        assert!(asked < said.len() as u64, "max_uses {limit}: {asked} store calls for {} requests", said.len());
    }
    // An Envoy stopped holding an allowance: its unspent uses are lost, never handed out again.
    let t = use_token(&unique_jti("killed"), Some(40), 120);
    assert_eq!(ask(ports[0], &t), (200, None), "the first Envoy takes a batch of 16");
    drop(envoys.remove(0));
    let failed_before = failed(&envoys);
    let said = burst(&ports[1..], &t, 8, 10);
    let failures = (failed(&envoys) - failed_before) as usize;
    let allowed = count(&said, 200, None);
    let unavailable = count(&said, 503, Some("usage_unavailable"));
    assert!(allowed <= 40 - 16, "{allowed} let through after 16 were taken by the stopped Envoy");
    assert!(allowed + 1 + 2 * held + 16 * failures >= 40 - 15, "{allowed}: more lost than the bound");
    assert!(unavailable <= failures, "a 503 without a failed store call: {:?}", tally(&said));
    assert_eq!(count(&said, 403, Some("max_uses")), said.len() - allowed - unavailable, "{:?}", tally(&said));
}

/// Leased allowances while etcd's leader dies during batch takes: never more
/// than `max_uses` in all, before, during and after the election.
#[test]
fn a_leader_killed_during_batch_takes_never_lets_a_leased_token_through_more_than_max_uses() {
    let mut etcd = EtcdCluster::start(3);
    let envoys = leasing_envoys(3, &etcd.envoy_cluster("etcd"));
    let ports: Vec<u16> = envoys.iter().map(|e| e.port).collect();
    let limit = 150u64;
    let t = use_token(&unique_jti("leased-election"), Some(limit), 300);
    let leader = etcd.wait_leader(Duration::from_secs(10));
    let (burst_ports, burst_token) = (ports.clone(), t.clone());
    let during = std::thread::spawn(move || burst(&burst_ports, &burst_token, 8, 15));
    std::thread::sleep(Duration::from_millis(100));
    etcd.kill(leader);
    let during = during.join().unwrap();
    for said in &during {
        assert!(
            matches!(
                (said.0, said.1.as_deref()),
                (200, None) | (403, Some("max_uses")) | (503, Some("usage_unavailable"))
            ),
            "unexpected answer {said:?}"
        );
    }
    etcd.wait_leader(Duration::from_secs(15));
    for port in &ports {
        wait_until("every Envoy serves again", Duration::from_secs(15), || {
            ask(*port, &use_token(&unique_jti("after"), Some(1), 300)) == (200, None)
        });
    }
    // After the election Envoy may still hold a member out (outlier detection ejects one at its
    // first timeout, for longer each time, and the election timed calls out): such a call fails
    // closed, 503. What must hold is the limit, and that the store decides again: the token's
    // remaining uses are spent and the rest refused with 403.
    let rest = burst(&ports, &t, 8, 25);
    let total = count(&during, 200, None) + count(&rest, 200, None);
    assert!(total <= limit as usize, "over max_uses: {total} > {limit}: {:?} {:?}", tally(&during), tally(&rest));
    assert!(
        rest.iter().all(|s| matches!(
            (s.0, s.1.as_deref()),
            (200, None) | (403, Some("max_uses")) | (503, Some("usage_unavailable"))
        )),
        "{:?}",
        tally(&rest)
    );
    assert!(count(&rest, 403, Some("max_uses")) > 0, "the store never refused the spent token: {:?}", tally(&rest));
}

/// A leased token expiring with uses left in an allowance: refused as expired
/// (never by the allowance), and its key is deleted by its lease.
#[test]
fn a_leased_token_expires_with_its_allowance_and_its_key() {
    let etcd = EtcdCluster::start(3);
    let envoys = leasing_envoys(2, &etcd.envoy_cluster("etcd"));
    let t = use_token(&unique_jti("leased-short"), Some(100), 5);
    for envoy in &envoys {
        for _ in 0..3 {
            assert_eq!(ask(envoy.port, &t), (200, None));
        }
    }
    assert_eq!(etcd.keys_under(b"cjwt/uses/allow/").len(), 1);
    std::thread::sleep(Duration::from_secs(6));
    for envoy in &envoys {
        let (status, reason) = ask(envoy.port, &t);
        assert_eq!(status, 401, "{reason:?}");
    }
    wait_until("the expired token's key deleted by its lease", Duration::from_secs(40), || {
        etcd.keys_under(b"cjwt/uses/allow/").is_empty()
    });
}

/// A TCP relay to `to` that holds every chunk a client sends for `delay`
/// before passing it on (answers come back at once), and counts the store
/// calls it relays (`POST`s: health checks are `GET`s): a store whose every
/// round trip takes at least `delay`.
struct SlowStore {
    port: u16,
    posts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl SlowStore {
    fn start(to: (String, u16), delay: Duration) -> SlowStore {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let posts = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = std::sync::Arc::clone(&posts);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = std::net::TcpStream::connect((to.0.as_str(), to.1)) else { continue };
                let (mut from_client, mut to_server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut from_server, mut to_client) = (server, client);
                let counted = std::sync::Arc::clone(&counted);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = from_client.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let chunk = &buf[..n];
                        counted.fetch_add(chunk.windows(5).filter(|w| w == b"POST ").count(), Ordering::SeqCst);
                        std::thread::sleep(delay);
                        if to_server.write_all(chunk).is_err() {
                            break;
                        }
                    }
                    let _ = to_server.shutdown(std::net::Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        SlowStore { port, posts }
    }

    fn posts(&self) -> usize {
        self.posts.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Background refill (issue 27 item 3): a steady stream of one leased token's
/// requests waits for the store on none of them but the first, and the store
/// is called about once a batch. The store sits behind a relay that delays
/// every call by 300 ms, so a request that waited for it cannot be fast: the
/// first request (which takes the first batch) must be slow, every other one
/// fast; and the same stream without refill (`refill_below: 0`) shows the
/// slow requests the measurement catches, one a batch.
#[test]
fn with_background_refill_a_steady_stream_waits_for_the_store_on_none_but_the_first() {
    let etcd = EtcdCluster::start(1);
    let delay = Duration::from_millis(300);
    let (batch, requests) = (16usize, 96usize);
    let run = |refill_below: u64| {
        let slow = SlowStore::start(etcd.endpoint(0), delay);
        let plugin = config_json(json!({
            "clock_skew_seconds": 0,
            // The JSON gateway over HTTP/1.1: the relay counts the calls by their `POST` lines.
            "usage_store": {"etcd": {"cluster": "etcd", "authority": "etcd", "timeout_ms": 3000, "api": "json",
                "allowance": {"from_max_uses": 20, "batch": batch, "refill_below": refill_below}}}
        }));
        let envoy = Envoy::start(
            &plugin,
            Options { concurrency: 2, clusters: cluster("etcd", slow.port), ..Options::default() },
        );
        let t = use_token(&unique_jti("steady"), Some(1000), 300);
        let mut took = Vec::new();
        for _ in 0..requests {
            let started = Instant::now();
            assert_eq!(ask(envoy.port, &t), (200, None), "refill_below {refill_below}");
            took.push(started.elapsed());
            // 60 ms between requests: 8 uses cover 480 ms, a refill takes 300 ms and a little.
            std::thread::sleep(Duration::from_millis(60));
        }
        // Refills answered after the stream settle before the counts are read.
        std::thread::sleep(Duration::from_millis(800));
        let stats = envoy.stats();
        let stat = |n: &str| stats.get(n).copied().unwrap_or(0) as usize;
        (
            took,
            slow.posts(),
            stat("cjwt.usage_store.ok"),
            stat("cjwt.usage_store.refill_ok"),
            stat("cjwt.usage_store.refill_failed"),
        )
    };
    let fast = delay / 2;
    // With refill below 8 of 16.
    let (took, posts, asked, refilled, failed) = run(8);
    eprintln!(
        "refill: {posts} store calls for {requests} requests ({asked} asked by requests, {refilled} refills, {failed} failed); latencies (ms): {:?}",
        took.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    assert!(took[0] >= delay, "the first request takes the first batch through the slow store: {:?}", took[0]);
    let slow: Vec<(usize, Duration)> = took.iter().copied().enumerate().skip(1).filter(|(_, d)| *d >= fast).collect();
    assert!(slow.is_empty(), "requests that waited for the store: {slow:?}");
    assert_eq!((asked, failed), (1, 0), "one request asked the store; no refill failed");
    // 96 uses: the first batch, then a refill each 16 uses.
    assert!((requests / batch - 1..=requests / batch + 1).contains(&refilled), "{refilled} refills");
    // Every call the relay saw is the first batch's (its transaction; on a bucket
    // without a lease yet, the lease grant and the transaction again) or a refill's.
    assert!([1, 3].contains(&(posts - refilled)), "{posts} calls relayed, {refilled} refills");
    // The same stream without background refill: one request a batch waits (the
    // measurement sees a store round trip when there is one).
    let (took, posts, asked, refilled, _) = run(0);
    let waited = took.iter().filter(|d| **d >= delay).count();
    eprintln!("no refill: {posts} store calls, {waited} requests waited");
    assert_eq!(refilled, 0);
    assert_eq!(waited, asked, "each request that asked the store waited for it");
    assert!(waited >= requests / batch, "{waited} requests waited");
}
