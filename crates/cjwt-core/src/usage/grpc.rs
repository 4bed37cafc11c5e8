//! etcd's gRPC API (SPEC §8, issue 27 item 2): the same transactions as the
//! JSON gateway's ([`super::etcd`]), as protobuf messages in gRPC frames, and
//! the reading of every answer, as pure functions.
//!
//! A call is `POST /etcdserverpb.KV/Txn` (or `/etcdserverpb.Lease/LeaseGrant`)
//! over HTTP/2 with `content-type: application/grpc` and `te: trailers`; its
//! body is one gRPC frame: a flag byte (0: not compressed), the message's
//! length (4 bytes, big-endian), the protobuf message.
//!
//! An answer is read from what each host's callout gives: HTTP `:status`,
//! `grpc-status` and `grpc-message` from the answer's headers (an error comes
//! as a trailers-only answer: status in the headers) or trailers (where the
//! host shows them: proxy-wasm does, Envoy's dynamic-module callout does not),
//! and the body. A non-zero `grpc-status` is an error whatever the body; an
//! answer with none (or `0`) is read from its body, which must be exactly one
//! uncompressed frame holding a response with etcd's header — an etcd member
//! sends the message of a unary call only once the call succeeded, so a
//! complete message with its header is the answer even where the trailers are
//! not seen. Anything else (no frame, a truncated or oversized frame, a
//! compressed one, bytes after the frame, a message that does not decode) is
//! unavailable: the use counts as taken, nothing is allowed on it.

use super::etcd::{EtcdUse, Known, TakeAnswer, TxnAnswer, Unavailable};
use prost::Message;

pub mod pb;

use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use pb::request_op::Request;
use pb::response_op::Response;
use pb::{
    Compare, LeaseGrantRequest, LeaseGrantResponse, PutRequest, RangeRequest, RequestOp, TxnRequest, TxnResponse,
};

/// The `:path` of a transaction.
pub const TXN_PATH: &str = "/etcdserverpb.KV/Txn";
/// The `:path` of a lease grant.
pub const LEASE_GRANT_PATH: &str = "/etcdserverpb.Lease/LeaseGrant";
/// The media type of a gRPC call.
pub const CONTENT_TYPE: &str = "application/grpc";
/// gRPC's status code `NOT_FOUND` (etcd's "requested lease not found").
const NOT_FOUND: &str = "5";
/// gRPC's status code `FAILED_PRECONDITION` (etcd's "lease already exists").
const FAILED_PRECONDITION: &str = "9";

/// One message in a gRPC frame: flag 0 (not compressed), length, message.
pub fn frame(message: &impl Message) -> Vec<u8> {
    let len = message.encoded_len();
    let mut out = Vec::with_capacity(len.saturating_add(5));
    out.push(0);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    message.encode_raw(&mut out);
    out
}

/// The message of a body that is exactly one uncompressed gRPC frame.
pub fn unframe(body: &[u8]) -> Result<&[u8], Unavailable> {
    let Some((prefix, message)) = body.split_first_chunk::<5>() else {
        return Err(Unavailable(format!("a gRPC answer of {} bytes has no frame", body.len())));
    };
    let [flag, len @ ..] = *prefix;
    match flag {
        0 => {}
        1 => return Err(Unavailable("a compressed gRPC message (none was offered)".into())),
        other => return Err(Unavailable(format!("a gRPC frame with flag {other}"))),
    }
    let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
    if len != message.len() {
        return Err(Unavailable(format!("a gRPC frame of {len} bytes with {} bytes after its prefix", message.len())));
    }
    Ok(message)
}

/// What a host gives of a gRPC answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrpcAnswer<'a> {
    /// The HTTP `:status` (`None`: the call failed without an answer).
    pub status: Option<&'a str>,
    /// `grpc-status`, from the headers or, where the host shows them, the trailers.
    pub grpc_status: Option<&'a str>,
    /// `grpc-message`, likewise.
    pub grpc_message: Option<&'a str>,
    /// The body.
    pub body: &'a [u8],
}

/// Why a gRPC answer is not a message: etcd's error, or a broken answer.
enum Failed {
    /// `grpc-status` (non-zero) and `grpc-message`.
    Status(String, String),
    /// Not a gRPC answer at all.
    Broken(String),
}

/// The response message of `answer`, or why there is none.
fn message<M: Message + Default>(answer: &GrpcAnswer<'_>) -> Result<M, Failed> {
    if answer.status != Some("200") {
        return Err(Failed::Broken(format!("HTTP {}: not a gRPC answer", answer.status.unwrap_or("none"))));
    }
    match answer.grpc_status {
        None | Some("0") => {}
        Some(code) => return Err(Failed::Status(code.into(), short(answer.grpc_message.unwrap_or("")))),
    }
    let bytes = unframe(answer.body).map_err(|Unavailable(why)| Failed::Broken(why))?;
    M::decode(bytes).map_err(|e| Failed::Broken(format!("the gRPC message does not decode: {e}")))
}

/// The first 200 characters of an error text, for the log.
fn short(text: &str) -> String {
    text.chars().take(200).collect()
}

/// Whether etcd's error is "requested lease not found".
fn lease_missing(code: &str, message: &str) -> bool {
    code == NOT_FOUND && message.contains("requested lease not found")
}

/// A transaction answer's header revision, when it has one (every applied transaction does).
fn revision(r: &TxnResponse) -> Option<i64> {
    r.header.as_ref().map(|h| h.revision).filter(|rev| *rev > 0)
}

fn compare(target: CompareTarget, result: CompareResult, key: &[u8], value: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.to_vec(),
        target_union: Some(value),
        range_end: Vec::new(),
    }
}

fn put(p: PutRequest) -> RequestOp {
    RequestOp { request: Some(Request::RequestPut(p)) }
}

impl EtcdUse {
    /// The gRPC body of one use: the transaction of [`EtcdUse::txn_body`].
    pub fn txn_grpc(&self) -> Vec<u8> {
        let key = self.key.as_slice();
        let nested = TxnRequest {
            compare: vec![compare(
                CompareTarget::Version,
                CompareResult::Less,
                key,
                TargetUnion::Version(self.limit_i64()),
            )],
            success: vec![put(PutRequest {
                key: key.to_vec(),
                ignore_value: true,
                ignore_lease: true,
                ..PutRequest::default()
            })],
            failure: Vec::new(),
        };
        frame(&TxnRequest {
            compare: vec![compare(CompareTarget::Create, CompareResult::Equal, key, TargetUnion::CreateRevision(0))],
            success: vec![put(PutRequest { key: key.to_vec(), lease: self.lease_id, ..PutRequest::default() })],
            failure: vec![RequestOp { request: Some(Request::RequestTxn(nested)) }],
        })
    }

    /// The gRPC body of a batch's compare-and-swap: the transaction of [`EtcdUse::take_body`].
    pub fn take_grpc(&self, take: u64, known: Option<Known>) -> Vec<u8> {
        let key = self.key.as_slice();
        let (cmp, put_request) = match known {
            None => (
                compare(CompareTarget::Create, CompareResult::Equal, key, TargetUnion::CreateRevision(0)),
                PutRequest {
                    key: key.to_vec(),
                    value: take.to_string().into_bytes(),
                    lease: self.lease_id,
                    ..PutRequest::default()
                },
            ),
            Some(k) => (
                compare(CompareTarget::Mod, CompareResult::Equal, key, TargetUnion::ModRevision(k.mod_revision)),
                PutRequest {
                    key: key.to_vec(),
                    value: k.count.saturating_add(take).to_string().into_bytes(),
                    ignore_lease: true,
                    ..PutRequest::default()
                },
            ),
        };
        frame(&TxnRequest {
            compare: vec![cmp],
            success: vec![put(put_request)],
            failure: vec![RequestOp {
                request: Some(Request::RequestRange(RangeRequest { key: key.to_vec(), ..RangeRequest::default() })),
            }],
        })
    }

    /// The gRPC body of the lease grant of [`EtcdUse::lease_grant_body`].
    pub fn lease_grant_grpc(&self) -> Vec<u8> {
        frame(&LeaseGrantRequest { ttl: self.lease_ttl, id: self.lease_id })
    }

    /// `max_uses` as etcd's `int64` version (a limit past `i64::MAX` is never reached).
    fn limit_i64(&self) -> i64 {
        i64::try_from(self.limit).unwrap_or(i64::MAX)
    }
}

/// Reads the answer to [`EtcdUse::txn_grpc`].
pub fn read_txn(answer: &GrpcAnswer<'_>) -> TxnAnswer {
    let r: TxnResponse = match message(answer) {
        Ok(r) => r,
        Err(Failed::Status(code, why)) if lease_missing(&code, &why) => return TxnAnswer::LeaseMissing,
        Err(Failed::Status(code, why)) => return TxnAnswer::Unavailable(format!("gRPC status {code}: {why}")),
        Err(Failed::Broken(why)) => return TxnAnswer::Unavailable(why),
    };
    if revision(&r).is_none() {
        return TxnAnswer::Unavailable("answer has no etcd header".into());
    }
    if r.succeeded {
        return TxnAnswer::Counted;
    }
    // The failure branch ran: its one response is the nested transaction's.
    match r.responses.as_slice() {
        [only] => match &only.response {
            Some(Response::ResponseTxn(nested)) if nested.succeeded => TxnAnswer::Counted,
            Some(Response::ResponseTxn(_)) => TxnAnswer::Exhausted,
            _ => TxnAnswer::Unavailable("answer lacks the nested transaction".into()),
        },
        _ => TxnAnswer::Unavailable("answer lacks the nested transaction".into()),
    }
}

/// Reads the answer to [`EtcdUse::take_grpc`].
pub fn read_take(answer: &GrpcAnswer<'_>) -> TakeAnswer {
    let r: TxnResponse = match message(answer) {
        Ok(r) => r,
        Err(Failed::Status(code, why)) if lease_missing(&code, &why) => return TakeAnswer::LeaseMissing,
        Err(Failed::Status(code, why)) => return TakeAnswer::Unavailable(format!("gRPC status {code}: {why}")),
        Err(Failed::Broken(why)) => return TakeAnswer::Unavailable(why),
    };
    let Some(rev) = revision(&r) else {
        return TakeAnswer::Unavailable("answer has no etcd header".into());
    };
    if r.succeeded {
        return TakeAnswer::Taken(rev);
    }
    let kv = match r.responses.as_slice() {
        [only] => match &only.response {
            Some(Response::ResponseRange(range)) => match range.kvs.as_slice() {
                [kv] => Some(kv),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    };
    let Some(kv) = kv else {
        return TakeAnswer::Unavailable("answer lacks the key read back".into());
    };
    let count = std::str::from_utf8(&kv.value).ok().and_then(|v| v.parse::<u64>().ok());
    match count {
        Some(count) if kv.mod_revision > 0 => TakeAnswer::Moved(Known { count, mod_revision: kv.mod_revision }),
        _ => TakeAnswer::Unavailable("the key read back is not a count".into()),
    }
}

/// Reads the answer to [`EtcdUse::lease_grant_grpc`]: `Ok` when the lease now
/// exists (granted here, or already granted by another replica).
pub fn read_grant(answer: &GrpcAnswer<'_>, lease_id: i64) -> Result<(), Unavailable> {
    match message::<LeaseGrantResponse>(answer) {
        Ok(r) if r.id == lease_id && r.error.is_empty() => Ok(()),
        Ok(_) => Err(Unavailable("lease answer names another lease or an error".into())),
        Err(Failed::Status(code, why)) if code == FAILED_PRECONDITION && why.contains("lease already exists") => Ok(()),
        Err(Failed::Status(code, why)) => Err(Unavailable(format!("lease grant gRPC status {code}: {why}"))),
        Err(Failed::Broken(why)) => Err(Unavailable(format!("lease grant: {why}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::pb::mvccpb::KeyValue;
    use super::pb::{RangeResponse, ResponseHeader, ResponseOp};
    use super::*;
    use crate::usage::etcd::{EtcdApi, EtcdReply, Step, UseAnswer, UseCall};
    use crate::usage::UsageId;

    fn a_use() -> EtcdUse {
        EtcdUse::new("cjwt/uses/", &UsageId::new("https://i", "j1"), 3, 1_800_000_030, 1_800_000_000).unwrap()
    }

    fn header(revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader { cluster_id: 1, member_id: 2, revision, raft_term: 3 })
    }

    fn ok(body: &[u8]) -> GrpcAnswer<'_> {
        GrpcAnswer { status: Some("200"), grpc_status: Some("0"), grpc_message: None, body }
    }

    fn nested(succeeded: bool) -> Vec<u8> {
        let inner = TxnResponse { header: header(7), succeeded, responses: vec![] };
        frame(&TxnResponse {
            header: header(7),
            succeeded: false,
            responses: vec![ResponseOp { response: Some(Response::ResponseTxn(inner)) }],
        })
    }

    fn decode_txn(body: &[u8]) -> TxnRequest {
        TxnRequest::decode(unframe(body).unwrap()).unwrap()
    }

    #[test]
    fn frames_round_trip_and_only_whole_uncompressed_frames_are_read() {
        let framed = frame(&LeaseGrantRequest { ttl: 40, id: 7 });
        assert_eq!(framed[0], 0);
        assert_eq!(u32::from_be_bytes(framed[1..5].try_into().unwrap()) as usize, framed.len() - 5);
        assert_eq!(LeaseGrantRequest::decode(unframe(&framed).unwrap()).unwrap(), LeaseGrantRequest { ttl: 40, id: 7 });
        // An empty message is a frame of length 0.
        assert_eq!(unframe(&[0, 0, 0, 0, 0]).unwrap(), b"");
        let mut compressed = framed.clone();
        compressed[0] = 1;
        assert!(unframe(&compressed).unwrap_err().0.contains("compressed"));
        compressed[0] = 0x80;
        assert!(unframe(&compressed).is_err());
        assert!(unframe(&framed[..framed.len() - 1]).is_err(), "truncated");
        assert!(unframe(&framed[..3]).is_err(), "no prefix");
        assert!(unframe(b"").is_err());
        let mut longer = framed.clone();
        longer.push(0);
        assert!(unframe(&longer).is_err(), "bytes after the frame");
        assert!(unframe(&[0, 0xff, 0xff, 0xff, 0xff, 1, 2]).is_err(), "declared 4 GiB");
        let two = [framed.clone(), framed].concat();
        assert!(unframe(&two).is_err(), "two messages");
    }

    #[test]
    fn the_transaction_is_the_gateways_in_protobuf() {
        let u = a_use();
        let t = decode_txn(&u.txn_grpc());
        let [c] = t.compare.as_slice() else { panic!("{t:?}") };
        assert_eq!((c.target, c.result), (CompareTarget::Create as i32, CompareResult::Equal as i32));
        assert_eq!((c.key.as_slice(), &c.target_union), (u.key.as_slice(), &Some(TargetUnion::CreateRevision(0))));
        let [RequestOp { request: Some(Request::RequestPut(p)) }] = t.success.as_slice() else { panic!() };
        assert_eq!((p.key.as_slice(), p.lease, p.ignore_lease), (u.key.as_slice(), u.lease_id, false));
        let [RequestOp { request: Some(Request::RequestTxn(n)) }] = t.failure.as_slice() else { panic!() };
        let [c] = n.compare.as_slice() else { panic!() };
        assert_eq!((c.target, c.result), (CompareTarget::Version as i32, CompareResult::Less as i32));
        assert_eq!(c.target_union, Some(TargetUnion::Version(3)));
        let [RequestOp { request: Some(Request::RequestPut(p)) }] = n.success.as_slice() else { panic!() };
        assert!(p.ignore_value && p.ignore_lease && p.lease == 0);
        assert!(n.failure.is_empty());
        let g = LeaseGrantRequest::decode(unframe(&u.lease_grant_grpc()).unwrap()).unwrap();
        assert_eq!((g.id, g.ttl), (u.lease_id, u.lease_ttl));
    }

    #[test]
    fn a_batch_swap_is_the_gateways_in_protobuf() {
        let u = a_use();
        let t = decode_txn(&u.take_grpc(16, None));
        assert_eq!(t.compare[0].target_union, Some(TargetUnion::CreateRevision(0)));
        let Some(Request::RequestPut(p)) = &t.success[0].request else { panic!() };
        assert_eq!((p.value.as_slice(), p.lease), (&b"16"[..], u.lease_id));
        assert!(matches!(&t.failure[0].request, Some(Request::RequestRange(r)) if r.key == u.key));
        let t = decode_txn(&u.take_grpc(10, Some(Known { count: 90, mod_revision: 41 })));
        assert_eq!(t.compare[0].target, CompareTarget::Mod as i32);
        assert_eq!(t.compare[0].target_union, Some(TargetUnion::ModRevision(41)));
        let Some(Request::RequestPut(p)) = &t.success[0].request else { panic!() };
        assert_eq!((p.value.as_slice(), p.ignore_lease, p.lease), (&b"100"[..], true, 0));
    }

    #[test]
    fn every_transaction_answer_shape() {
        let counted = frame(&TxnResponse { header: header(5), succeeded: true, responses: vec![] });
        assert_eq!(read_txn(&ok(&counted)), TxnAnswer::Counted);
        assert_eq!(read_txn(&ok(&nested(true))), TxnAnswer::Counted);
        assert_eq!(read_txn(&ok(&nested(false))), TxnAnswer::Exhausted);
        // The trailers not shown (the native callout): the message is the answer.
        assert_eq!(read_txn(&GrpcAnswer { grpc_status: None, ..ok(&nested(false)) }), TxnAnswer::Exhausted);
        // Lease missing: a trailers-only answer, NOT_FOUND.
        let missing = GrpcAnswer {
            status: Some("200"),
            grpc_status: Some("5"),
            grpc_message: Some("etcdserver: requested lease not found"),
            body: b"",
        };
        assert_eq!(read_txn(&missing), TxnAnswer::LeaseMissing);
        assert!(matches!(read_txn(&GrpcAnswer { grpc_status: Some("14"), ..missing }), TxnAnswer::Unavailable(_)));
        // Any error status wins over a body that says counted.
        for code in ["1", "2", "4", "8", "13", "14", "x"] {
            let a = GrpcAnswer { grpc_status: Some(code), grpc_message: Some("etcdserver: no leader"), ..ok(&counted) };
            assert!(matches!(read_txn(&a), TxnAnswer::Unavailable(ref why) if why.contains("no leader")), "{code}");
        }
        // Not gRPC, or broken.
        let no_header = frame(&TxnResponse { header: None, succeeded: true, responses: vec![] });
        let zero_revision = frame(&TxnResponse { header: header(0), succeeded: true, responses: vec![] });
        let no_nested = frame(&TxnResponse { header: header(5), succeeded: false, responses: vec![] });
        let range = frame(&TxnResponse {
            header: header(5),
            succeeded: false,
            responses: vec![ResponseOp { response: Some(Response::ResponseRange(RangeResponse::default())) }],
        });
        let two = [nested(true), nested(true)].concat();
        let mut compressed = counted.clone();
        compressed[0] = 1;
        let garbage = [0u8, 0, 0, 0, 3, 0xff, 0xff, 0xff];
        for (what, answer) in [
            ("no header", ok(&no_header)),
            ("revision 0", ok(&zero_revision)),
            ("no nested", ok(&no_nested)),
            ("a range", ok(&range)),
            ("two frames", ok(&two)),
            ("compressed", ok(&compressed)),
            ("truncated", ok(&counted[..counted.len() - 1])),
            ("garbage", ok(&garbage)),
            ("empty", ok(b"")),
            ("HTTP 503", GrpcAnswer { status: Some("503"), ..ok(&counted) }),
            ("no answer", GrpcAnswer { status: None, ..ok(&counted) }),
        ] {
            assert!(matches!(read_txn(&answer), TxnAnswer::Unavailable(_)), "{what}");
        }
    }

    #[test]
    fn every_swap_and_grant_answer_shape() {
        let taken = frame(&TxnResponse { header: header(42), succeeded: true, responses: vec![] });
        assert_eq!(read_take(&ok(&taken)), TakeAnswer::Taken(42));
        let moved = |value: &[u8], mod_revision: i64| {
            let kv = KeyValue { key: b"k".to_vec(), mod_revision, value: value.to_vec(), ..KeyValue::default() };
            let range = RangeResponse { header: header(9), kvs: vec![kv], more: false, count: 1 };
            frame(&TxnResponse {
                header: header(9),
                succeeded: false,
                responses: vec![ResponseOp { response: Some(Response::ResponseRange(range)) }],
            })
        };
        assert_eq!(read_take(&ok(&moved(b"90", 41))), TakeAnswer::Moved(Known { count: 90, mod_revision: 41 }));
        assert!(matches!(read_take(&ok(&moved(b"x", 41))), TakeAnswer::Unavailable(_)));
        assert!(matches!(read_take(&ok(&moved(b"90", 0))), TakeAnswer::Unavailable(_)));
        assert!(matches!(read_take(&ok(&nested(true))), TakeAnswer::Unavailable(_)));
        let missing = GrpcAnswer {
            grpc_status: Some("5"),
            grpc_message: Some("etcdserver: requested lease not found"),
            ..ok(b"")
        };
        assert_eq!(read_take(&missing), TakeAnswer::LeaseMissing);
        // Grants: here, elsewhere, another lease, an error.
        let id = a_use().lease_id;
        let granted = frame(&LeaseGrantResponse { header: header(3), id, ttl: 40, error: String::new() });
        assert_eq!(read_grant(&ok(&granted), id), Ok(()));
        let exists =
            GrpcAnswer { grpc_status: Some("9"), grpc_message: Some("etcdserver: lease already exists"), ..ok(b"") };
        assert_eq!(read_grant(&exists, id), Ok(()));
        assert!(read_grant(&ok(&granted), id + 1).is_err());
        let refused = frame(&LeaseGrantResponse { header: header(3), id, ttl: 40, error: "no".into() });
        assert!(read_grant(&ok(&refused), id).is_err());
        assert!(read_grant(&GrpcAnswer { grpc_status: Some("14"), ..ok(&granted) }, id).is_err());
        assert!(read_grant(&ok(&granted[..4]), id).is_err());
    }

    /// A use over gRPC walks the same steps as over the gateway: the lease
    /// missing, granted, the transaction once more.
    #[test]
    fn a_use_over_grpc_grants_its_lease_and_retries() {
        let mut call = UseCall::new(a_use(), EtcdApi::Grpc, "/v3");
        let first = call.first();
        assert_eq!((first.path.as_str(), first.api), (TXN_PATH, EtcdApi::Grpc));
        let missing = EtcdReply {
            status: Some("200"),
            grpc_status: Some("5"),
            grpc_message: Some("etcdserver: requested lease not found"),
            body: b"",
        };
        let Step::Send(grant) = call.on_reply(&missing) else { panic!() };
        assert_eq!(grant.path, LEASE_GRANT_PATH);
        let id = a_use().lease_id;
        let granted = frame(&LeaseGrantResponse { header: header(3), id, ttl: 40, error: String::new() });
        let Step::Send(txn) = call.on_reply(&EtcdReply { status: Some("200"), body: &granted, ..EtcdReply::default() })
        else {
            panic!()
        };
        assert_eq!(txn.body, a_use().txn_grpc());
        // Missing again after the grant: unavailable, never a second grant.
        assert!(matches!(call.on_reply(&missing), Step::Done(UseAnswer::Unavailable(_))));
        let mut call = UseCall::new(a_use(), EtcdApi::Grpc, "/v3");
        let exhausted = nested(false);
        let reply = EtcdReply { status: Some("200"), grpc_status: Some("0"), body: &exhausted, ..EtcdReply::default() };
        assert_eq!(call.on_reply(&reply), Step::Done(UseAnswer::Exhausted));
    }

    /// Hostile bytes never panic and never count as allowed unless they are
    /// a well-formed etcd answer.
    #[test]
    fn hostile_bytes_are_never_counted() {
        let mut x = 7u64;
        for len in 0..400usize {
            let mut body = vec![0u8, 0, 0, 0, 0];
            body[1..5].copy_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
            for _ in 0..len {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                body.push((x >> 56) as u8);
            }
            let answer = read_txn(&ok(&body));
            if answer == TxnAnswer::Counted {
                let r = TxnResponse::decode(&body[5..]).unwrap();
                assert!(r.header.is_some_and(|h| h.revision > 0));
            }
            let _ = read_take(&ok(&body));
            let _ = read_grant(&ok(&body), 1);
        }
        // Deep nesting: prost's recursion limit refuses it.
        let mut deep = TxnResponse { header: header(1), succeeded: true, responses: vec![] };
        for _ in 0..200 {
            deep = TxnResponse {
                header: header(1),
                succeeded: false,
                responses: vec![ResponseOp { response: Some(Response::ResponseTxn(deep)) }],
            };
        }
        assert!(matches!(read_txn(&ok(&frame(&deep))), TxnAnswer::Unavailable(_)));
    }
}
