//! One HTTP stream: read the request, ask the core, execute the core's plan.

use crate::config::{ModuleConfig, Shared};
use crate::ffi::{log, CalloutAnswer, Filter, Level, HEADERS_CONTINUE, HEADERS_STOP};
use crate::host::NativeHost;
use crate::jwks::{self, Waiter, EVENT_KEYS};
use cjwt_core::usage::etcd::EtcdReply;
use cjwt_core::{Counter, Env, Level as CoreLevel, Plan, PlanHost, Refusal, RequestFlow, SpanField, Step};
use std::sync::Arc;

/// The module's state for one stream: the core's [`RequestFlow`] and what the
/// host needs to resume it.
pub struct Stream {
    shared: Arc<Shared>,
    /// Set once the request may go upstream: until then body and trailers are held.
    allowed: bool,
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
        Stream {
            shared: Arc::clone(&config.shared),
            allowed: false,
            waiter: None,
            flow: RequestFlow::new(),
            callout: None,
        }
    }

    /// Whether the request was allowed (body and trailers may pass).
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// Request headers: the flow starts.
    pub fn on_request_headers(&mut self, f: Filter<'_>) -> u32 {
        #[cfg(feature = "fault-injection")]
        fault_injection(&f);
        let Some(host) = NativeHost::read(f) else {
            log(Level::Error, "cjwt: the clock cannot be read; refusing");
            internal_error(f);
            return HEADERS_STOP;
        };
        let Stream { shared, waiter, flow, .. } = self;
        let step = shared.with_engine(|engine| {
            let mut step = with_env(shared, &host, |env| flow.start(engine, env, now_ms()))?;
            // The key store is not borrowed while the remote is asked (the main
            // thread takes the remote's lock, then the store's).
            while let Step::KeysMissing { provider } = step {
                let wait = jwks::wait_for_keys(shared, f, provider, waiter);
                step = with_env(shared, &host, |env| flow.on_key_wait(engine, env, wait, now_ms()))?;
            }
            Some(step)
        });
        self.run(f, &host, step.flatten())
    }

    /// A scheduled event on this stream's worker: the keys it waited for
    /// arrived (or the fetch failed).
    pub fn on_scheduled(&mut self, f: Filter<'_>, event: u64) {
        if event != EVENT_KEYS || self.allowed {
            return;
        }
        let Some(host) = NativeHost::read(f) else {
            internal_error(f);
            return;
        };
        let Stream { shared, flow, .. } = self;
        let step = shared.with_engine(|engine| with_env(shared, &host, |env| flow.on_keys(engine, env, now_ms())));
        self.resume(f, &host, step.flatten());
    }

    /// A callout of this stream answered (its worker): the store's answer.
    pub fn on_callout_done(&mut self, f: Filter<'_>, callout: u64, answer: CalloutAnswer<'_>) {
        if self.callout.take_if(|c| *c == callout).is_none() {
            return;
        }
        let Some(host) = NativeHost::read(f) else {
            internal_error(f);
            return;
        };
        let reply = reply(&answer);
        let Stream { shared, flow, .. } = self;
        let step = shared
            .with_engine(|engine| {
                with_env(shared, &host, |env| flow.on_reply(engine, env, &reply, answer.body_len, now_ms()))
            })
            .flatten();
        self.resume(f, &host, step);
    }

    /// Executes a step taken in a later callback, and resumes the request if it may go on.
    fn resume(&mut self, f: Filter<'_>, host: &NativeHost<'_>, step: Option<Step>) {
        if self.run(f, host, step) == HEADERS_CONTINUE {
            f.continue_decoding();
        }
    }

    /// Executes one step of the flow: act on a plan, pause for keys, or send a
    /// store call (a call that cannot be sent is the flow's failure at once).
    fn run(&mut self, f: Filter<'_>, host: &NativeHost<'_>, step: Option<Step>) -> u32 {
        // A background refill the decision started: the configuration's call, not this stream's.
        if let Some(refill) = self.flow.take_refill() {
            crate::refill::queue(&self.shared, refill);
        }
        match step {
            Some(Step::Act(plan)) => self.execute(f, plan),
            Some(Step::AwaitKeys | Step::Nothing) => HEADERS_STOP,
            Some(Step::AwaitStore(call)) => {
                match f.callout(&call.cluster, &call.headers(), &call.body, call.timeout_ms) {
                    Some(callout) => {
                        self.callout = Some(callout);
                        HEADERS_STOP
                    }
                    None => {
                        let why = format!("cluster {:?}: callout not started", call.cluster);
                        let Stream { shared, flow, .. } = self;
                        let step = shared.with_engine(|engine| flow.on_store_failure(engine, host, &why));
                        self.run(f, host, step)
                    }
                }
            }
            // KeysMissing is answered in on_request_headers, never returned later.
            Some(Step::KeysMissing { .. }) | None => {
                internal_error(f);
                HEADERS_STOP
            }
        }
    }

    /// The stream ended: a fetch that answers later must not wake it.
    pub fn on_complete(&mut self) {
        if let Some(w) = self.waiter.take() {
            w.close();
        }
    }

    /// Executes the plan through [`Executor`]; the request goes upstream if it allows.
    fn execute(&mut self, f: Filter<'_>, plan: Plan) -> u32 {
        self.allowed = plan.execute(&mut Executor { f, counters: &self.shared.counters });
        if self.allowed {
            HEADERS_CONTINUE
        } else {
            HEADERS_STOP
        }
    }
}

/// A plan's host calls on this stream ([`PlanHost`]).
struct Executor<'a, 'f> {
    f: Filter<'f>,
    counters: &'a [Option<usize>],
}

impl PlanHost for Executor<'_, '_> {
    fn count(&mut self, counter: Counter) {
        if let Some(Some(id)) = self.counters.get(counter.index()) {
            self.f.increment(*id, 1);
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

/// Runs `f` with what the core reads for one decision: the request, the key
/// store (read-locked for the call only), the crypto, the process's counter and
/// replay cache. `None` when the store's lock is poisoned.
fn with_env<R>(shared: &Shared, host: &NativeHost<'_>, f: impl FnOnce(Env<'_>) -> R) -> Option<R> {
    let keys = shared.keys.read().ok()?;
    let env = Env {
        host,
        keys: &*keys,
        crypto: &shared.crypto,
        counter: &mut { shared.usage },
        replay: &mut { shared.replay },
    };
    Some(f(env))
}

/// A callout's answer as the core reads a store's (`:status`, the gRPC status
/// of a trailers-only answer, the body).
pub fn reply<'a>(answer: &'a CalloutAnswer<'_>) -> EtcdReply<'a> {
    fn text(v: Option<&[u8]>) -> Option<&str> {
        v.and_then(|s| std::str::from_utf8(s).ok())
    }
    EtcdReply {
        status: text(answer.status),
        grpc_status: text(answer.grpc_status),
        grpc_message: text(answer.grpc_message),
        body: &answer.body,
    }
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
