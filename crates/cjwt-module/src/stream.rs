//! One HTTP stream: read the request, ask the core, execute the core's plan.

use crate::config::{ModuleConfig, Shared};
use crate::ffi::{log, CalloutAnswer, Filter, Level, HEADERS_CONTINUE, HEADERS_STOP};
use crate::host::NativeHost;
use crate::jwks::{Waiter, EVENT_DISPATCH, EVENT_KEYS};
use cjwt_core::engine::{settle, Outcome};
use cjwt_core::jwks::fetcher::WaitDecision;
use cjwt_core::outcome::metrics::Counter;
use cjwt_core::outcome::plan::{self, Act, Plan};
use cjwt_core::outcome::response::Refusal;
use cjwt_core::usage::etcd::{EtcdCall, Step, UseAnswer, UseCall};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The module's state for one stream.
pub struct Stream {
    shared: Arc<Shared>,
    /// Set once the request may go upstream: until then body and trailers are held.
    allowed: bool,
    /// Set while the request waits (paused) for its provider's keys.
    waiter: Option<Arc<Waiter>>,
    /// Set while the request waits (paused) for the mesh-wide usage store.
    usage: Option<UsageWait>,
}

/// A request waiting for the usage store (SPEC §8 v2): the call in flight (a
/// callout of this stream, answered on its worker, cancelled if it ends).
struct UsageWait {
    callout: u64,
    call: UseCall,
    outcome: Outcome,
    deadline: Instant,
}

/// What deciding a request led to.
enum Next {
    /// Act on this plan now.
    Act(Plan),
    /// The request waits for a key fetch; the stream is woken on its worker.
    Wait,
    /// Allowed but for its use: ask the usage store.
    Count(Box<Outcome>, UseCall),
}

impl Stream {
    /// A new stream of configuration `config`.
    pub fn new(config: &ModuleConfig) -> Stream {
        Stream { shared: Arc::clone(&config.shared), allowed: false, waiter: None, usage: None }
    }

    /// Whether the request was allowed (body and trailers may pass).
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// Request headers: decide and act.
    pub fn on_request_headers(&mut self, f: Filter<'_>) -> u32 {
        #[cfg(feature = "fault-injection")]
        fault_injection(&f);
        let Some(host) = NativeHost::read(f) else {
            log(Level::Error, "cjwt: the clock cannot be read; refusing");
            internal_error(f);
            return HEADERS_STOP;
        };
        match self.decide(f, &host, true) {
            Some(Next::Act(plan)) => self.execute(f, plan),
            Some(Next::Wait) => HEADERS_STOP,
            Some(Next::Count(outcome, call)) => self.count(f, &host, *outcome, call),
            None => {
                internal_error(f);
                HEADERS_STOP
            }
        }
    }

    /// Decides the request. With `may_wait`, a refusal that only lacks its
    /// provider's keys waits for a fetch when the fetcher allows one.
    fn decide(&mut self, f: Filter<'_>, host: &NativeHost<'_>, may_wait: bool) -> Option<Next> {
        let shared = Arc::clone(&self.shared);
        let host_calls = shared.crypto.calls();
        let decided = shared.with_engine(|engine| {
            let mut outcome = {
                let keys = shared.keys.read().ok()?;
                engine.decide_with(host, &*keys, &shared.crypto, &mut { shared.usage }, &mut { shared.replay })
            };
            let waits = plan::awaits_keys(&outcome.decision).filter(|_| may_wait);
            if let Some(call) = outcome.pending_use.take() {
                return Some((waits, Next::Count(Box::new(outcome), call)));
            }
            Some((waits, Next::Act(plan::plan(&engine.config, &outcome, host))))
        });
        let (waits, next) = decided.flatten()?;
        let verified = shared.crypto.calls().saturating_sub(host_calls);
        if verified > 0 {
            if let Some(Some(id)) = shared.counters.get(Counter::VerifyHost.index()) {
                f.increment(*id, verified);
            }
        }
        if let Some(provider) = waits {
            if self.wait_for_keys(f, provider, host) {
                // Counted when it is decided again, not now.
                return Some(Next::Wait);
            }
        }
        Some(next)
    }

    /// Starts counting the use of a request allowed but for it: sends the first
    /// call and pauses; when it cannot be sent, settles as unavailable at once.
    fn count(&mut self, f: Filter<'_>, host: &NativeHost<'_>, outcome: Outcome, call: UseCall) -> u32 {
        let Some(store) = self.shared.with_engine(|e| e.config.usage_store.clone()).flatten() else {
            return self.settle(f, host, outcome, &UseAnswer::Unavailable("no usage store configured".into()));
        };
        let deadline = Instant::now() + Duration::from_millis(store.timeout_ms);
        match send_call(f, &store, &call.first(), store.timeout_ms) {
            Some(callout) => {
                self.usage = Some(UsageWait { callout, call, outcome, deadline });
                HEADERS_STOP
            }
            None => {
                let why = format!("cluster {:?}: callout not started", store.cluster);
                self.settle(f, host, outcome, &UseAnswer::Unavailable(why))
            }
        }
    }

    /// A callout of this stream answered (its worker): the next call of the use,
    /// or the settled decision, acted on and the request resumed if allowed.
    pub fn on_callout_done(&mut self, f: Filter<'_>, callout: u64, answer: CalloutAnswer<'_>) {
        let Some(mut wait) = self.usage.take_if(|w| w.callout == callout) else {
            return;
        };
        let step = if answer.body_len > answer.body.len() {
            Step::Done(wait.call.on_failure(&format!("answer of {} bytes is too large", answer.body_len)))
        } else {
            let status = answer.status.and_then(|s| std::str::from_utf8(s).ok());
            wait.call.on_answer(status, &answer.body)
        };
        let store = self.shared.with_engine(|e| e.config.usage_store.clone()).flatten();
        let answer = match (step, store) {
            (Step::Done(answer), _) => answer,
            (Step::Send(next), Some(store)) => {
                let left = wait.deadline.saturating_duration_since(Instant::now());
                let left_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
                if left_ms == 0 {
                    wait.call.on_failure(&format!("no answer within {} ms", store.timeout_ms))
                } else if let Some(callout) = send_call(f, &store, &next, left_ms) {
                    self.usage = Some(UsageWait { callout, ..wait });
                    return;
                } else {
                    wait.call.on_failure(&format!("cluster {:?}: callout not started", store.cluster))
                }
            }
            (Step::Send(_), None) => wait.call.on_failure("no usage store configured"),
        };
        let Some(host) = NativeHost::read(f) else {
            internal_error(f);
            return;
        };
        if self.settle(f, &host, wait.outcome, &answer) == HEADERS_CONTINUE {
            f.continue_decoding();
        }
    }

    /// Settles `outcome` with the store's answer and executes the plan.
    fn settle(&mut self, f: Filter<'_>, host: &NativeHost<'_>, outcome: Outcome, answer: &UseAnswer) -> u32 {
        if let UseAnswer::Unavailable(why) = answer {
            log(Level::Warn, &format!("cjwt: usage store unavailable: {why}"));
        }
        let plan = self
            .shared
            .with_engine(|engine| plan::plan(&engine.config, &settle(engine.config.mode, outcome, answer), host));
        match plan {
            Some(plan) => self.execute(f, plan),
            None => {
                internal_error(f);
                HEADERS_STOP
            }
        }
    }

    /// Registers this stream as waiting for `provider`'s keys, if the fetcher
    /// lets it wait; a call it starts is queued for the main thread.
    fn wait_for_keys(&mut self, f: Filter<'_>, provider: usize, host: &NativeHost<'_>) -> bool {
        let Some(remote) = &self.shared.remote else {
            return false;
        };
        let waiter = match &self.waiter {
            Some(w) => Arc::clone(w),
            None => match f.scheduler() {
                Some(s) => Waiter::new(s),
                None => return false,
            },
        };
        let decision = match remote.state.lock() {
            Ok(mut state) => {
                let decision = state.fetcher.wait_for_keys(
                    provider,
                    Arc::clone(&waiter),
                    cjwt_core::request::host::Host::now(host),
                );
                if let WaitDecision::Start(request) = &decision {
                    state.queued.push(request.clone());
                }
                decision
            }
            Err(_) => return false,
        };
        match decision {
            WaitDecision::DoNotWait => false,
            WaitDecision::Wait => {
                self.waiter = Some(waiter);
                true
            }
            WaitDecision::Start(_) => {
                self.waiter = Some(waiter);
                self.shared.commit(EVENT_DISPATCH);
                true
            }
        }
    }

    /// A scheduled event on this stream's worker: the keys it waited for arrived
    /// (or the fetch failed). Decide again, without waiting, and act.
    pub fn on_scheduled(&mut self, f: Filter<'_>, event: u64) {
        if event != EVENT_KEYS || self.allowed {
            return;
        }
        let Some(host) = NativeHost::read(f) else {
            internal_error(f);
            return;
        };
        let next = match self.decide(f, &host, false) {
            Some(Next::Act(plan)) => self.execute(f, plan),
            Some(Next::Count(outcome, call)) => self.count(f, &host, *outcome, call),
            Some(Next::Wait) | None => {
                internal_error(f);
                HEADERS_STOP
            }
        };
        // Continue now, or later from the usage store's answer.
        if next == HEADERS_CONTINUE {
            f.continue_decoding();
        }
    }

    /// The stream ended: a fetch that answers later must not wake it.
    pub fn on_complete(&mut self) {
        if let Some(w) = self.waiter.take() {
            w.close();
        }
    }

    fn execute(&mut self, f: Filter<'_>, plan: Plan) -> u32 {
        for counter in &plan.counters {
            bump(&self.shared, &f, *counter);
        }
        if let Some(line) = &plan.log {
            log(Level::Info, line);
        }
        for (field, value) in &plan.audit {
            // Dynamic metadata `cjwt:<field>` for the access log (SPEC §12).
            f.set_metadata("cjwt", field, value);
        }
        match plan.act {
            Act::Forward(ops) => {
                for (name, value) in &ops {
                    if !f.set_request_header(name, value.as_deref().map(str::as_bytes)) {
                        log(Level::Error, "cjwt: could not rewrite request headers; refusing");
                        internal_error(f);
                        return HEADERS_STOP;
                    }
                }
                self.allowed = true;
                HEADERS_CONTINUE
            }
            Act::Refuse(refusal) => {
                send(f, &refusal);
                HEADERS_STOP
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.on_complete();
    }
}

/// One call to the usage store as a callout of this stream.
fn send_call(f: Filter<'_>, store: &cjwt_core::config::EtcdStore, call: &EtcdCall, timeout_ms: u64) -> Option<u64> {
    let headers = [
        (":method", "POST"),
        (":path", call.path.as_str()),
        (":authority", store.authority.as_str()),
        ("content-type", "application/json"),
    ];
    f.callout(&store.cluster, &headers, call.body.as_bytes(), timeout_ms)
}

fn bump(shared: &Shared, f: &Filter<'_>, counter: Counter) {
    if let Some(Some(id)) = shared.counters.get(counter.index()) {
        f.increment(*id, 1);
    }
}

fn send(f: Filter<'_>, refusal: &Refusal) {
    let headers: Vec<(&str, &str)> = refusal.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    f.send_response(u16::try_from(refusal.status).unwrap_or(503), &headers, refusal.body.as_bytes(), "cjwt");
}

/// 503: the request is refused because cjwt cannot decide or act safely.
pub fn internal_error(f: Filter<'_>) {
    send(f, &plan::unavailable());
}

/// Test builds only: panic on demand, to prove a panic answers 503.
#[cfg(feature = "fault-injection")]
#[allow(clippy::panic)]
fn fault_injection(f: &Filter<'_>) {
    if f.request_headers().iter().any(|(n, v)| n == "x-cjwt-fault" && v == b"panic") {
        panic!("cjwt: injected fault");
    }
}
