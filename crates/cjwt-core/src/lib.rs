//! cjwt-core: everything that decides, with no host import.
//!
//! A request flows top to bottom through [`engine::Engine::decide`]:
//!
//! - [`request`]: what the core reads of one request (the [`request::host::Host`] trait,
//!   the [`request::view::RequestView`] read once per decision, the credential, the
//!   client address, the query, path normal form and patterns);
//! - [`policy`]: the operator's rules (which rule applies, what it `require`s);
//! - [`token`]: untrusted bytes → [`token::verify::VerifiedToken`] (compact JWS,
//!   verification, claims, the verified-token cache);
//! - [`keys`]: key import with every refusal, algorithms, RSA, host crypto;
//! - [`jwks`]: remote key sets (the fetch state machine, parsing, the store);
//! - [`constraints`]: the token's own conditions, one module per kind, each parsing
//!   its claim value and checking it against the request view;
//! - [`config`]: serde shapes, the compiled model, loading JSON or protobuf `Struct`;
//! - [`outcome`]: the refusal and the forwarding edits;
//! - [`sender`]: sender-constrained tokens (`cnf`: DPoP proofs, certificate binding);
//! - [`reason`]: the stable reason codes, statuses and classes;
//! - [`revocation`]: deny-lists and OAuth Token Status Lists (SPEC §11);
//! - [`usage`]: `max_uses` counting (in-process records and the etcd protocol);
//! - [`encoding`]: base64url and duplicate-free JSON.
//!
//! Adapters (the proxy-wasm filter, the command line) implement the host traits
//! and act on the [`engine::Outcome`]; they decide nothing.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod constraints;
pub mod encoding;
pub mod engine;
pub mod jwks;
pub mod keys;
pub mod lifecycle;
pub mod outcome;
pub mod policy;
pub mod reason;
pub mod request;
pub mod revocation;
pub mod sender;
pub mod token;
pub mod usage;

#[cfg(feature = "mint")]
pub mod mint;
#[cfg(feature = "testing")]
pub mod testing;
