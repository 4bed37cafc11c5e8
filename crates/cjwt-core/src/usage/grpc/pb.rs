//! The messages of etcd's `KV/Txn` and `Lease/LeaseGrant` that cjwt sends and
//! reads, written with `prost`'s derive from the vendored protos
//! (`proto/etcd/*.proto`, see `proto/README.md`): the same field numbers and
//! wire types as etcd v3.4, which never change. The test below holds every
//! field here against the `.proto` files, so the two cannot drift apart; a
//! code generator at build time cost every build two crates' worth of
//! compiling for these eleven messages (decision 116).
#![allow(missing_docs)]

use prost::alloc::string::String;
use prost::alloc::vec::Vec;

/// etcd's `mvccpb` package.
pub mod mvccpb {
    pub use super::KeyValue;
}

/// `mvccpb.KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    #[prost(int64, tag = "4")]
    pub version: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "6")]
    pub lease: i64,
}

#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    #[prost(int64, tag = "3")]
    pub revision: i64,
    #[prost(uint64, tag = "4")]
    pub raft_term: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub limit: i64,
    #[prost(int64, tag = "4")]
    pub revision: i64,
    #[prost(bool, tag = "7")]
    pub serializable: bool,
    #[prost(bool, tag = "8")]
    pub keys_only: bool,
    #[prost(bool, tag = "9")]
    pub count_only: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
    #[prost(bool, tag = "3")]
    pub more: bool,
    #[prost(int64, tag = "4")]
    pub count: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub lease: i64,
    #[prost(bool, tag = "4")]
    pub prev_kv: bool,
    #[prost(bool, tag = "5")]
    pub ignore_value: bool,
    #[prost(bool, tag = "6")]
    pub ignore_lease: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, optional, tag = "2")]
    pub prev_kv: Option<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestOp {
    #[prost(oneof = "request_op::Request", tags = "1, 2, 4")]
    pub request: Option<request_op::Request>,
}

/// `RequestOp`'s `oneof request`.
pub mod request_op {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Request {
        #[prost(message, tag = "1")]
        RequestRange(super::RangeRequest),
        #[prost(message, tag = "2")]
        RequestPut(super::PutRequest),
        #[prost(message, tag = "4")]
        RequestTxn(super::TxnRequest),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseOp {
    #[prost(oneof = "response_op::Response", tags = "1, 2, 4")]
    pub response: Option<response_op::Response>,
}

/// `ResponseOp`'s `oneof response`.
pub mod response_op {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Response {
        #[prost(message, tag = "1")]
        ResponseRange(super::RangeResponse),
        #[prost(message, tag = "2")]
        ResponsePut(super::PutResponse),
        #[prost(message, tag = "4")]
        ResponseTxn(super::TxnResponse),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Compare {
    #[prost(enumeration = "compare::CompareResult", tag = "1")]
    pub result: i32,
    #[prost(enumeration = "compare::CompareTarget", tag = "2")]
    pub target: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "64")]
    pub range_end: Vec<u8>,
    #[prost(oneof = "compare::TargetUnion", tags = "4, 5, 6, 7, 8")]
    pub target_union: Option<compare::TargetUnion>,
}

/// `Compare`'s enums and `oneof target_union`.
pub mod compare {
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum CompareResult {
        Equal = 0,
        Greater = 1,
        Less = 2,
        NotEqual = 3,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum CompareTarget {
        Version = 0,
        Create = 1,
        Mod = 2,
        Value = 3,
        Lease = 4,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum TargetUnion {
        #[prost(int64, tag = "4")]
        Version(i64),
        #[prost(int64, tag = "5")]
        CreateRevision(i64),
        #[prost(int64, tag = "6")]
        ModRevision(i64),
        #[prost(bytes = "vec", tag = "7")]
        Value(prost::alloc::vec::Vec<u8>),
        #[prost(int64, tag = "8")]
        Lease(i64),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnRequest {
    #[prost(message, repeated, tag = "1")]
    pub compare: Vec<Compare>,
    #[prost(message, repeated, tag = "2")]
    pub success: Vec<RequestOp>,
    #[prost(message, repeated, tag = "3")]
    pub failure: Vec<RequestOp>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(bool, tag = "2")]
    pub succeeded: bool,
    #[prost(message, repeated, tag = "3")]
    pub responses: Vec<ResponseOp>,
}

#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct LeaseGrantRequest {
    #[prost(int64, tag = "1")]
    pub ttl: i64,
    #[prost(int64, tag = "2")]
    pub id: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseGrantResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(int64, tag = "2")]
    pub id: i64,
    #[prost(int64, tag = "3")]
    pub ttl: i64,
    #[prost(string, tag = "4")]
    pub error: String,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    type Fields = BTreeMap<(String, String), (u32, String)>;

    /// CamelCase to snake_case (`NotEqual` to `not_equal`).
    fn snake(name: &str) -> String {
        let mut out = String::new();
        for (i, c) in name.chars().enumerate() {
            if i > 0 && c.is_uppercase() {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        }
        out
    }

    /// `(owner, name) -> (number, kind)` of the `.proto` files: every field
    /// `[repeated] TYPE NAME = TAG;` of `message M { … }` (a `oneof`'s fields
    /// belong to the message) and every value `NAME = N;` of `enum E { … }`,
    /// names in lowercase, kinds as prost names them.
    fn proto_fields(text: &str) -> Fields {
        let mut fields = Fields::new();
        let mut owners: Vec<(String, bool)> = Vec::new();
        for line in text.lines().map(|l| l.split("//").next().unwrap().trim()) {
            let words: Vec<&str> = line.split_whitespace().filter(|w| *w != "repeated").collect();
            match words.as_slice() {
                ["message" | "enum", name, "{"] => owners.push(((*name).to_string(), words[0] == "enum")),
                ["oneof", _, "{"] => owners.push((owners.last().unwrap().0.clone(), false)),
                ["}"] => drop(owners.pop()),
                [name, "=", n] if owners.last().is_some_and(|o| o.1) => {
                    let (owner, _) = owners.last().unwrap();
                    let n = n.trim_end_matches(';').parse().unwrap();
                    fields.insert((owner.clone(), name.to_lowercase()), (n, "value".into()));
                }
                [ty, name, "=", tag] if !owners.is_empty() => {
                    let kind = match *ty {
                        "int64" | "uint64" | "bool" | "bytes" | "string" => (*ty).to_string(),
                        "CompareResult" | "CompareTarget" => "enumeration".into(),
                        _ => "message".into(),
                    };
                    let tag = tag.trim_end_matches(';').parse().unwrap();
                    fields.insert((owners.last().unwrap().0.clone(), name.to_lowercase()), (tag, kind));
                }
                _ => {}
            }
        }
        fields
    }

    /// The same map of this file: each `#[prost(KIND…, tag = "N")]` with the
    /// field or variant after it, in the struct (or the `oneof` enum, whose
    /// message is the struct that names it) it belongs to, and each value of
    /// an enumeration.
    fn rust_fields(text: &str) -> Fields {
        let mut fields = Fields::new();
        let mut owner = String::new();
        let mut pending: Option<(u32, String)> = None;
        for line in text.split("#[cfg(test)]").next().unwrap().lines().map(str::trim) {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["pub", "struct" | "enum", name, ..] => {
                    owner = match *name {
                        "Request" => "RequestOp",
                        "Response" => "ResponseOp",
                        "TargetUnion" => "Compare",
                        other => other,
                    }
                    .to_string();
                }
                [attr, ..] if attr.starts_with("#[prost(") && !attr.starts_with("#[prost(oneof") => {
                    let kind = attr.trim_start_matches("#[prost(").trim_end_matches(',').to_string();
                    let tag = line.split("tag = \"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
                    pending = Some((tag, kind));
                }
                [name, "=", n] if owner.starts_with("Compare") && owner != "Compare" => {
                    let n = n.trim_end_matches(',').parse().unwrap();
                    fields.insert((owner.clone(), snake(name)), (n, "value".into()));
                }
                [first, ..] => {
                    if let Some((tag, kind)) = pending.take() {
                        let name = if *first == "pub" { words[1] } else { first };
                        let name = name.split([':', '(']).next().unwrap();
                        fields.insert((owner.clone(), snake(name)), (tag, kind));
                    }
                }
                [] => {}
            }
        }
        fields
    }

    #[test]
    fn every_field_matches_the_vendored_protos() {
        let mut proto = proto_fields(include_str!("../../../proto/etcd/kv.proto"));
        proto.extend(proto_fields(include_str!("../../../proto/etcd/rpc.proto")));
        let rust = rust_fields(include_str!("pb.rs"));
        assert!(proto.len() > 50, "the .proto files were not read: {proto:?}");
        assert_eq!(rust, proto);
    }
}
