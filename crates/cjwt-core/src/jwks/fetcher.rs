//! When to fetch remote key sets (SPEC §2 `remote_jwks`), as a state machine the
//! adapter drives. It never calls the host: the adapter passes in the host's
//! clock (Unix seconds) and the answers it receives. In return it gets the calls
//! to dispatch ([`FetchRequest`]) and the paused requests to decide again.
//!
//! Per provider with `remote_jwks`:
//!
//! - the first fetch is made at once, and a fetch again every `refresh_seconds`
//!   after a good answer;
//! - a failed fetch (HTTP error, refused body, no answer, not dispatched) keeps the
//!   previous keys and is retried after [`RETRY_SECONDS`] (at most `refresh_seconds`);
//! - a token naming a key the provider does not have starts a fetch at once (an
//!   on-demand refetch), and that request waits (paused) for the answer. So does
//!   every request that needs the keys while a call is in flight;
//! - `min_refetch_seconds` spaces on-demand refetches only, counted from the
//!   start of the previous on-demand refetch: the start-up, periodic and retry
//!   fetches never delay one (a key published right after them is picked up by
//!   the first token that names it), and a flood of unknown `kid`s brings at most
//!   one fetch per `min_refetch_seconds` on top of the schedule (deviation 14);
//! - a call that has not answered within its timeout + [`STALE_MARGIN_SECONDS`] is
//!   given up on the next tick. That counts as a failed fetch, and its waiters are
//!   decided again without keys (SEC-12.3);
//! - with OIDC discovery, a fetch first reads the discovery document, then the
//!   JWKS at its `jwks_uri`. A refused discovery answer is a failed fetch and never
//!   a key set (SEC-12.7). After any refused answer, the next attempt reads
//!   discovery again.
//!
//! At most one call per provider is in flight. Requests wait only while a call is
//! in flight (or about to be dispatched), so a released list always holds every
//! request that waited.
//!
//! Several fetchers of one Envoy (the wasm build's worker VMs) share their key
//! sets (SPEC §12, one fetch per Envoy): a call handed out may be fetched by
//! another fetcher instead ([`Fetcher::on_fetching_elsewhere`]: it then counts as
//! in flight here until its deadline), and a set another fetcher loaded is taken
//! over with [`Fetcher::adopt`], which releases the requests waiting here and
//! schedules the next refresh from the time that set was fetched. Each set has a
//! version ([`Fetcher::version`]) so that the adapter takes each one over once.
//!
//! The adapter's part, per entry point:
//!
//! - [`Fetcher::on_tick`] (periodic) and [`Fetcher::wait_for_keys`] (from a request)
//!   hand out calls to dispatch;
//! - every call handed out is reported back with [`Fetcher::on_dispatched`] (its
//!   token) or [`Fetcher::on_dispatch_failed`];
//! - each answer goes to [`Fetcher::on_response`];
//! - every [`Released`] is counted when [`FetchOutcome::fetch_ok`] says a fetch
//!   ended, its waiters are decided again, and its `start` is dispatched.

use super::parse::{jwks_path_from_discovery, parse_remote_jwks};
use super::slot::{GaveUp, Slot};
use super::store::Fetched;
use crate::config::{Config, JwksSource, RemoteJwks};
use std::time::Duration;

/// Seconds before a failed fetch is tried again (at most the provider's `refresh_seconds`).
pub const RETRY_SECONDS: i64 = 5;

/// Seconds past a call's own timeout after which it is given up on the tick.
pub const STALE_MARGIN_SECONDS: i64 = 2;

/// What a call fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchKind {
    /// The JWKS itself.
    Keys,
    /// The OIDC discovery document that names the JWKS.
    Discovery,
}

/// A call for the adapter to dispatch: `GET path` with `:authority: authority`
/// through the Envoy cluster `cluster`, given up after `timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// The provider (index into `config.providers`) whose keys it fetches.
    pub provider: usize,
    /// Whether it fetches the JWKS or the discovery document.
    pub kind: FetchKind,
    /// The Envoy cluster to send it through (from the configuration, never a token).
    pub cluster: String,
    /// The request path (with query).
    pub path: String,
    /// The `:authority` header.
    pub authority: String,
    /// The call's timeout (`timeout_ms`).
    pub timeout: Duration,
}

impl FetchRequest {
    /// The call's request headers: `:method`, `:path`, `:authority`.
    pub fn headers(&self) -> Vec<(&str, &str)> {
        vec![(":method", "GET"), (":path", self.path.as_str()), (":authority", self.authority.as_str())]
    }
}

/// What the adapter does next, from [`Fetcher::on_tick`], in order.
#[derive(Debug)]
pub enum Command<W> {
    /// Dispatch this call, then report it with [`Fetcher::on_dispatched`] or
    /// [`Fetcher::on_dispatch_failed`].
    Dispatch(FetchRequest),
    /// A call was given up: count the failed fetch and decide its waiters again.
    Release(Released<W>),
}

/// Whether a request that lacks its provider's keys waits for a fetch.
#[derive(Debug, PartialEq, Eq)]
pub enum WaitDecision {
    /// A call is in flight; the request is registered and waits (paused) for it.
    Wait,
    /// A fetch starts now: the request is registered and waits once the adapter
    /// dispatches this call and reports it. If it cannot be dispatched,
    /// [`Fetcher::on_dispatch_failed`] releases the request again.
    Start(FetchRequest),
    /// No fetch may start now (none configured, or `min_refetch_seconds` not
    /// yet over): decide the request without waiting.
    DoNotWait,
}

/// How a fetch ended (or went on), for the adapter's metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The key set was accepted; it replaced the provider's fetched keys.
    KeysLoaded {
        /// Usable keys loaded.
        keys: usize,
        /// Keys skipped as unusable here.
        skipped: usize,
    },
    /// The discovery document named the JWKS at `jwks_path`; its fetch is
    /// [`Released::start`]. Not the end of a fetch.
    Discovered {
        /// The JWKS path (with query) on the configured authority.
        jwks_path: String,
    },
    /// The key set was refused (HTTP status or body); the previous keys stay.
    KeysRefused {
        /// Why, for the log.
        reason: String,
    },
    /// The discovery document was refused (HTTP status or body): a failed fetch,
    /// never a key set (SEC-12.7). The previous keys stay.
    DiscoveryRefused {
        /// Why, for the log.
        reason: String,
    },
    /// The call did not answer within its timeout + [`STALE_MARGIN_SECONDS`].
    NeverAnswered,
    /// The host would not dispatch the call.
    NotDispatched,
    /// A key set fetched by another fetcher of this Envoy was taken over (not a
    /// fetch of this one: nothing to count).
    KeysAdopted {
        /// Usable keys loaded.
        keys: usize,
    },
    /// Another fetcher took this fetch over and no key set came by its deadline;
    /// the fetch is due again here (not a fetch of this one: nothing to count).
    ElsewhereTimedOut,
    /// Another fetcher's fetch ended without a key set; the previous keys stay
    /// (not a fetch of this one: nothing to count).
    ElsewhereFailed,
}

impl FetchOutcome {
    /// `Some(ok)` when a fetch ended (the adapter counts `jwks_fetch(ok)`);
    /// `None` when it goes on (discovery answered, the key fetch follows).
    pub fn fetch_ok(&self) -> Option<bool> {
        match self {
            FetchOutcome::KeysLoaded { .. } => Some(true),
            FetchOutcome::Discovered { .. }
            | FetchOutcome::KeysAdopted { .. }
            | FetchOutcome::ElsewhereTimedOut
            | FetchOutcome::ElsewhereFailed => None,
            FetchOutcome::KeysRefused { .. }
            | FetchOutcome::DiscoveryRefused { .. }
            | FetchOutcome::NeverAnswered
            | FetchOutcome::NotDispatched => Some(false),
        }
    }
}

/// A call's end: how it went, the requests that waited for it (to be decided
/// again, in the order they came), and the call that follows, if any.
#[derive(Debug)]
pub struct Released<W> {
    /// The provider whose call ended.
    pub provider: usize,
    /// How it ended.
    pub outcome: FetchOutcome,
    /// The requests that waited for it. Empty when `start` continues the fetch:
    /// they then wait for that call.
    pub waiters: Vec<W>,
    /// A call to dispatch now (the key fetch after discovery), reported back like
    /// every other.
    pub start: Option<FetchRequest>,
}

/// The fetch state of one provider.
#[derive(Debug)]
struct ProviderState<W> {
    remote: Option<RemoteJwks>,
    /// At most one call in flight (or handed out and not yet reported), and
    /// when the next periodic fetch is due.
    slot: Slot<FetchKind>,
    /// With OIDC discovery: the JWKS path found in the discovery document.
    jwks_path: Option<String>,
    /// When the last on-demand refetch (a request's unknown `kid`) started: the
    /// `min_refetch_seconds` clock. Start-up, periodic and retry fetches do not
    /// set it (deviation 14).
    last_refetch: Option<i64>,
    /// Requests paused until this provider's call answers.
    waiters: Vec<W>,
    /// The version of the key set in use (0: none shared yet).
    version: u64,
}

impl<W> ProviderState<W> {
    /// Hands out the provider's next call (discovery first when its JWKS path is
    /// not known) and records it as in flight; `None` without `remote_jwks`.
    fn start(&mut self, provider: usize, now: i64) -> Option<FetchRequest> {
        let remote = self.remote.as_ref()?;
        let (path, kind) = match (&remote.source, &self.jwks_path) {
            (JwksSource::Path(p), _) | (JwksSource::Discovery(_), Some(p)) => (p.clone(), FetchKind::Keys),
            (JwksSource::Discovery(d), None) => (d.clone(), FetchKind::Discovery),
        };
        self.slot.start(kind, now);
        Some(FetchRequest {
            provider,
            kind,
            cluster: remote.cluster.clone(),
            path,
            authority: remote.authority.clone(),
            timeout: Duration::from_millis(remote.timeout_ms),
        })
    }

    /// Seconds after which a call is given up: its own timeout plus a margin.
    fn stale_after(&self) -> i64 {
        let timeout_ms = self.remote.as_ref().map_or(60_000, |r| r.timeout_ms);
        i64::try_from(timeout_ms / 1000).unwrap_or(60).saturating_add(STALE_MARGIN_SECONDS)
    }

    /// Seconds between two periodic fetches.
    fn refresh(&self) -> i64 {
        self.remote.as_ref().map_or(600, |r| i64::try_from(r.refresh_seconds).unwrap_or(600))
    }
}

/// The remote-JWKS fetch state of every provider of one configuration (index =
/// provider index). `W` identifies a paused request (the adapter's stream).
#[derive(Debug)]
pub struct Fetcher<W> {
    providers: Vec<ProviderState<W>>,
}

impl<W> Fetcher<W> {
    /// The fetch state for `config`: nothing fetched, every remote fetch due now.
    pub fn new(config: &Config) -> Fetcher<W> {
        let providers = config
            .providers
            .iter()
            .map(|p| ProviderState {
                remote: p.remote.clone(),
                slot: Slot::new(),
                jwks_path: None,
                last_refetch: None,
                waiters: Vec::new(),
                version: 0,
            })
            .collect();
        Fetcher { providers }
    }

    /// Whether any provider fetches its keys (the adapter then runs a tick).
    pub fn has_remote(&self) -> bool {
        self.providers.iter().any(|p| p.remote.is_some())
    }

    /// Periodic work: gives up calls that never answered (each a
    /// [`Command::Release`]), then hands out every fetch that is due, a given-up
    /// one included (each a [`Command::Dispatch`]). Called once on configuration
    /// (the first fetches) and then every tick.
    pub fn on_tick(&mut self, now: i64) -> Vec<Command<W>> {
        let mut commands = Vec::new();
        for (provider, p) in self.providers.iter_mut().enumerate() {
            let stale_after = p.stale_after();
            let outcome = match p.slot.give_up(now, stale_after) {
                Some(GaveUp::Elsewhere) => FetchOutcome::ElsewhereTimedOut,
                Some(GaveUp::NeverAnswered) => FetchOutcome::NeverAnswered,
                None => continue,
            };
            let waiters = std::mem::take(&mut p.waiters);
            commands.push(Command::Release(Released { provider, outcome, waiters, start: None }));
        }
        for (provider, p) in self.providers.iter_mut().enumerate() {
            if p.slot.due(now) {
                if let Some(request) = p.start(provider, now) {
                    commands.push(Command::Dispatch(request));
                }
            }
        }
        commands
    }

    /// A request was refused only because `provider` lacks its key: should it
    /// wait for a fetch? Yes while a call is in flight (of any kind), or when an
    /// on-demand refetch may start now: none started in the last
    /// `min_refetch_seconds` (start-up, periodic and retry fetches do not count).
    /// `waiter` is then registered.
    pub fn wait_for_keys(&mut self, provider: usize, waiter: W, now: i64) -> WaitDecision {
        let Some(p) = self.providers.get_mut(provider) else {
            return WaitDecision::DoNotWait;
        };
        let Some(remote) = &p.remote else {
            return WaitDecision::DoNotWait;
        };
        if p.slot.in_flight() {
            p.waiters.push(waiter);
            return WaitDecision::Wait;
        }
        let min = i64::try_from(remote.min_refetch_seconds).unwrap_or(i64::MAX);
        if p.last_refetch.is_some_and(|t| now.saturating_sub(t) < min) {
            return WaitDecision::DoNotWait;
        }
        match p.start(provider, now) {
            Some(request) => {
                p.last_refetch = Some(now);
                p.waiters.push(waiter);
                WaitDecision::Start(request)
            }
            None => WaitDecision::DoNotWait,
        }
    }

    /// The call handed out for `provider` was dispatched; its answer will carry `token`.
    pub fn on_dispatched(&mut self, provider: usize, token: u32) {
        if let Some(p) = self.providers.get_mut(provider) {
            p.slot.dispatched(token);
        }
    }

    /// The call handed out for `provider` is made by another fetcher of this
    /// Envoy (which holds the fetch until `deadline`): it stays in flight here,
    /// its waiters wait for [`Fetcher::adopt`], and it is given up on the first
    /// tick after `deadline`.
    pub fn on_fetching_elsewhere(&mut self, provider: usize, deadline: i64) {
        if let Some(p) = self.providers.get_mut(provider) {
            p.slot.fetching_elsewhere(deadline);
        }
    }

    /// Whether the call handed out for `provider` is still to be dispatched: an
    /// adapter that dispatches later than it is handed out (the wasm build's
    /// root context, for a stream's refetch) dispatches it only then, since a
    /// set taken over meanwhile ([`Fetcher::adopt`]) ends it.
    pub fn awaits_dispatch(&self, provider: usize) -> bool {
        self.providers.get(provider).is_some_and(|p| p.slot.awaits_dispatch())
    }

    /// Whether `provider`'s fetch is being made by another fetcher (see
    /// [`Fetcher::on_fetching_elsewhere`]).
    pub fn is_elsewhere(&self, provider: usize) -> bool {
        self.providers.get(provider).is_some_and(|p| p.slot.is_elsewhere())
    }

    /// The other fetcher's fetch for `provider` ended without a set to take over
    /// (it gave its lease back): the requests waiting here are released, and the
    /// fetch is due again after [`RETRY_SECONDS`], as it is for the fetcher that
    /// failed, so that one of them retries, not both.
    pub fn on_elsewhere_ended(&mut self, provider: usize, now: i64) -> Option<Released<W>> {
        let p = self.providers.get_mut(provider)?;
        let retry_after = RETRY_SECONDS.min(p.refresh());
        if !p.slot.elsewhere_ended(now, retry_after) {
            return None;
        }
        let waiters = std::mem::take(&mut p.waiters);
        Some(Released { provider, outcome: FetchOutcome::ElsewhereFailed, waiters, start: None })
    }

    /// The version of the key set `provider` uses (0: none shared yet).
    pub fn version(&self, provider: usize) -> u64 {
        self.providers.get(provider).map_or(0, |p| p.version)
    }

    /// Records that the set this fetcher just loaded for `provider` is shared
    /// under `version`.
    pub fn set_version(&mut self, provider: usize, version: u64) {
        if let Some(p) = self.providers.get_mut(provider) {
            p.version = version;
        }
    }

    /// Takes over the key set `body` that another fetcher of this Envoy loaded
    /// at `fetched_at` and shared as `version`: it replaces the provider's keys,
    /// the next refresh is due `refresh_seconds` after `fetched_at`, a call made
    /// elsewhere or handed out and not dispatched yet ends (the adapter then
    /// drops it: see [`Fetcher::awaits_dispatch`]), and every request waiting
    /// here is released. A set that
    /// does not parse is not taken (its version is remembered, so it is not
    /// tried again). `None` when nothing changed.
    #[allow(clippy::too_many_arguments)]
    pub fn adopt(
        &mut self,
        provider: usize,
        body: &[u8],
        version: u64,
        fetched_at: i64,
        now: i64,
        config: &Config,
        keys: &mut Fetched,
    ) -> Option<Result<Released<W>, String>> {
        let p = self.providers.get_mut(provider)?;
        if p.remote.is_none() || version == p.version {
            return None;
        }
        p.version = version;
        let fetched = match parse_remote_jwks(config, provider, body) {
            Ok(fetched) => fetched,
            Err(reason) => return Some(Err(reason)),
        };
        let outcome = FetchOutcome::KeysAdopted { keys: fetched.keys.len() };
        keys.set(provider, fetched.keys);
        // Due when that fetch's refresh is (now, if it is past already).
        p.slot.next_due = fetched_at.saturating_add(p.refresh()).min(now.saturating_add(p.refresh()));
        p.slot.end_unless_dispatched();
        Some(Ok(Released { provider, outcome, waiters: std::mem::take(&mut p.waiters), start: None }))
    }

    /// The call handed out for `provider` could not be dispatched: a failed
    /// fetch, retried after [`RETRY_SECONDS`]. Releases the requests that waited for it.
    pub fn on_dispatch_failed(&mut self, provider: usize, now: i64) -> Released<W> {
        let mut waiters = Vec::new();
        if let Some(p) = self.providers.get_mut(provider) {
            if p.slot.dispatch_failed(now, RETRY_SECONDS) {
                waiters = std::mem::take(&mut p.waiters);
            }
        }
        Released { provider, outcome: FetchOutcome::NotDispatched, waiters, start: None }
    }

    /// The answer to the call `token`: `status` is its `:status` (`None` when
    /// the host gave none, e.g. on its timeout) and `body` its body. An
    /// accepted key set replaces the provider's keys in `keys`. Returns `None`
    /// when `token` is no call in flight (one already given up, or not a key fetch).
    pub fn on_response(
        &mut self,
        token: u32,
        status: Option<&str>,
        body: &[u8],
        now: i64,
        config: &Config,
        keys: &mut Fetched,
    ) -> Option<Released<W>> {
        let provider = self.providers.iter().position(|p| p.slot.answers(token))?;
        let p = self.providers.get_mut(provider)?;
        let kind = p.slot.take()?;
        let outcome = match (kind, status) {
            (FetchKind::Discovery, Some("200")) => {
                let issuer = config.providers.get(provider).map_or("", |c| c.issuer.as_str());
                let authority = p.remote.as_ref().map_or("", |r| r.authority.as_str());
                match jwks_path_from_discovery(body, issuer, authority) {
                    Ok(jwks_path) => {
                        p.jwks_path = Some(jwks_path.clone());
                        let start = p.start(provider, now);
                        // The waiters wait for the key fetch (there always is one).
                        let waiters = if start.is_some() { Vec::new() } else { std::mem::take(&mut p.waiters) };
                        return Some(Released {
                            provider,
                            outcome: FetchOutcome::Discovered { jwks_path },
                            waiters,
                            start,
                        });
                    }
                    Err(reason) => FetchOutcome::DiscoveryRefused { reason },
                }
            }
            (FetchKind::Discovery, other) => FetchOutcome::DiscoveryRefused { reason: http_status(other) },
            (FetchKind::Keys, Some("200")) => match parse_remote_jwks(config, provider, body) {
                Ok(fetched) => {
                    let outcome = FetchOutcome::KeysLoaded { keys: fetched.keys.len(), skipped: fetched.skipped };
                    keys.set(provider, fetched.keys);
                    outcome
                }
                Err(reason) => FetchOutcome::KeysRefused { reason },
            },
            (FetchKind::Keys, other) => FetchOutcome::KeysRefused { reason: http_status(other) },
        };
        let refresh = p.refresh();
        if outcome.fetch_ok() == Some(true) {
            p.slot.next_due = now.saturating_add(refresh);
        } else {
            // With discovery, look the JWKS location up again next time.
            p.jwks_path = None;
            p.slot.next_due = now.saturating_add(RETRY_SECONDS.min(refresh));
        }
        Some(Released { provider, outcome, waiters: std::mem::take(&mut p.waiters), start: None })
    }
}

fn http_status(status: Option<&str>) -> String {
    format!("HTTP status {}", status.unwrap_or("none"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::verify::KeyLookup;
    use serde_json::{json, Value};

    const ISS: &str = "https://idp.example.com";
    const DISCOVERY: &str = "/.well-known/openid-configuration";

    /// RFC 8037 A.2's Ed25519 public key.
    fn jwk(kid: &str) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": kid})
    }

    fn jwks_body() -> Vec<u8> {
        json!({"keys": [jwk("k1")]}).to_string().into_bytes()
    }

    fn discovery_body(issuer: &str, jwks_uri: &str) -> Vec<u8> {
        json!({"issuer": issuer, "jwks_uri": jwks_uri}).to_string().into_bytes()
    }

    /// One provider `idp` with `remote_jwks` = defaults + `remote`.
    fn config(remote: Value) -> Config {
        let mut r = json!({"cluster": "idp", "authority": "idp.example.com", "path": "/jwks.json"});
        if let (Value::Object(base), Value::Object(extra)) = (&mut r, remote) {
            if extra.contains_key("discovery_path") {
                base.remove("path");
            }
            base.extend(extra);
        }
        let cfg = json!({"providers": [{"name": "idp", "issuer": ISS, "remote_jwks": r}]});
        Config::from_json(cfg.to_string().as_bytes()).unwrap()
    }

    /// The adapter, with a fake clock and a fake host that dispatches every call
    /// (tokens 1, 2, …) and counts fetches as the filter's metrics do.
    struct Sim {
        config: Config,
        fetcher: Fetcher<u32>,
        keys: Fetched,
        now: i64,
        next_token: u32,
        /// Calls dispatched, with their tokens, in order.
        calls: Vec<(u32, FetchRequest)>,
        /// `jwks_fetch(ok)` as counted.
        counted: Vec<bool>,
    }

    impl Sim {
        fn new(config: Config) -> Sim {
            let keys = Fetched::new(config.providers.len());
            let fetcher = Fetcher::new(&config);
            Sim { config, fetcher, keys, now: 1_000_000, next_token: 1, calls: Vec::new(), counted: Vec::new() }
        }

        fn dispatch(&mut self, request: FetchRequest) -> u32 {
            let token = self.next_token;
            self.next_token += 1;
            self.fetcher.on_dispatched(request.provider, token);
            self.calls.push((token, request));
            token
        }

        fn count(&mut self, released: &Released<u32>) {
            if let Some(ok) = released.outcome.fetch_ok() {
                self.counted.push(ok);
            }
        }

        /// Ticks at `now + dt`: dispatches what is due; returns the new calls'
        /// tokens and the waiters released by given-up calls.
        fn tick(&mut self, dt: i64) -> (Vec<u32>, Vec<u32>) {
            self.now += dt;
            let (mut tokens, mut waiters) = (Vec::new(), Vec::new());
            for command in self.fetcher.on_tick(self.now) {
                match command {
                    Command::Dispatch(request) => tokens.push(self.dispatch(request)),
                    Command::Release(released) => {
                        self.count(&released);
                        waiters.extend(released.waiters);
                    }
                }
            }
            (tokens, waiters)
        }

        /// Answers call `token` at `now + dt`; dispatches a following call (after
        /// discovery) at once, as the adapter does.
        fn answer(&mut self, dt: i64, token: u32, status: Option<&str>, body: &[u8]) -> Option<Released<u32>> {
            self.now += dt;
            let released = self.fetcher.on_response(token, status, body, self.now, &self.config, &mut self.keys)?;
            self.count(&released);
            if let Some(start) = released.start.clone() {
                self.dispatch(start);
            }
            Some(released)
        }

        fn wait(&mut self, dt: i64, waiter: u32) -> WaitDecision {
            self.now += dt;
            self.fetcher.wait_for_keys(0, waiter, self.now)
        }

        fn last_call(&self) -> (u32, &FetchRequest) {
            let (token, request) = self.calls.last().unwrap();
            (*token, request)
        }
    }

    /// Two fetchers of one Envoy: the one that holds the fetch loads the set,
    /// the other takes it over (its waiters released, its refresh timed from the
    /// fetch), counts no fetch of its own, and gives a fetch made elsewhere up
    /// after its deadline.
    #[test]
    fn a_set_fetched_elsewhere_is_taken_over_once_and_a_lost_one_is_due_again() {
        let mut here = Sim::new(config(json!({"refresh_seconds": 60})));
        // The first tick hands out the fetch; another fetcher holds it.
        let commands = here.fetcher.on_tick(here.now);
        let [Command::Dispatch(request)] = commands.as_slice() else { panic!("{commands:?}") };
        here.fetcher.on_fetching_elsewhere(request.provider, here.now + 5);
        // A request waits for it; nothing else is handed out meanwhile.
        assert_eq!(here.wait(1, 7), WaitDecision::Wait);
        assert!(here.fetcher.on_tick(here.now).is_empty());
        // The other fetcher's set arrives: taken over, the waiter released, no fetch counted.
        let fetched_at = here.now;
        let released = here
            .fetcher
            .adopt(0, &jwks_body(), 42, fetched_at, here.now, &here.config, &mut here.keys)
            .unwrap()
            .unwrap();
        assert_eq!(
            (released.outcome.clone(), released.waiters.clone()),
            (FetchOutcome::KeysAdopted { keys: 1 }, vec![7])
        );
        assert_eq!(released.outcome.fetch_ok(), None);
        assert!(here.keys.has_keys(0));
        assert_eq!(here.fetcher.version(0), 42);
        // The same version again changes nothing; no fetch is due before refresh.
        assert!(here.fetcher.adopt(0, &jwks_body(), 42, fetched_at, here.now, &here.config, &mut here.keys).is_none());
        assert_eq!(here.tick(59), (vec![], vec![]));
        let (due, _) = here.tick(1);
        assert_eq!(due.len(), 1, "refresh due 60 s after the other fetcher's fetch");
        // A set that does not parse is refused once, the keys kept.
        let refused = here.fetcher.adopt(0, b"{}", 43, here.now, here.now, &here.config, &mut here.keys);
        assert!(matches!(refused, Some(Err(_))));
        assert!(here.fetcher.adopt(0, b"{}", 43, here.now, here.now, &here.config, &mut here.keys).is_none());
        assert!(here.keys.has_keys(0));

        // A fetch held elsewhere that never delivers is given up after its deadline and due again.
        let mut lost = Sim::new(config(json!({})));
        let commands = lost.fetcher.on_tick(lost.now);
        assert_eq!(commands.len(), 1);
        lost.fetcher.on_fetching_elsewhere(0, lost.now + 3);
        assert_eq!(lost.wait(0, 9), WaitDecision::Wait);
        assert_eq!(lost.tick(3), (vec![], vec![]));
        let (tokens, waiters) = lost.tick(1);
        assert_eq!((tokens.len(), waiters), (1, vec![9]), "released, and the fetch handed out again");
        assert!(lost.counted.is_empty(), "another fetcher's fetch is not counted here");

        // A fetch elsewhere that failed (the lease given back): released now, due after the retry delay.
        let mut failed = Sim::new(config(json!({})));
        assert_eq!(failed.fetcher.on_tick(failed.now).len(), 1);
        failed.fetcher.on_fetching_elsewhere(0, failed.now + 30);
        assert!(failed.fetcher.is_elsewhere(0));
        assert_eq!(failed.wait(0, 4), WaitDecision::Wait);
        let released = failed.fetcher.on_elsewhere_ended(0, failed.now).unwrap();
        assert_eq!((released.outcome, released.waiters), (FetchOutcome::ElsewhereFailed, vec![4]));
        assert!(failed.fetcher.on_elsewhere_ended(0, failed.now).is_none());
        assert_eq!(failed.tick(RETRY_SECONDS - 1), (vec![], vec![]));
        assert_eq!(failed.tick(1).0.len(), 1);
    }

    /// A call handed out but not dispatched yet (the wasm build's root context
    /// dispatches a stream's refetch on its next tick) ends when a newer set is
    /// taken over meanwhile: the adapter then does not dispatch it (one fetch per
    /// Envoy), and its waiters are decided with that set.
    #[test]
    fn a_set_taken_over_ends_a_call_not_dispatched_yet() {
        let mut sim = Sim::new(config(json!({"min_refetch_seconds": 0})));
        let WaitDecision::Start(_) = sim.wait(0, 8) else { panic!("no fetch") };
        assert!(sim.fetcher.awaits_dispatch(0));
        let released =
            sim.fetcher.adopt(0, &jwks_body(), 41, sim.now, sim.now, &sim.config, &mut sim.keys).unwrap().unwrap();
        assert_eq!((released.outcome, released.waiters), (FetchOutcome::KeysAdopted { keys: 1 }, vec![8]));
        assert!(!sim.fetcher.awaits_dispatch(0), "ended: nothing to dispatch");
        assert!(sim.counted.is_empty(), "no fetch of this fetcher's, none failed");
        sim.fetcher.on_dispatched(0, 77);
        assert!(sim.answer(0, 77, Some("200"), &jwks_body()).is_none(), "a late dispatch is no call");
        // A dispatched call goes on through a takeover, and its answer counts.
        let WaitDecision::Start(request) = sim.wait(0, 9) else { panic!("no refetch") };
        let token = sim.dispatch(request);
        assert!(!sim.fetcher.awaits_dispatch(0));
        let released =
            sim.fetcher.adopt(0, &jwks_body(), 42, sim.now, sim.now, &sim.config, &mut sim.keys).unwrap().unwrap();
        assert_eq!(released.waiters, vec![9]);
        assert!(sim.answer(0, token, Some("200"), &jwks_body()).is_some());
        assert_eq!(sim.counted, vec![true]);
    }

    #[test]
    fn the_first_tick_fetches_every_remote_provider_once() {
        let cfg = json!({"providers": [
            {"name": "a", "issuer": "https://a.example", "remote_jwks": {"cluster": "ca", "path": "/a.json", "timeout_ms": 1500}},
            {"name": "inline", "issuer": "https://inline.example", "jwks": {"keys": [jwk("i1")]}},
            {"name": "b", "issuer": "https://b.example", "remote_jwks": {"cluster": "cb", "authority": "keys.b.example",
                "discovery_path": DISCOVERY}},
        ]});
        let mut sim = Sim::new(Config::from_json(cfg.to_string().as_bytes()).unwrap());
        assert!(sim.fetcher.has_remote());
        let (tokens, released) = sim.tick(0);
        assert_eq!((tokens.len(), released.len()), (2, 0));
        let requests: Vec<&FetchRequest> = sim.calls.iter().map(|(_, r)| r).collect();
        assert_eq!(
            requests[0],
            &FetchRequest {
                provider: 0,
                kind: FetchKind::Keys,
                cluster: "ca".into(),
                path: "/a.json".into(),
                authority: "ca".into(),
                timeout: Duration::from_millis(1500),
            }
        );
        assert_eq!(requests[0].headers(), vec![(":method", "GET"), (":path", "/a.json"), (":authority", "ca")],);
        assert_eq!(
            (requests[1].provider, requests[1].kind, requests[1].cluster.as_str(), requests[1].path.as_str()),
            (2, FetchKind::Discovery, "cb", DISCOVERY)
        );
        assert_eq!(requests[1].authority, "keys.b.example");
        // While they are in flight, later ticks start nothing.
        assert_eq!(sim.tick(1), (vec![], vec![]));
        // A provider with inline keys only never waits.
        assert_eq!(sim.fetcher.wait_for_keys(1, 7, sim.now), WaitDecision::DoNotWait);
        assert_eq!(sim.fetcher.wait_for_keys(9, 7, sim.now), WaitDecision::DoNotWait);
        // An inline-only configuration has nothing to fetch.
        let inline = json!({"providers": [{"name": "i", "issuer": "https://i", "jwks": {"keys": [jwk("i1")]}}]});
        let mut fetcher: Fetcher<u32> = Fetcher::new(&Config::from_json(inline.to_string().as_bytes()).unwrap());
        assert!(!fetcher.has_remote());
        assert!(fetcher.on_tick(0).is_empty());
    }

    #[test]
    fn a_good_answer_loads_the_keys_and_the_next_fetch_is_due_after_refresh_seconds() {
        for refresh in [1_i64, 60, 600] {
            let mut sim = Sim::new(config(json!({"refresh_seconds": refresh})));
            let (tokens, _) = sim.tick(0);
            let released = sim.answer(0, tokens[0], Some("200"), &jwks_body()).unwrap();
            assert_eq!(released.outcome, FetchOutcome::KeysLoaded { keys: 1, skipped: 0 });
            assert_eq!(sim.counted, vec![true]);
            assert!(sim.keys.has_keys(0));
            assert_eq!(sim.keys.generation(0), 1);
            assert_eq!(sim.tick(refresh - 1).0, Vec::<u32>::new(), "refresh {refresh}: not yet due");
            let (tokens, _) = sim.tick(1);
            assert_eq!(tokens.len(), 1, "refresh {refresh}: due");
            sim.answer(0, tokens[0], Some("200"), &jwks_body()).unwrap();
            assert_eq!(sim.keys.generation(0), 2, "refresh {refresh}: the set is replaced");
        }
    }

    #[test]
    fn a_failed_fetch_keeps_the_previous_keys_and_is_retried_after_five_seconds_at_most_refresh() {
        let not_json: &[u8] = b"not json";
        let no_usable_key = json!({"keys": []}).to_string().into_bytes();
        let symmetric = json!({"keys": [{"kty": "oct", "alg": "HS256", "k": "AAAA"}]}).to_string().into_bytes();
        for (refresh, status, body, retry_after, why) in [
            (600, Some("500"), jwks_body(), RETRY_SECONDS, "HTTP status 500"),
            (600, None, Vec::new(), RETRY_SECONDS, "HTTP status none"),
            (600, Some("200"), not_json.to_vec(), RETRY_SECONDS, "not a JSON object"),
            (600, Some("200"), no_usable_key, RETRY_SECONDS, "no usable signing key"),
            (600, Some("200"), symmetric, RETRY_SECONDS, "symmetric keys are never accepted"),
            (2, Some("503"), Vec::new(), 2, "HTTP status 503"),
        ] {
            let mut sim = Sim::new(config(json!({"refresh_seconds": refresh})));
            let (tokens, _) = sim.tick(0);
            sim.answer(0, tokens[0], Some("200"), &jwks_body()).unwrap();
            let (tokens, _) = sim.tick(refresh);
            let released = sim.answer(0, tokens[0], status, &body).unwrap();
            match &released.outcome {
                FetchOutcome::KeysRefused { reason } => assert!(reason.contains(why), "want {why:?} in {reason:?}"),
                other => panic!("{why}: {other:?}"),
            }
            assert_eq!(sim.counted, vec![true, false], "{why}");
            assert!(sim.keys.has_keys(0), "{why}: the previous keys stay");
            assert_eq!(sim.keys.generation(0), 1, "{why}: the previous keys stay");
            assert_eq!(sim.tick(retry_after - 1).0, Vec::<u32>::new(), "{why}: not retried before {retry_after} s");
            assert_eq!(sim.tick(1).0.len(), 1, "{why}: retried after {retry_after} s");
        }
    }

    #[test]
    fn a_refetch_for_an_unknown_kid_is_rate_limited_by_min_refetch_seconds() {
        // (min_refetch_seconds, seconds after the previous refetch started, whether another starts)
        for (min, after, starts) in [(30, 0, false), (30, 29, false), (30, 30, true), (30, 100, true), (0, 0, true)] {
            let mut sim = Sim::new(config(json!({"min_refetch_seconds": min})));
            let (tokens, _) = sim.tick(0);
            sim.answer(0, tokens[0], Some("200"), &jwks_body()).unwrap();
            // The first unknown kid refetches at once, whatever the start-up fetch.
            let WaitDecision::Start(first) = sim.wait(0, 1) else { panic!("min {min}: no first refetch") };
            let token = sim.dispatch(first);
            sim.answer(0, token, Some("200"), &jwks_body()).unwrap();
            match sim.wait(after, 2) {
                WaitDecision::Start(request) => {
                    assert!(starts, "min {min}, after {after}: started");
                    assert_eq!(request.kind, FetchKind::Keys);
                    let token = sim.dispatch(request);
                    // A second unknown kid while it is in flight joins it, however often.
                    assert_eq!(sim.wait(0, 3), WaitDecision::Wait);
                    assert_eq!(sim.wait(0, 4), WaitDecision::Wait);
                    let released = sim.answer(0, token, Some("200"), &jwks_body()).unwrap();
                    assert_eq!(released.waiters, vec![2, 3, 4]);
                    // And the next one is limited again (min 0: never).
                    let again = sim.wait(0, 5);
                    assert_eq!(matches!(again, WaitDecision::Start(_)), min == 0, "{again:?}");
                }
                decision => {
                    assert!(!starts, "min {min}, after {after}: {decision:?}");
                    assert_eq!(decision, WaitDecision::DoNotWait);
                    assert_eq!(sim.calls.len(), 2, "no call");
                }
            }
        }
    }

    /// Issue 24, item 7: only on-demand refetches count against
    /// `min_refetch_seconds`. A key published right after the start-up or a
    /// periodic fetch is fetched by the first token that names it; a flood of
    /// unknown kids still brings one fetch per `min_refetch_seconds`.
    #[test]
    fn start_up_and_periodic_fetches_do_not_delay_a_refetch() {
        let mut sim = Sim::new(config(json!({"refresh_seconds": 60, "min_refetch_seconds": 30})));
        // Start-up fetch at 0; an unknown kid one second later refetches at once.
        let (tokens, _) = sim.tick(0);
        sim.answer(0, tokens[0], Some("200"), &jwks_body()).unwrap();
        let WaitDecision::Start(request) = sim.wait(1, 1) else { panic!("the start-up fetch delayed the refetch") };
        let token = sim.dispatch(request);
        sim.answer(0, token, Some("200"), &jwks_body()).unwrap();
        // The flood: nothing more until 30 s after that refetch started.
        for dt in [0, 10, 18] {
            assert_eq!(sim.wait(dt, 2), WaitDecision::DoNotWait, "{} s after the refetch", sim.now - 1_000_001);
        }
        // The periodic fetch, due 60 s after the refetch answered (at 61).
        assert_eq!(sim.tick(60 - 28 - 1).0, Vec::<u32>::new());
        let (tokens, _) = sim.tick(1);
        assert_eq!(tokens.len(), 1, "the periodic fetch");
        sim.answer(0, tokens[0], Some("200"), &jwks_body()).unwrap();
        // One second after the periodic fetch: a refetch starts (60 s after the last refetch).
        let WaitDecision::Start(request) = sim.wait(1, 3) else { panic!("the periodic fetch delayed the refetch") };
        assert_eq!(request.kind, FetchKind::Keys);
        let token = sim.dispatch(request);
        sim.answer(0, token, Some("200"), &jwks_body()).unwrap();
        assert_eq!(sim.wait(1, 4), WaitDecision::DoNotWait, "limited by that refetch");
        // A retry after a failed fetch does not count either.
        let mut failing = Sim::new(config(json!({"min_refetch_seconds": 30})));
        let (tokens, _) = failing.tick(0);
        failing.answer(0, tokens[0], Some("500"), b"").unwrap();
        let (tokens, _) = failing.tick(RETRY_SECONDS);
        failing.answer(0, tokens[0], Some("200"), &jwks_body()).unwrap();
        assert!(matches!(failing.wait(0, 1), WaitDecision::Start(_)), "the retry delayed the refetch");
    }

    #[test]
    fn requests_that_arrive_while_a_call_is_in_flight_wait_for_its_answer() {
        // Whatever the answer, every waiter is released by it, in arrival order.
        for (status, body, ok) in [(Some("200"), jwks_body(), true), (Some("404"), Vec::new(), false)] {
            let mut sim = Sim::new(config(json!({})));
            let (tokens, _) = sim.tick(0);
            for waiter in [11, 12, 13] {
                assert_eq!(sim.wait(0, waiter), WaitDecision::Wait);
            }
            let released = sim.answer(1, tokens[0], status, &body).unwrap();
            assert_eq!(released.waiters, vec![11, 12, 13]);
            assert_eq!((released.outcome.fetch_ok(), released.start), (Some(ok), None));
            // Released once: the next answer (of the next call) has no waiters left.
            let (tokens, _) = sim.tick(600);
            assert_eq!(sim.answer(0, tokens[0], Some("200"), &jwks_body()).unwrap().waiters, Vec::<u32>::new());
        }
    }

    #[test]
    fn a_call_that_never_answers_is_given_up_after_its_timeout_plus_two_seconds() {
        // (timeout_ms, seconds after which it is given up)
        for (timeout_ms, stale) in [(100, 2), (500, 2), (2000, 4), (60_000, 62)] {
            let mut sim = Sim::new(config(json!({"timeout_ms": timeout_ms, "min_refetch_seconds": 0})));
            let (tokens, _) = sim.tick(0);
            assert_eq!(sim.wait(0, 21), WaitDecision::Wait);
            assert_eq!(sim.tick(stale), (vec![], vec![]), "timeout {timeout_ms} ms: kept {stale} s");
            let (retry, released) = sim.tick(1);
            assert_eq!(released, vec![21], "timeout {timeout_ms} ms: its waiter is decided again");
            assert_eq!(sim.counted, vec![false], "counted as a failed fetch");
            assert_eq!(retry.len(), 1, "a new call at once");
            // The late answer of the given-up call is ignored; the new call's is not.
            assert!(sim.answer(0, tokens[0], Some("200"), &jwks_body()).is_none());
            assert!(!sim.keys.has_keys(0));
            assert!(sim.answer(0, retry[0], Some("200"), &jwks_body()).is_some());
            assert!(sim.keys.has_keys(0));
        }
    }

    #[test]
    fn a_call_that_cannot_be_dispatched_is_a_failed_fetch_retried_after_five_seconds() {
        // From the tick: nobody waits; retried by the tick.
        let mut sim = Sim::new(config(json!({"min_refetch_seconds": 0})));
        let Some(Command::Dispatch(request)) = sim.fetcher.on_tick(sim.now).pop() else { panic!("no call") };
        let released = sim.fetcher.on_dispatch_failed(request.provider, sim.now);
        assert_eq!((released.outcome.fetch_ok(), released.waiters), (Some(false), vec![]));
        assert_eq!(sim.tick(RETRY_SECONDS - 1).0, Vec::<u32>::new());
        let (tokens, _) = sim.tick(1);
        assert_eq!(tokens.len(), 1);
        sim.answer(0, tokens[0], Some("200"), &jwks_body()).unwrap();
        // From a request: the request that started it is released (decided without waiting).
        let WaitDecision::Start(request) = sim.wait(0, 31) else { panic!("no refetch") };
        let released = sim.fetcher.on_dispatch_failed(request.provider, sim.now);
        assert_eq!((released.outcome, released.waiters), (FetchOutcome::NotDispatched, vec![31]));
        // Nothing is in flight: the next request may start a fetch at once (min 0).
        assert!(matches!(sim.wait(0, 32), WaitDecision::Start(_)));
    }

    #[test]
    fn discovery_finds_the_jwks_path_then_the_keys_are_fetched_there() {
        let mut sim = Sim::new(config(json!({"discovery_path": DISCOVERY, "refresh_seconds": 60})));
        let (tokens, _) = sim.tick(0);
        assert_eq!((sim.last_call().1.kind, sim.last_call().1.path.as_str()), (FetchKind::Discovery, DISCOVERY));
        assert_eq!(sim.wait(0, 41), WaitDecision::Wait);
        let doc = discovery_body(ISS, "https://idp.example.com/protocol/certs?v=1#frag");
        let released = sim.answer(0, tokens[0], Some("200"), &doc).unwrap();
        assert_eq!(released.outcome, FetchOutcome::Discovered { jwks_path: "/protocol/certs?v=1".into() });
        assert_eq!(released.outcome.fetch_ok(), None, "not counted: the fetch goes on");
        assert!(sim.counted.is_empty());
        assert_eq!(released.waiters, Vec::<u32>::new(), "the waiters wait for the key fetch");
        let (token, request) = sim.last_call();
        assert_eq!(
            (request.kind, request.path.as_str(), request.cluster.as_str()),
            (FetchKind::Keys, "/protocol/certs?v=1", "idp")
        );
        // Requests arriving now wait for the key fetch too.
        assert_eq!(sim.wait(0, 42), WaitDecision::Wait);
        let released = sim.answer(0, token, Some("200"), &jwks_body()).unwrap();
        assert_eq!(released.waiters, vec![41, 42]);
        assert_eq!(sim.counted, vec![true]);
        assert!(sim.keys.has_keys(0));
        // The path is remembered: the periodic refresh fetches the keys directly.
        sim.tick(60);
        assert_eq!((sim.last_call().1.kind, sim.last_call().1.path.as_str()), (FetchKind::Keys, "/protocol/certs?v=1"));
    }

    #[test]
    fn a_refused_discovery_is_a_failed_fetch_never_a_key_set_and_is_looked_up_again() {
        let keys = json!({"keys": [jwk("k1")]});
        let with_keys = |mut doc: Value| {
            doc["keys"] = keys["keys"].clone();
            doc.to_string().into_bytes()
        };
        for (status, body, why) in [
            (Some("404"), jwks_body(), "HTTP status 404"),
            (None, Vec::new(), "HTTP status none"),
            (Some("200"), jwks_body(), "no `issuer`"),
            (Some("200"), b"not json".to_vec(), "not a JSON object"),
            (
                Some("200"),
                with_keys(json!({"issuer": "https://evil.example", "jwks_uri": "https://idp.example.com/k"})),
                "another issuer",
            ),
            (
                Some("200"),
                with_keys(json!({"issuer": ISS, "jwks_uri": "https://evil.example/keys"})),
                "not on the configured authority",
            ),
            (Some("200"), with_keys(json!({"issuer": ISS})), "no `jwks_uri`"),
        ] {
            let mut sim = Sim::new(config(json!({"discovery_path": DISCOVERY})));
            let (tokens, _) = sim.tick(0);
            assert_eq!(sim.wait(0, 51), WaitDecision::Wait);
            let released = sim.answer(0, tokens[0], status, &body).unwrap();
            match &released.outcome {
                FetchOutcome::DiscoveryRefused { reason } => {
                    assert!(reason.contains(why), "want {why:?} in {reason:?}")
                }
                other => panic!("{why}: {other:?}"),
            }
            assert_eq!((released.waiters, released.start), (vec![51], None), "{why}");
            assert_eq!(sim.counted, vec![false], "{why}: a failed fetch");
            assert!(!sim.keys.has_keys(0), "{why}: never a key set");
            assert_eq!(sim.calls.len(), 1, "{why}: no key fetch");
            sim.tick(RETRY_SECONDS);
            assert_eq!(sim.last_call().1.kind, FetchKind::Discovery, "{why}: looked up again");
        }
    }

    #[test]
    fn after_a_refused_key_set_discovery_is_looked_up_again_and_the_keys_stay() {
        let mut sim = Sim::new(config(json!({"discovery_path": DISCOVERY, "refresh_seconds": 60})));
        let doc = discovery_body(ISS, "https://idp.example.com/certs");
        let (tokens, _) = sim.tick(0);
        sim.answer(0, tokens[0], Some("200"), &doc).unwrap();
        sim.answer(0, sim.last_call().0, Some("200"), &jwks_body()).unwrap();
        sim.tick(60);
        assert_eq!(sim.last_call().1.kind, FetchKind::Keys);
        let released = sim.answer(0, sim.last_call().0, Some("500"), b"").unwrap();
        assert_eq!(released.outcome, FetchOutcome::KeysRefused { reason: "HTTP status 500".into() });
        assert_eq!(sim.counted, vec![true, false]);
        assert!(sim.keys.has_keys(0) && sim.keys.generation(0) == 1, "the previous keys stay");
        sim.tick(RETRY_SECONDS);
        assert_eq!((sim.last_call().1.kind, sim.last_call().1.path.as_str()), (FetchKind::Discovery, DISCOVERY));
    }

    #[test]
    fn an_answer_to_an_unknown_or_undispatched_call_is_ignored() {
        let mut sim = Sim::new(config(json!({})));
        assert!(sim.answer(0, 99, Some("200"), &jwks_body()).is_none());
        // A call handed out but not yet reported carries no token yet.
        let Some(Command::Dispatch(_)) = sim.fetcher.on_tick(sim.now).pop() else { panic!("no call") };
        assert!(sim.answer(0, 1, Some("200"), &jwks_body()).is_none());
        assert!(!sim.keys.has_keys(0) && sim.counted.is_empty());
    }
}
