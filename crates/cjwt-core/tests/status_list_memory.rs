//! SPEC §11, bounded resources, measured with a counting allocator: a
//! compression bomb is refused without the heap ever growing past `max_bytes`
//! (plus the decompressor's fixed state), a one-million-entry list holds its bit
//! field and nothing more, and deciding a request against it allocates nothing
//! for the status check.

// A counting global allocator needs `unsafe impl GlobalAlloc`; it only forwards to `System`.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::config::Config;
use cjwt_core::encoding::b64;
use cjwt_core::engine::{Decision, Engine};
use cjwt_core::jwks::store::Fetched;
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::keys::host_crypto::PureRust;
use cjwt_core::mint::mint;
use cjwt_core::revocation::status_list::{encode_status_list, inflate_capped, InflateError, StatusList};
use cjwt_core::testing::*;
use cjwt_core::usage::MemoryCounter;
use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::Mutex;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// Measurements need the allocator to themselves.
static SERIAL: Mutex<()> = Mutex::new(());

fn grew(by: isize) {
    let live = LIVE.fetch_add(by, Ordering::SeqCst) + by;
    PEAK.fetch_max(live, Ordering::SeqCst);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        grew(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // A realloc may hold both blocks at once.
        grew(new_size as isize);
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::SeqCst);
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The peak heap growth while `f` runs, and its result.
fn peak_during<T>(f: impl FnOnce() -> T) -> (isize, T) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = f();
    (PEAK.load(Ordering::SeqCst) - base, out)
}

/// The decompressor's state (~43 KiB, boxed) and the 32 KiB output chunk on the stack.
const FIXED: isize = 64 * 1024;

#[test]
fn a_compression_bomb_is_refused_without_allocating_past_the_cap() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // 1 GiB of zeros compresses to about 1 MiB; a few MiB would do, but the point is the ratio.
    let bomb = {
        let claim = encode_status_list(8, &vec![0u8; 256 << 20]).unwrap();
        b64::decode(claim["lst"].as_str().unwrap().as_bytes()).unwrap()
    };
    eprintln!("bomb: {} bytes compressed, 256 MiB inflated", bomb.len());
    for cap in [4096usize, 1 << 20, 16 << 20] {
        let (peak, result) = peak_during(|| inflate_capped(&bomb, cap));
        assert_eq!(result, Err(InflateError::TooLarge), "cap {cap}");
        eprintln!("cap {cap}: peak heap growth {peak} bytes");
        assert!(peak <= cap as isize + FIXED, "cap {cap}: the heap grew by {peak} bytes");
    }
    // A list exactly at the cap inflates, within the same bound.
    let full = {
        let claim = encode_status_list(8, &vec![7u8; 1 << 20]).unwrap();
        b64::decode(claim["lst"].as_str().unwrap().as_bytes()).unwrap()
    };
    let (peak, result) = peak_during(|| inflate_capped(&full, 1 << 20).map(|v| v.len()));
    assert_eq!(result, Ok(1 << 20));
    assert!(peak <= (1 << 20) + FIXED, "peak {peak}");
}

#[test]
fn a_million_entry_list_holds_its_bits_and_a_decision_allocates_nothing_for_it() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let uri = "https://idp.example.com/statuslists/1";
    let mut statuses = vec![0u8; 1_000_000];
    for i in (0..statuses.len()).step_by(100) {
        statuses[i] = 1; // 1 % revoked
    }
    let claim = encode_status_list(1, &statuses).unwrap();
    eprintln!("1,000,000 entries at 1 % revoked: lst of {} bytes", claim["lst"].as_str().unwrap().len());
    let bytes = {
        let z = b64::decode(claim["lst"].as_str().unwrap().as_bytes()).unwrap();
        inflate_capped(&z, 1 << 20).unwrap()
    };
    let list = StatusList::new(1, bytes, NOW + 3600).unwrap();
    assert_eq!(list.len(), 1_000_000);
    assert_eq!(list.heap_bytes(), 125_000, "one bit per entry, nothing more");
    let config =
        config_json(json!({"status_lists": [{"uri": uri, "provider": "corp", "cluster": "idp", "path": "/s"}]}));
    let mut engine = Engine::new(Config::from_json(config.to_string().as_bytes()).unwrap());
    let mut store = Fetched::new(1);
    let before = LIVE.load(Ordering::SeqCst);
    store.set_status_list(0, list).unwrap();
    let held = LIVE.load(Ordering::SeqCst) - before;
    eprintln!("the store holds {held} bytes more for the list");
    assert!(held <= 125_000 + 256, "{held}");

    let token = |claims| mint(key(Algorithm::EdDSA), Some("k1"), &claims);
    let plain = token(claims(json!({})));
    let listed = token(claims(json!({"status": {"status_list": {"idx": 999_999, "uri": uri}}})));
    let revoked = token(claims(json!({"status": {"status_list": {"idx": 500_000, "uri": uri}}})));
    // Allocations of one cached decision: with a status claim, the same as without.
    let mut count = |t: &str| {
        let host = StaticHost::get("/x").bearer(t);
        engine.decide_with(
            &host,
            &store,
            &PureRust,
            &mut MemoryCounter::default(),
            &mut cjwt_core::sender::replay::NoReplayCache,
        ); // warm the cache
        let n = ALLOCATIONS.load(Ordering::SeqCst);
        let decision = engine
            .decide_with(
                &host,
                &store,
                &PureRust,
                &mut MemoryCounter::default(),
                &mut cjwt_core::sender::replay::NoReplayCache,
            )
            .decision;
        (ALLOCATIONS.load(Ordering::SeqCst) - n, matches!(decision, Decision::Allow { .. }))
    };
    let (without, allowed) = count(&plain);
    assert!(allowed);
    let (with, allowed) = count(&listed);
    assert!(allowed);
    eprintln!("allocations per cached decision: {without} without a status claim, {with} with one");
    assert_eq!(with, without, "the status check allocates nothing");
    let (_, allowed) = count(&revoked);
    assert!(!allowed, "entry 500000 is revoked");
}
