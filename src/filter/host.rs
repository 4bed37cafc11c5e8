//! [`Host`] and [`UsageCounter`] over proxy-wasm hostcalls.

use crate::core::host::{Host, UsageCounter, UsageError};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, Status};

/// One request's view of Envoy: headers read once (byte-level, every value of a
/// repeated header kept), properties read on demand, time from the host clock.
pub struct ProxyHost {
    headers: Vec<(String, Vec<u8>)>,
    now: i64,
}

impl ProxyHost {
    pub fn read() -> ProxyHost {
        let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
        ProxyHost { headers, now: host_now() }
    }
}

/// Host clock in Unix seconds (never the token's or the request's idea of time).
pub fn host_now() -> i64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Host for ProxyHost {
    fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn now(&self) -> i64 {
        self.now
    }
}

/// `max_uses` counters in proxy-wasm shared data, shared by every worker VM of
/// this Envoy (same `vm_id`), updated with compare-and-swap.
///
/// Value: 8 bytes little-endian count, 8 bytes little-endian expiry (Unix s).
/// A key's first write passes a CAS value no entry can hold (`u32::MAX`): the
/// host inserts a missing key whatever the CAS, and refuses the write with
/// `CasMismatch` if another worker inserted it first — so that race retries too.
pub struct SharedDataCounter;

const CAS_ATTEMPTS: usize = 64;
const FIRST_WRITE_CAS: u32 = u32::MAX;

impl UsageCounter for SharedDataCounter {
    fn try_use(&mut self, key: &str, limit: u64, expires_at: i64, _now: i64) -> Result<bool, UsageError> {
        for _ in 0..CAS_ATTEMPTS {
            let (value, cas) = hostcalls::get_shared_data(key).map_err(|_| UsageError)?;
            let count = value
                .as_deref()
                .and_then(|v| v.get(..8))
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_le_bytes);
            if count >= limit {
                return Ok(false);
            }
            let mut next = Vec::with_capacity(16);
            next.extend_from_slice(&(count + 1).to_le_bytes());
            next.extend_from_slice(&expires_at.to_le_bytes());
            let cas = match (value.is_some(), cas) {
                (true, Some(c)) => c,
                _ => FIRST_WRITE_CAS,
            };
            match hostcalls::set_shared_data(key, Some(&next), Some(cas)) {
                Ok(()) => return Ok(true),
                Err(Status::CasMismatch) => continue,
                Err(_) => return Err(UsageError),
            }
        }
        Err(UsageError)
    }
}

/// Envoy's `verify_signature` foreign function (BoringSSL), when the host has it.
pub struct EnvoyCrypto {
    pub available: bool,
    pub calls: std::cell::Cell<u64>,
}

impl EnvoyCrypto {
    /// Asks the host whether the function exists: an unknown function answers
    /// `NotFound`; a known one refuses the empty argument some other way.
    pub fn probe() -> EnvoyCrypto {
        let available =
            !matches!(hostcalls::call_foreign_function("verify_signature", Some(&[])), Err(Status::NotFound));
        EnvoyCrypto { available, calls: std::cell::Cell::new(0) }
    }
}

impl crate::core::hostsig::HostCrypto for EnvoyCrypto {
    fn verify(&self, request: &[u8]) -> Option<bool> {
        if !self.available {
            return None;
        }
        match hostcalls::call_foreign_function("verify_signature", Some(request)) {
            Ok(result) => {
                self.calls.set(self.calls.get().saturating_add(1));
                Some(crate::core::hostsig::result_is_valid(result.as_deref().unwrap_or(&[])))
            }
            // A host failure is not an answer: verify in pure Rust instead.
            Err(_) => None,
        }
    }
}
