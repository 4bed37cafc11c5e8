//! Transaction Tokens (SPEC §14, draft-ietf-oauth-transaction-tokens): the
//! sidecar's side ([`enforce`]: the `Txn-Token` header, its claims, the
//! context it was issued for) and the gateway's ([`issue`]: the Txn-Token an
//! allowed request goes upstream with). The engine calls both, in its order;
//! nothing here touches a host.

pub mod enforce;
pub mod exchange;
pub mod issue;

/// The request header that carries a Txn-Token (lowercase, as hosts give names).
pub const HEADER: &str = "txn-token";
