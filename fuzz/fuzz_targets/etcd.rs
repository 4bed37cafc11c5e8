//! Any bytes as an etcd answer (SPEC §8): the usage store's answer reading,
//! JSON gateway and gRPC alike, never panics, and only the answer shapes of
//! etcd 3.4 for a counted use let a request through — anything else is
//! unavailable or used up.
#![no_main]

use cjwt_core::usage::etcd::{parse_txn_answer, EtcdApi, EtcdReply, EtcdUse, Step, TxnAnswer, UseAnswer, UseCall};
use cjwt_core::usage::grpc::{self, GrpcAnswer};
use cjwt_core::usage::UsageId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (status, grpc_status, body) = match data {
        [s, g, rest @ ..] => (
            ["200", "404", "412", "500", "503"].get(usize::from(*s) % 6).copied(),
            [None, Some("0"), Some("5"), Some("9"), Some("14")].get(usize::from(*g) % 5).copied().flatten(),
            rest,
        ),
        _ => (None, None, data),
    };
    let counted = matches!(parse_txn_answer(status, body), TxnAnswer::Counted);
    if counted {
        // Counted only from a 200 with etcd's header and a true `succeeded` (top level or nested).
        assert_eq!(status, Some("200"));
        let text = String::from_utf8_lossy(body);
        assert!(text.contains("\"header\"") && text.contains("true"), "counted from {text:?}");
    }
    // gRPC: counted only from a 200, no error status, one whole uncompressed frame.
    let answer = GrpcAnswer { status, grpc_status, grpc_message: Some("etcdserver: requested lease not found"), body };
    if matches!(grpc::read_txn(&answer), TxnAnswer::Counted) {
        assert_eq!(status, Some("200"));
        assert!(matches!(grpc_status, None | Some("0")));
        assert!(grpc::unframe(body).is_ok());
    }
    let _ = grpc::read_take(&answer);
    let _ = grpc::read_grant(&answer, 1);
    for api in [EtcdApi::Json, EtcdApi::Grpc] {
        let the_use =
            EtcdUse::new("cjwt/uses/", &UsageId::new("https://i", "j"), 3, 1_800_000_100, 1_800_000_000).unwrap();
        let mut call = UseCall::new(the_use, api, "/v3");
        // Three answers in a row (txn, grant, txn): never more calls, never a panic.
        let mut steps = 0;
        for chunk in body.chunks(body.len() / 3 + 1) {
            let reply = EtcdReply { status, grpc_status, grpc_message: answer.grpc_message, body: chunk };
            match call.on_reply(&reply) {
                Step::Send(_) => steps += 1,
                Step::Done(UseAnswer::Counted) => assert_eq!(status, Some("200")),
                Step::Done(_) => {}
            }
        }
        assert!(steps <= 2, "{steps} calls for one use");
    }
});
