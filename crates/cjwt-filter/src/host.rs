//! [`Host`] and [`UsageCounter`] over proxy-wasm hostcalls.

use cjwt_core::shared_slots::allowance::{self, allowance_key, LastWritten, LocalSpend, Spending};
use cjwt_core::shared_slots::{count_use, is_spent_in, mark_spent_in, slot_key, spent_key, SlotUpdate, UsageId};
use cjwt_core::shared_slots::{first_seen_in, NextValue, ProofId, ReplayError, ReplayKey, ReplayStore, StoreError};
use cjwt_core::{clock, Host, HostCrypto, ReplayCache, UsageCounter, UsageError};
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

/// `max_uses` counters in proxy-wasm shared data, shared by every worker VM of
/// this Envoy (same `vm_id`), updated with compare-and-swap.
///
/// Shared data has no delete, so counters live in the bounded slots of
/// [`cjwt_core::usage`]: each write drops the slot's expired records.
/// A slot's first write passes a CAS value no entry can hold (`u32::MAX`): the
/// host inserts a missing key whatever the CAS, and refuses the write with
/// `CasMismatch` if another worker inserted it first — so that race retries too.
pub struct SharedDataCounter;

const CAS_ATTEMPTS: usize = 64;
const FIRST_WRITE_CAS: u32 = u32::MAX;

impl UsageCounter for SharedDataCounter {
    fn try_use(&mut self, id: &UsageId, limit: u64, expires_at: i64, now: i64) -> Result<bool, UsageError> {
        update_slot(&slot_key(id.slot()), |value| match count_use(value, id, limit, expires_at, now) {
            Ok(SlotUpdate::Write(next)) => Ok(Some(next)),
            Ok(SlotUpdate::Exhausted) => Ok(None),
            Err(_) => Err(()),
        })
        .map_err(|()| UsageError)
    }

    /// The deny set of spent tokens, in shared data of its own ([`spent_key`]).
    fn is_spent(&mut self, id: &UsageId, now: i64) -> bool {
        hostcalls::get_shared_data(&spent_key(id.slot())).is_ok_and(|(value, _)| is_spent_in(value.as_deref(), id, now))
    }

    /// Leased allowances, in shared data of their own ([`allowance_key`]): the
    /// spend and its note are one compare-and-swap, so workers never spend a
    /// use twice. A host failure asks the store for the one use.
    fn spend_allowance(&mut self, id: &UsageId, at: Spending) -> LocalSpend {
        let mut found = LocalSpend::TakeOne;
        let written = update_slot(&allowance_key(id.slot()), |value| {
            let spend = allowance::spend(value, id, at).map_err(|_| ())?;
            found = spend.kind();
            Ok(spend.into_value())
        });
        match (written, found) {
            (Ok(true), kind) => kind,
            (Ok(false), LocalSpend::TakeOne) => LocalSpend::TakeOne,
            // Nothing written where a write was due, or a failure: ask for one use.
            _ => LocalSpend::TakeOne,
        }
    }

    fn deposit_allowance(&mut self, id: &UsageId, spare: u64, last: LastWritten, expires_at: i64, now_ms: u64) {
        // Best effort: uses not deposited are lost (under), never handed out twice.
        let _ = update_slot(&allowance_key(id.slot()), |value| {
            allowance::deposit(value, id, spare, last, expires_at, now_ms).map(Some).map_err(|_| ())
        });
    }

    fn dry_allowance(&mut self, id: &UsageId, expires_at: i64, now_ms: u64) {
        // Best effort: a failure only means the next refill learns it again.
        let _ = update_slot(&allowance_key(id.slot()), |value| {
            allowance::dry(value, id, expires_at, now_ms).map(Some).map_err(|_| ())
        });
    }

    fn mark_spent(&mut self, id: &UsageId, expires_at: i64, now: i64) {
        // Best effort: a failure only means the next replay asks the store.
        let _ = update_slot(&spent_key(id.slot()), |value| mark_spent_in(value, id, expires_at, now).map_err(|_| ()));
    }
}

/// Read-modify-write of one shared-data slot with compare-and-swap, retried on a
/// concurrent write: `next` maps the current value to the value to write, or to
/// `None` (nothing to write: `Ok(false)`). `Ok(true)` once written; `Err` on a
/// host error, a value `next` refuses, or too many conflicts (callers fail closed).
fn update_slot(key: &str, mut next: impl FnMut(Option<&[u8]>) -> Result<Option<Vec<u8>>, ()>) -> Result<bool, ()> {
    for _ in 0..CAS_ATTEMPTS {
        let (value, cas) = hostcalls::get_shared_data(key).map_err(|_| ())?;
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
            Err(_) => return Err(()),
        }
    }
    Err(())
}

/// The DPoP replay cache (SPEC §10) in proxy-wasm shared data, shared by every
/// worker VM of this Envoy: the slots and ledger of
/// [`cjwt_core::sender::replay`], each updated with compare-and-swap ([`update_slot`]).
pub struct SharedDataReplay;

impl ReplayStore for SharedDataReplay {
    fn update(&mut self, key: ReplayKey, next: &mut NextValue<'_>) -> Result<bool, StoreError> {
        update_slot(&key.name(), |value| next(value).map_err(|_| ())).map_err(|()| StoreError)
    }
}

impl ReplayCache for SharedDataReplay {
    fn first_seen(&mut self, id: &ProofId, expires_at: i64, now: i64, max_entries: usize) -> Result<bool, ReplayError> {
        first_seen_in(self, id, expires_at, now, max_entries)
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
