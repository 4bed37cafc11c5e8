//! Any bytes as a credential: parsing and the whole decision never panic, and a
//! random token is never allowed.
#![no_main]

mod common;

use cjwt_core::engine::{Decision, Engine};
use cjwt_core::keys::host_crypto::PureRust;
use cjwt_core::token::verify::InlineOnly;
use cjwt_core::usage::MemoryCounter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cjwt_core::token::jws::parse(text);
    }
    let mut engine = Engine::new(common::config());
    let mut auth = b"Bearer ".to_vec();
    auth.extend_from_slice(data);
    let host = common::host(b"GET", b"/x", b"a", b"127.0.0.1:1", 1_800_000_000).header_bytes("authorization", auth);
    let out = engine.decide_with(
        &host,
        &InlineOnly,
        &PureRust,
        &mut MemoryCounter::default(),
        &mut cjwt_core::sender::replay::NoReplayCache,
    );
    assert!(matches!(out.decision, Decision::Deny(_)), "a random credential was allowed");
});
