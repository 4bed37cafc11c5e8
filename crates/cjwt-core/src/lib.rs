//! cjwt-core: everything that decides, with no host import.
//!
//! The modules, in layers: each uses only the layers above it in this list
//! (never one below it, so no import cycle), and one layer's modules do not use
//! each other unless noted:
//!
//! 1. [`encoding`] (base64url, duplicate-free JSON, protobuf) and [`reason`]
//!    (the stable reason codes, statuses and classes): leaves.
//! 2. [`keys`]: key import with every refusal, algorithms, RSA, and the host's
//!    crypto (`host_crypto` names `key`, never the other way).
//! 3. [`request`]: what the core reads of one request (the
//!    [`request::host::Host`] trait, the [`request::view::RequestView`] read once
//!    per decision, the credential, the client address, the query, path normal
//!    form and patterns, the origin, and where each configured value is read
//!    from, [`request::source`]).
//! 4. [`usage`]: `max_uses` counting (the counter the decision sees, the
//!    in-process records, the etcd protocol over gRPC and the JSON gateway)
//!    and the ids the stores record.
//! 5. [`constraints`]: the token's own conditions, one table of kinds
//!    ([`constraints::KINDS`]), one module per kind, each parsing its claim value
//!    and checking it against the request view.
//! 6. [`config`]: serde shapes, the compiled model, loading JSON or protobuf
//!    `Struct` (it compiles patterns, sources, the deny-list and the reserved
//!    constraint names from the layers above).
//! 7. [`token`]: untrusted bytes → [`token::verify::VerifiedToken`] (compact JWS,
//!    verification, claims, the token's status, the verified-token cache).
//! 8. [`jwks`]: remote key sets (the fetch state machine, parsing, the store of
//!    fetched keys and status lists).
//! 9. [`revocation`] (deny-lists and OAuth Token Status Lists, SPEC §11; uses
//!    [`jwks`]) and [`sender`] (sender-constrained tokens, `cnf`: DPoP proofs,
//!    certificate binding).
//!    [`txn`] (Transaction Tokens, SPEC §14: enforcing one from the
//!    `Txn-Token` header, issuing one at the edge).
//!    [`chain`] (holder attenuation, SPEC §16: the delegation chain of the
//!    `cjwt-chain` header, verified with the root token and [`sender`]'s proof keys).
//! 10. `policy`: the operator's rules (which rule applies, what it `require`s).
//! 11. [`engine`]: the decision, top to bottom.
//! 12. [`outcome`]: the refusal, the forwarding edits, the plan an adapter executes.
//! 13. [`lifecycle`]: every step a request ([`RequestFlow`]) or a fetch
//!     ([`Remote`]) can take, as sans-I/O state machines that return steps and
//!     effects for the adapter to execute.
//!
//! Beside them, for the command line and tests only: `mint` (signing; feature
//! `mint`) and `testing` (feature `testing`).
//!
//! # The front door
//!
//! The adapters (the proxy-wasm filter `cjwt-filter`, the native Envoy dynamic
//! module `cjwt-module`) use only what this file re-exports: compile a
//! [`Config`] for their build's [`Capabilities`], keep an [`Engine`] (one per
//! worker thread: [`WorkerEngines`]) and the [`Fetched`] material, define
//! their [`CounterIds`], run a [`RequestFlow`] per request (driven by
//! [`RequestFlow::drive`] through their [`FlowHost`]) and a [`Remote`] and
//! background [`Refills`] per configuration (driven through their
//! [`BackgroundHost`], over [`RemoteEnv`]), keep the calls they send in
//! [`InFlight`] tables, read answers into an [`Answer`], implement the host
//! traits ([`Host`], [`HostCrypto`], [`UsageCounter`], [`ReplayCache`],
//! [`Sharing`]), and execute each [`Step`] ([`Plan`]: [`Act`], [`Counter`]s,
//! log lines, [`SpanField`] tags) and [`Effect`]. They decide nothing. The modules stay public for the command line (`cjwt-cli`: minting,
//! inspecting, status lists) and the tests.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod chain;
pub mod config;
pub mod constraints;
pub mod encoding;
pub mod engine;
pub mod jwks;
pub mod keys;
pub mod lifecycle;
pub mod outcome;
pub(crate) mod policy;
pub mod reason;
pub mod request;
pub mod revocation;
pub mod sender;
pub mod token;
pub mod txn;
pub mod usage;

pub use config::{Capabilities, Config, ConfigError, SpanField};
pub use engine::{Engine, WorkerEngines};
pub use jwks::store::Fetched;
pub use keys::host_crypto::HostCrypto;
#[cfg(feature = "native-crypto")]
pub use keys::native::NativeCrypto;
pub use lifecycle::background::{BackgroundHost, RemoteEnv};
pub use lifecycle::calls::{Answer, InFlight};
pub use lifecycle::refill::{Due, Refill, RefillStep, Refills};
pub use lifecycle::remote::{Call, Effect, NextValue, ProcessSharing, Remote, Sharing};
pub use lifecycle::request::{Env, Event, FlowHost, Flowed, KeyWait, RequestFlow, Step, StoreCall};
pub use outcome::metrics::{Counter, CounterIds};
pub use outcome::plan::{audit_filter_state, Act, Plan, PlanHost};
pub use outcome::response::Refusal;
pub use outcome::Level;
pub use request::host::{clock, Host, ReusedHeaders};
pub use sender::replay::{ProcessReplay, ReplayCache};
pub use usage::process::ProcessCounter;
pub use usage::{UsageCounter, UsageError};

/// For hosts that keep `max_uses` counts and DPoP proof ids in memory their
/// workers share (proxy-wasm shared data): the counter and replay cache
/// ([`shared_slots::Slots`]) over the host's compare-and-swap
/// ([`shared_slots::SlotStore`]), and the records as pure byte functions over one slot.
pub mod shared_slots {
    pub use crate::sender::replay::{
        first_seen_in, NextValue, ProofId, ReplayError, ReplayKey, ReplayStore, StoreError,
    };
    pub use crate::usage::allowance;
    pub use crate::usage::slots::{SlotNext, SlotStore, Slots};
    pub use crate::usage::spent::{is_spent_in, mark_spent_in, spent_key};
    pub use crate::usage::{count_use, slot_key, SlotUpdate, UsageId};
}

/// For hosts that verify signatures themselves (Envoy's `verify_signature`):
/// which algorithms, and the call's encoding.
pub mod host_verify {
    pub use crate::keys::algorithm::Algorithm;
    pub use crate::keys::host_crypto::{host_supports, request, result_is_valid};
    pub use crate::keys::key::VerificationKey;
}

#[cfg(feature = "mint")]
pub mod mint;
#[cfg(feature = "testing")]
pub mod testing;
