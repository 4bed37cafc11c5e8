//! Any bytes as an etcd answer (SPEC §8 v2): the usage store's answer parsing
//! never panics, and only the two answer shapes recorded from etcd 3.4 for a
//! counted use let a request through — anything else is unavailable or used up.
#![no_main]

use cjwt_core::usage::etcd::{parse_txn_answer, EtcdUse, Step, TxnAnswer, UseAnswer, UseCall};
use cjwt_core::usage::UsageId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data.split_first() {
        Some((s, rest)) => (["200", "404", "412", "500", "503"].get(usize::from(*s) % 6).copied(), rest),
        None => (None, data),
    };
    let counted = matches!(parse_txn_answer(status, body), TxnAnswer::Counted);
    if counted {
        // Counted only from a 200 with etcd's header and a true `succeeded` (top level or nested).
        assert_eq!(status, Some("200"));
        let text = String::from_utf8_lossy(body);
        assert!(text.contains("\"header\"") && text.contains("true"), "counted from {text:?}");
    }
    let the_use = EtcdUse::new("cjwt/uses/", &UsageId::new("https://i", "j"), 3, 1_800_000_100, 1_800_000_000).unwrap();
    let mut call = UseCall::new(the_use, "/v3");
    // Three answers in a row (txn, grant, txn): never more calls, never a panic.
    let mut steps = 0;
    for chunk in body.chunks(body.len() / 3 + 1) {
        match call.on_answer(status, chunk) {
            Step::Send(_) => steps += 1,
            Step::Done(UseAnswer::Counted) => assert_eq!(status, Some("200")),
            Step::Done(_) => {}
        }
    }
    assert!(steps <= 2, "{steps} calls for one use");
});
