//! The request as the core sees it, over the module's stream handle: headers
//! copied once, the peer address read only when a decision asks for it, the
//! clock from the operating system.

use crate::ffi::Filter;
use cjwt_core::{clock, Host, ReusedHeaders};

/// One request's view of Envoy during one hook.
pub struct NativeHost<'hook> {
    /// The request's headers, in the worker's reused buffer.
    headers: ReusedHeaders,
    filter: Filter<'hook>,
    now: i64,
}

impl<'hook> NativeHost<'hook> {
    /// The request as Envoy holds it now; `None` when the clock reads as an
    /// impossible time (the caller fails closed).
    pub fn read(filter: Filter<'hook>) -> Option<NativeHost<'hook>> {
        let now = clock::unix_seconds(std::time::SystemTime::now())?;
        let headers = ReusedHeaders::fill(|buffer| filter.request_headers_into(buffer));
        Some(NativeHost { headers, filter, now })
    }
}

impl Host for NativeHost<'_> {
    fn headers(&self) -> &[(String, Vec<u8>)] {
        self.headers.as_slice()
    }

    /// `source.address` is Envoy's downstream address (`ip:port`), as the wasm
    /// build reads it; `connection.sha256_peer_certificate_digest` the peer
    /// certificate's SHA-256 (lowercase hex) for certificate-bound tokens,
    /// `connection.uri_san_peer_certificate` its first URI SAN (`require.caller`). No
    /// other property is read through this ABI (node metadata is refused at
    /// configuration).
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        match path {
            ["source", "address"] => self.filter.source_address(),
            ["connection", "sha256_peer_certificate_digest"] => self.filter.peer_certificate_digest(),
            ["connection", "uri_san_peer_certificate"] => self.filter.peer_uri_san(),
            ["filter_state", key] => self.filter.filter_state(key),
            // Bools only (the MCP filter's verdicts): one byte, as the wasm host gives one.
            ["metadata", "filter_metadata", namespace, key] => {
                self.filter.metadata_bool(namespace, key).map(|b| vec![u8::from(b)])
            }
            _ => None,
        }
    }

    fn now(&self) -> i64 {
        self.now
    }
}
