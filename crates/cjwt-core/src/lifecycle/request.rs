//! Every step a request can take, in one place (the shape of quinn-proto or
//! rustls' unbuffered API: the core returns what to do next, the adapter does
//! the I/O and comes back with what happened).
//!
//! ```text
//!   start ─────────────────────────────────────────► Act(plan)          (decided)
//!     │ refused only because a provider lacks keys
//!     └─► KeysMissing ─ the adapter asks its remote ─► on_key_wait(answer)
//!            DoNotWait ─► Act(refusal)
//!            DecideAgain (keys taken over) ─► decided again (3 times at most)
//!            Wait ─► AwaitKeys ─ the fetch ends ─► on_keys ─► Act | AwaitStore
//!     │ allowed but for its use (usage_store)
//!     └─► AwaitStore(call) ─ answer ─► on_answer ─► AwaitStore(next call) | Act
//!                          ─ not sent, timed out, lost ─► on_store_failure ─► Act(503)
//!     │ allowed, its Txn-Token to be exchanged (transaction_tokens.issue.exchange)
//!     └─► AwaitStore(exchange call) ─ answer ─► on_answer ─► verified ─► AwaitStore(use) | Act
//!                                             ─ refused ─► Act(503 txn_exchange_invalid)
//!                          ─ not sent, timed out, lost ─► on_store_failure ─► Act(503 txn_service_unavailable)
//! ```
//!
//! A decision that spends a leased use and leaves the allowance below its
//! low-water mark also starts a background refill, which the request does not
//! wait for: the adapter takes it with [`RequestFlow::take_refill`] after each
//! step and sends it as its own call ([`crate::lifecycle::refill`]).
//!
//! The exchange at the Txn-Token Service is one more call of the same shape
//! as the store's ([`StoreCall`], with its own content type): the adapters
//! send it, match its answer and time it out exactly as a store call.
//!
//! A [`RequestFlow`] is one stream's state. The adapter keeps it while the
//! request is paused, executes each [`Step`], and calls the flow back with the
//! host's answer: whether its remote lets the request wait for keys
//! ([`RequestFlow::on_key_wait`], asked with no key store borrowed, so that the
//! remote may install keys), keys arrived ([`RequestFlow::on_keys`]), the store
//! or the Txn-Token Service answered ([`RequestFlow::on_answer`]) or did not
//! ([`RequestFlow::on_store_failure`]).
//! Nothing here touches a host: the request comes through [`Host`], keys,
//! crypto, counts and proofs through the traits in [`Env`], time in
//! milliseconds as an argument. `cjwt explain` drives the same flow.
//!
//! Both adapters drive it the same way, so [`RequestFlow::drive`] does it for
//! them: given what happened ([`Event`]) and the host's calls ([`FlowHost`]),
//! it takes steps until the request is paused or acted on: asks for keys,
//! sends each call (one that cannot be sent is the flow's failure at once),
//! hands out every background refill, executes the plan.

use crate::config::EtcdStore;
use crate::engine::{refuse_allowed, settle, Engine, Outcome};
use crate::keys::host_crypto::HostCrypto;
use crate::lifecycle::refill::Refill;
use crate::outcome::metrics::Counter;
use crate::outcome::plan::{self, Plan};
use crate::outcome::Level;
use crate::request::host::Host;
use crate::sender::replay::ReplayCache;
use crate::token::verify::KeyLookup;
use crate::txn::exchange::{self, Failure, Pending};
use crate::usage::etcd::{EtcdCall, EtcdReply, Step as UseStep, UseAnswer, UseCall, MAX_ANSWER_BYTES};
use crate::usage::grpc;
use crate::usage::UsageCounter;

/// What the host offers one decision: the request, the keys, signature
/// verification, the per-Envoy `max_uses` counter and DPoP replay cache.
pub struct Env<'a> {
    /// The request being decided.
    pub host: &'a dyn Host,
    /// Inline and fetched keys, and status lists.
    pub keys: &'a dyn KeyLookup,
    /// The host's signature verification ([`HostCrypto::calls`] counts `cjwt.verify.host`).
    pub crypto: &'a dyn HostCrypto,
    /// `max_uses` without a `usage_store`.
    pub counter: &'a mut dyn UsageCounter,
    /// DPoP proof ids, without `replay_cache.store: "usage_store"`.
    pub replay: &'a mut dyn ReplayCache,
}

/// Whether a request refused only because a provider lacks its keys waits for
/// a key fetch: the adapter's remote answers [`Step::KeysMissing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyWait {
    /// The request was registered as waiting: pause it; it is woken when the
    /// fetch ends ([`RequestFlow::on_keys`]).
    Wait,
    /// No fetch can help now (refetched too recently, no remote source): act on the refusal.
    DoNotWait,
    /// Keys arrived meanwhile (another worker's set was taken over): decide again now.
    DecideAgain,
}

/// One call through an Envoy cluster, to the usage store (etcd's gRPC API or
/// its JSON gateway) or to the Txn-Token Service (an RFC 8693 exchange): `POST path` with
/// `body` of `content_type`, answered within `timeout_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCall {
    /// The Envoy cluster of the store.
    pub cluster: String,
    /// The call's `:authority`.
    pub authority: String,
    /// The call's `:path`.
    pub path: String,
    /// The body.
    pub body: Vec<u8>,
    /// The body's media type: `application/grpc` or `application/json` (the
    /// store), `application/x-www-form-urlencoded` (the exchange).
    pub content_type: &'static str,
    /// What is left of the store's `timeout_ms` (at least 1).
    pub timeout_ms: u64,
    /// Whether the use records a DPoP proof (a replay is refused `dpop_replay`;
    /// false for the exchange).
    pub records_proof: bool,
    /// Whether the use counts a `max_uses` use (exhausted is refused
    /// `max_uses`; false for the exchange).
    pub counts_use: bool,
}

impl StoreCall {
    /// The largest answer read (the store's and the exchange's); a longer one
    /// is not read and the use (or the exchange) is unavailable.
    pub const MAX_ANSWER_BYTES: usize = exchange::MAX_ANSWER_BYTES;

    /// The call's request headers (a gRPC call adds `te: trailers`).
    pub fn headers(&self) -> Vec<(&str, &str)> {
        let mut headers = vec![
            (":method", "POST"),
            (":path", self.path.as_str()),
            (":authority", self.authority.as_str()),
            ("content-type", self.content_type),
        ];
        if self.is_grpc() {
            headers.push(("te", "trailers"));
        }
        headers
    }

    /// Whether the call is a gRPC call (its answer's `grpc-status` and
    /// `grpc-message`, from headers or trailers, go to [`RequestFlow::on_reply`]).
    pub fn is_grpc(&self) -> bool {
        self.content_type == grpc::CONTENT_TYPE
    }
}

/// What the adapter does next for one request.
#[derive(Debug)]
pub enum Step {
    /// Execute the plan (forward or refuse); the flow is over.
    Act(Plan),
    /// The request is refused only because `provider` lacks its keys. Ask the
    /// remote (key store not borrowed) whether the request waits for a fetch
    /// and pass the answer to [`RequestFlow::on_key_wait`].
    KeysMissing {
        /// The provider (index) whose keys are missing.
        provider: usize,
    },
    /// Keep the request paused until the key fetch it waits for ends; then
    /// call [`RequestFlow::on_keys`].
    AwaitKeys,
    /// Send this call (to the usage store or the Txn-Token Service), keep the
    /// request paused, and pass the answer to [`RequestFlow::on_answer`] (or a
    /// failure to send or to answer to [`RequestFlow::on_store_failure`]).
    AwaitStore(StoreCall),
    /// Nothing to do: the call was out of place (woken twice, an answer to a
    /// request no longer waiting). The request stays as it is.
    Nothing,
}

/// What happened to a request, for [`RequestFlow::drive`].
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Its headers arrived: decide it.
    Start,
    /// The key fetch it waited for ended ([`RequestFlow::on_keys`]).
    Keys,
    /// Its call was answered: the reply, and the body's length as the host
    /// holds it ([`RequestFlow::on_reply`]).
    Reply(&'a EtcdReply<'a>, usize),
    /// Its call's answer will not come: why, for the log ([`RequestFlow::on_store_failure`]).
    Lost(&'a str),
}

/// Where [`RequestFlow::drive`] left the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flowed {
    /// Paused: waiting for keys or for a call's answer.
    Paused,
    /// Acted on: it goes upstream.
    Allowed,
    /// Acted on: refused (or the host failed, [`FlowHost::fail`]).
    Refused,
    /// The event was out of place (woken twice, an answer to a request no
    /// longer waiting): nothing was done.
    Nothing,
}

/// The host's calls for one request, as [`RequestFlow::drive`] makes them.
pub trait FlowHost {
    /// Runs `step` with the engine and what the core reads for one decision
    /// ([`Env`]); `None` when the host cannot (the request is refused, [`FlowHost::fail`]).
    fn with_env(&mut self, step: &mut dyn FnMut(&mut Engine, Env<'_>) -> Step) -> Option<Step>;
    /// Whether the request waits for `provider`'s keys: the adapter's
    /// [`crate::Remote::wait_for_keys`], asked with no key store borrowed.
    fn wait_for_keys(&mut self, provider: usize) -> KeyWait;
    /// Sends `call` for the request, whose answer comes back as
    /// [`Event::Reply`] (or [`Event::Lost`]); why not, when it cannot be sent.
    fn send(&mut self, call: &StoreCall) -> Result<(), String>;
    /// A background refill the decision started: sent as the host's own call,
    /// never the request's ([`crate::lifecycle::refill`]).
    fn refill(&mut self, refill: Refill);
    /// Executes the plan (forward or refuse): whether the request goes upstream.
    fn act(&mut self, plan: Plan) -> bool;
    /// Refuses the request with 503: the host could not run the flow.
    fn fail(&mut self);
    /// The host clock in Unix milliseconds.
    fn now_ms(&self) -> u64;
}

/// Where a request is.
#[derive(Debug, Default)]
enum State {
    /// Not decided yet.
    #[default]
    Deciding,
    /// Refused for missing keys, the remote being asked.
    Missing(Box<Missing>),
    /// Paused for a key fetch (decided again from scratch when it ends).
    Keys,
    /// Paused for the usage store.
    Store(Box<StoreWait>),
    /// Paused for the Txn-Token Service.
    Exchange(Box<ExchangeWait>),
    /// Acted on.
    Done,
}

#[derive(Debug)]
struct Missing {
    outcome: Outcome,
    verified_by_host: u64,
    /// Key sets taken over so far (see [`MAX_TAKEOVERS`]).
    takeovers: usize,
}

#[derive(Debug)]
struct StoreWait {
    outcome: Outcome,
    call: UseCall,
    store: EtcdStore,
    deadline_ms: u64,
    /// `cjwt.verify.host` counts of the decision, for the final plan.
    verified_by_host: u64,
}

#[derive(Debug)]
struct ExchangeWait {
    outcome: Outcome,
    pending: Pending,
    deadline_ms: u64,
    verified_by_host: u64,
}

/// One request's lifecycle (see the module's documentation).
#[derive(Debug, Default)]
pub struct RequestFlow {
    state: State,
    /// A leased allowance's background batch this request's decision started
    /// ([`RequestFlow::take_refill`]).
    refill: Option<Refill>,
    /// Whether [`RequestFlow::drive`] last acted on the request by letting it go upstream.
    allowed: bool,
}

/// How much longer than its deadline a store call may stay unanswered before
/// [`RequestFlow::store_overdue`] says its answer was lost.
pub const LOST_ANSWER_GRACE_MS: u64 = 1000;

/// How many key sets taken over from other workers decide one request again
/// (each takeover is of a newer set); then it is acted on as it stands.
const MAX_TAKEOVERS: usize = 3;

impl RequestFlow {
    /// A request not decided yet.
    pub fn new() -> RequestFlow {
        RequestFlow::default()
    }

    /// The request's headers arrived: decide it.
    pub fn start(&mut self, engine: &mut Engine, env: Env<'_>, now_ms: u64) -> Step {
        match self.state {
            State::Deciding => self.decide(engine, env, true, 0, now_ms),
            State::Missing(_) | State::Keys | State::Store(_) | State::Exchange(_) | State::Done => Step::Nothing,
        }
    }

    /// The remote's answer to [`Step::KeysMissing`].
    pub fn on_key_wait(&mut self, engine: &mut Engine, env: Env<'_>, wait: KeyWait, now_ms: u64) -> Step {
        let State::Missing(missing) = std::mem::replace(&mut self.state, State::Done) else {
            return Step::Nothing;
        };
        match wait {
            KeyWait::Wait => {
                self.state = State::Keys;
                Step::AwaitKeys
            }
            KeyWait::DecideAgain if missing.takeovers < MAX_TAKEOVERS => {
                self.decide(engine, env, true, missing.takeovers.saturating_add(1), now_ms)
            }
            KeyWait::DecideAgain | KeyWait::DoNotWait => {
                let Missing { outcome, verified_by_host, .. } = *missing;
                self.act(engine, &outcome, env.host, verified_by_host, None)
            }
        }
    }

    /// The key fetch the request waited for ended (keys or not): decide again,
    /// without waiting a second time.
    pub fn on_keys(&mut self, engine: &mut Engine, env: Env<'_>, now_ms: u64) -> Step {
        match self.state {
            State::Keys => self.decide(engine, env, false, 0, now_ms),
            // Woken twice, or not waiting for keys: nothing to do.
            State::Deciding | State::Missing(_) | State::Store(_) | State::Exchange(_) | State::Done => Step::Nothing,
        }
    }

    /// Takes the flow's steps after `event` with the host's calls, until the
    /// request is paused or acted on (see the module's documentation).
    pub fn drive(&mut self, event: Event<'_>, host: &mut dyn FlowHost) -> Flowed {
        let now = host.now_ms();
        let mut step = host.with_env(&mut |engine, env| match event {
            Event::Start => self.start(engine, env, now),
            Event::Keys => self.on_keys(engine, env, now),
            Event::Reply(reply, body_len) => self.on_reply(engine, env, reply, body_len, now),
            Event::Lost(why) => self.on_store_failure(engine, env.host, why),
        });
        if matches!(step, Some(Step::Nothing)) {
            return Flowed::Nothing;
        }
        loop {
            if let Some(refill) = self.take_refill() {
                host.refill(refill);
            }
            step = match step {
                Some(Step::Act(plan)) => {
                    self.allowed = host.act(plan);
                    return if self.allowed { Flowed::Allowed } else { Flowed::Refused };
                }
                Some(Step::AwaitKeys | Step::Nothing) => return Flowed::Paused,
                Some(Step::KeysMissing { provider }) => {
                    // Another worker's set taken over (decide again), a fetch to wait for, or neither.
                    let wait = host.wait_for_keys(provider);
                    let now = host.now_ms();
                    host.with_env(&mut |engine, env| self.on_key_wait(engine, env, wait, now))
                }
                Some(Step::AwaitStore(call)) => match host.send(&call) {
                    Ok(()) => return Flowed::Paused,
                    Err(why) => host.with_env(&mut |engine, env| self.on_store_failure(engine, env.host, &why)),
                },
                None => {
                    host.fail();
                    self.allowed = false;
                    return Flowed::Refused;
                }
            };
        }
    }

    /// The background refill this request's decision started, if any: the
    /// adapter takes it after each step and sends it as its own call (never
    /// the stream's, which may end first; see [`crate::lifecycle::refill`]).
    /// The request does not wait for it.
    pub fn take_refill(&mut self) -> Option<Refill> {
        self.refill.take()
    }

    /// Whether [`RequestFlow::drive`] let the request go upstream (the last
    /// time it acted on it): until then the adapter holds its body and trailers.
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// Whether the request is paused for a call: the usage store or the Txn-Token Service.
    pub fn awaits_store(&self) -> bool {
        matches!(self.state, State::Store(_) | State::Exchange(_))
    }

    /// Whether the store call in flight is overdue by more than
    /// [`LOST_ANSWER_GRACE_MS`] at `now_ms`: its answer was lost (the context
    /// that received it ended) and [`RequestFlow::on_store_failure`] settles it.
    pub fn store_overdue(&self, now_ms: u64) -> bool {
        match &self.state {
            State::Store(wait) => wait.deadline_ms.saturating_add(LOST_ANSWER_GRACE_MS) < now_ms,
            State::Exchange(wait) => wait.deadline_ms.saturating_add(LOST_ANSWER_GRACE_MS) < now_ms,
            State::Deciding | State::Missing(_) | State::Keys | State::Done => false,
        }
    }

    fn decide(&mut self, engine: &mut Engine, env: Env<'_>, may_wait: bool, takeovers: usize, now_ms: u64) -> Step {
        let Env { host, keys, crypto, counter, replay } = env;
        if let Some(plan) = plan::protected_resource(engine.config(), host) {
            self.state = State::Done;
            return Step::Act(plan);
        }
        let before = crypto.calls();
        let mut outcome = engine.decide_with(host, keys, crypto, counter, replay);
        let verified_by_host = crypto.calls().saturating_sub(before);
        if let (Some(call), Some(store)) = (outcome.pending_refill.take(), engine.config().usage_store.as_ref()) {
            self.refill = Some(Refill::new(call, store, now_ms));
        }
        if let Some(provider) = plan::awaits_keys(&outcome.decision).filter(|_| may_wait) {
            self.state = State::Missing(Box::new(Missing { outcome, verified_by_host, takeovers }));
            return Step::KeysMissing { provider };
        }
        let exchange = engine.config().txn_issue.as_ref().and_then(|i| i.exchange.clone());
        if let (Some(pending), Some(x)) = (outcome.pending_exchange.take(), exchange) {
            let call = StoreCall {
                cluster: x.cluster,
                authority: x.authority,
                path: x.path,
                body: pending.body.clone().into_bytes(),
                content_type: exchange::FORM,
                timeout_ms: x.timeout_ms.max(1),
                records_proof: false,
                counts_use: false,
            };
            let deadline_ms = now_ms.saturating_add(x.timeout_ms);
            self.state = State::Exchange(Box::new(ExchangeWait { outcome, pending, deadline_ms, verified_by_host }));
            return Step::AwaitStore(call);
        }
        self.after_exchange(engine, host, outcome, verified_by_host, now_ms)
    }

    /// The decision holds but for its use: ask the store, or act.
    fn after_exchange(
        &mut self,
        engine: &Engine,
        host: &dyn Host,
        mut outcome: Outcome,
        verified_by_host: u64,
        now_ms: u64,
    ) -> Step {
        match (outcome.pending_use.take(), engine.config().usage_store.clone()) {
            (Some(call), Some(store)) => {
                let deadline_ms = now_ms.saturating_add(store.timeout_ms);
                let first = call.first();
                let wait = StoreWait { outcome, call, store, deadline_ms, verified_by_host };
                let step = Step::AwaitStore(wait.call_for(first, wait.store.timeout_ms));
                self.state = State::Store(Box::new(wait));
                step
            }
            // A use without a store (a configuration built by hand): `plan` refuses it.
            (pending, _) => {
                outcome.pending_use = pending;
                self.act(engine, &outcome, host, verified_by_host, None)
            }
        }
    }

    /// The call last handed out was answered (the usage store's or the
    /// Txn-Token Service's): HTTP `status` (`None` when the call failed without
    /// one) and `body`, of `body_len` bytes in all (an answer over
    /// [`StoreCall::MAX_ANSWER_BYTES`] is not read: pass what was read). `env`
    /// verifies an exchanged Txn-Token (its keys and crypto). A gRPC call's
    /// answer goes to [`RequestFlow::on_reply`], with its `grpc-status`.
    pub fn on_answer(
        &mut self,
        engine: &Engine,
        env: Env<'_>,
        status: Option<&str>,
        body: &[u8],
        body_len: usize,
        now_ms: u64,
    ) -> Step {
        self.on_reply(engine, env, &EtcdReply::http(status, body), body_len, now_ms)
    }

    /// [`RequestFlow::on_answer`] with all the host gives of the answer: for a
    /// gRPC call ([`StoreCall::is_grpc`]) `grpc-status` and `grpc-message`
    /// from its headers, or its trailers where the host shows them.
    pub fn on_reply(
        &mut self,
        engine: &Engine,
        env: Env<'_>,
        reply: &EtcdReply<'_>,
        body_len: usize,
        now_ms: u64,
    ) -> Step {
        let (status, body) = (reply.status, reply.body);
        if !matches!(self.state, State::Exchange(_)) {
            return self.on_store_reply(engine, env.host, env.counter, reply, body_len, now_ms);
        }
        let State::Exchange(wait) = std::mem::replace(&mut self.state, State::Done) else {
            return Step::Nothing;
        };
        let ExchangeWait { mut outcome, pending, verified_by_host, .. } = *wait;
        let config = engine.config();
        let verified = if body_len > exchange::MAX_ANSWER_BYTES || body.len() > exchange::MAX_ANSWER_BYTES {
            Err(Failure::unavailable(format!("an answer of {body_len} bytes is too large")))
        } else {
            let now = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
            exchange::verify_answer(config, env.keys, env.crypto, status, body, &pending, now)
        };
        match verified {
            Ok(token) => {
                outcome.issued = Some(token);
                self.after_exchange(engine, env.host, outcome, verified_by_host, now_ms)
            }
            Err(failure) => self.exchange_failed(engine, env.host, outcome, verified_by_host, &failure),
        }
    }

    /// The usage store answered the call last handed out (see
    /// [`RequestFlow::on_answer`], which the adapters call; this is its form
    /// for a flow that makes no exchange). `counter` is the per-Envoy counter:
    /// an exhausted token is remembered in its deny set
    /// ([`UsageCounter::mark_spent`]), a batch's spare uses join its allowance.
    #[allow(clippy::too_many_arguments)] // the flow's inputs, each used once
    pub fn on_store_answer(
        &mut self,
        engine: &Engine,
        host: &dyn Host,
        counter: &mut dyn UsageCounter,
        status: Option<&str>,
        body: &[u8],
        body_len: usize,
        now_ms: u64,
    ) -> Step {
        self.on_store_reply(engine, host, counter, &EtcdReply::http(status, body), body_len, now_ms)
    }

    /// [`RequestFlow::on_store_answer`] with all the host gives of the answer
    /// (a gRPC call's `grpc-status` and `grpc-message`).
    pub fn on_store_reply(
        &mut self,
        engine: &Engine,
        host: &dyn Host,
        counter: &mut dyn UsageCounter,
        reply: &EtcdReply<'_>,
        body_len: usize,
        now_ms: u64,
    ) -> Step {
        let State::Store(mut wait) = std::mem::replace(&mut self.state, State::Done) else {
            // Not waiting: an answer to nothing is ignored.
            return Step::Nothing;
        };
        let answer = if body_len > MAX_ANSWER_BYTES || reply.body.len() > MAX_ANSWER_BYTES {
            wait.call.on_failure(&format!("answer of {body_len} bytes is too large"))
        } else {
            match wait.call.on_reply(reply) {
                UseStep::Done(answer) => answer,
                UseStep::Send(next) => {
                    let left = wait.deadline_ms.saturating_sub(now_ms);
                    if left == 0 {
                        wait.call.on_failure(&format!("no answer within {} ms", wait.store.timeout_ms))
                    } else {
                        let step = Step::AwaitStore(wait.call_for(next, left));
                        self.state = State::Store(wait);
                        return step;
                    }
                }
            }
        };
        if let Some((id, expires_at)) = wait.call.spent_token() {
            match answer {
                // The free deny path: until it expires, the token is refused here.
                UseAnswer::Exhausted => {
                    counter.mark_spent(&id, expires_at, i64::try_from(now_ms / 1000).unwrap_or(i64::MAX));
                }
                // A batch taken: its spare uses join this Envoy's allowance.
                UseAnswer::Counted if wait.call.takes_batch() => {
                    let (spare, last) = (wait.call.spare().unwrap_or(0), wait.call.written());
                    counter.deposit_allowance(&id, spare, last, expires_at, now_ms);
                }
                UseAnswer::Counted | UseAnswer::Replayed | UseAnswer::Unavailable(_) => {}
            }
        }
        self.settled(engine, host, *wait, &answer)
    }

    /// The call last handed out could not be sent, timed out, or its answer
    /// was lost: the use is unavailable (503 `usage_unavailable`), or the
    /// Txn-Token Service is (503 `txn_service_unavailable`).
    pub fn on_store_failure(&mut self, engine: &Engine, host: &dyn Host, why: &str) -> Step {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Store(mut wait) => {
                let answer = wait.call.on_failure(why);
                self.settled(engine, host, *wait, &answer)
            }
            State::Exchange(wait) => {
                let ExchangeWait { outcome, verified_by_host, .. } = *wait;
                self.exchange_failed(engine, host, outcome, verified_by_host, &Failure::unavailable(why))
            }
            other => {
                self.state = other;
                Step::Nothing
            }
        }
    }

    fn exchange_failed(
        &mut self,
        engine: &Engine,
        host: &dyn Host,
        outcome: Outcome,
        verified_by_host: u64,
        failure: &Failure,
    ) -> Step {
        let warn = format!("cjwt: Txn-Token exchange failed ({}): {}", failure.reason.code(), failure.why);
        let outcome = refuse_allowed(engine.config().mode, outcome, failure.reason);
        self.act(engine, &outcome, host, verified_by_host, Some(warn))
    }

    fn settled(&mut self, engine: &Engine, host: &dyn Host, wait: StoreWait, answer: &UseAnswer) -> Step {
        let StoreWait { outcome, verified_by_host, .. } = wait;
        let warn = match answer {
            UseAnswer::Unavailable(why) => Some(format!("cjwt: usage store unavailable: {why}")),
            UseAnswer::Counted | UseAnswer::Exhausted | UseAnswer::Replayed => None,
        };
        let outcome = settle(engine.config().mode, outcome, answer);
        self.act(engine, &outcome, host, verified_by_host, warn)
    }

    fn act(
        &mut self,
        engine: &Engine,
        outcome: &Outcome,
        host: &dyn Host,
        verified_by_host: u64,
        warn: Option<String>,
    ) -> Step {
        self.state = State::Done;
        let mut plan = plan::plan(engine.config(), outcome, host);
        for _ in 0..verified_by_host {
            plan.counters.push(Counter::VerifyHost);
        }
        if let Some(line) = warn {
            plan.logs.insert(0, (Level::Warn, line));
        }
        Step::Act(plan)
    }
}

impl StoreWait {
    fn call_for(&self, call: EtcdCall, timeout_ms: u64) -> StoreCall {
        StoreCall {
            cluster: self.store.cluster.clone(),
            authority: self.store.authority.clone(),
            path: call.path,
            body: call.body,
            content_type: call.api.content_type(),
            timeout_ms: timeout_ms.max(1),
            records_proof: self.call.records_proof(),
            counts_use: self.call.counts_use(),
        }
    }
}
