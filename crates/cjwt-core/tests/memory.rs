//! SEC-I04, bounded resources: memory held by the core under floods of distinct
//! tokens, tokens with thousands of claims, and 100 KB claim values — measured
//! with a counting allocator, not estimated.

// A counting global allocator needs `unsafe impl GlobalAlloc`; it only forwards to `System`.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::config::Config;
use cjwt_core::engine::Decision;
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::keys::host_crypto::PureRust;
use cjwt_core::mint::mint;
use cjwt_core::reason::Reason;
use cjwt_core::testing::*;
use cjwt_core::token::verify::{verify, InlineOnly, TokenText};
use serde_json::{json, Map, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Mutex;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
/// Measurements need the allocator to themselves.
static SERIAL: Mutex<()> = Mutex::new(());

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::SeqCst);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::SeqCst)
}

fn many_claims(i: usize, n: usize) -> Value {
    let mut m = Map::new();
    for c in 0..n {
        m.insert(format!("c{c:04}"), json!(c));
    }
    m.insert("sub".into(), json!(format!("user-{i}")));
    claims(Value::Object(m))
}

fn bearer_request(token: &str) -> StaticHost {
    let mut h = StaticHost::get("/x");
    h.headers.push(("authorization".into(), format!("Bearer {token}").into_bytes()));
    h
}

#[test]
fn the_cache_estimate_is_an_upper_bound_on_what_a_verified_token_really_holds() {
    let _serial = SERIAL.lock().unwrap();
    let config = Config::from_json(config_json(json!({"max_token_bytes": 65536})).to_string().as_bytes()).unwrap();
    let ranges: Vec<String> = (0..400).map(|i| format!("10.{}.{}.0/24", i / 256, i % 256)).collect();
    let shapes = [
        ("1,000 small claims", many_claims(0, 1000)),
        ("a 4,000-element array of small numbers", claims(json!({"a": vec![1; 4000]}))),
        ("2,000 empty objects", claims(json!({"a": vec![json!({}); 2000]}))),
        ("one 40 KB string", claims(json!({"s": "x".repeat(40_000)}))),
        ("400 ip ranges and paths", claims(json!({"cnst": {"ip": ranges, "paths": vec!["/a/**"; 300]}}))),
    ];
    for (what, c) in shapes {
        let token = mint(key(Algorithm::EdDSA), Some("k1"), &c);
        let text = TokenText::admit(&config, token.as_bytes()).unwrap();
        let before = live();
        let verified = verify(&config, &InlineOnly, &PureRust, text).unwrap();
        let actual = live() - before;
        let estimate = verified.heap_bytes() as isize;
        eprintln!("{what}: token {} B, heap {actual} B, estimate {estimate} B", token.len());
        assert!(actual <= estimate, "{what}: {actual} > {estimate}");
        assert!(estimate <= actual * 3 + 4096, "{what}: the estimate is not absurd: {estimate} vs {actual}");
    }
}

/// The estimate counts the compiled constraints whatever `claim_names.constraints`
/// is: two tokens with the same claims, one holding a big constraint list under the
/// configured (renamed) claim and one under another claim of the same length, differ
/// by at least the compiled list; and the estimate stays an upper bound.
#[test]
fn the_cache_estimate_counts_constraints_under_a_renamed_claim() {
    let _serial = SERIAL.lock().unwrap();
    let extra = json!({"max_token_bytes": 65536, "claim_names": {"constraints": "limits"}});
    let config = Config::from_json(config_json(extra).to_string().as_bytes()).unwrap();
    let ranges: Vec<String> = (0..400).map(|i| format!("10.{}.{}.0/24", i / 256, i % 256)).collect();
    let estimate = |name: &str| {
        let token = mint(key(Algorithm::EdDSA), Some("k1"), &claims(json!({name: {"ip": ranges}})));
        let before = live();
        let verified =
            verify(&config, &InlineOnly, &PureRust, TokenText::admit(&config, token.as_bytes()).unwrap()).unwrap();
        let actual = live() - before;
        let estimate = verified.heap_bytes();
        assert!(actual <= estimate as isize, "{name}: {actual} > {estimate}");
        (estimate, verified.constraints.kinds().count())
    };
    let (constrained, compiled) = estimate("limits");
    let (plain, not_compiled) = estimate("others");
    assert_eq!((compiled, not_compiled), (1, 0));
    let list = 400 * std::mem::size_of::<cjwt_core::constraints::ip::IpRange>();
    assert!(constrained >= plain + list, "the compiled constraints are counted: {constrained} vs {plain} + {list}");
}

#[test]
fn a_flood_of_distinct_thousand_claim_tokens_stays_within_the_cache_memory_bound() {
    let _serial = SERIAL.lock().unwrap();
    let tokens: Vec<String> =
        (0..300).map(|i| mint(key(Algorithm::EdDSA), Some("k1"), &many_claims(i, 1000))).collect();
    let requests: Vec<StaticHost> = tokens.iter().map(|t| bearer_request(t)).collect();
    let max_bytes = 4 << 20;
    let before = live();
    let mut engine =
        engine(json!({"max_token_bytes": 32768, "cache": {"max_entries": 100000, "max_bytes": max_bytes}}));
    let mut peak = 0;
    for round in 0..2 {
        for r in &requests {
            let out = cjwt_core::testing::decide_inline(&mut engine, r);
            assert!(matches!(out.decision, Decision::Allow { .. }), "round {round}");
            peak = peak.max(live() - before);
        }
    }
    let held = live() - before;
    eprintln!(
        "300 tokens of {} B with 1,000 claims, twice: {} cached, estimate {} B, live heap {held} B, peak {peak} B",
        tokens[0].len(),
        engine.cached(),
        engine.cached_bytes()
    );
    assert!(engine.cached() >= 10, "the bound still caches: {}", engine.cached());
    assert!(engine.cached_bytes() <= max_bytes);
    assert!(held <= max_bytes as isize + (512 << 10), "live heap {held} B over a {max_bytes} B bound");
    assert!(peak <= max_bytes as isize + (1 << 20), "peak {peak} B");
}

#[test]
fn hundred_kilobyte_claim_values_are_refused_before_any_parsing() {
    let _serial = SERIAL.lock().unwrap();
    let token = mint(key(Algorithm::EdDSA), Some("k1"), &claims(json!({"blob": "x".repeat(100_000)})));
    let request = bearer_request(&token);
    // Even at the largest configurable limit (64 KiB; Envoy's own header limit is 60 KiB).
    let mut engine = engine(json!({"max_token_bytes": 65536}));
    let before = live();
    let out = cjwt_core::testing::decide_inline(&mut engine, &request);
    let Decision::Deny(denial) = out.decision else { panic!("allowed a 130 KB token") };
    assert_eq!(denial.reason, Reason::TokenTooLarge);
    drop(denial);
    assert!(live() - before < 4096, "nothing of it is kept: {} B", live() - before);
    assert_eq!(engine.cached(), 0);
}
