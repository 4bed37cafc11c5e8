//! Fetch leases between the worker VMs of one Envoy (SPEC §12, one fetch per
//! Envoy): a lease is a proxy-wasm shared-data value under `<name>.lease` — a
//! deadline (Unix s) and the holder's tag — taken with compare-and-swap. The VM
//! that holds a source's lease fetches it; the others take its result over.

use proxy_wasm::hostcalls;

/// Takes the fetch lease of `name` until `deadline` (Unix s) for `tag`: free,
/// expired, or already ours. Compare-and-swap on the lease's value; a lease key
/// that does not exist yet is created.
pub fn take_lease(name: &str, tag: u64, now: i64, deadline: i64) -> bool {
    let key = format!("{name}.lease");
    let (current, cas) = match hostcalls::get_shared_data(&key) {
        Ok((value, cas)) => (value, cas),
        Err(_) => return false,
    };
    if let Some(v) = &current {
        let held_until = v.get(..8).and_then(|b| b.try_into().ok()).map_or(0, i64::from_le_bytes);
        let holder = v.get(8..16).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
        if holder != tag && held_until >= now {
            return false;
        }
    }
    let mut value = deadline.to_le_bytes().to_vec();
    value.extend_from_slice(&tag.to_le_bytes());
    hostcalls::set_shared_data(&key, Some(&value), cas).is_ok()
}

/// Whether a VM other than `tag` holds the fetch lease of `name` at `now`.
pub fn lease_held_by_other(name: &str, tag: u64, now: i64) -> bool {
    match hostcalls::get_shared_data(&format!("{name}.lease")) {
        Ok((Some(v), _)) => {
            let held_until = v.get(..8).and_then(|b| b.try_into().ok()).map_or(0, i64::from_le_bytes);
            let holder = v.get(8..16).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
            holder != tag && held_until >= now
        }
        _ => false,
    }
}

/// Gives the fetch lease of `name` back, if `tag` holds it.
pub fn release_lease(name: &str, tag: u64) {
    let key = format!("{name}.lease");
    if let Ok((Some(v), cas)) = hostcalls::get_shared_data(&key) {
        if v.get(8..16).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes) == Some(tag) {
            let mut value = 0i64.to_le_bytes().to_vec();
            value.extend_from_slice(&tag.to_le_bytes());
            let _ = hostcalls::set_shared_data(&key, Some(&value), cas);
        }
    }
}
