//! `make bench`, in-VM part: each step of cjwt's request path timed inside the
//! VM (V8 in a real Envoy), per algorithm, with the bench-only `vm-bench` build
//! (see `crates/cjwt-filter/src/vm_bench.rs`). Whole-request load tests on this VM move by
//! ±30%; these loops do not, so they are how candidates are compared.
//!
//! Environment: VM_BENCH_WASM (default target/vmbench/wasm32-wasip1/release/cjwt.wasm),
//! VM_BENCH_N (iterations per step, default 300).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test and bench tooling: a failed setup stops loudly

use cjwt_harness::envoy;

use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::{mint, SigningKey};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::PathBuf;

const ALGS: [Algorithm; 6] =
    [Algorithm::EdDSA, Algorithm::ES256, Algorithm::ES384, Algorithm::RS256, Algorithm::PS256, Algorithm::HS256];

const STEPS: [(&str, &str); 10] = [
    ("clock", "host clock (`get_current_time`)"),
    ("counter", "one counter increment"),
    ("headers_all", "all request headers (one call)"),
    ("header_one", "one request header by name"),
    ("source_address", "`source.address` property"),
    ("parse", "strict JWS + JSON parse"),
    ("signature_pure_wasm", "signature, pure Rust in wasm"),
    ("signature_host_or_pure", "signature as cjwt verifies it (host for RS*/ES*)"),
    ("verify_full", "cache miss: parse + signature + claims compile"),
    ("decide_warm", "cache hit: the whole decision"),
];

fn main() {
    let wasm = std::env::var_os("VM_BENCH_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| envoy::repo_root().join("target/vmbench/wasm32-wasip1/release/cjwt.wasm"));
    assert!(wasm.exists(), "{} is missing: `make bench` builds it", wasm.display());
    let n: u32 = std::env::var("VM_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let mut results: Vec<(Algorithm, Value)> = Vec::new();
    for alg in ALGS {
        let key = SigningKey::generate(alg).unwrap();
        let jwk = key.public_jwk(Some("k1"));
        let cfg = json!({"providers": [{"name": "bench", "issuer": "https://bench.example", "audiences": ["bench"],
            "jwks": {"keys": [jwk]}}],
            "default_rule": {"require": {"claims": [{"claim": "tenant", "equals": "acme"}]}}});
        let claims = json!({"iss": "https://bench.example", "aud": "bench", "sub": "user-1", "tenant": "acme",
            "iat": now, "exp": now + 3600, "cnst": {"ip": ["127.0.0.0/8"]}});
        let token = mint(&key, Some("k1"), &claims);
        let proxy = envoy::Envoy::start(&cfg, envoy::Options { artifact: Some(wasm.clone()), ..Default::default() });
        let auth = format!("Bearer {token}");
        let ask = |count: u32| {
            proxy.get("/v1/orders/7", &[("authorization", &auth), ("x-cjwt-vm-bench", &count.to_string())])
        };
        let _ = ask(n.min(50)); // warm-up: V8 tiers up
        let r = ask(n);
        assert_eq!(r.status, 200, "{}: {}", alg.name(), r.body);
        println!("{}: {}", alg.name(), r.body);
        results.push((alg, r.json()));
    }

    let mut out = String::new();
    let _ = writeln!(out, "\n## Inside the VM (V8 in Envoy 1.40), ns per step, mean of {n} runs\n");
    let _ = write!(out, "| step |");
    for (alg, _) in &results {
        let _ = write!(out, " {} |", alg.name());
    }
    let _ = write!(out, "\n|---|");
    for _ in &results {
        let _ = write!(out, "---:|");
    }
    out.push('\n');
    for (step, label) in STEPS {
        let _ = write!(out, "| {label} |");
        for (_, v) in &results {
            let cell = v.get(step).and_then(Value::as_u64).map_or("-".to_string(), |ns| ns.to_string());
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    println!("{out}");
    let dir = envoy::repo_root().join(".tmp/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vm.md"), &out).unwrap();
    println!("written to {}", dir.join("vm.md").display());
}
