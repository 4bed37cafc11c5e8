//! Every step a remote source can take, in one place: key sets (SPEC §2
//! `remote_jwks`) and status lists (SPEC §11), fetched once per Envoy.
//!
//! [`Remote`] owns the two fetch state machines ([`Fetcher`] for key sets,
//! [`ListFetcher`] for lists) and what is shared between the fetchers of one
//! Envoy (the wasm build's worker VMs; the native module's configurations):
//! the last good key set and list of each source, their versions, and a fetch
//! lease per source, through the host's [`Sharing`]. The adapter calls it on
//! its tick, when a request lacks keys, and with each answer; it executes the
//! [`Effect`]s returned (dispatch a call and report it back, log, count, wake a
//! paused request, run the main context's step soon) and decides nothing.
//!
//! ```text
//!  on_tick ─► dispatch the fetches requests asked for ─► take over newer shared sets and lists
//!          ─► give up calls never answered (Wake their waiters) ─► Dispatch what is due
//!             (only the lease holder dispatches; the others wait for its set)
//!  wait_for_keys ─► a newer shared set: DecideAgain │ a call in flight: Wait
//!                ─► a refetch allowed: Wait + WakeMain (the main context dispatches) │ DoNotWait
//!  Dispatch ─► the host's call ─► on_dispatched │ on_dispatch_failed (Log, Count, Wake)
//!  on_answer ─► keys or list installed and shared, lease given back ─► Log, Count, Wake, next call
//! ```
//!
//! Leases and versions are byte values under names derived from what
//! identifies the source ([`crate::jwks::store::shared_name`],
//! [`crate::revocation::status_list::shared_name`]): `<name>` the body,
//! `<name>.v` its version, `<name>.lease` the holder's deadline and tag.

use crate::config::Config;
use crate::jwks::fetcher::{
    Command, FetchOutcome, FetchRequest, Fetcher, Released, WaitDecision, STALE_MARGIN_SECONDS,
};
use crate::jwks::store::{shared_name as key_set_name, Fetched};
use crate::keys::host_crypto::HostCrypto;
use crate::lifecycle::request::KeyWait;
use crate::outcome::metrics::Counter;
use crate::outcome::Level;
use crate::revocation::fetcher::{install_last_good, ListCommand, ListFetcher, ListOutcome, ListRequest};
use crate::revocation::status_list::{shared_name as list_name, LastGood};
use std::time::Duration;

/// The update of [`Sharing::update`]: the current value to the new one, or
/// `None` to leave it as it is.
pub type NextValue<'a> = dyn FnMut(Option<&[u8]>) -> Option<Vec<u8>> + 'a;

/// Values shared by the fetchers of one Envoy: proxy-wasm shared data in the
/// wasm build, a process-wide map in the native module.
pub trait Sharing {
    /// The value under `name`, if any.
    fn get(&self, name: &str) -> Option<Vec<u8>>;
    /// Stores `value` under `name` (the last writer wins).
    fn set(&mut self, name: &str, value: &[u8]);
    /// Replaces the value under `name` by `next(current)` unless another
    /// fetcher wrote it meanwhile (compare-and-swap). `false` when `next`
    /// declines (`None`) or the write lost.
    fn update(&mut self, name: &str, next: &mut NextValue<'_>) -> bool;
}

/// [`Sharing`] for a host whose workers share the process's memory (the native
/// module): one map for the whole process, as proxy-wasm shared data is one for
/// every VM of a `vm_id`. Every configuration of the process (a second
/// listener, one pushed at run time) starts with the key sets and lists the
/// others fetched, and the fetch lease is theirs to share: [`Sharing::update`]
/// is a real compare-and-swap (under the map's lock).
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessSharing;

impl ProcessSharing {
    fn values() -> &'static std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>> {
        static VALUES: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>> =
            std::sync::OnceLock::new();
        VALUES.get_or_init(Default::default)
    }
}

impl Sharing for ProcessSharing {
    fn get(&self, name: &str) -> Option<Vec<u8>> {
        Self::values().lock().ok()?.get(name).cloned()
    }

    fn set(&mut self, name: &str, value: &[u8]) {
        if let Ok(mut values) = Self::values().lock() {
            values.insert(name.to_string(), value.to_vec());
        }
    }

    fn update(&mut self, name: &str, next: &mut NextValue<'_>) -> bool {
        let Ok(mut values) = Self::values().lock() else {
            return false;
        };
        match next(values.get(name).map(Vec::as_slice)) {
            Some(value) => {
                values.insert(name.to_string(), value);
                true
            }
            None => false,
        }
    }
}

/// A call for the adapter to dispatch through an Envoy cluster, then report
/// with [`Remote::on_dispatched`] or [`Remote::on_dispatch_failed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// A key set or discovery document.
    Keys(FetchRequest),
    /// A status list.
    List(ListRequest),
}

impl Call {
    /// The Envoy cluster (from the configuration, never a token).
    pub fn cluster(&self) -> &str {
        match self {
            Call::Keys(r) => &r.cluster,
            Call::List(r) => &r.cluster,
        }
    }

    /// The request headers (`GET`, path, authority; `accept` for a list).
    pub fn headers(&self) -> Vec<(&str, &str)> {
        match self {
            Call::Keys(r) => r.headers(),
            Call::List(r) => r.headers(),
        }
    }

    /// The call's timeout.
    pub fn timeout(&self) -> Duration {
        match self {
            Call::Keys(r) => r.timeout,
            Call::List(r) => r.timeout,
        }
    }

    /// What it fetches, for log lines: `JWKS for provider 0`, `status list 1`.
    pub fn what(&self) -> String {
        match self {
            Call::Keys(r) => format!("JWKS for provider {}", r.provider),
            Call::List(r) => format!("status list {}", r.list),
        }
    }
}

/// Something an adapter does for the core, with its host's calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<W> {
    /// Dispatch this call (see [`Call`]).
    Dispatch(Call),
    /// Write this line to the proxy's log.
    Log(Level, String),
    /// Increment this counter by one.
    Count(Counter),
    /// The paused request `W` waited for a fetch that ended: decide it again
    /// ([`crate::lifecycle::request::RequestFlow::on_keys`]) on its own worker.
    Wake(W),
    /// A request asked for a fetch: run [`Remote::on_wanted`] (or the tick) on
    /// the main context soon; calls are dispatched only there (a call
    /// dispatched from a stream dies with it).
    WakeMain,
}

/// The remote sources of one configuration, as one fetcher of the Envoy sees them.
#[derive(Debug)]
pub struct Remote<W> {
    keys: Fetcher<W>,
    lists: ListFetcher,
    key_names: Vec<Option<String>>,
    list_names: Vec<Option<String>>,
    /// This fetcher's tag in the leases: unique among the fetchers of an Envoy.
    tag: u64,
    /// Fetches requests started, for the main context to dispatch.
    wanted: Vec<FetchRequest>,
}

impl<W> Remote<W> {
    /// The remote state of `config` for the fetcher tagged `tag`: nothing
    /// fetched, everything due at the first tick.
    pub fn new(config: &Config, tag: u64) -> Remote<W> {
        Remote {
            keys: Fetcher::new(config),
            lists: ListFetcher::new(config),
            key_names: (0..config.providers.len()).map(|p| key_set_name(config, p)).collect(),
            list_names: (0..config.status_lists.len()).map(|l| list_name(config, l)).collect(),
            tag,
            wanted: Vec::new(),
        }
    }

    /// Whether anything is fetched (remote key sets or status lists): without,
    /// the adapter needs no tick.
    pub fn is_active(&self) -> bool {
        self.keys.has_remote() || self.lists.has_lists()
    }

    /// A new fetcher (a VM reloaded after a fault, started later, a
    /// configuration pushed at run time) starts with the key sets and lists
    /// other fetchers of this Envoy loaded (SPEC §12): keys first, since a list
    /// may be signed by fetched keys. Its own first fetches are the first tick's.
    pub fn on_configure(
        &mut self,
        now: i64,
        config: &Config,
        store: &mut Fetched,
        crypto: &dyn HostCrypto,
        sharing: &mut dyn Sharing,
    ) -> Vec<Effect<W>> {
        let mut out = Vec::new();
        for provider in 0..self.key_names.len() {
            self.adopt_keys(provider, now, config, store, sharing, &mut out);
        }
        for list in 0..self.list_names.len() {
            let Some(stored) = self.list_names.get(list).cloned().flatten().and_then(|n| sharing.get(&n)) else {
                continue;
            };
            let Some(last) = LastGood::decode(&stored) else { continue };
            match install_last_good(config, list, store, crypto, last, now) {
                Ok(entries) => {
                    out.push(info(format!("cjwt: status list {list}: {entries} entries from the last good copy")));
                    self.lists.adopted(list, last.fetched_at);
                }
                Err(e) => out.push(info(format!("cjwt: the last good copy of status list {list} is not usable: {e}"))),
            }
        }
        out
    }

    /// Periodic work on the main context (and after [`Effect::WakeMain`]):
    /// dispatches the fetches requests asked for, takes over newer shared sets
    /// and lists, gives up calls that never answered, and dispatches every
    /// fetch that is due.
    pub fn on_tick(
        &mut self,
        now: i64,
        config: &Config,
        store: &mut Fetched,
        crypto: &dyn HostCrypto,
        sharing: &mut dyn Sharing,
    ) -> Vec<Effect<W>> {
        let mut out = self.on_wanted(now, config, store, sharing);
        for provider in 0..self.key_names.len() {
            // A fetch another fetcher held and gave back without a set: released here too.
            if self.keys.is_elsewhere(provider) && !self.held_elsewhere(self.key_names.get(provider), now, sharing) {
                if let Some(ended) = self.keys.on_elsewhere_ended(provider, now) {
                    self.released(ended, true, now, sharing, &mut out);
                }
            }
        }
        for command in self.keys.on_tick(now) {
            match command {
                Command::Dispatch(request) => self.dispatch_keys(request, now, sharing, &mut out),
                Command::Release(ended) => self.released(ended, true, now, sharing, &mut out),
            }
        }
        for list in 0..self.list_names.len() {
            self.adopt_list(list, now, config, store, crypto, sharing, &mut out);
            if self.lists.is_elsewhere(list) && !self.held_elsewhere(self.list_names.get(list), now, sharing) {
                // Due again here; nothing to count.
                let _ = self.lists.on_elsewhere_ended(list, now);
            }
        }
        for command in self.lists.on_tick(now) {
            match command {
                ListCommand::Dispatch(request) => self.dispatch_list(request, now, sharing, &mut out),
                ListCommand::GaveUp(list, outcome) => out.extend(list_fetch_ended(list, &outcome)),
            }
        }
        out
    }

    /// The main context's answer to [`Effect::WakeMain`]: newer shared sets are
    /// taken over (which may make a fetch needless), then the fetches requests
    /// asked for are dispatched.
    pub fn on_wanted(
        &mut self,
        now: i64,
        config: &Config,
        store: &mut Fetched,
        sharing: &mut dyn Sharing,
    ) -> Vec<Effect<W>> {
        let mut out = Vec::new();
        for provider in 0..self.key_names.len() {
            self.adopt_keys(provider, now, config, store, sharing, &mut out);
        }
        for request in std::mem::take(&mut self.wanted) {
            if self.keys.awaits_dispatch(request.provider) {
                self.dispatch_keys(request, now, sharing, &mut out);
            }
        }
        out
    }

    /// A request refused only because `provider` lacks its keys asks whether
    /// it waits (`waiter` registered when it does). A newer set another
    /// fetcher shared is taken over first (decide again); a fetch it may start
    /// goes to the main context ([`Effect::WakeMain`]).
    pub fn wait_for_keys(
        &mut self,
        provider: usize,
        waiter: W,
        now: i64,
        config: &Config,
        store: &mut Fetched,
        sharing: &mut dyn Sharing,
    ) -> (KeyWait, Vec<Effect<W>>) {
        let mut out = Vec::new();
        if self.adopt_keys(provider, now, config, store, sharing, &mut out) {
            return (KeyWait::DecideAgain, out);
        }
        let wait = match self.keys.wait_for_keys(provider, waiter, now) {
            WaitDecision::Wait => KeyWait::Wait,
            WaitDecision::DoNotWait => KeyWait::DoNotWait,
            WaitDecision::Start(request) => {
                self.wanted.push(request);
                out.push(Effect::WakeMain);
                KeyWait::Wait
            }
        };
        (wait, out)
    }

    /// What became of [`Effect::Dispatch`]: the host dispatched `call` as
    /// `token` ([`Remote::on_dispatched`]) or would not, with its error
    /// ([`Remote::on_dispatch_failed`], whose effects are returned).
    pub fn dispatched(
        &mut self,
        call: &Call,
        sent: Result<u32, String>,
        now: i64,
        sharing: &mut dyn Sharing,
    ) -> Vec<Effect<W>> {
        match sent {
            Ok(token) => {
                self.on_dispatched(call, token);
                Vec::new()
            }
            Err(error) => self.on_dispatch_failed(call, now, &error, sharing),
        }
    }

    /// The host dispatched `call` as `token`.
    pub fn on_dispatched(&mut self, call: &Call, token: u32) {
        match call {
            Call::Keys(r) => self.keys.on_dispatched(r.provider, token),
            Call::List(r) => self.lists.on_dispatched(r.list, token),
        }
    }

    /// The host would not dispatch `call` (`error`, for the log): the lease is
    /// given back and the fetch failed (retried later); its waiters are woken.
    pub fn on_dispatch_failed(
        &mut self,
        call: &Call,
        now: i64,
        error: &str,
        sharing: &mut dyn Sharing,
    ) -> Vec<Effect<W>> {
        let mut out = vec![Effect::Log(
            Level::Warn,
            format!("cjwt: {}: fetch not dispatched ({error}); is cluster {:?} defined?", call.what(), call.cluster()),
        )];
        match call {
            Call::Keys(r) => {
                self.release_lease(self.key_names.get(r.provider), sharing);
                let ended = self.keys.on_dispatch_failed(r.provider, now);
                self.released(ended, true, now, sharing, &mut out);
            }
            Call::List(r) => {
                self.release_lease(self.list_names.get(r.list), sharing);
                let outcome = self.lists.on_dispatch_failed(r.list, now);
                out.extend(list_fetch_ended(r.list, &outcome));
            }
        }
        out
    }

    /// An answer (HTTP `status`, `body`) to the call dispatched as `token`;
    /// `None` when no call of this remote has that token. On the main context
    /// (`main`) a call that follows (the key set after discovery) is
    /// dispatched at once, elsewhere it goes to the main context.
    #[allow(clippy::too_many_arguments)] // the answer, the clock, the configuration and the host's three stores
    pub fn on_answer(
        &mut self,
        token: u32,
        status: Option<&str>,
        body: &[u8],
        now: i64,
        config: &Config,
        store: &mut Fetched,
        crypto: &dyn HostCrypto,
        sharing: &mut dyn Sharing,
        main: bool,
    ) -> Option<Vec<Effect<W>>> {
        let mut out = Vec::new();
        if self.lists.owns(token) {
            let (list, outcome) = self.lists.on_response(token, status, body, now, config, crypto, store)?;
            if let Some(name) = self.list_names.get(list).cloned().flatten() {
                if let ListOutcome::Loaded { .. } = outcome {
                    // For every fetcher of this Envoy, and for one configured later
                    // (SPEC §12); verified again when read. Its version (the fetch time) last.
                    sharing.set(&name, &LastGood { fetched_at: now, body }.encode());
                    sharing.set(&format!("{name}.v"), &now.to_le_bytes());
                }
                self.release_lease(Some(&Some(name)), sharing);
            }
            out.extend(list_fetch_ended(list, &outcome));
            return Some(out);
        }
        let ended = self.keys.on_response(token, status, body, now, config, store)?;
        if let Some(name) = self.key_names.get(ended.provider).cloned().flatten() {
            if let FetchOutcome::KeysLoaded { .. } = ended.outcome {
                // The set for every fetcher of this Envoy, and for one reloaded after a fault (SPEC §12).
                let version = read_version(sharing, &name).map_or(1, |(v, _)| v.wrapping_add(1).max(1));
                sharing.set(&name, body);
                let mut v = version.to_le_bytes().to_vec();
                v.extend_from_slice(&now.to_le_bytes());
                sharing.set(&format!("{name}.v"), &v);
                self.keys.set_version(ended.provider, version);
            }
            if ended.outcome.fetch_ok().is_some() {
                self.release_lease(Some(&Some(name)), sharing);
            }
        }
        self.released(ended, main, now, sharing, &mut out);
        Some(out)
    }

    /// Takes over the key set of `provider` another fetcher shared, if newer
    /// than the one in use: `true` when it was (its waiters are woken).
    fn adopt_keys(
        &mut self,
        provider: usize,
        now: i64,
        config: &Config,
        store: &mut Fetched,
        sharing: &mut dyn Sharing,
        out: &mut Vec<Effect<W>>,
    ) -> bool {
        let Some(name) = self.key_names.get(provider).cloned().flatten() else { return false };
        let Some((version, fetched_at)) = read_version(sharing, &name) else { return false };
        if version == self.keys.version(provider) {
            return false;
        }
        let Some(body) = sharing.get(&name) else { return false };
        match self.keys.adopt(provider, &body, version, fetched_at, now, config, store) {
            Some(Ok(released)) => {
                self.released(released, true, now, sharing, out);
                true
            }
            Some(Err(e)) => {
                out.push(Effect::Log(
                    Level::Warn,
                    format!("cjwt: the shared JWKS for provider {provider} is not usable: {e}"),
                ));
                false
            }
            None => false,
        }
    }

    /// Takes over the copy of `list` another fetcher loaded, if newer than the
    /// one in use: verified again with this configuration, `ttl` counted from
    /// that fetch.
    #[allow(clippy::too_many_arguments)]
    fn adopt_list(
        &mut self,
        list: usize,
        now: i64,
        config: &Config,
        store: &mut Fetched,
        crypto: &dyn HostCrypto,
        sharing: &mut dyn Sharing,
        out: &mut Vec<Effect<W>>,
    ) {
        let Some(name) = self.list_names.get(list).cloned().flatten() else { return };
        let Some(v) = sharing.get(&format!("{name}.v")) else { return };
        let Some(fetched_at) = v.get(..8).and_then(|b| b.try_into().ok()).map(i64::from_le_bytes) else { return };
        if fetched_at <= self.lists.version(list) {
            return;
        }
        let Some(stored) = sharing.get(&name) else { return };
        let Some(last) = LastGood::decode(&stored) else { return };
        match install_last_good(config, list, store, crypto, last, now) {
            Ok(_) => self.lists.adopted(list, last.fetched_at),
            Err(e) => {
                out.push(info(format!("cjwt: the shared copy of status list {list} is not usable: {e}")));
                // Not tried again: the next copy has another version.
                self.lists.seen(list, fetched_at);
            }
        }
    }

    /// Hands `request` to the host if this fetcher takes the source's lease;
    /// else the holder's set is awaited.
    fn dispatch_keys(&mut self, request: FetchRequest, now: i64, sharing: &mut dyn Sharing, out: &mut Vec<Effect<W>>) {
        let deadline = lease_deadline(now, request.timeout);
        if !self.take_lease(self.key_names.get(request.provider), now, deadline, sharing) {
            self.keys.on_fetching_elsewhere(request.provider, deadline);
            return;
        }
        out.push(Effect::Dispatch(Call::Keys(request)));
    }

    fn dispatch_list(&mut self, request: ListRequest, now: i64, sharing: &mut dyn Sharing, out: &mut Vec<Effect<W>>) {
        let deadline = lease_deadline(now, request.timeout);
        if !self.take_lease(self.list_names.get(request.list), now, deadline, sharing) {
            self.lists.on_fetching_elsewhere(request.list, deadline);
            return;
        }
        out.push(Effect::Dispatch(Call::List(request)));
    }

    /// A key call ended: log and count it, wake its waiters, and hand out the
    /// call that follows (at once on the main context, else through it).
    fn released(
        &mut self,
        ended: Released<W>,
        main: bool,
        now: i64,
        sharing: &mut dyn Sharing,
        out: &mut Vec<Effect<W>>,
    ) {
        let Released { provider, outcome, waiters, start } = ended;
        out.extend(key_fetch_ended(provider, &outcome));
        out.extend(waiters.into_iter().map(Effect::Wake));
        if let Some(request) = start {
            if main {
                self.dispatch_keys(request, now, sharing, out);
            } else {
                self.wanted.push(request);
                out.push(Effect::WakeMain);
            }
        }
    }

    fn take_lease(&self, name: Option<&Option<String>>, now: i64, deadline: i64, sharing: &mut dyn Sharing) -> bool {
        let Some(Some(name)) = name else { return true };
        let tag = self.tag;
        sharing.update(&format!("{name}.lease"), &mut |current| lease::take(current, tag, now, deadline))
    }

    fn held_elsewhere(&self, name: Option<&Option<String>>, now: i64, sharing: &dyn Sharing) -> bool {
        let Some(Some(name)) = name else { return false };
        lease::held_by_other(sharing.get(&format!("{name}.lease")).as_deref(), self.tag, now)
    }

    fn release_lease(&self, name: Option<&Option<String>>, sharing: &mut dyn Sharing) {
        if let Some(Some(name)) = name {
            let tag = self.tag;
            let _ = sharing.update(&format!("{name}.lease"), &mut |current| lease::release(current, tag));
        }
    }
}

/// A lease is held until the call's timeout plus the margin after which it is given up.
fn lease_deadline(now: i64, timeout: Duration) -> i64 {
    now.saturating_add(i64::try_from(timeout.as_secs()).unwrap_or(60)).saturating_add(STALE_MARGIN_SECONDS)
}

/// The version and fetch time (Unix s) of the key set shared under `name`.
fn read_version(sharing: &dyn Sharing, name: &str) -> Option<(u64, i64)> {
    let v = sharing.get(&format!("{name}.v"))?;
    let version = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    let fetched_at = i64::from_le_bytes(v.get(8..16)?.try_into().ok()?);
    Some((version, fetched_at))
}

fn info<W>(line: String) -> Effect<W> {
    Effect::Log(Level::Info, line)
}

/// Fetch leases as bytes: a deadline (Unix s, 8 bytes LE) and the holder's
/// tag (8 bytes LE). Pure functions of the current value, for
/// [`Sharing::update`].
pub mod lease {
    fn read(value: &[u8]) -> (i64, u64) {
        let until = value.get(..8).and_then(|b| b.try_into().ok()).map_or(0, i64::from_le_bytes);
        let holder = value.get(8..16).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
        (until, holder)
    }

    fn value(until: i64, tag: u64) -> Vec<u8> {
        let mut v = until.to_le_bytes().to_vec();
        v.extend_from_slice(&tag.to_le_bytes());
        v
    }

    /// The lease taken by `tag` until `deadline`: when free, expired, or already
    /// `tag`'s; `None` while another holds it.
    pub fn take(current: Option<&[u8]>, tag: u64, now: i64, deadline: i64) -> Option<Vec<u8>> {
        if held_by_other(current, tag, now) {
            return None;
        }
        Some(value(deadline, tag))
    }

    /// Whether a fetcher other than `tag` holds the lease at `now`.
    pub fn held_by_other(current: Option<&[u8]>, tag: u64, now: i64) -> bool {
        current.map(read).is_some_and(|(until, holder)| holder != tag && until >= now)
    }

    /// The lease given back by `tag` (`None`: not `tag`'s, left as it is).
    pub fn release(current: Option<&[u8]>, tag: u64) -> Option<Vec<u8>> {
        let (_, holder) = current.map(read)?;
        (holder == tag).then(|| value(0, tag))
    }
}

/// The effects of a key-set fetch for `provider` that ended (or went on) as `outcome`.
fn key_fetch_ended<W>(provider: usize, outcome: &FetchOutcome) -> Vec<Effect<W>> {
    let line = match outcome {
        FetchOutcome::KeysLoaded { keys, skipped } => {
            Some((Level::Info, format!("cjwt: JWKS for provider {provider}: {keys} key(s) loaded, {skipped} skipped")))
        }
        FetchOutcome::Discovered { jwks_path } => {
            Some((Level::Info, format!("cjwt: OIDC discovery for provider {provider}: JWKS at {jwks_path}")))
        }
        FetchOutcome::KeysRefused { reason } => {
            Some((Level::Warn, format!("cjwt: JWKS for provider {provider} refused, previous keys kept: {reason}")))
        }
        FetchOutcome::DiscoveryRefused { reason } => Some((
            Level::Warn,
            format!("cjwt: OIDC discovery for provider {provider} failed, previous keys kept: {reason}"),
        )),
        FetchOutcome::NeverAnswered => {
            Some((Level::Warn, format!("cjwt: JWKS fetch for provider {provider} never answered; given up")))
        }
        // Logged where the host refused it, with the host's error (`on_dispatch_failed`).
        FetchOutcome::NotDispatched => None,
        FetchOutcome::KeysAdopted { keys } => Some((
            Level::Info,
            format!("cjwt: JWKS for provider {provider}: {keys} key(s) from the set another worker fetched"),
        )),
        FetchOutcome::ElsewhereFailed => Some((
            Level::Info,
            format!("cjwt: JWKS fetch for provider {provider} by another worker failed; previous keys kept"),
        )),
        FetchOutcome::ElsewhereTimedOut => Some((
            Level::Warn,
            format!("cjwt: JWKS fetch for provider {provider} by another worker brought no keys; fetching here"),
        )),
    };
    let counter = outcome.fetch_ok().map(|ok| if ok { Counter::JwksFetchOk } else { Counter::JwksFetchFailed });
    effects(line, counter)
}

/// The effects of a status-list fetch for `list` that ended as `outcome`.
fn list_fetch_ended<W>(list: usize, outcome: &ListOutcome) -> Vec<Effect<W>> {
    let line = match outcome {
        ListOutcome::Loaded { entries, bits, expires_at } => Some((
            Level::Info,
            format!("cjwt: status list {list}: {entries} entries of {bits} bit(s) loaded, valid until {expires_at}"),
        )),
        ListOutcome::Refused { reason } => Some((
            Level::Warn,
            format!("cjwt: status list {list} refused, previous list kept until it expires: {reason}"),
        )),
        ListOutcome::NeverAnswered => {
            Some((Level::Warn, format!("cjwt: status list {list} fetch never answered; given up")))
        }
        // Logged where the host refused it (`on_dispatch_failed`).
        ListOutcome::NotDispatched => None,
        ListOutcome::NotFetchedElsewhere => Some((
            Level::Info,
            format!("cjwt: status list {list}: another worker's fetch brought no list; fetching here"),
        )),
    };
    let counter =
        outcome
            .counted()
            .then(|| if outcome.ok() { Counter::StatusListFetchOk } else { Counter::StatusListFetchFailed });
    effects(line, counter)
}

fn effects<W>(line: Option<(Level, String)>, counter: Option<Counter>) -> Vec<Effect<W>> {
    let mut out = Vec::with_capacity(2);
    if let Some((level, text)) = line {
        out.push(Effect::Log(level, text));
    }
    if let Some(counter) = counter {
        out.push(Effect::Count(counter));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::keys::host_crypto::PureRust;
    use std::collections::HashMap;

    const T0: i64 = 1_800_000_000;

    /// One Envoy's shared data: compare-and-swap always wins (one thread).
    /// Also the background driver's tests'.
    #[derive(Default)]
    pub(crate) struct FakeSharing(HashMap<String, Vec<u8>>);

    impl Sharing for FakeSharing {
        fn get(&self, name: &str) -> Option<Vec<u8>> {
            self.0.get(name).cloned()
        }

        fn set(&mut self, name: &str, value: &[u8]) {
            self.0.insert(name.to_string(), value.to_vec());
        }

        fn update(&mut self, name: &str, next: &mut NextValue<'_>) -> bool {
            match next(self.0.get(name).map(Vec::as_slice)) {
                Some(v) => {
                    self.0.insert(name.to_string(), v);
                    true
                }
                None => false,
            }
        }
    }

    fn config() -> Config {
        let text = serde_json::json!({
            "providers": [{"name": "corp", "issuer": "https://idp.example.com",
                           "remote_jwks": {"cluster": "idp", "path": "/jwks", "timeout_ms": 2000}}],
            "status_lists": [{"uri": "https://idp.example.com/sl/1", "provider": "corp", "cluster": "idp", "path": "/sl"}]
        });
        Config::from_json(text.to_string().as_bytes()).unwrap()
    }

    /// An Ed25519 public JWK with `kid` (the key's bytes: RFC 8037's example).
    /// Also the background driver's tests'.
    pub(crate) fn jwks(kids: &[&str]) -> Vec<u8> {
        let keys: Vec<_> = kids
            .iter()
            .map(|k| serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": k, "alg": "EdDSA"}))
            .collect();
        serde_json::json!({"keys": keys}).to_string().into_bytes()
    }

    struct World {
        config: Config,
        store: Fetched,
        sharing: FakeSharing,
    }

    impl World {
        fn new() -> World {
            World { config: config(), store: Fetched::new(1), sharing: FakeSharing::default() }
        }

        fn tick(&mut self, remote: &mut Remote<&'static str>, now: i64) -> Vec<Effect<&'static str>> {
            remote.on_tick(now, &self.config, &mut self.store, &PureRust, &mut self.sharing)
        }

        fn answer(
            &mut self,
            remote: &mut Remote<&'static str>,
            token: u32,
            status: &str,
            body: &[u8],
            now: i64,
        ) -> Vec<Effect<&'static str>> {
            remote
                .on_answer(
                    token,
                    Some(status),
                    body,
                    now,
                    &self.config,
                    &mut self.store,
                    &PureRust,
                    &mut self.sharing,
                    true,
                )
                .expect("an answer of this remote")
        }
    }

    /// The calls among `effects`, reported dispatched as `first`, `first + 1`, …
    fn dispatch(remote: &mut Remote<&'static str>, effects: &[Effect<&'static str>], first: u32) -> Vec<Call> {
        let calls: Vec<Call> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Dispatch(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        for (i, call) in calls.iter().enumerate() {
            remote.on_dispatched(call, first + i as u32);
        }
        calls
    }

    fn logs(effects: &[Effect<&'static str>]) -> Vec<String> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Log(_, l) => Some(l.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_unknown_kid_refetches_through_the_main_context_and_wakes_the_waiter() {
        let mut w = World::new();
        let mut r: Remote<&'static str> = Remote::new(&w.config, 1);
        assert!(r.is_active());
        // The first tick fetches the key set and the list.
        let calls = {
            let e = w.tick(&mut r, T0);
            dispatch(&mut r, &e, 1)
        };
        assert!(
            matches!(&calls[..], [Call::Keys(k), Call::List(l)] if k.path == "/jwks" && l.path == "/sl"),
            "{calls:?}"
        );
        let loaded = w.answer(&mut r, 1, "200", &jwks(&["k1"]), T0);
        assert_eq!(
            loaded,
            [
                Effect::Log(Level::Info, "cjwt: JWKS for provider 0: 1 key(s) loaded, 0 skipped".into()),
                Effect::Count(Counter::JwksFetchOk)
            ]
        );
        assert!(w.store.has_keys(0));
        // A request with another kid: it waits, the fetch goes to the main context.
        let (wait, effects) = r.wait_for_keys(0, "req-a", T0 + 1, &w.config, &mut w.store, &mut w.sharing);
        assert_eq!((wait, effects), (KeyWait::Wait, vec![Effect::WakeMain]));
        // A second request for the same provider joins the call.
        let (wait, effects) = r.wait_for_keys(0, "req-b", T0 + 1, &w.config, &mut w.store, &mut w.sharing);
        assert_eq!((wait, effects.len()), (KeyWait::Wait, 0));
        let wanted = r.on_wanted(T0 + 1, &w.config, &mut w.store, &mut w.sharing);
        let calls = dispatch(&mut r, &wanted, 3);
        assert_eq!(calls.len(), 1);
        let effects = w.answer(&mut r, 3, "200", &jwks(&["k1", "k2"]), T0 + 1);
        assert!(effects.contains(&Effect::Wake("req-a")) && effects.contains(&Effect::Wake("req-b")), "{effects:?}");
        // min_refetch_seconds (30 by default): the next miss does not wait.
        let (wait, _) = r.wait_for_keys(0, "req-c", T0 + 5, &w.config, &mut w.store, &mut w.sharing);
        assert_eq!(wait, KeyWait::DoNotWait);
    }

    #[test]
    fn a_call_never_answered_is_given_up_and_its_waiters_are_woken() {
        let mut w = World::new();
        let mut r: Remote<&'static str> = Remote::new(&w.config, 1);
        {
            let e = w.tick(&mut r, T0);
            dispatch(&mut r, &e, 1)
        };
        let (wait, _) = r.wait_for_keys(0, "req", T0, &w.config, &mut w.store, &mut w.sharing);
        assert_eq!(wait, KeyWait::Wait, "a call is in flight");
        // Timeout 2 s + margin 2 s: still waiting at T0 + 4, given up after.
        assert!(!w.tick(&mut r, T0 + 4).contains(&Effect::Wake("req")));
        let gave_up = w.tick(&mut r, T0 + 5);
        assert!(gave_up.contains(&Effect::Wake("req")) && gave_up.contains(&Effect::Count(Counter::JwksFetchFailed)));
        assert!(logs(&gave_up).iter().any(|l| l.contains("never answered")), "{gave_up:?}");
    }

    #[test]
    fn one_fetch_per_envoy_and_a_lease_taken_over_from_a_dead_fetcher() {
        let mut w = World::new();
        let mut a: Remote<&'static str> = Remote::new(&w.config, 1);
        let mut b: Remote<&'static str> = Remote::new(&w.config, 2);
        // A takes the leases and fetches; B waits for A's set and list.
        assert_eq!(
            {
                let e = w.tick(&mut a, T0);
                dispatch(&mut a, &e, 1)
            }
            .len(),
            2
        );
        assert!(
            {
                let e = w.tick(&mut b, T0);
                dispatch(&mut b, &e, 10)
            }
            .is_empty(),
            "B holds no lease"
        );
        w.answer(&mut a, 1, "200", &jwks(&["k1"]), T0);
        // B takes A's set over on its tick: nothing fetched, nothing counted.
        let mut b_store = Fetched::new(1);
        let adopted = b.on_tick(T0 + 1, &w.config, &mut b_store, &PureRust, &mut w.sharing);
        assert!(b_store.has_keys(0));
        assert!(logs(&adopted).iter().any(|l| l.contains("from the set another worker fetched")), "{adopted:?}");
        assert!(!adopted.iter().any(|e| matches!(e, Effect::Count(_) | Effect::Dispatch(_))), "{adopted:?}");
        // A dies with the list's lease (timeout 2 s + margin 2 s): once it expires the fetch is
        // due again after the retry delay (5 s), and B makes it.
        assert!({
            let e = b.on_tick(T0 + 7, &w.config, &mut b_store, &PureRust, &mut w.sharing);
            dispatch(&mut b, &e, 10)
        }
        .is_empty());
        let mut later = Vec::new();
        for t in T0 + 8..T0 + 14 {
            later.extend({
                let e = b.on_tick(t, &w.config, &mut b_store, &PureRust, &mut w.sharing);
                dispatch(&mut b, &e, 20)
            });
        }
        assert!(matches!(&later[..], [Call::List(_)]), "{later:?}");
    }

    #[test]
    fn a_list_that_turns_bad_is_refused_counted_and_the_lease_given_back() {
        let mut w = World::new();
        let mut r: Remote<&'static str> = Remote::new(&w.config, 1);
        let calls = {
            let e = w.tick(&mut r, T0);
            dispatch(&mut r, &e, 1)
        };
        assert_eq!(calls.len(), 2);
        let refused = w.answer(&mut r, 2, "500", b"down", T0);
        assert_eq!(
            refused,
            [
                Effect::Log(
                    Level::Warn,
                    "cjwt: status list 0 refused, previous list kept until it expires: HTTP status 500".into()
                ),
                Effect::Count(Counter::StatusListFetchFailed)
            ]
        );
        let name = list_name(&w.config, 0).unwrap();
        assert!(!lease::held_by_other(w.sharing.get(&format!("{name}.lease")).as_deref(), 2, T0), "given back");
        // Not dispatched: logged with the host's error, counted, retried later.
        let failed = r.dispatched(&calls[1], Err("BadArgument".into()), T0, &mut w.sharing);
        assert_eq!(
            failed[0],
            Effect::Log(
                Level::Warn,
                "cjwt: status list 0: fetch not dispatched (BadArgument); is cluster \"idp\" defined?".into()
            )
        );
        assert!(failed.contains(&Effect::Count(Counter::StatusListFetchFailed)));
        assert!(r
            .on_answer(99, Some("200"), b"", T0, &w.config, &mut w.store, &PureRust, &mut w.sharing, true)
            .is_none());
    }

    #[test]
    fn leases_as_bytes() {
        let held = lease::take(None, 1, T0, T0 + 10).unwrap();
        assert!(lease::held_by_other(Some(&held), 2, T0 + 10));
        assert!(!lease::held_by_other(Some(&held), 2, T0 + 11), "expired");
        assert!(!lease::held_by_other(Some(&held), 1, T0), "ours");
        assert_eq!(lease::take(Some(&held), 2, T0, T0 + 10), None);
        assert!(lease::take(Some(&held), 1, T0, T0 + 20).is_some(), "renewed by its holder");
        assert_eq!(lease::release(Some(&held), 2), None, "not B's to give back");
        let free = lease::release(Some(&held), 1).unwrap();
        assert!(!lease::held_by_other(Some(&free), 2, T0));
    }

    #[test]
    fn a_fetch_that_ended_is_logged_and_counted_once_a_takeover_is_not_counted() {
        let loaded = key_fetch_ended::<()>(2, &FetchOutcome::KeysLoaded { keys: 3, skipped: 1 });
        assert_eq!(
            loaded,
            [
                Effect::Log(Level::Info, "cjwt: JWKS for provider 2: 3 key(s) loaded, 1 skipped".into()),
                Effect::Count(Counter::JwksFetchOk)
            ]
        );
        let refused = key_fetch_ended::<()>(0, &FetchOutcome::DiscoveryRefused { reason: "HTTP 500".into() });
        assert!(
            matches!(&refused[..], [Effect::Log(Level::Warn, l), Effect::Count(Counter::JwksFetchFailed)] if l.contains("HTTP 500"))
        );
        assert_eq!(key_fetch_ended::<()>(0, &FetchOutcome::NotDispatched), [Effect::Count(Counter::JwksFetchFailed)]);
        assert!(!key_fetch_ended::<()>(0, &FetchOutcome::KeysAdopted { keys: 1 })
            .iter()
            .any(|e| matches!(e, Effect::Count(_))));
        let elsewhere = list_fetch_ended::<()>(1, &ListOutcome::NotFetchedElsewhere);
        assert!(matches!(&elsewhere[..], [Effect::Log(Level::Info, _)]));
        assert_eq!(
            list_fetch_ended::<()>(1, &ListOutcome::NotDispatched),
            [Effect::Count(Counter::StatusListFetchFailed)]
        );
    }
}
