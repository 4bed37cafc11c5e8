//! One HTTP stream: read the request, ask the core, execute the core's plan.

use crate::config::{ModuleConfig, Shared};
use crate::ffi::{log, CalloutAnswer, Filter, Level, HEADERS_CONTINUE, HEADERS_STOP};
use crate::host::NativeHost;
use crate::jwks::{self, Waiter, EVENT_KEYS};
use cjwt_core::Level as CoreLevel;
use cjwt_core::{Act, Env, Plan, Refusal, RequestFlow, Step, StoreCall};
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
        let status = answer.status.and_then(|s| std::str::from_utf8(s).ok());
        let Stream { shared, flow, .. } = self;
        let counter = shared.usage;
        let step = shared.with_engine(|engine| {
            flow.on_store_answer(engine, &host, &mut { counter }, status, &answer.body, answer.body_len, now_ms())
        });
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
        match step {
            Some(Step::Act(plan)) => self.execute(f, plan),
            Some(Step::AwaitKeys | Step::Nothing) => HEADERS_STOP,
            // Answered in on_request_headers; never returned later.
            Some(Step::KeysMissing { .. }) => {
                internal_error(f);
                HEADERS_STOP
            }
            Some(Step::AwaitStore(call)) => match send_call(f, &call) {
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
            },
            None => {
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

    fn execute(&mut self, f: Filter<'_>, plan: Plan) -> u32 {
        for counter in &plan.counters {
            if let Some(Some(id)) = self.shared.counters.get(counter.index()) {
                f.increment(*id, 1);
            }
        }
        for (level, line) in &plan.logs {
            log(if *level == CoreLevel::Warn { Level::Warn } else { Level::Info }, line);
        }
        for (field, value) in &plan.audit {
            // Dynamic metadata `cjwt:<field>` for the access log (SPEC §12).
            f.set_metadata("cjwt", field, value);
        }
        if !plan.span.is_empty() {
            // The decision on Envoy's span of this request, when it is traced (v3, issue 30).
            f.tag_active_span(plan.span.iter().map(|(field, value)| (field.tag(), value.as_str())));
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

/// The operating system's clock in milliseconds.
fn now_ms() -> u64 {
    cjwt_core::clock::unix_millis(std::time::SystemTime::now())
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.on_complete();
    }
}

/// One call to the usage store as a callout of this stream.
fn send_call(f: Filter<'_>, call: &StoreCall) -> Option<u64> {
    f.callout(&call.cluster, &call.headers(), call.body.as_bytes(), call.timeout_ms)
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
