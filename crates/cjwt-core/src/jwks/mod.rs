//! Remote key sets: the last good set per provider, and parsing of fetched JWKS
//! and OIDC discovery documents.

pub mod store;
