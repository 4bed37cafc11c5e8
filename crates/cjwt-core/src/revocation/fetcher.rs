//! When to fetch the configured status lists (SPEC §11), as a state machine the
//! adapter drives with the host's clock and the answers it receives, like the
//! key fetcher ([`crate::jwks::fetcher`]) but without waiting requests: a request
//! never waits for a list (no valid list is `status_unavailable` at once).
//!
//! Per configured list: the first fetch at once, then one every
//! `refresh_seconds` after a good answer; a failed fetch (HTTP error, a list
//! refused by [`verify_status_list`], no answer, not dispatched) keeps the last
//! good list — which serves until its own `exp`/`ttl` — and is retried after
//! [`RETRY_SECONDS`] (at most `refresh_seconds`). A call that has not answered
//! within its timeout + [`STALE_MARGIN_SECONDS`] is given up on the next tick.
//! At most one call per list is in flight. Only configured lists are ever
//! fetched, through the configured cluster: never a URL from a token.
//!
//! Several fetchers of one Envoy (the wasm build's worker VMs) share the lists,
//! as they share key sets ([`crate::jwks::fetcher`]): a fetch may be made by
//! another fetcher ([`ListFetcher::on_fetching_elsewhere`], given up after its
//! deadline, nothing counted here), a list another fetcher loaded is taken over
//! ([`ListFetcher::adopted`]: the next fetch is due `refresh_seconds` after that
//! fetch), and the version of each list in use (its fetch time) tells the
//! adapter which copies are new.

use super::status_list::{verify_fetched, verify_status_list, LastGood};
use crate::config::Config;
use crate::jwks::slot::{GaveUp, Slot};
use crate::jwks::store::Fetched;
use crate::keys::host_crypto::HostCrypto;
use std::time::Duration;

pub use crate::jwks::fetcher::{RETRY_SECONDS, STALE_MARGIN_SECONDS};

/// A call for the adapter to dispatch: `GET path` with `:authority: authority`
/// and `accept: application/statuslist+jwt` through the Envoy cluster `cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    /// The list (index into `config.status_lists`).
    pub list: usize,
    /// The Envoy cluster (from the configuration).
    pub cluster: String,
    /// The request path.
    pub path: String,
    /// The `:authority` header.
    pub authority: String,
    /// The call's timeout (`timeout_ms`).
    pub timeout: Duration,
}

impl ListRequest {
    /// The call's request headers.
    pub fn headers(&self) -> Vec<(&str, &str)> {
        vec![
            (":method", "GET"),
            (":path", self.path.as_str()),
            (":authority", self.authority.as_str()),
            ("accept", "application/statuslist+jwt"),
        ]
    }
}

/// How a list fetch ended, for the adapter's metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListOutcome {
    /// The list was verified and replaced the previous one.
    Loaded {
        /// Its number of entries.
        entries: u64,
        /// Bits per entry.
        bits: u8,
        /// When it expires (Unix seconds).
        expires_at: i64,
    },
    /// The answer was refused (HTTP status or the list); the previous list stays.
    Refused {
        /// Why, for the log.
        reason: String,
    },
    /// The call did not answer within its timeout + [`STALE_MARGIN_SECONDS`].
    NeverAnswered,
    /// The host would not dispatch the call.
    NotDispatched,
    /// Another fetcher held the fetch and no list came by its deadline, or it
    /// gave the fetch back without a list: due again here (not a fetch of this
    /// one: nothing to count).
    NotFetchedElsewhere,
}

impl ListOutcome {
    /// Whether the fetch succeeded (`cjwt.status_list.fetch_ok` / `fetch_failed`).
    pub fn ok(&self) -> bool {
        matches!(self, ListOutcome::Loaded { .. })
    }

    /// Whether this fetcher made a fetch that ended (counted); `false` for a
    /// fetch another fetcher held.
    pub fn counted(&self) -> bool {
        !matches!(self, ListOutcome::NotFetchedElsewhere)
    }
}

/// What the adapter does next, from [`ListFetcher::on_tick`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListCommand {
    /// Dispatch this call, then report it with [`ListFetcher::on_dispatched`] or
    /// [`ListFetcher::on_dispatch_failed`].
    Dispatch(ListRequest),
    /// A call to list `.0` was given up: count and log the failed fetch.
    GaveUp(usize, ListOutcome),
}

#[derive(Debug)]
struct ListState {
    /// At most one call in flight, and when the next fetch is due.
    slot: Slot<()>,
    refresh: i64,
    stale_after: i64,
    /// The fetch time of the list in use (0: none): its version.
    version: i64,
}

/// The fetch state of every configured status list (index = list index).
#[derive(Debug)]
pub struct ListFetcher {
    lists: Vec<ListState>,
    requests: Vec<ListRequest>,
}

impl ListFetcher {
    /// The fetch state for `config`: nothing fetched, every list due now.
    pub fn new(config: &Config) -> ListFetcher {
        let lists = config
            .status_lists
            .iter()
            .map(|s| ListState {
                slot: Slot::new(),
                version: 0,
                refresh: i64::try_from(s.refresh_seconds).unwrap_or(300),
                stale_after: i64::try_from(s.timeout_ms / 1000).unwrap_or(60).saturating_add(STALE_MARGIN_SECONDS),
            })
            .collect();
        let requests = config
            .status_lists
            .iter()
            .enumerate()
            .map(|(list, s)| ListRequest {
                list,
                cluster: s.cluster.clone(),
                path: s.path.clone(),
                authority: s.authority.clone(),
                timeout: Duration::from_millis(s.timeout_ms),
            })
            .collect();
        ListFetcher { lists, requests }
    }

    /// Whether any list is configured (the adapter then runs a tick).
    pub fn has_lists(&self) -> bool {
        !self.lists.is_empty()
    }

    /// Periodic work: gives up calls that never answered, then hands out every
    /// fetch that is due (a given-up one included). Called once on configuration
    /// (the first fetches) and then every tick.
    pub fn on_tick(&mut self, now: i64) -> Vec<ListCommand> {
        let mut commands = Vec::new();
        for (list, s) in self.lists.iter_mut().enumerate() {
            let outcome = match s.slot.give_up(now, s.stale_after) {
                Some(GaveUp::Elsewhere) => ListOutcome::NotFetchedElsewhere,
                Some(GaveUp::NeverAnswered) => ListOutcome::NeverAnswered,
                None => continue,
            };
            commands.push(ListCommand::GaveUp(list, outcome));
        }
        for (s, request) in self.lists.iter_mut().zip(&self.requests) {
            if s.slot.due(now) {
                s.slot.start((), now);
                commands.push(ListCommand::Dispatch(request.clone()));
            }
        }
        commands
    }

    /// The call handed out for `list` was dispatched; its answer will carry `token`.
    pub fn on_dispatched(&mut self, list: usize, token: u32) {
        if let Some(s) = self.lists.get_mut(list) {
            s.slot.dispatched(token);
        }
    }

    /// The call handed out for `list` could not be dispatched: a failed fetch,
    /// retried after [`RETRY_SECONDS`].
    pub fn on_dispatch_failed(&mut self, list: usize, now: i64) -> ListOutcome {
        if let Some(s) = self.lists.get_mut(list) {
            s.slot.dispatch_failed(now, RETRY_SECONDS.min(s.refresh));
        }
        ListOutcome::NotDispatched
    }

    /// The fetch handed out for `list` is made by another fetcher of this Envoy,
    /// which holds it until `deadline`: it stays in flight here, and is given up
    /// on the first tick after `deadline` unless a list is [`ListFetcher::adopted`].
    pub fn on_fetching_elsewhere(&mut self, list: usize, deadline: i64) {
        if let Some(s) = self.lists.get_mut(list) {
            s.slot.fetching_elsewhere(deadline);
        }
    }

    /// Whether `list`'s fetch is made by another fetcher.
    pub fn is_elsewhere(&self, list: usize) -> bool {
        self.lists.get(list).is_some_and(|s| s.slot.is_elsewhere())
    }

    /// The other fetcher gave `list`'s fetch back without a list: due again after
    /// [`RETRY_SECONDS`] (as for the fetcher that failed, so that one retries).
    pub fn on_elsewhere_ended(&mut self, list: usize, now: i64) -> Option<ListOutcome> {
        let s = self.lists.get_mut(list)?;
        s.slot.elsewhere_ended(now, RETRY_SECONDS.min(s.refresh)).then_some(ListOutcome::NotFetchedElsewhere)
    }

    /// A copy of `list` fetched at `fetched_at` was seen and not used (it did not
    /// verify here): it is not tried again; the schedule is unchanged.
    pub fn seen(&mut self, list: usize, fetched_at: i64) {
        if let Some(s) = self.lists.get_mut(list) {
            s.version = s.version.max(fetched_at);
        }
    }

    /// The version (fetch time) of the list in use for `list` (0: none).
    pub fn version(&self, list: usize) -> i64 {
        self.lists.get(list).map_or(0, |s| s.version)
    }

    /// The list fetched at `fetched_at` (by this fetcher, or by another and
    /// verified here) is in use for `list`: a fetch made elsewhere ends, and the
    /// next one is due `refresh_seconds` after that fetch.
    pub fn adopted(&mut self, list: usize, fetched_at: i64) {
        if let Some(s) = self.lists.get_mut(list) {
            s.version = fetched_at;
            s.slot.next_due = fetched_at.saturating_add(s.refresh);
            s.slot.end_elsewhere();
        }
    }

    /// Whether `token` is a list call in flight (the adapter routes answers by it).
    pub fn owns(&self, token: u32) -> bool {
        self.lists.iter().any(|s| s.slot.answers(token))
    }

    /// The answer to the call `token` (`status`: its `:status`, `None` when the
    /// host gave none). A verified list replaces the previous one in `store`
    /// (verified with the provider's keys, inline or fetched, from the same
    /// store). Returns the list and how the fetch ended, or `None` when `token`
    /// is no list call in flight.
    #[allow(clippy::too_many_arguments)]
    pub fn on_response(
        &mut self,
        token: u32,
        status: Option<&str>,
        body: &[u8],
        now: i64,
        config: &Config,
        crypto: &dyn HostCrypto,
        store: &mut Fetched,
    ) -> Option<(usize, ListOutcome)> {
        let list = self.lists.iter().position(|s| s.slot.answers(token))?;
        let s = self.lists.get_mut(list)?;
        s.slot.take();
        let outcome = match status {
            Some("200") => match verify_status_list(config, list, &*store, crypto, body, now) {
                Ok(verified) => {
                    let outcome = ListOutcome::Loaded {
                        entries: verified.len(),
                        bits: verified.bits(),
                        expires_at: verified.expires_at(),
                    };
                    match store.set_status_list(list, verified) {
                        Ok(()) => outcome,
                        Err(reason) => ListOutcome::Refused { reason },
                    }
                }
                Err(reason) => ListOutcome::Refused { reason },
            },
            other => ListOutcome::Refused { reason: format!("HTTP status {}", other.unwrap_or("none")) },
        };
        if outcome.ok() {
            s.slot.next_due = now.saturating_add(s.refresh);
            s.version = now;
        } else {
            s.slot.next_due = now.saturating_add(RETRY_SECONDS.min(s.refresh));
        }
        Some((list, outcome))
    }
}

/// Verifies a last good copy of `list` (handed on by another VM or an earlier
/// configuration) at `now` and puts it in `store`, unless it is older than the
/// list in use there (no rollback). Returns its number of entries, or why it
/// is not used.
pub fn install_last_good(
    config: &Config,
    list: usize,
    store: &mut Fetched,
    crypto: &dyn HostCrypto,
    last: LastGood<'_>,
    now: i64,
) -> Result<u64, String> {
    let verified = verify_fetched(config, list, &*store, crypto, last.body, last.fetched_at, now)?;
    let entries = verified.len();
    store.set_status_list(list, verified)?;
    Ok(entries)
}
