//! Shared test helpers: the core's fixtures and its one table of request cases
//! (`cjwt_core::testing`, re-exported here), and what only a real host needs: an
//! Envoy launcher with an echo upstream and a JWKS server ([`envoy`]), HTTP/1 and
//! h2c clients, one HTTP/1.1 server for the test peers ([`http_server`]), etcd on loopback ([`etcd`]), Docker ([`docker`]), a Zipkin collector
//! ([`zipkin`]), a Txn-Token Service ([`txn_service`]), and claims on ports and addresses that concurrent test processes
//! must not share ([`claim`]).
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test and bench tooling: a failed setup stops loudly

pub mod claim;
pub mod docker;
pub mod envoy;
pub mod etcd;
pub mod h2;
pub mod http_server;
pub mod mcp;
pub mod pki;
pub mod said;
pub mod txn_service;
pub mod zipkin;

/// A directory for one test's files (Envoy's configuration and logs, etcd's data,
/// certificates) under the system temp dir, `<temp>/cjwt-tests/<name>`: created
/// empty. Nothing a test writes lands in the repository.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join("cjwt-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// Keys, claims, configurations, tokens, a verdict on a static host, the case
/// tables ([`cases`]): the core's test fixtures.
pub use cjwt_core::testing::*;
