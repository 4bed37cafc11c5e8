//! One HTTP stream: read the request, ask the core, execute the core's plan.

use crate::background::{self, Main, Waiter, EVENT_KEYS};
use crate::config::{ModuleConfig, Shared};
use crate::ffi::{log, CalloutAnswer, Filter, Level, HEADERS_CONTINUE, HEADERS_STOP};
use crate::host::NativeHost;
use cjwt_core::usage::etcd::EtcdReply;
use cjwt_core::{
    BackgroundHost, Counter, Engine, Env, Event, FlowHost, Flowed, KeyWait, Level as CoreLevel, Plan, PlanHost, Refill,
    Refusal, RequestFlow, SpanField, Step, StoreCall,
};
use std::sync::Arc;

/// The module's state for one stream: the core's [`RequestFlow`] and what the
/// host needs to resume it.
pub struct Stream {
    shared: Arc<Shared>,
    /// Set once the request waited (paused) for its provider's keys.
    waiter: Option<Arc<Waiter>>,
    /// The request's lifecycle (decided, waiting for keys or for the usage store).
    flow: RequestFlow,
    /// The usage-store callout in flight (a callout of this stream, answered on
    /// its worker, cancelled if it ends).
    callout: Option<u64>,
}

impl Stream {
    /// A new stream of configuration `config`.
    pub fn new(config: &ModuleConfig) -> Stream {
        Stream { shared: Arc::clone(&config.shared), waiter: None, flow: RequestFlow::new(), callout: None }
    }

    /// Whether the request was allowed (body and trailers may pass).
    pub fn allowed(&self) -> bool {
        self.flow.allowed()
    }

    /// Request headers: the flow starts.
    pub fn on_request_headers(&mut self, f: Filter<'_>) -> u32 {
        #[cfg(feature = "fault-injection")]
        fault_injection(&f);
        match self.drive(f, Event::Start) {
            Flowed::Allowed => HEADERS_CONTINUE,
            Flowed::Paused | Flowed::Refused | Flowed::Nothing => HEADERS_STOP,
        }
    }

    /// A scheduled event on this stream's worker: the keys it waited for
    /// arrived (or the fetch failed).
    pub fn on_scheduled(&mut self, f: Filter<'_>, event: u64) {
        if event == EVENT_KEYS && !self.flow.allowed() {
            self.resume(f, Event::Keys);
        }
    }

    /// A callout of this stream answered (its worker): the store's answer.
    pub fn on_callout_done(&mut self, f: Filter<'_>, callout: u64, answer: CalloutAnswer<'_>) {
        if self.callout.take_if(|c| *c == callout).is_some() {
            self.resume(f, Event::Reply(&reply(&answer), answer.body_len));
        }
    }

    /// Drives the flow after `event` in a later callback, and resumes the request if it may go on.
    fn resume(&mut self, f: Filter<'_>, event: Event<'_>) {
        if self.drive(f, event) == Flowed::Allowed {
            f.continue_decoding();
        }
    }

    /// Drives the flow after `event` with this stream's host calls ([`StreamHost`]).
    fn drive(&mut self, f: Filter<'_>, event: Event<'_>) -> Flowed {
        let Some(host) = NativeHost::read(f) else {
            log(Level::Error, "cjwt: the clock cannot be read; refusing");
            internal_error(f);
            return Flowed::Refused;
        };
        let Stream { shared, waiter, flow, callout } = self;
        flow.drive(event, &mut StreamHost { shared, f, host: &host, waiter, callout })
    }

    /// The stream ended: a fetch that answers later must not wake it.
    pub fn on_complete(&mut self) {
        if let Some(w) = self.waiter.take() {
            w.close();
        }
    }
}

/// One stream's host calls, as the core's flow drives it ([`FlowHost`]) and
/// its plan acts on it ([`PlanHost`]).
struct StreamHost<'s, 'f> {
    shared: &'s Arc<Shared>,
    f: Filter<'f>,
    host: &'s NativeHost<'f>,
    /// Kept once the request waits for its provider's keys.
    waiter: &'s mut Option<Arc<Waiter>>,
    /// The usage-store callout in flight.
    callout: &'s mut Option<u64>,
}

impl FlowHost for StreamHost<'_, '_> {
    /// This worker's engine, and what the core reads for one decision: the
    /// request, the key store (read-locked for the step only: it is not
    /// borrowed while the remote is asked, since the main thread takes the
    /// remote's lock, then the store's), the crypto, the process's counter and
    /// replay cache. `None` when the store's lock is poisoned.
    fn with_env(&mut self, step: &mut dyn FnMut(&mut Engine, Env<'_>) -> Step) -> Option<Step> {
        let (shared, host) = (self.shared, self.host);
        let step = |engine: &mut Engine| {
            let keys = shared.keys.read().ok()?;
            let (counter, replay) = (&mut { shared.usage }, &mut { shared.replay });
            Some(step(engine, Env { host, keys: &*keys, crypto: &shared.crypto, counter, replay }))
        };
        shared.engines.with(step).flatten()
    }

    fn wait_for_keys(&mut self, provider: usize) -> KeyWait {
        background::wait_for_keys(self.shared, self.f, provider, self.waiter)
    }

    /// A callout of this stream, answered on its worker, cancelled if it ends.
    fn send(&mut self, call: &StoreCall) -> Result<(), String> {
        let callout = self.f.callout(&call.cluster, &call.headers(), &call.body, call.timeout_ms);
        *self.callout = Some(callout.ok_or_else(|| format!("cluster {:?}: callout not started", call.cluster))?);
        Ok(())
    }

    /// The configuration's call, not this stream's.
    fn refill(&mut self, refill: Refill) {
        Main::Stream(self.shared, self.f).queue_refill(refill);
    }

    fn act(&mut self, plan: Plan) -> bool {
        plan.execute(self)
    }

    fn fail(&mut self) {
        internal_error(self.f);
    }

    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

impl PlanHost for StreamHost<'_, '_> {
    fn count(&mut self, counter: Counter) {
        if let Some(id) = self.shared.counters.id(counter) {
            self.f.increment(id, 1);
        }
    }

    fn log(&mut self, level: CoreLevel, line: &str) {
        log(level.into(), line);
    }

    /// Dynamic metadata `cjwt:<field>` for the access log (SPEC §12).
    fn audit(&mut self, field: &'static str, value: &str) {
        self.f.set_metadata("cjwt", field, value);
    }

    /// The decision on Envoy's span of this request, when it is traced.
    fn span(&mut self, tags: &[(SpanField, String)]) {
        self.f.tag_active_span(tags.iter().map(|(field, value)| (field.tag(), value.as_str())));
    }

    fn set_header(&mut self, name: &str, value: Option<&str>) -> bool {
        self.f.set_request_header(name, value.map(str::as_bytes))
    }

    fn refuse(&mut self, refusal: &Refusal) {
        send(self.f, refusal);
    }
}

/// A callout's answer as the core reads a store's (`:status`, the gRPC status
/// of a trailers-only answer, the body).
pub fn reply<'a>(answer: &'a CalloutAnswer<'_>) -> EtcdReply<'a> {
    EtcdReply::from_bytes(answer.status, answer.grpc_status, answer.grpc_message, &answer.body)
}

/// The operating system's clock in milliseconds.
pub fn now_ms() -> u64 {
    cjwt_core::clock::unix_millis(std::time::SystemTime::now())
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.on_complete();
    }
}

fn send(f: Filter<'_>, refusal: &Refusal) {
    let headers: Vec<(&str, &str)> = refusal.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    f.send_response(u16::try_from(refusal.status).unwrap_or(503), &headers, refusal.body.as_bytes(), "cjwt");
}

/// 503: the request is refused because cjwt cannot decide or act safely.
pub fn internal_error(f: Filter<'_>) {
    send(f, &Refusal::unavailable());
}

/// Test builds only: panic on demand, to prove a panic answers 503.
#[cfg(feature = "fault-injection")]
#[allow(clippy::panic)]
fn fault_injection(f: &Filter<'_>) {
    if f.request_headers().iter().any(|(n, v)| n == "x-cjwt-fault" && v == b"panic") {
        panic!("cjwt: injected fault");
    }
}
