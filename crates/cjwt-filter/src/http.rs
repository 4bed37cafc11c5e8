//! One HTTP stream: read the request, run the core's request lifecycle
//! (`cjwt_core::lifecycle::request`), and execute its steps with proxy-wasm
//! hostcalls. Nothing here decides.

use super::host::{ProxyHost, SharedData};
use super::remote::{self, Root};
use super::state::{Shared, Waiter};
use super::usage;
use cjwt_core::shared_slots::Slots;
use cjwt_core::{
    audit_filter_state, BackgroundHost, Counter, Engine, Env, Event, FlowHost, Flowed, KeyWait, Level, Plan, PlanHost,
    Refill, Refusal, RequestFlow, SpanField, Step, StoreCall,
};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};
use std::cell::RefCell;
use std::rc::Rc;

/// One HTTP stream's context.
pub struct CjwtHttp {
    shared: Option<Rc<Shared>>,
    me: Waiter,
}

impl CjwtHttp {
    /// The stream `context_id` of a VM configured with `shared` (`None`: not configured).
    pub fn new(context_id: u32, shared: Option<Rc<Shared>>) -> CjwtHttp {
        CjwtHttp { shared, me: Waiter { context: context_id, flow: Rc::new(RefCell::new(RequestFlow::new())) } }
    }

    /// Body and trailers pass only once the request is allowed; until then
    /// Envoy buffers them (within its buffer limits) or drops them with the refusal.
    fn hold_until_allowed(&self) -> Action {
        if self.me.flow.try_borrow().is_ok_and(|flow| flow.allowed()) {
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
        match drive(&shared, &self.me, Event::Start) {
            Flowed::Allowed => Action::Continue,
            Flowed::Paused | Flowed::Refused | Flowed::Nothing => Action::Pause,
        }
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
        answer_waiters(shared, remote::on_response(shared, token, body_size, stream));
    }
}

/// Drives the flow of the request `me` (the current stream) after `event`.
/// The requests a key set taken over released are decided after this one.
fn drive(shared: &Shared, me: &Waiter, event: Event<'_>) -> Flowed {
    let Some(host) = ProxyHost::read() else {
        log::error!("cjwt: the host clock cannot be read; refusing");
        send(&Refusal::unavailable());
        return Flowed::Refused;
    };
    let mut stream = Stream { shared, me, host: &host, released: Vec::new() };
    let flowed = match me.flow.try_borrow_mut() {
        Ok(mut flow) => flow.drive(event, &mut stream),
        Err(_) => {
            stream.fail();
            Flowed::Refused
        }
    };
    answer_waiters(shared, stream.released);
    flowed
}

/// A paused request (`waiter`) takes its flow's next steps after `event` in a
/// later callback: made current (nothing happens if it ended), resumed if
/// allowed, left paused while the flow waits on.
pub fn wake(shared: &Shared, waiter: &Waiter, event: Event<'_>) {
    if hostcalls::set_effective_context(waiter.context).is_ok() && drive(shared, waiter, event) == Flowed::Allowed {
        let _ = hostcalls::resume_http_request();
    }
}

/// The current stream (`me`) as the core's flow drives it ([`FlowHost`]) and
/// as its plan acts on it ([`PlanHost`]).
struct Stream<'a> {
    shared: &'a Shared,
    me: &'a Waiter,
    host: &'a ProxyHost,
    /// Requests a key set taken over released, decided after this one.
    released: Vec<Waiter>,
}

impl FlowHost for Stream<'_> {
    /// The engine, the keys, the crypto, and shared data for counts and proofs.
    fn with_env(&mut self, step: &mut dyn FnMut(&mut Engine, Env<'_>) -> Step) -> Option<Step> {
        let (Ok(mut engine), Ok(keys)) = (self.shared.engine.try_borrow_mut(), self.shared.keys.try_borrow()) else {
            return None;
        };
        let (counter, replay) = (&mut Slots(SharedData), &mut Slots(SharedData));
        Some(step(&mut engine, Env { host: self.host, keys: &*keys, crypto: &self.shared.crypto, counter, replay }))
    }

    fn wait_for_keys(&mut self, provider: usize) -> KeyWait {
        let mut root = Root::new(self.shared, Some(self.me.context));
        let wait = root.wait_for_keys(provider, self.me.clone());
        self.released.extend(root.woken);
        wait
    }

    fn send(&mut self, call: &StoreCall) -> Result<(), String> {
        usage::dispatch(self.shared, call, self.me)
    }

    /// The VM's own call, not this stream's: sent in a root callback (the
    /// SDK answers a call to the context whose callback made it).
    fn refill(&mut self, refill: Refill) {
        Root::new(self.shared, Some(self.me.context)).queue_refill(refill);
    }

    /// Forward or refuse, through the plan's host calls on this stream.
    fn act(&mut self, plan: Plan) -> bool {
        plan.execute(self)
    }

    fn fail(&mut self) {
        send(&Refusal::unavailable());
    }

    fn now_ms(&self) -> u64 {
        usage::now_ms()
    }
}

impl PlanHost for Stream<'_> {
    fn count(&mut self, counter: Counter) {
        self.shared.metrics.bump(counter);
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
        wake(shared, &waiter, Event::Keys);
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
