//! One HTTP stream: read the request, run the core's request lifecycle
//! (`cjwt_core::lifecycle::request`), and execute its steps with proxy-wasm
//! hostcalls. Nothing here decides.

use super::host::{ProxyHost, SharedData};
use super::remote;
use super::state::{Shared, Waiter};
use super::usage;
use cjwt_core::shared_slots::Slots;
use cjwt_core::{audit_filter_state, Counter, Engine, Env, Level, PlanHost, Refusal, RequestFlow, SpanField, Step};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// One HTTP stream's context.
pub struct CjwtHttp {
    shared: Option<Rc<Shared>>,
    me: Waiter,
}

impl CjwtHttp {
    /// The stream `context_id` of a VM configured with `shared` (`None`: not configured).
    pub fn new(context_id: u32, shared: Option<Rc<Shared>>) -> CjwtHttp {
        CjwtHttp {
            shared,
            me: Waiter {
                context: context_id,
                allowed: Rc::new(Cell::new(false)),
                flow: Rc::new(RefCell::new(RequestFlow::new())),
            },
        }
    }

    /// Body and trailers pass only once the request is allowed; until then
    /// Envoy buffers them (within its buffer limits) or drops them with the refusal.
    fn hold_until_allowed(&self) -> Action {
        if self.me.allowed.get() {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

impl Drop for CjwtHttp {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            usage::forget(shared, self.me.context);
        }
    }
}

impl Context for CjwtHttp {
    fn on_http_call_response(&mut self, token_id: u32, _headers: usize, body_size: usize, trailers: usize) {
        if let Some(shared) = &self.shared {
            on_call_response(shared, token_id, body_size, trailers, Some(self.me.context));
        }
    }
}

impl HttpContext for CjwtHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "fault-injection")]
        fault_injection();
        let Some(shared) = self.shared.clone() else {
            // No configuration: Envoy would not have started; refuse anyway.
            return send(&Refusal::unavailable());
        };
        #[cfg(feature = "vm-bench")]
        if super::vm_bench::answer(&shared) {
            return Action::Pause;
        }
        let action = start(&shared, &self.me);
        self.me.allowed.set(action == Action::Continue);
        action
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        self.hold_until_allowed()
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.hold_until_allowed()
    }
}

/// An HTTP call answered (`stream`: the stream context it was delivered to,
/// `None` for the root): a usage call's or a refill's, else a fetch's.
pub fn on_call_response(shared: &Shared, token: u32, body_size: usize, trailers: usize, stream: Option<u32>) {
    if !usage::on_response(shared, token, body_size, trailers) {
        if let Some(released) = remote::on_response(shared, token, body_size, stream) {
            answer_waiters(shared, released);
        }
    }
}

/// Starts the flow of the current request (`me`) and executes its steps. A
/// request that lacks its provider's keys asks the VM's remote state whether
/// it waits (remote.rs); the requests a key set taken over released are decided
/// after this one.
fn start(shared: &Shared, me: &Waiter) -> Action {
    let Some(host) = ProxyHost::read() else {
        log::error!("cjwt: the host clock cannot be read; refusing");
        return send(&Refusal::unavailable());
    };
    let mut released = Vec::new();
    let step = {
        let Ok(mut flow) = me.flow.try_borrow_mut() else {
            return send(&Refusal::unavailable());
        };
        let mut step = with_env(shared, &host, |engine, env| flow.start(engine, env, usage::now_ms()));
        while let Some(Step::KeysMissing { provider }) = step {
            // Another worker's set taken over (decide again), a fetch to wait for, or neither.
            let (wait, others) = remote::wait_for_keys(shared, provider, me);
            released.extend(others);
            step = with_env(shared, &host, |engine, env| flow.on_key_wait(engine, env, wait, usage::now_ms()));
        }
        step
    };
    let action = run(shared, me, &host, step);
    answer_waiters(shared, released);
    action
}

/// Runs `f` with the engine and what the core reads for one decision.
fn with_env<R>(shared: &Shared, host: &ProxyHost, f: impl FnOnce(&mut Engine, Env<'_>) -> R) -> Option<R> {
    let (Ok(mut engine), Ok(keys)) = (shared.engine.try_borrow_mut(), shared.keys.try_borrow()) else {
        return None;
    };
    let env = Env {
        host,
        keys: &*keys,
        crypto: &shared.crypto,
        counter: &mut Slots(SharedData),
        replay: &mut Slots(SharedData),
    };
    Some(f(&mut engine, env))
}

/// Executes one step of the current request (`me`): act on a plan, stay
/// paused, or send a usage-store call (one that cannot be sent is the flow's
/// failure at once).
fn run(shared: &Shared, me: &Waiter, host: &ProxyHost, step: Option<Step>) -> Action {
    // A background refill the decision started: the VM's own call, not this stream's.
    if let Some(refill) = me.flow.try_borrow_mut().ok().and_then(|mut flow| flow.take_refill()) {
        usage::start_refill(shared, refill, me.context);
    }
    match step {
        // Forward or refuse, through the plan's host calls on this stream.
        Some(Step::Act(plan)) => match plan.execute(&mut Executor(shared)) {
            true => Action::Continue,
            false => Action::Pause,
        },
        Some(Step::AwaitKeys | Step::Nothing) => Action::Pause,
        Some(Step::AwaitStore(call)) => match usage::dispatch(shared, &call, me) {
            Ok(()) => Action::Pause,
            Err(why) => {
                let step = match (me.flow.try_borrow_mut(), shared.engine.try_borrow()) {
                    (Ok(mut flow), Ok(engine)) => Some(flow.on_store_failure(&engine, host, &why)),
                    _ => None,
                };
                run(shared, me, host, step)
            }
        },
        // Answered in `start`; never returned later.
        Some(Step::KeysMissing { .. }) | None => send(&Refusal::unavailable()),
    }
}

/// A paused request (`waiter`) takes its flow's next step with `f` in a later
/// callback: made current (nothing happens if it ended), the step executed, the
/// request resumed if allowed and left paused while the flow waits on.
pub fn wake(shared: &Shared, waiter: &Waiter, f: impl FnOnce(&mut RequestFlow, &mut Engine, Env<'_>) -> Step) {
    if hostcalls::set_effective_context(waiter.context).is_err() {
        return;
    }
    let Some(host) = ProxyHost::read() else {
        waiter.allowed.set(false);
        send(&Refusal::unavailable());
        return;
    };
    let step = match waiter.flow.try_borrow_mut() {
        Ok(mut flow) => with_env(shared, &host, |engine, env| f(&mut flow, engine, env)),
        Err(_) => None,
    };
    if matches!(step, Some(Step::Nothing)) {
        return;
    }
    let action = run(shared, waiter, &host, step);
    if action == Action::Pause && waiter.flow.try_borrow().is_ok_and(|f| f.awaits_store()) {
        return;
    }
    let allowed = action == Action::Continue;
    waiter.allowed.set(allowed);
    if allowed {
        let _ = hostcalls::resume_http_request();
    }
}

/// A plan's host calls on the current stream ([`PlanHost`]).
struct Executor<'a>(&'a Shared);

impl PlanHost for Executor<'_> {
    fn count(&mut self, counter: Counter) {
        self.0.metrics.bump(counter);
    }

    fn log(&mut self, level: Level, line: &str) {
        log_line(level, line);
    }

    /// Filter state `wasm.cjwt.<field>` for the access log (SPEC §12); best effort.
    fn audit(&mut self, field: &'static str, value: &str) {
        let _ = hostcalls::set_property(vec![audit_filter_state(field)], Some(value.as_bytes()));
    }

    /// proxy-wasm has no span call: filter state `wasm.cjwt.span.<field>`, which
    /// the tracer's `custom_tags` read (v3, issue 30); best effort.
    fn span(&mut self, tags: &[(SpanField, String)]) {
        for (field, value) in tags {
            let _ = hostcalls::set_property(vec![field.filter_state()], Some(value.as_bytes()));
        }
    }

    fn set_header(&mut self, name: &str, value: Option<&str>) -> bool {
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value).is_ok()
    }

    fn refuse(&mut self, refusal: &Refusal) {
        send(refusal);
    }
}

/// A core log line at its level.
pub fn log_line(level: Level, line: &str) {
    match level {
        Level::Info => log::info!("{line}"),
        Level::Warn => log::warn!("{line}"),
        Level::Error => log::error!("{line}"),
    }
}

/// Decides again every request that a key fetch released (it waited for the
/// keys), and resumes the ones now allowed; the others get their refusal.
pub fn answer_waiters(shared: &Shared, waiters: Vec<Waiter>) {
    if waiters.is_empty() {
        return;
    }
    for waiter in waiters {
        wake(shared, &waiter, |flow, engine, env| flow.on_keys(engine, env, usage::now_ms()));
    }
    // Back to the root context (the caller's): a fetch started after this must not
    // be dispatched as the last waiter's stream.
    let _ = hostcalls::set_effective_context(shared.root_context);
}

/// Test builds only: trap the VM on demand.
#[cfg(feature = "fault-injection")]
#[allow(clippy::panic)]
fn fault_injection() {
    if let Ok(Some(v)) = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "x-cjwt-fault") {
        if v == b"panic" {
            panic!("cjwt: injected fault");
        }
    }
}

/// Sends a local reply and stops the request; it never reaches the upstream.
fn send(r: &Refusal) -> Action {
    let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _ = hostcalls::send_http_response(r.status, headers, Some(r.body.as_bytes()));
    Action::Pause
}
