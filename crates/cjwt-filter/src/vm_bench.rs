//! Bench-only build (feature `vm-bench`, never shipped): times the steps of the
//! request path inside the VM, where they really run (V8 in Envoy), free of the
//! ±30% noise of whole-request load tests.
//!
//! A request carrying `x-cjwt-vm-bench: N` is answered with a JSON object of
//! nanoseconds per step, each the mean of N runs, using that request's headers
//! and token. `examples/vm_bench.rs` (part of `make bench`) drives it.

use super::host::{ProxyHost, SharedData};
use super::state::Shared;
use cjwt_core::request::host::header_values;
use cjwt_core::shared_slots::Slots;
use cjwt_core::token::jws;
use cjwt_core::token::verify::{verify, InlineOnly, TokenText};
use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;
use std::fmt::Write as _;
use std::hint::black_box;

fn now_ns() -> u128 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// Mean nanoseconds of `n` runs of `f`.
fn time(n: u32, mut f: impl FnMut()) -> u128 {
    let start = now_ns();
    for _ in 0..n {
        f();
    }
    now_ns().saturating_sub(start) / u128::from(n.max(1))
}

/// Answers the request with timings if it asks for them; false otherwise.
pub fn answer(shared: &Shared) -> bool {
    let Ok(Some(v)) = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "x-cjwt-vm-bench") else {
        return false;
    };
    let n: u32 = std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok()).unwrap_or(1000).clamp(1, 100_000);
    let Some(host) = ProxyHost::read() else {
        return false;
    };
    let token = header_values(&host, "authorization")
        .next()
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    let mut out = String::from("{");
    let mut put = |name: &str, ns: u128| {
        let _ = write!(out, "{}\"{name}\":{ns}", if out.len() > 1 { "," } else { "" });
    };
    put("clock", time(n, || _ = black_box(hostcalls::get_current_time())));
    put("headers_all", time(n, || _ = black_box(hostcalls::get_map_bytes(MapType::HttpRequestHeaders))));
    let one = || hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "authorization");
    put("header_one", time(n, || _ = black_box(one())));
    put("source_address", time(n, || _ = black_box(hostcalls::get_property(vec!["source", "address"]))));
    put("counter", time(n, || shared.metrics.bump(cjwt_core::outcome::metrics::Counter::CacheHit)));
    put("parse", time(n, || _ = black_box(jws::parse(&token))));
    if let Ok(engine) = shared.engine.try_borrow() {
        let config = engine.config();
        let verify_full =
            || TokenText::admit(config, token.as_bytes()).map(|t| verify(config, &InlineOnly, &shared.crypto, t));
        put("verify_full", time(n, || _ = black_box(verify_full())));
        let key = config.providers().first().and_then(|p| p.keys.first());
        if let (Ok(parsed), Some(key)) = (jws::parse(&token), key) {
            let (alg, input, sig) = (parsed.jws.alg, parsed.jws.signing_input, &parsed.jws.signature);
            put("signature_pure_wasm", time(n, || _ = black_box(key.verify(alg, input, sig))));
            put("signature_host_or_pure", time(n, || _ = black_box(key.verify_with(&shared.crypto, alg, input, sig))));
        }
    }
    if let (Ok(mut engine), Ok(keys)) = (shared.engine.try_borrow_mut(), shared.keys.try_borrow()) {
        // The first run fills the cache; the mean is the warm decision.
        let mut decide = || {
            _ = black_box(engine.decide_with(
                &host,
                &*keys,
                &shared.crypto,
                &mut Slots(SharedData),
                &mut Slots(SharedData),
            ))
        };
        put("decide_warm", time(n, &mut decide));
    }
    out.push('}');
    let _ = hostcalls::send_http_response(200, vec![("content-type", "application/json")], Some(out.as_bytes()));
    true
}
