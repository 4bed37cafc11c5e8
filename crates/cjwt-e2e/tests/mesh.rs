//! `make mesh-test` (part of `make docker-test`): one usage count for the whole
//! mesh, proven where it matters (SPEC §8 v2, issue 13). Three Envoy containers
//! (the locally built `cjwt-envoy` image with the build `CJWT_BUILD` names:
//! cjwt.wasm and envoy/envoy-docker.yaml, or libcjwt.so and
//! envoy/envoy-docker-native.yaml), each with its own
//! address, count `max_uses` in a three-member etcd cluster (`cjwt-etcd`, Debian's
//! etcd 3.4) on a Docker network the test creates and removes. Clients reach the
//! Envoys on a second ("front") network, so an Envoy can be cut off from etcd
//! alone. Every response's status and reason is asserted. Without a Docker
//! engine or the images, the suite fails saying which make target builds them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_harness::docker::{self, Container, ContainerSpec, EtcdContainers, Network};
use cjwt_harness::envoy::{build, module_dir, repo_root, wasm_path, Build};
use cjwt_harness::etcd::{envoy_cluster, http_with};
use cjwt_harness::said::{count, is, tally, wait_until, Said};
use cjwt_harness::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The Envoys' listener and admin ports (each container has its own address).
const LISTENER: u16 = 10000;
const ADMIN: u16 = 9901;

/// Three etcd members and three Envoys (plus the echo upstream), on two networks.
struct Mesh {
    envoys: Vec<Container>,
    /// The Envoys' addresses on the front network, where clients reach them.
    fronts: Vec<String>,
    etcd: EtcdContainers,
    back: Network,
    _echo: Container,
    config: std::path::PathBuf,
    // Dropped last: the containers above go first.
    _front: Network,
}

/// The plugin configuration: the harness's test provider, no clock skew, the store
/// with a 2 s deadline: the exact-count rounds must not meet an answer that a loaded
/// machine (both builds' meshes at once, and whatever else runs) slowed past it —
/// with 500 ms, a round once got 2 × 503 `usage_unavailable` (still exact-or-under).
/// The deadline itself is tested in envoy_usage_store.rs.
fn plugin() -> Value {
    config_json(json!({
        "clock_skew_seconds": 0,
        "usage_store": {"etcd": {"cluster": "etcd", "authority": "etcd", "timeout_ms": 2000}}
    }))
}

/// Leased allowances: tokens with `max_uses` of 20 or more take batches of
/// [`BATCH`], refilled in the background below [`REFILL_BELOW`].
const BATCH: u64 = 16;
const REFILL_BELOW: u64 = 8;
/// The most unspent uses one Envoy holds of a token (`usage::allowance`).
const HELD: u64 = BATCH + REFILL_BELOW - 1;

fn leasing_plugin() -> Value {
    config_json(json!({
        "clock_skew_seconds": 0,
        "usage_store": {"etcd": {"cluster": "etcd", "authority": "etcd", "timeout_ms": 2000,
            "allowance": {"from_max_uses": 20, "batch": BATCH, "refill_below": REFILL_BELOW}}}
    }))
}

/// The shipped Docker configuration of the build under test (envoy/envoy-docker.yaml
/// or envoy/envoy-docker-native.yaml) with the test's plugin configuration and the
/// etcd cluster.
fn envoy_yaml(etcd: &EtcdContainers, plugin: &Value) -> String {
    let mut out = docker::shipped_config(plugin);
    let endpoints: Vec<(String, u16)> = (0..etcd.len()).map(|i| (etcd.ip(i).to_string(), 2379)).collect();
    out.push_str(&envoy_cluster("etcd", &endpoints));
    out
}

impl Mesh {
    fn start() -> Mesh {
        Mesh::start_with(&plugin())
    }

    /// The mesh with the plugin configuration `plugin`.
    fn start_with(plugin: &Value) -> Mesh {
        docker::require_engine();
        docker::require_image(&docker::envoy_image());
        docker::require_image(&docker::etcd_image());
        let wasm = wasm_path();
        assert!(wasm.exists(), "{} is missing: run `make build`", wasm.display());
        // The native build: the directory holding libcjwt.so, where Envoy looks for it.
        let module = (build() == Build::Native).then(module_dir);
        let front = Network::create("front");
        let back = Network::create("back");
        let etcd = EtcdContainers::run(&back, 3, 11);
        let echo = Container::run(
            ContainerSpec::new(&docker::envoy_image(), "echo")
                .on(&front, 5)
                .mount(repo_root().join("docker/echo/echo.yaml"), "/etc/envoy/echo.yaml", true)
                .args(["envoy", "-c", "/etc/envoy/echo.yaml", "--concurrency", "1", "-l", "warning"]),
        );
        static N: AtomicUsize = AtomicUsize::new(0);
        let config =
            cjwt_harness::scratch(&format!("mesh-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)))
                .join("envoy.yaml");
        std::fs::write(&config, envoy_yaml(&etcd, plugin)).unwrap();
        let mut envoys = Vec::new();
        let mut fronts = Vec::new();
        for i in 0..3u8 {
            let mut spec = ContainerSpec::new(&docker::envoy_image(), &format!("envoy{i}"))
                .on(&back, 21 + i)
                .mount(&config, "/etc/envoy/envoy.yaml", true)
                .args(["envoy", "-c", "/etc/envoy/envoy.yaml", "--concurrency", "2", "-l", "info"]);
            spec = match &module {
                None => spec.mount(&wasm, "/etc/envoy/cjwt.wasm", true),
                Some(dir) => spec
                    .mount(dir, "/etc/envoy/module", true)
                    .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", "/etc/envoy/module"),
            };
            let envoy = Container::run(spec);
            let ip = front.ip(21 + i);
            envoy.connect(&front, &ip);
            envoys.push(envoy);
            fronts.push(ip);
        }
        let mesh = Mesh { envoys, fronts, etcd, back, _echo: echo, config, _front: front };
        for i in 0..3 {
            mesh.wait_ready(i);
        }
        mesh
    }

    /// Envoy `i` serves, sees every etcd member healthy, and forwards to the echo
    /// upstream (its STRICT_DNS cluster resolved, the echo listening: on a loaded
    /// machine the first burst met Envoy's own 503 "no healthy upstream").
    fn wait_ready(&self, i: usize) {
        wait_until(&format!("envoy{i} ready with three healthy etcd members"), Duration::from_secs(60), || {
            let Ok(clusters) = http_with(&self.fronts[i], ADMIN, "GET", "/clusters", &[], None, Duration::from_secs(2))
            else {
                return false;
            };
            let flags: Vec<&str> =
                clusters.body.lines().filter(|l| l.starts_with("etcd::") && l.contains("::health_flags::")).collect();
            flags.len() == 3 && flags.iter().all(|l| l.ends_with("::healthy"))
        });
        // A token without max_uses: the usage store is not asked (its counters stay as they are).
        let plain = use_token(&unique_jti("ready"), None, 300);
        wait_until(&format!("envoy{i} forwarding to the echo upstream"), Duration::from_secs(60), || {
            http_with(
                &self.fronts[i],
                LISTENER,
                "GET",
                "/x",
                &[("authorization", &plain)],
                None,
                Duration::from_secs(5),
            )
            .is_ok_and(|r| r.status == 200)
        });
    }

    fn ask(&self, i: usize, token: &str) -> Said {
        ask(&self.fronts[i], token)
    }

    /// `clients` concurrent clients each sending `each` requests with `token`,
    /// spread over the three Envoys.
    fn burst(&self, token: &str, clients: usize, each: usize) -> Vec<Said> {
        self.burst_on(&[0, 1, 2], token, clients, each)
    }

    /// [`Mesh::burst`] spread over the Envoys `on` only.
    fn burst_on(&self, on: &[usize], token: &str, clients: usize, each: usize) -> Vec<Said> {
        let fronts: Vec<String> = on.iter().map(|i| self.fronts[*i].clone()).collect();
        paced_burst(fronts, token, clients, each, Duration::ZERO).join().unwrap()
    }

    /// After `leader` was killed: service resumes by itself with the new leader
    /// (a fresh one-time token allowed by every Envoy), then the member comes
    /// back and every Envoy sees it healthy.
    fn recover(&self, leader: usize) {
        wait_until("a fresh token allowed by every Envoy", Duration::from_secs(20), || {
            (0..3).all(|i| is(&self.ask(i, &use_token(&unique_jti("after"), Some(1), 300)), 200, None))
        });
        self.etcd.start(leader);
        self.etcd.wait_healthy(leader, Duration::from_secs(30));
        for i in 0..3 {
            self.wait_ready(i);
        }
    }

    /// The uses etcd handed out in batches of the leased token `jti` (the
    /// count in its key, `cjwt/uses/allow/` + the hex of its id; 0 when absent).
    fn taken(&self, jti: &str) -> u64 {
        let id = cjwt_core::shared_slots::UsageId::new("https://idp.example.com", jti).hex();
        let (code, out) = self.etcd.etcdctl(&["get", "--print-value-only", &format!("cjwt/uses/allow/{id}")]);
        assert_eq!(code, 0, "{out}");
        out.trim().parse().unwrap_or_else(|_| if out.trim().is_empty() { 0 } else { panic!("not a count: {out:?}") })
    }

    /// cjwt's counter `name` summed over the Envoys (wasm: `wasmcustom.` names;
    /// native: the module's `cjwt.` namespace as it is).
    fn stat(&self, name: &str) -> u64 {
        self.stat_of(&[0, 1, 2], name)
    }

    /// [`Mesh::stat`] summed over the Envoys `of` only.
    fn stat_of(&self, of: &[usize], name: &str) -> u64 {
        let prefix = if build() == Build::Wasm { "wasmcustom." } else { "" };
        of.iter()
            .map(|&i| {
                let path = format!("/stats?filter=^{prefix}{name}$");
                let got = http_with(&self.fronts[i], ADMIN, "GET", &path, &[], None, Duration::from_secs(5)).unwrap();
                got.body
                    .lines()
                    .filter_map(|l| l.split_once(": "))
                    .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
                    .sum::<u64>()
            })
            .sum()
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

/// `clients` callers in the background, each asking `each` times with `token`
/// (`pace` before each ask), round-robin over `fronts`: all their answers.
fn paced_burst(
    fronts: Vec<String>,
    token: &str,
    clients: usize,
    each: usize,
    pace: Duration,
) -> std::thread::JoinHandle<Vec<Said>> {
    let token = token.to_string();
    std::thread::spawn(move || {
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                let (fronts, token) = (fronts.clone(), token.clone());
                std::thread::spawn(move || {
                    (0..each)
                        .map(|i| {
                            std::thread::sleep(pace);
                            ask(&fronts[(c + i) % fronts.len()], &token)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    })
}

fn ask(ip: &str, token: &str) -> Said {
    let got = http_with(ip, LISTENER, "GET", "/x", &[("authorization", token)], None, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("envoy at {ip}: {e}"));
    if got.status == 503 {
        assert_eq!(got.header("retry-after"), Some("1"), "a 503 says when to retry: {got:?}");
    }
    (got.status, got.json().get("reason").and_then(Value::as_str).map(str::to_owned))
}

#[test]
fn exact_counts_through_three_envoys_then_expiry_and_a_restarted_envoy() {
    let mesh = Mesh::start();
    for (limit, clients, each) in [(1u64, 9, 2), (50, 12, 6)] {
        for round in 0..20 {
            let t = use_token(&unique_jti("exact"), Some(limit), 300);
            let said = mesh.burst(&t, clients, each);
            assert_eq!(
                (count(&said, 200, None), count(&said, 403, Some("max_uses"))),
                (limit as usize, said.len() - limit as usize),
                "max_uses {limit}, round {round}: {:?}",
                tally(&said)
            );
        }
    }
    // Every use let through was counted at the store; a replay of a token an Envoy
    // learned was spent is refused there without asking it (the free deny path).
    let asked = mesh.stat("cjwt.usage_store.ok");
    assert!((20 + 20 * 50..=20 * 9 * 2 + 20 * 12 * 6).contains(&asked), "cjwt.usage_store.ok: {asked}");
    assert_eq!(mesh.stat("cjwt.usage_store.failed"), 0);

    // A token used up, and one that expires in 3 s (no clock skew configured).
    let long = use_token(&unique_jti("long"), Some(2), 300);
    let short = use_token(&unique_jti("short"), Some(2), 3);
    for t in [&long, &short] {
        assert!(is(&mesh.ask(0, t), 200, None));
        assert!(is(&mesh.ask(1, t), 200, None));
        assert!(is(&mesh.ask(2, t), 403, Some("max_uses")));
    }
    // A restarted Envoy hands out no fresh uses: the count is etcd's.
    mesh.envoys[1].stop();
    mesh.envoys[1].start();
    mesh.wait_ready(1);
    assert!(is(&mesh.ask(1, &long), 403, Some("max_uses")));
    // The short token's key is deleted by its lease once the token expired
    // (at most two 10 s lease buckets after `exp`), checked with etcdctl.
    let keys = || {
        let (code, out) = mesh.etcd.etcdctl(&["get", "--prefix", "--keys-only", "cjwt/uses/"]);
        assert_eq!(code, 0, "{out}");
        out.lines().filter(|l| !l.trim().is_empty()).count()
    };
    let before = keys();
    assert!(before >= 2, "{before} keys");
    wait_until("the expired token's key deleted", Duration::from_secs(45), || keys() == before - 1);
}

#[test]
fn a_leader_killed_during_a_burst_and_quorum_lost_never_let_a_token_through_twice() {
    let mesh = Mesh::start();
    for round in 0..3 {
        let limit = 1;
        let t = use_token(&unique_jti("election"), Some(limit), 300);
        let leader = mesh.etcd.leader().expect("a leader");
        let burst = paced_burst(mesh.fronts.clone(), &t, 6, 15, Duration::from_millis(40));
        std::thread::sleep(Duration::from_millis(100));
        mesh.etcd.kill(leader);
        // Fresh one-time tokens during the election: 200 or 503, never 403.
        let fresh: Vec<Said> = (0..15)
            .map(|i| {
                std::thread::sleep(Duration::from_millis(60));
                mesh.ask(i % 3, &use_token(&unique_jti("fresh"), Some(1), 300))
            })
            .collect();
        let during = burst.join().unwrap();
        for said in during.iter().chain(&fresh) {
            assert!(
                is(said, 200, None) || is(said, 403, Some("max_uses")) || is(said, 503, Some("usage_unavailable")),
                "round {round}: {said:?}"
            );
        }
        assert!(count(&during, 200, None) <= limit as usize, "round {round}: over max_uses {:?}", tally(&during));
        assert_eq!(
            count(&fresh, 403, Some("max_uses")),
            0,
            "round {round}: a fresh token refused as used {:?}",
            tally(&fresh)
        );
        eprintln!("round {round}: burst {:?}, fresh {:?}", tally(&during), tally(&fresh));
        mesh.recover(leader);
        assert!(mesh.burst(&t, 3, 3).iter().all(|s| is(s, 403, Some("max_uses")) || is(s, 200, None)));
    }

    // Quorum lost: two members stopped. Every Envoy refuses max_uses tokens with 503, lets none through.
    let plain = use_token(&unique_jti("plain"), None, 300);
    mesh.etcd.stop(0);
    mesh.etcd.stop(1);
    for round in 0..5 {
        for i in 0..3 {
            let said = mesh.ask(i, &use_token(&unique_jti("noquorum"), Some(5), 300));
            assert!(is(&said, 503, Some("usage_unavailable")), "round {round}, envoy{i}: {said:?}");
            assert!(is(&mesh.ask(i, &plain), 200, None), "a token without max_uses is unaffected");
        }
    }
    // Service resumes when a member returns.
    mesh.etcd.start(1);
    wait_until("service back with quorum", Duration::from_secs(30), || {
        (0..3).all(|i| is(&mesh.ask(i, &use_token(&unique_jti("back"), Some(1), 300)), 200, None))
    });
}

#[test]
fn an_envoy_cut_off_from_etcd_refuses_max_uses_tokens_and_serves_the_rest() {
    let mesh = Mesh::start();
    mesh.envoys[2].disconnect(&mesh.back);
    let plain = use_token(&unique_jti("plain"), None, 300);
    for round in 0..10 {
        let said = mesh.ask(2, &use_token(&unique_jti("cut"), Some(3), 300));
        assert!(is(&said, 503, Some("usage_unavailable")), "round {round}: {said:?}");
        assert!(is(&mesh.ask(2, &plain), 200, None), "round {round}: plain token through the cut-off Envoy");
        // The two others are unaffected.
        let t = use_token(&unique_jti("others"), Some(1), 300);
        assert!(is(&mesh.ask(0, &t), 200, None), "round {round}");
        assert!(is(&mesh.ask(1, &t), 403, Some("max_uses")), "round {round}");
    }
    // Reconnected, it counts again.
    mesh.envoys[2].connect(&mesh.back, &mesh.back.ip(23));
    mesh.wait_ready(2);
    wait_until("the reconnected Envoy counts again", Duration::from_secs(20), || {
        is(&mesh.ask(2, &use_token(&unique_jti("again"), Some(1), 300)), 200, None)
    });
}

/// Every answer to a leased token in a fault: let through, used up, or the
/// store unavailable; never anything else.
fn assert_leased_answers(said: &[Said], what: &str) {
    for s in said {
        assert!(
            is(s, 200, None) || is(s, 403, Some("max_uses")) || is(s, 503, Some("usage_unavailable")),
            "{what}: {s:?}"
        );
    }
}

/// Leased allowances (issue 27 items 3 and 5) through three Envoys: bursts
/// never let a token through more than `max_uses` times and lose at most what
/// the Envoys hold (`usage::allowance`: `batch + refill_below − 1` each) at far
/// fewer store calls than uses; an Envoy killed holding a lease loses what it
/// held, never hands it out again (nor after its restart); a leased token
/// expires with its allowances and its key.
#[test]
fn leased_tokens_bursts_an_envoy_killed_holding_a_lease_and_expiry() {
    let mesh = Mesh::start_with(&leasing_plugin());
    let failed = || mesh.stat("cjwt.usage_store.failed") + mesh.stat("cjwt.usage_store.refill_failed");
    for (limit, clients, each) in [(200u64, 12, 25), (64, 9, 12), (20, 6, 6)] {
        let jti = unique_jti("leased");
        let t = use_token(&jti, Some(limit), 300);
        let calls = || mesh.stat("cjwt.usage_store.ok") + mesh.stat("cjwt.usage_store.refill_ok");
        let (before, failed_before) = (calls(), failed());
        let said = mesh.burst(&t, clients, each);
        // No fault here, but a loaded machine may push a contended batch past its
        // 2 s deadline: such a request gets 503 and its call counts as failed.
        assert_leased_answers(&said, "a burst");
        let allowed = count(&said, 200, None) as u64;
        let taken = mesh.taken(&jti);
        let (calls, failures) = (calls() - before, failed() - failed_before);
        eprintln!(
            "max_uses {limit}: {} requests, {allowed} let through, {taken} taken, {calls} store calls, {failures} failed: {:?}",
            said.len(),
            tally(&said)
        );
        assert!(count(&said, 503, Some("usage_unavailable")) as u64 <= failures, "a 503 without a failed call");
        assert!(allowed <= taken && taken <= limit, "max_uses {limit}: {allowed} let through, {taken} taken");
        let bound = 3 * HELD + BATCH * failures;
        assert!(limit - allowed <= bound, "max_uses {limit}: {} lost, over the bound {bound}", limit - allowed);
        assert!(calls * 2 < said.len() as u64, "max_uses {limit}: {calls} store calls for {} requests", said.len());
    }

    // An Envoy killed holding a lease: its 13 unspent uses are lost, never handed out again.
    let (limit, jti) = (60u64, unique_jti("killed"));
    let t = use_token(&jti, Some(limit), 300);
    for _ in 0..3 {
        assert!(is(&mesh.ask(0, &t), 200, None));
    }
    assert_eq!(mesh.taken(&jti), BATCH, "envoy0 took one batch and holds 13 of it");
    let failed_before =
        mesh.stat_of(&[1, 2], "cjwt.usage_store.failed") + mesh.stat_of(&[1, 2], "cjwt.usage_store.refill_failed");
    mesh.envoys[0].kill();
    let said = mesh.burst_on(&[1, 2], &t, 8, 12);
    assert_leased_answers(&said, "after envoy0 was killed");
    let others = count(&said, 200, None) as u64;
    let failures = mesh.stat_of(&[1, 2], "cjwt.usage_store.failed")
        + mesh.stat_of(&[1, 2], "cjwt.usage_store.refill_failed")
        - failed_before;
    eprintln!("killed: {others} let through by the others, {failures} failed: {:?}", tally(&said));
    assert!(others <= limit - BATCH, "{others} let through by the others after envoy0 took {BATCH}");
    assert_eq!(mesh.taken(&jti), limit, "the others drained the store");
    let lost = limit - 3 - others;
    assert!(
        (BATCH - 3..=HELD + 2 * HELD + BATCH * failures).contains(&lost),
        "{lost} lost: the killed Envoy's 13, within the bound"
    );
    // Restarted, it has nothing of the token left: the store says used up.
    mesh.envoys[0].start();
    mesh.wait_ready(0);
    assert!(is(&mesh.ask(0, &t), 403, Some("max_uses")));

    // Expiry: a leased token held by every Envoy is refused as expired, not by an allowance.
    let short_jti = unique_jti("leased-short");
    let short = use_token(&short_jti, Some(100), 6);
    for i in 0..3 {
        for _ in 0..3 {
            assert!(is(&mesh.ask(i, &short), 200, None), "envoy{i}");
        }
    }
    assert_eq!(mesh.taken(&short_jti), 3 * BATCH);
    std::thread::sleep(Duration::from_secs(7));
    for i in 0..3 {
        let said = mesh.ask(i, &short);
        assert_eq!(said.0, 401, "envoy{i}: {said:?}");
    }
    wait_until("the expired leased token's key deleted by its lease", Duration::from_secs(45), || {
        mesh.taken(&short_jti) == 0
    });
}

/// Leased allowances under faults: the etcd leader killed while the Envoys
/// refill, and an Envoy cut off from etcd. Never more than `max_uses` let
/// through; the lost remainder within the written bound: what the Envoys hold
/// (`batch + refill_below − 1` each) plus a batch for each store call that
/// failed (its outcome unknown).
#[test]
fn leased_tokens_under_a_leader_killed_during_refills_and_a_partitioned_envoy() {
    let mesh = Mesh::start_with(&leasing_plugin());
    let failed = || mesh.stat("cjwt.usage_store.failed") + mesh.stat("cjwt.usage_store.refill_failed");

    // The leader killed while a steady burst refills across the three Envoys.
    let (limit, jti) = (400u64, unique_jti("leased-election"));
    let t = use_token(&jti, Some(limit), 300);
    let leader = mesh.etcd.leader().expect("a leader");
    let during = paced_burst(mesh.fronts.clone(), &t, 9, 30, Duration::from_millis(30));
    std::thread::sleep(Duration::from_millis(300));
    mesh.etcd.kill(leader);
    let during = during.join().unwrap();
    assert_leased_answers(&during, "during the election");
    let refills_during = mesh.stat("cjwt.usage_store.refill_ok") + mesh.stat("cjwt.usage_store.refill_failed");
    assert!(refills_during > 0, "the Envoys refilled during the burst");
    mesh.recover(leader);
    let rest = mesh.burst(&t, 9, 40);
    assert_leased_answers(&rest, "after the election");
    let allowed = (count(&during, 200, None) + count(&rest, 200, None)) as u64;
    let taken = mesh.taken(&jti);
    let failures = failed();
    eprintln!(
        "election: during {:?}, after {:?}; {allowed} let through, {taken} taken, {failures} failed store calls, {refills_during} refills during",
        tally(&during),
        tally(&rest)
    );
    assert!(allowed <= taken && taken <= limit, "{allowed} let through, {taken} taken of {limit}");
    assert!(
        limit - allowed <= 3 * HELD + BATCH * failures,
        "{} lost, over the bound {}",
        limit - allowed,
        3 * HELD + BATCH * failures
    );

    // A partitioned Envoy: it serves what it holds (already counted), then 503;
    // the others drain the rest; never more than max_uses in all.
    let (limit, jti) = (100u64, unique_jti("leased-cut"));
    let t = use_token(&jti, Some(limit), 300);
    let failed_before = failed();
    assert!(is(&mesh.ask(2, &t), 200, None));
    assert!(is(&mesh.ask(2, &t), 200, None));
    mesh.envoys[2].disconnect(&mesh.back);
    let cut: Vec<Said> = (0..30).map(|_| mesh.ask(2, &t)).collect();
    let cut_allowed = count(&cut, 200, None) as u64;
    assert_eq!(cut_allowed, BATCH - 2, "cut off, it spends what it held and no more: {:?}", tally(&cut));
    assert_eq!(count(&cut, 503, Some("usage_unavailable")) as u64, 30 - cut_allowed, "{:?}", tally(&cut));
    let others = mesh.burst_on(&[0, 1], &t, 8, 15);
    assert_leased_answers(&others, "the two others");
    mesh.envoys[2].connect(&mesh.back, &mesh.back.ip(23));
    mesh.wait_ready(2);
    let after = mesh.burst(&t, 6, 6);
    assert_leased_answers(&after, "reconnected");
    let allowed = 2 + cut_allowed + (count(&others, 200, None) + count(&after, 200, None)) as u64;
    let taken = mesh.taken(&jti);
    let failures = failed() - failed_before;
    eprintln!("partition: {allowed} let through, {taken} taken, {failures} failed store calls");
    assert!(allowed <= taken && taken <= limit, "{allowed} let through, {taken} taken of {limit}");
    assert!(
        limit - allowed <= 3 * HELD + BATCH * failures,
        "{} lost, over the bound {}",
        limit - allowed,
        3 * HELD + BATCH * failures
    );
}
