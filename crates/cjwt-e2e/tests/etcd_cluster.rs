//! The etcd harness against the real etcd (Debian's 3.4, `make etcd`): a
//! three-member loopback cluster replicates, survives its leader's death, refuses
//! writes without quorum and takes them again when a member returns. What the
//! other suites assume of etcd is proven here first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_harness::etcd::{prefix_end, EtcdCluster, CLIENT_PORT};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const PREFIX: &[u8] = b"/cjwt-test/";

fn key(name: &str) -> Vec<u8> {
    [PREFIX, name.as_bytes()].concat()
}

/// The keys under [`PREFIX`] as member `i` reads them (linearizable).
fn keys_on(c: &EtcdCluster, i: usize) -> BTreeSet<String> {
    let kvs = c.range_on(i, PREFIX, false).unwrap_or_else(|e| panic!("member {i}: {e}"));
    kvs.into_iter().map(|kv| String::from_utf8(kv.key).unwrap()).collect()
}

fn names(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| String::from_utf8(key(k)).unwrap()).collect()
}

#[test]
fn three_members_replicate_elect_and_need_a_quorum() {
    let mut c = EtcdCluster::start(3);
    let endpoints = c.endpoints();
    assert_eq!(endpoints.len(), 3);
    assert_eq!(endpoints.iter().map(|(ip, _)| ip).collect::<BTreeSet<_>>().len(), 3, "{endpoints:?}");
    assert!(endpoints
        .iter()
        .all(|(ip, port)| ip.starts_with("127.") && !ip.starts_with("127.0.") && *port == CLIENT_PORT));

    // A write is readable from every member; versions and leases as etcd keeps them.
    c.put(&key("a"), b"1");
    c.put(&key("a"), b"2");
    let lease = c.grant_lease(60);
    c.put(&key("b"), b"x");
    c.put_with_lease(&key("c"), b"y", lease);
    for i in 0..3 {
        assert_eq!(keys_on(&c, i), names(&["a", "b", "c"]), "member {i}");
    }
    let keys = c.keys_under(PREFIX);
    assert_eq!(
        keys,
        vec![(key("a"), 2, 0), (key("b"), 1, 0), (key("c"), 1, lease)],
        "(key, version, lease) under the prefix"
    );
    assert_eq!(c.get_value(&key("a")).as_deref(), Some(&b"2"[..]));
    assert_eq!(c.get_value(&key("c")).as_deref(), Some(&b"y"[..]));
    assert!(c.keys_under(b"/elsewhere/").is_empty());
    assert_eq!(c.keys_under(b"").len(), 3, "every key");
    assert_eq!(c.etcdctl(&["get", "--print-value-only", "/cjwt-test/a"]).trim(), "2");

    // A range too big for one write comes chunked; it is read whole.
    let value = vec![b'v'; 300];
    for n in 0..40 {
        c.put(format!("/cjwt-bulk/{n:02}").as_bytes(), &value);
    }
    let bulk = c.range(b"/cjwt-bulk/");
    assert_eq!(bulk.len(), 40);
    assert!(bulk
        .iter()
        .enumerate()
        .all(|(n, kv)| kv.key == format!("/cjwt-bulk/{n:02}").as_bytes() && kv.value == value));

    // The leader dies: another is elected within a few seconds, and writes work again.
    let first = c.wait_leader(Duration::from_secs(10));
    let killed = Instant::now();
    c.kill(first);
    assert!(!c.is_running(first));
    let second = c.wait_leader(Duration::from_secs(10));
    let election = killed.elapsed();
    eprintln!("leader {first} killed: member {second} leads after {election:?}");
    assert_ne!(second, first);
    assert!(election < Duration::from_secs(5), "election took {election:?}");
    c.put(&key("d"), b"after the election");
    let survivors: Vec<usize> = c.running();
    assert_eq!(survivors.len(), 2);
    for &i in &survivors {
        assert_eq!(keys_on(&c, i), names(&["a", "b", "c", "d"]), "member {i}");
    }

    // Two of three members down: a write is not committed. etcd answers 503 "request
    // timed out" after its request timeout (5 s + 2 × the 1 s election timeout), and
    // the key cannot be read.
    let follower = survivors.into_iter().find(|i| *i != second).unwrap();
    c.stop(follower);
    assert_eq!(c.running(), vec![second]);
    let sent = Instant::now();
    let refused = c.try_put(second, &key("e"), b"without quorum", Duration::from_secs(20));
    let waited = sent.elapsed();
    eprintln!("write without quorum: {refused:?} after {waited:?}");
    let error = refused.expect_err("a write without quorum must fail");
    assert!(error.starts_with("503 ") && error.contains("etcdserver: request timed out"), "{error}");
    assert!(waited >= Duration::from_secs(5), "failed after {waited:?}");
    assert_eq!(c.leader(), None, "a lone member is no leader");
    assert!(c.range_on(second, &key("e"), true).unwrap().is_empty(), "the lone member has not applied it");
    let health = c.request(second, "GET", "/health", None, Duration::from_secs(5)).unwrap();
    assert_eq!((health.status, health.json()["health"].as_str()), (503, Some("false")), "{health:?}");

    // One member back: a quorum again, writes work. And the timed-out write, which sat
    // uncommitted in the old leader's log, is committed now: a timeout is not a refusal.
    c.restart(follower);
    c.wait_leader(Duration::from_secs(10));
    c.put(&key("f"), b"quorum again");
    assert_eq!(c.get_value(&key("e")).as_deref(), Some(&b"without quorum"[..]), "the timed-out write");
    for i in [second, follower] {
        assert_eq!(keys_on(&c, i), names(&["a", "b", "c", "d", "e", "f"]), "member {i}");
    }

    // The killed leader returns, catches up, and the cluster is whole.
    c.restart(first);
    assert_eq!(c.running(), vec![0, 1, 2]);
    for i in 0..3 {
        assert_eq!(keys_on(&c, i), names(&["a", "b", "c", "d", "e", "f"]), "member {i}");
    }
    // etcdctl 3.4 prints `endpoint health` to stderr, but its JSON to stdout.
    let health: serde_json::Value = serde_json::from_str(&c.etcdctl(&["endpoint", "health", "-w", "json"])).unwrap();
    let healthy = health.as_array().unwrap().iter().filter(|e| e["health"] == true).count();
    assert_eq!(healthy, 3, "{health}");
    assert_eq!(c.etcdctl(&["member", "list"]).lines().filter(|l| l.contains(", started, ")).count(), 3);
}

#[test]
fn envoy_accepts_the_cluster() {
    let c = EtcdCluster::start(3);
    let cluster = c.envoy_cluster("etcd");
    for (ip, port) in c.endpoints() {
        assert!(cluster.contains(&format!("socket_address: {{ address: {ip}, port_value: {port} }}")), "{cluster}");
    }
    let bootstrap = format!(
        "admin:\n  address:\n    socket_address: {{ address: 127.0.0.1, port_value: 0 }}\nstatic_resources:\n  clusters:\n{cluster}"
    );
    let file = c.dir().join("bootstrap.yaml");
    std::fs::write(&file, &bootstrap).unwrap();
    let out = std::process::Command::new(cjwt_harness::envoy::envoy_binary())
        .args(["--mode", "validate", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "envoy --mode validate refused:\n{bootstrap}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prefix_ends_are_etcds() {
    assert_eq!(prefix_end(b"/cjwt/"), b"/cjwt0");
    assert_eq!(prefix_end(b"a\xff\xff"), b"b");
    assert_eq!(prefix_end(b"\xff"), b"\0");
    assert_eq!(prefix_end(b""), b"\0");
}
