//! Any bytes as a credential: parsing and the whole decision never panic, and a
//! random token is never allowed.
#![no_main]

mod common;

use cjwt_core::engine::{Decision, Engine};
use cjwt_core::request::host::MemoryCounter;
use cjwt_core::keys::host_crypto::PureRust;
use cjwt_core::token::verify::InlineOnly;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cjwt_core::token::jws::parse(text);
    }
    let mut engine = Engine::new(common::config());
    let mut auth = b"Bearer ".to_vec();
    auth.extend_from_slice(data);
    let host = common::FuzzHost {
        headers: vec![(":method".into(), b"GET".to_vec()), (":path".into(), b"/x".to_vec()), (":authority".into(), b"a".to_vec()), ("authorization".into(), auth)],
        peer: b"127.0.0.1:1".to_vec(),
        now: 1_800_000_000,
    };
    let out = engine.decide(&host, &InlineOnly, &PureRust, &mut MemoryCounter::default());
    assert!(matches!(out.decision, Decision::Deny(_)), "a random credential was allowed");
});
