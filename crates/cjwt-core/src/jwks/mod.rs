//! Remote key sets (SPEC §2 `remote_jwks`): fetching them, parsing fetched JWKS
//! and OIDC discovery documents, and the last good set per provider.
//!
//! - [`fetcher`]: when to fetch, refetch and retry, and which requests wait for
//!   the answer — a state machine the adapter drives with the host's clock and
//!   answers (it dispatches the calls; the core never names the host);
//! - [`parse`]: a fetched JWKS body and an OIDC discovery document;
//! - `slot`: one remote document's fetch schedule (the call in flight, when the
//!   next is due), shared with the status-list fetcher;
//! - [`store`]: the last good key set of each provider, and its generation.

pub mod fetcher;
pub mod parse;
pub(crate) mod slot;
pub mod store;
