//! The Docker harness proven on etcd: three `cjwt-etcd` containers (`make
//! etcd-image`) form a cluster on their own bridge network, the host reaches each
//! member at its container address, a key written over the JSON gateway is read
//! back with `etcdctl` inside another member, a member cut off the network no
//! longer reaches the others (who keep their quorum) and catches up once
//! reconnected, and nothing is left behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_harness::docker::{self, EtcdContainers, Network};
use std::time::{Duration, Instant};

/// Polls `f` every 200 ms for up to `timeout`.
fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn three_etcd_containers_form_a_cluster_and_a_disconnected_member_is_cut_off() {
    docker::require_image(&docker::etcd_image());
    {
        let network = Network::create("etcd");
        let etcd = EtcdContainers::run(&network, 3, 11);
        assert_eq!(etcd.ip(0), network.ip(11));
        assert_eq!(etcd.endpoints(), (11..=13).map(|h| format!("http://{}:2379", network.ip(h))).collect::<Vec<_>>());

        // Every member answers /health from the host, at its address on the bridge.
        for i in 0..3 {
            assert!(etcd.healthy(i), "member {i} at {}", etcd.endpoint(i));
        }
        let leader = etcd.leader().expect("one member reports itself leader");
        let (code, members) = etcd.etcdctl(&["member", "list"]);
        assert_eq!(code, 0, "{members}");
        assert_eq!(members.lines().filter(|l| l.contains("started")).count(), 3, "{members}");

        // Written over HTTP/JSON through one member, read with etcdctl inside another.
        etcd.put(0, "cjwt/docker/k1", "v1").unwrap();
        let (code, value) = etcd.etcdctl_on(2, &["get", "cjwt/docker/k1", "--print-value-only"]);
        assert_eq!((code, value.trim()), (0, "v1"), "{value}");
        assert_eq!(etcd.get(1, "cjwt/docker/k1", false).unwrap().as_deref(), Some("v1"));

        // Member 2 cut off the network: it reaches no other member, the host no longer
        // reaches it, and the two others keep a quorum and take writes.
        etcd.member(2).disconnect(&network);
        assert!(etcd.member(2).is_running());
        let others = format!("{},{}", etcd.endpoint(0), etcd.endpoint(1));
        let (code, out) = etcd.etcdctl_in(2, &others, &["endpoint", "health"]);
        assert_ne!(code, 0, "a disconnected member still reaches the others: {out}");
        assert!(etcd.request(2, "GET", "/health", None).is_err(), "the host still reaches the disconnected member");
        assert!(eventually(Duration::from_secs(15), || etcd.healthy(0) && etcd.healthy(1)), "no quorum left");
        etcd.put(1, "cjwt/docker/k2", "v2").unwrap();
        let (code, value) = etcd.etcdctl_on(0, &["get", "cjwt/docker/k2", "--print-value-only"]);
        assert_eq!((code, value.trim()), (0, "v2"), "{value}");
        let leader_now = etcd.leader().expect("a leader among the two connected members");
        assert_ne!(leader_now, 2);
        eprintln!("leader before: etcd{leader}, during the partition: etcd{leader_now}");

        // Reconnected at its address, it catches up with what it missed.
        etcd.member(2).connect(&network, &network.ip(13));
        etcd.wait_healthy(2, Duration::from_secs(30));
        assert!(
            eventually(Duration::from_secs(15), || etcd
                .etcdctl_on(2, &["get", "cjwt/docker/k2", "--print-value-only", "--consistency=s"])
                .1
                .trim()
                == "v2"),
            "the reconnected member did not catch up"
        );

        // Stopped and started again (same data, same address), it rejoins.
        etcd.stop(2);
        assert!(!etcd.member(2).is_running());
        assert!(etcd.request(2, "GET", "/health", None).is_err());
        etcd.start(2);
        etcd.wait_healthy(2, Duration::from_secs(30));
        assert_eq!(etcd.get(2, "cjwt/docker/k1", true).unwrap().as_deref(), Some("v1"));
    }
    let left = docker::leftovers(&docker::process_prefix());
    assert!(left.is_empty(), "left behind: {left:?}");
}
