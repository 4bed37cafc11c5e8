//! Status lists (SPEC §11), the host's side: dispatches the calls that the
//! core's [`ListFetcher`](cjwt_core::revocation::fetcher::ListFetcher) hands out
//! from the root context's tick, passes their answers back to it (it verifies
//! the list and keeps the last good copy in the VM's store), and counts and logs
//! how each fetch ended. No request waits for a list.
//!
//! One fetch per list per Envoy (SPEC §11, §12), as for key sets: the VM that
//! fetched keeps the list in shared data (the last good copy under its name,
//! the copy's fetch time under `<name>.v`); the VMs take turns fetching through
//! a lease (lease.rs) and take a newer copy over on their tick, verified again
//! with their own configuration (docs/spec-deviations.md, 51). A new VM or
//! configuration starts with the last good copy.

use super::host::host_now;
use super::lease::{lease_held_by_other, release_lease, take_lease};
use super::state::Shared;
use cjwt_core::config::Config;
use cjwt_core::jwks::store::KeyStore;
use cjwt_core::keys::host_crypto::HostCrypto;
use cjwt_core::lifecycle::remote::{list_fetch_ended, not_dispatched};
use cjwt_core::revocation::fetcher::{install_last_good, ListCommand, ListOutcome, ListRequest, STALE_MARGIN_SECONDS};
use cjwt_core::revocation::status_list::{shared_name, LastGood};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

/// Periodic work (from the root context's tick, and once on configuration):
/// gives up calls that never answered and dispatches every fetch that is due.
pub fn on_tick(shared: &Shared) {
    let Some(now) = host_now() else {
        return;
    };
    let lists = shared.engine.try_borrow().map_or(0, |e| e.config.status_lists.len());
    for list in 0..lists {
        adopt_shared(shared, list, now);
        // A fetch another VM held and gave back without a list: due again here.
        let Some(name) = shared.engine.try_borrow().ok().and_then(|e| shared_name(&e.config, list)) else {
            continue;
        };
        let elsewhere = shared.lists.try_borrow().is_ok_and(|l| l.is_elsewhere(list));
        if elsewhere && !lease_held_by_other(&name, shared.lease_tag, now) {
            if let Ok(mut l) = shared.lists.try_borrow_mut() {
                let _ = l.on_elsewhere_ended(list, now);
            }
        }
    }
    let commands = match shared.lists.try_borrow_mut() {
        Ok(mut lists) => lists.on_tick(now),
        Err(_) => return,
    };
    for command in commands {
        match command {
            ListCommand::Dispatch(request) => dispatch(shared, &request, now),
            ListCommand::GaveUp(list, outcome) => finish(shared, list, &outcome),
        }
    }
}

/// Handles an answer if it is one to a list fetch (`true`), else leaves it to
/// the other callers (`false`).
pub fn on_response(shared: &Shared, token: u32, body_size: usize) -> bool {
    if !shared.lists.try_borrow().is_ok_and(|l| l.owns(token)) {
        return false;
    }
    let Some(now) = host_now() else {
        return true;
    };
    let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status").ok().flatten();
    let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten().unwrap_or_default();
    let ended = match (shared.engine.try_borrow(), shared.keys.try_borrow_mut(), shared.lists.try_borrow_mut()) {
        (Ok(engine), Ok(mut keys), Ok(mut lists)) => {
            let ended =
                lists.on_response(token, status.as_deref(), &body, now, &engine.config, &shared.crypto, &mut keys);
            if let Some((list, outcome)) = &ended {
                if let Some(name) = shared_name(&engine.config, *list) {
                    if let ListOutcome::Loaded { .. } = outcome {
                        // The list for every VM of this Envoy, and for a VM reloaded after a
                        // fault, started later, or of the next configuration (SPEC §12);
                        // verified again when read. Its version (the fetch time) last.
                        let stored = LastGood { fetched_at: now, body: &body }.encode();
                        let _ = hostcalls::set_shared_data(&name, Some(&stored), None);
                        let _ = hostcalls::set_shared_data(&format!("{name}.v"), Some(&now.to_le_bytes()), None);
                    }
                    release_lease(&name, shared.lease_tag);
                }
            }
            ended
        }
        _ => return true,
    };
    if let Some((list, outcome)) = ended {
        finish(shared, list, &outcome);
    }
    true
}

/// Loads the last good copy of each configured list that any VM of this Envoy
/// fetched (SPEC §12), verified again with this configuration and its `ttl`
/// counted from the original fetch: a VM reloaded after a fault, started later,
/// or configured anew serves with it while its own first fetch runs.
pub fn load_last_good(
    config: &Config,
    keys: &mut KeyStore,
    crypto: &dyn HostCrypto,
    lists: &std::cell::RefCell<cjwt_core::revocation::fetcher::ListFetcher>,
) {
    let Some(now) = host_now() else {
        return;
    };
    for list in 0..config.status_lists.len() {
        let Some(name) = shared_name(config, list) else { continue };
        let Ok((Some(stored), _)) = hostcalls::get_shared_data(&name) else { continue };
        let Some(last) = LastGood::decode(&stored) else { continue };
        match install_last_good(config, list, keys, crypto, last, now) {
            Ok(entries) => {
                log::info!("cjwt: status list {list}: {entries} entries from the last good copy");
                if let Ok(mut lists) = lists.try_borrow_mut() {
                    lists.adopted(list, last.fetched_at);
                }
            }
            Err(e) => log::info!("cjwt: the last good copy of status list {list} is not usable: {e}"),
        }
    }
}

/// Takes over the copy of `list` another VM fetched, if newer than the one in
/// use: verified again with this configuration, `ttl` counted from that fetch.
fn adopt_shared(shared: &Shared, list: usize, now: i64) {
    let Ok(engine) = shared.engine.try_borrow() else { return };
    let Some(name) = shared_name(&engine.config, list) else { return };
    let Ok((Some(v), _)) = hostcalls::get_shared_data(&format!("{name}.v")) else { return };
    let Some(fetched_at) = v.get(..8).and_then(|b| b.try_into().ok()).map(i64::from_le_bytes) else { return };
    let (Ok(mut keys), Ok(mut lists)) = (shared.keys.try_borrow_mut(), shared.lists.try_borrow_mut()) else {
        return;
    };
    if fetched_at <= lists.version(list) {
        return;
    }
    let Ok((Some(stored), _)) = hostcalls::get_shared_data(&name) else { return };
    let Some(last) = LastGood::decode(&stored) else { return };
    match install_last_good(&engine.config, list, &mut keys, &shared.crypto, last, now) {
        Ok(_) => lists.adopted(list, last.fetched_at),
        Err(e) => {
            log::info!("cjwt: the shared copy of status list {list} is not usable: {e}");
            // Not tried again: the next copy has another version.
            lists.seen(list, fetched_at);
        }
    }
}

/// Dispatches `request` (from a root callback: the root context is current),
/// if this VM takes the list's fetch lease; else the holder's list is awaited.
fn dispatch(shared: &Shared, request: &ListRequest, now: i64) {
    let name = shared.engine.try_borrow().ok().and_then(|e| shared_name(&e.config, request.list));
    let deadline =
        now.saturating_add(i64::try_from(request.timeout.as_secs()).unwrap_or(60)).saturating_add(STALE_MARGIN_SECONDS);
    if let Some(name) = &name {
        if !take_lease(name, shared.lease_tag, now, deadline) {
            if let Ok(mut lists) = shared.lists.try_borrow_mut() {
                lists.on_fetching_elsewhere(request.list, deadline);
            }
            return;
        }
    }
    match hostcalls::dispatch_http_call(&request.cluster, request.headers(), None, vec![], request.timeout) {
        Ok(token) => {
            if let Ok(mut lists) = shared.lists.try_borrow_mut() {
                lists.on_dispatched(request.list, token);
            }
        }
        Err(e) => {
            if let Some(name) = &name {
                release_lease(name, shared.lease_tag);
            }
            let what = format!("status list {}", request.list);
            shared.apply([not_dispatched(&what, &request.cluster, &format!("{e:?}"))]);
            let outcome = match shared.lists.try_borrow_mut() {
                Ok(mut lists) => lists.on_dispatch_failed(request.list, now),
                Err(_) => return,
            };
            finish(shared, request.list, &outcome);
        }
    }
}

/// Logs and counts how a list fetch ended.
fn finish(shared: &Shared, list: usize, outcome: &ListOutcome) {
    shared.apply(list_fetch_ended(list, outcome));
}
