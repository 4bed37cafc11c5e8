//! [`Host`], shared data and signature verification over proxy-wasm hostcalls.

use cjwt_core::shared_slots::{SlotNext, SlotStore};
use cjwt_core::{clock, Host, HostCrypto, UsageError};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, Status};

/// One request's view of Envoy: headers read once (byte-level, every value of a
/// repeated header kept), properties read on demand, time from the host clock.
pub struct ProxyHost {
    headers: Vec<(String, Vec<u8>)>,
    now: i64,
}

impl ProxyHost {
    /// The request as Envoy holds it; `None` when the host clock cannot be read
    /// (the caller fails closed: a clock read as 1970 would make expired tokens valid).
    pub fn read() -> Option<ProxyHost> {
        let now = host_now()?;
        let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
        Some(ProxyHost { headers, now })
    }
}

/// Host clock in Unix seconds (never the token's or the request's idea of time);
/// `None` when it cannot be read or reads as an impossible time.
pub fn host_now() -> Option<i64> {
    clock::unix_seconds(hostcalls::get_current_time().ok()?)
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

/// Proxy-wasm shared data as the core's [`SlotStore`]: `max_uses` counts, spent
/// tokens, leased allowances and DPoP proof ids (through
/// [`Slots`](cjwt_core::shared_slots::Slots)), shared by every worker VM of this
/// Envoy (same `vm_id`), each value updated with compare-and-swap.
///
/// Shared data has no delete, so the records live in the bounded slots of
/// [`cjwt_core::usage`]: each write drops the slot's expired records.
/// A slot's first write passes a CAS value no entry can hold (`u32::MAX`): the
/// host inserts a missing key whatever the CAS, and refuses the write with
/// `CasMismatch` if another worker inserted it first — so that race retries too.
#[derive(Debug, Default, Clone, Copy)]
pub struct SharedData;

const CAS_ATTEMPTS: usize = 64;
const FIRST_WRITE_CAS: u32 = u32::MAX;

impl SlotStore for SharedData {
    /// Read-modify-write retried on a concurrent write, at most [`CAS_ATTEMPTS`] times.
    fn update(&mut self, key: &str, next: &mut SlotNext<'_>) -> Result<bool, UsageError> {
        for _ in 0..CAS_ATTEMPTS {
            let (value, cas) = hostcalls::get_shared_data(key).map_err(|_| UsageError)?;
            let Some(next) = next(value.as_deref())? else {
                return Ok(false);
            };
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

impl HostCrypto for EnvoyCrypto {
    fn calls(&self) -> u64 {
        self.calls.get()
    }

    /// RS* and ES* with a DER key go to Envoy's `verify_signature`; a signature
    /// that cannot be valid for the algorithm is refused without a call.
    fn verify(
        &self,
        key: &cjwt_core::host_verify::VerificationKey,
        alg: cjwt_core::host_verify::Algorithm,
        input: &[u8],
        signature: &[u8],
    ) -> Option<bool> {
        use cjwt_core::host_verify::{host_supports, request, result_is_valid};
        let der = key.spki_der.as_deref().filter(|_| self.available && host_supports(alg))?;
        let Some(request) = request(alg, der, input, signature) else {
            return Some(false);
        };
        match hostcalls::call_foreign_function("verify_signature", Some(&request)) {
            Ok(result) => {
                self.calls.set(self.calls.get().saturating_add(1));
                Some(result_is_valid(result.as_deref().unwrap_or(&[])))
            }
            // A host failure is not an answer: verify in pure Rust instead.
            Err(_) => None,
        }
    }
}
