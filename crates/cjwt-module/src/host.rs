//! The request as the core sees it, over the module's stream handle: headers
//! copied once, the peer address read only when a decision asks for it, the
//! clock from the operating system.

use crate::ffi::Filter;
use cjwt_core::request::host::{clock, Host};

/// One request's view of Envoy during one hook.
pub struct NativeHost<'hook> {
    headers: Vec<(String, Vec<u8>)>,
    filter: Filter<'hook>,
    now: i64,
}

impl<'hook> NativeHost<'hook> {
    /// The request as Envoy holds it now; `None` when the clock reads as an
    /// impossible time (the caller fails closed).
    pub fn read(filter: Filter<'hook>) -> Option<NativeHost<'hook>> {
        let now = clock::unix_seconds(std::time::SystemTime::now())?;
        Some(NativeHost { headers: filter.request_headers(), filter, now })
    }
}

impl Host for NativeHost<'_> {
    fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// `source.address` is Envoy's downstream address (`ip:port`), as the wasm
    /// build reads it; no other property exists in this ABI (node metadata is
    /// refused at configuration).
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        match path {
            ["source", "address"] => self.filter.source_address(),
            _ => None,
        }
    }

    fn now(&self) -> i64 {
        self.now
    }
}
