//! `make soak DURATION=30m` (CI: one minute): mixed traffic through a real Envoy
//! for a while, every response checked against the decision the core predicts
//! for the same request (what `cjwt explain` prints), with Envoy's memory and
//! wasm VM reloads recorded (issue 16, item 3).
//!
//! Traffic, from `SOAK_CLIENTS` concurrent clients (default 4), round-robin over
//! the cases below, alternating HTTP/1.1 and HTTP/2 (h2c) per request: a
//! repeated valid token of each algorithm (EdDSA, ES256, ES384, RS256, PS256,
//! served by the verified-token cache), unique valid tokens (verified every
//! time), and one refusal of every class — missing, malformed, expired, bad
//! signature, unknown key, wrong audience, a constraint (method, ip), a rule
//! (role), a one-time token used twice (200 then 403 `max_uses`).
//!
//! Fails (exit 1) on any answer the core did not predict, on a wasm VM reload,
//! or on memory that grows after warm-up (the mean resident size of the last
//! quarter of the run more than 10% + 8 MiB above that of the first quarter
//! after warm-up). Prints a summary and writes it to `.tmp/soak-<build>.json`.
//!
//! Environment: `DURATION` (`90s`, `30m`, `1h`; default `1m`), `SOAK_CLIENTS`,
//! `CJWT_BUILD` (`wasm`, default, or `native`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a tool: a failed setup stops loudly

use cjwt_core::config::Config;
use cjwt_core::engine::{Decision, Engine};
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::keys::host_crypto::PureRust;
use cjwt_core::mint::mint;
use cjwt_core::token::verify::InlineOnly;
use cjwt_core::usage::MemoryCounter;
use cjwt_harness::envoy::{self, repo_root, send, Envoy, Options};
use cjwt_harness::said::rss_kib;
use cjwt_harness::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ALGS: [Algorithm; 5] = [Algorithm::EdDSA, Algorithm::ES256, Algorithm::ES384, Algorithm::RS256, Algorithm::PS256];

fn duration() -> Duration {
    let text = std::env::var("DURATION").unwrap_or_else(|_| "1m".into());
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number.parse().unwrap_or_else(|_| panic!("DURATION={text}: expected e.g. 90s, 30m, 1h"));
    Duration::from_secs(match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => panic!("DURATION={text}: unit s, m or h"),
    })
}

fn plugin_config() -> Value {
    let keys: Vec<Value> = ALGS.iter().map(|a| key(*a).public_jwk(Some(a.name()))).collect();
    json!({
        "providers": [{"name": "corp", "issuer": "https://idp.example.com", "audiences": ["orders-api"],
                       "jwks": {"keys": keys}}],
        "rules": [{"match": {"path": "/admin/**"}, "require": {"roles_any": ["admin"]}}]
    })
}

/// One request of the mix.
struct Request {
    method: &'static str,
    path: &'static str,
    token: Option<String>,
}

/// The case list: `(name, request for the i-th time)`.
fn request(case: usize, client: usize, i: u64, now: i64, repeated: &[String]) -> (&'static str, Request) {
    let tok = |alg: Algorithm, extra: Value| Some(mint(key(alg), Some(alg.name()), &claims_at(now, extra)));
    let get = |path, token| Request { method: "GET", path, token };
    let unique = || format!("soak-{client}-{i}");
    match case {
        0..=4 => ("repeated", get("/v1/orders", Some(repeated[case].clone()))),
        5 => ("unique", get("/v1/orders", tok(ALGS[(i as usize) % ALGS.len()], json!({"jti": unique()})))),
        6 => ("missing", get("/v1/orders", None)),
        7 => ("malformed", get("/v1/orders", Some("not.a.jwt".into()))),
        8 => ("expired", get("/v1/orders", tok(Algorithm::EdDSA, json!({"iat": now - 7200, "exp": now - 3600})))),
        9 => {
            let mut t = tok(Algorithm::ES256, json!({})).unwrap();
            let cut = t.rfind('.').unwrap() + 1;
            t.replace_range(cut..cut + 4, if &t[cut..cut + 4] == "AAAA" { "BBBB" } else { "AAAA" });
            ("bad_signature", get("/v1/orders", Some(t)))
        }
        10 => (
            "unknown_key",
            get("/v1/orders", Some(mint(key(Algorithm::EdDSA), Some("nope"), &claims_at(now, json!({}))))),
        ),
        11 => ("wrong_audience", get("/v1/orders", tok(Algorithm::EdDSA, json!({"aud": "other"})))),
        12 => (
            "method",
            Request {
                method: "POST",
                path: "/v1/orders",
                token: tok(Algorithm::EdDSA, json!({"cnst": {"methods": ["GET"]}})),
            },
        ),
        13 => ("ip", get("/v1/orders", tok(Algorithm::ES256, json!({"cnst": {"ip": ["10.0.0.0/8"]}})))),
        14 => ("role", get("/admin/users", tok(Algorithm::EdDSA, json!({"roles": ["reader"]})))),
        _ => ("max_uses", get("/v1/orders", tok(Algorithm::EdDSA, json!({"jti": unique(), "cnst": {"max_uses": 1}})))),
    }
}

const CASES: usize = 16;

/// What the core decides for the request: status and reason.
fn predict(engine: &mut Engine, counter: &mut MemoryCounter, r: &Request, now: i64) -> (u16, Option<String>) {
    let mut host = StaticHost::request(r.method, r.path).peer("127.0.0.1:40000").at(now);
    if let Some(t) = &r.token {
        host = host.bearer(t);
    }
    match engine
        .decide_with(&host, &InlineOnly, &PureRust, counter, &mut cjwt_core::sender::replay::NoReplayCache)
        .decision
    {
        Decision::Allow { .. } | Decision::DryRunDeny(_) => (200, None),
        Decision::Deny(d) => (u16::try_from(d.reason.status()).unwrap(), Some(d.reason.code().to_string())),
    }
}

fn ask(port: u16, r: &Request, h2: bool) -> (u16, Option<String>) {
    let auth = r.token.as_ref().map(|t| format!("Bearer {t}"));
    if h2 {
        let mut fields =
            vec![(":method", r.method), (":scheme", "http"), (":path", r.path), (":authority", "api.example.com")];
        if let Some(a) = &auth {
            fields.push(("authorization", a));
        }
        let got = cjwt_harness::h2::request(port, &fields);
        (got.status.unwrap_or(0), got.reason())
    } else {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let got = send("127.0.0.1", port, r.method, r.path, &headers);
        (got.status, got.reason())
    }
}

fn vm_created(envoy: &Envoy) -> u64 {
    let (_, body) = envoy.admin_get("/stats?filter=wasm.envoy.wasm.runtime.v8.created");
    body.lines().filter_map(|l| l.split_once(": ")).filter_map(|(_, v)| v.trim().parse::<u64>().ok()).sum()
}

fn main() {
    let total = duration();
    let clients: usize = std::env::var("SOAK_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let warm_up = (total / 10).max(Duration::from_secs(10)).min(total / 2);
    let envoy = Envoy::start(&plugin_config(), Options { concurrency: 2, ..Options::default() });
    let pid = envoy.pid();
    println!(
        "soak: {:?} build, {} s, {clients} clients, Envoy pid {pid} on :{}, warm-up {} s",
        envoy::build(),
        total.as_secs(),
        envoy.port,
        warm_up.as_secs()
    );
    let port = envoy.port;
    let started = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let wrong = Arc::new(AtomicU64::new(0));
    let per_case: Arc<Vec<AtomicU64>> = Arc::new((0..CASES).map(|_| AtomicU64::new(0)).collect());
    let examples = Arc::new(Mutex::new(Vec::<String>::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            let (stop, sent, wrong, per_case, examples, next) =
                (stop.clone(), sent.clone(), wrong.clone(), per_case.clone(), examples.clone(), next.clone());
            std::thread::spawn(move || {
                let mut engine = Engine::new(Config::from_json(plugin_config().to_string().as_bytes()).unwrap());
                let mut counter = MemoryCounter::default();
                let minted = now();
                let repeated: Vec<String> = ALGS
                    .iter()
                    .map(|a| mint(key(*a), Some(a.name()), &claims_at(minted, json!({"exp": minted + 7200}))))
                    .collect();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let case = next.fetch_add(1, Ordering::Relaxed) % CASES;
                    let now = now();
                    let (name, r) = request(case, client, i, now, &repeated);
                    let h2 = i % 2 == 1;
                    let mut check = |r: &Request| {
                        let want = predict(&mut engine, &mut counter, r, now);
                        let got = ask(port, r, h2);
                        sent.fetch_add(1, Ordering::Relaxed);
                        per_case[case].fetch_add(1, Ordering::Relaxed);
                        if got != want {
                            wrong.fetch_add(1, Ordering::Relaxed);
                            let mut e = examples.lock().unwrap();
                            if e.len() < 20 {
                                e.push(format!("{name} (h2: {h2}): Envoy {got:?}, core {want:?}"));
                            }
                        }
                    };
                    check(&r);
                    if name == "max_uses" {
                        check(&r); // the second use: 403 max_uses
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let vms_at_start = vm_created(&envoy);
    while started.elapsed() < total {
        std::thread::sleep(
            Duration::from_secs(5).min(total.saturating_sub(started.elapsed())).max(Duration::from_millis(10)),
        );
        let t = started.elapsed().as_secs_f64();
        let rss = rss_kib(pid);
        samples.push((t, rss));
        // The echo upstream keeps what it received: keep the harness's memory flat too.
        envoy.upstream.received.lock().unwrap().clear();
        if samples.len() % 12 == 0 {
            println!(
                "  {:>5.0} s: {} requests, {} wrong, Envoy RSS {} MiB",
                t,
                sent.load(Ordering::Relaxed),
                wrong.load(Ordering::Relaxed),
                rss / 1024
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let reloads = vm_created(&envoy).saturating_sub(vms_at_start);
    let after: Vec<&(f64, u64)> = samples.iter().filter(|(t, _)| *t >= warm_up.as_secs_f64()).collect();
    let quarter = (after.len() / 4).max(1);
    let mean = |s: &[&(f64, u64)]| s.iter().map(|(_, r)| *r as f64).sum::<f64>() / s.len().max(1) as f64;
    let first = mean(&after[..quarter.min(after.len())]);
    let last = mean(&after[after.len().saturating_sub(quarter)..]);
    let peak = samples.iter().map(|(_, r)| *r).max().unwrap_or(0);
    let sent = sent.load(Ordering::Relaxed);
    let wrong = wrong.load(Ordering::Relaxed);
    let growth_kib = last - first;
    let flat = last <= first * 1.10 + 8.0 * 1024.0;
    let summary = json!({
        "build": format!("{:?}", envoy::build()),
        "seconds": elapsed,
        "clients": clients,
        "requests": sent,
        "requests_per_second": sent as f64 / elapsed,
        "wrong_answers": wrong,
        "per_case": (0..CASES).map(|c| per_case[c].load(Ordering::Relaxed)).collect::<Vec<_>>(),
        "rss_kib_after_warm_up_first_quarter": first,
        "rss_kib_last_quarter": last,
        "rss_kib_peak": peak,
        "rss_growth_kib": growth_kib,
        "vm_reloads": reloads,
        "samples": samples,
    });
    std::fs::create_dir_all(repo_root().join(".tmp")).unwrap();
    // One file per build: CI soaks both builds at once (make soak-both).
    let file = format!(".tmp/soak-{}.json", format!("{:?}", envoy::build()).to_lowercase());
    std::fs::write(repo_root().join(file), serde_json::to_string_pretty(&summary).unwrap()).unwrap();
    println!(
        "soak: {sent} requests in {elapsed:.0} s ({:.0}/s), {wrong} wrong answers, {reloads} VM reloads; Envoy RSS after warm-up {:.1} MiB -> {:.1} MiB (peak {:.1} MiB)",
        sent as f64 / elapsed,
        first / 1024.0,
        last / 1024.0,
        peak as f64 / 1024.0
    );
    for e in examples.lock().unwrap().iter() {
        println!("  wrong: {e}");
    }
    let mut failed = Vec::new();
    if wrong > 0 {
        failed.push(format!("{wrong} wrong answers"));
    }
    if reloads > 0 {
        failed.push(format!("{reloads} VM reloads"));
    }
    if !flat {
        failed.push(format!("memory grew {:.1} MiB after warm-up", growth_kib / 1024.0));
    }
    if sent == 0 {
        failed.push("no request sent".into());
    }
    if failed.is_empty() {
        println!("soak: ok");
    } else {
        println!("soak: FAILED: {}", failed.join(", "));
        std::process::exit(1);
    }
}
