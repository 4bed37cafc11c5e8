//! SEC-12.5 through a real Envoy: `max_uses` counters do not accumulate in
//! Envoy's shared data. Rounds of one-time tokens, each after the previous
//! round expired, must leave Envoy's heap flat; before the fix every one-time
//! token left about 180 bytes for the life of the process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::mint;
use cjwt_harness::envoy::{send, Envoy, Options};
use cjwt_harness::*;
use serde_json::{json, Value};

const PER_ROUND: usize = 1500;
const CLIENTS: usize = 16;

/// Bytes Envoy's allocator holds (`/memory`, `allocated`).
fn allocated(envoy: &Envoy) -> i64 {
    let (status, body) = envoy.admin_get("/memory");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["allocated"].as_str().and_then(|s| s.parse().ok()).or_else(|| v["allocated"].as_i64()).expect("allocated")
}

#[test]
fn one_time_tokens_leave_envoys_heap_flat() {
    // No token cache (it would hold the tokens themselves) and no clock skew,
    // so a round is expired two seconds after it ends.
    let config = config_json(json!({"clock_skew_seconds": 0, "cache": {"max_entries": 0}}));
    let envoy = Envoy::start(&config, Options::default());
    let port = envoy.port;
    let round = |r: usize| {
        // Sixteen clients at once (a request waits on the loopback round trip).
        let threads: Vec<_> = (0..CLIENTS)
            .map(|c| {
                std::thread::spawn(move || {
                    let mut last_exp = 0;
                    for i in (c..PER_ROUND).step_by(CLIENTS) {
                        // Minted as it is sent: valid for two seconds from now.
                        let t0 = now();
                        last_exp = t0 + 2;
                        let claims =
                            claims_at(t0, json!({"jti": format!("{r}-{i}"), "exp": last_exp, "cnst": {"max_uses": 1}}));
                        let t = format!("Bearer {}", mint(key(Algorithm::EdDSA), Some("k1"), &claims));
                        let got = send("127.0.0.1", port, "GET", "/x", &[("authorization", t.as_str())]);
                        assert_eq!(got.status, 200, "round {r}, token {i}: fresh one-time token: {:?}", got.reason());
                    }
                    last_exp
                })
            })
            .collect();
        let last_exp = threads.into_iter().map(|t| t.join().unwrap()).max().unwrap_or(0);
        // Let the round expire before the next one writes to the same slots.
        while now() <= last_exp {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    round(0); // warm-up: connections, slots' first writes, V8 growth
    let before = allocated(&envoy);
    for r in 1..=2 {
        round(r);
    }
    let after = allocated(&envoy);
    let growth = after - before;
    eprintln!("Envoy heap: {before} -> {after} bytes over {} one-time tokens", 2 * PER_ROUND);
    // Before the fix: about 180 bytes a token, 1.1 MB here.
    assert!(growth < (2 * PER_ROUND as i64) * 40, "heap grew {growth} bytes over {} one-time tokens", 2 * PER_ROUND);
}
