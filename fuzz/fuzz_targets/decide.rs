//! Validly signed tokens with fuzzed claims (constraints included) against
//! fuzzed requests: the decision never panics. The input is split on 0xff into
//! payload JSON, method, path, authority, peer, tenant header and clock.
#![no_main]

mod common;

use cjwt_core::engine::Engine;
use cjwt_core::keys::host_crypto::PureRust;
use cjwt_core::token::verify::InlineOnly;
use cjwt_core::usage::MemoryCounter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0xff);
    let payload = String::from_utf8_lossy(parts.next().unwrap_or(&[])).to_string();
    let mut field = |default: &[u8]| parts.next().map(<[u8]>::to_vec).unwrap_or_else(|| default.to_vec());
    let method = field(b"GET");
    let path = field(b"/admin/x");
    let authority = field(b"api.example.com");
    let peer = field(b"127.0.0.1:1");
    let tenant = field(b"acme");
    let clock = field(b"");
    let now = clock.iter().fold(1_800_000_000i64, |acc, b| acc.wrapping_mul(31).wrapping_add(i64::from(*b)));
    let token = cjwt_core::mint::mint_raw(&common::hs256_key(), r#"{"alg":"HS256","kid":"k"}"#, &payload);
    let mut engine = Engine::new(common::config());
    let host = common::host(&method, &path, &authority, &peer, now).bearer(&token).header_bytes("x-tenant", tenant);
    let mut counter = MemoryCounter::default();
    let _ =
        engine.decide_with(&host, &InlineOnly, &PureRust, &mut counter, &mut cjwt_core::sender::replay::NoReplayCache);
    // Twice: the second decision is served from the verified-token cache.
    let _ =
        engine.decide_with(&host, &InlineOnly, &PureRust, &mut counter, &mut cjwt_core::sender::replay::NoReplayCache);
});
