//! One HTTP stream: read the request, ask the core, execute the core's plan.

use crate::config::{ModuleConfig, Shared};
use crate::ffi::{log, Filter, Level, HEADERS_CONTINUE, HEADERS_STOP};
use crate::host::NativeHost;
use cjwt_core::outcome::metrics::Counter;
use cjwt_core::outcome::plan::{self, Act, Plan};
use cjwt_core::outcome::response::Refusal;
use std::sync::Arc;

/// The module's state for one stream.
pub struct Stream {
    shared: Arc<Shared>,
    /// Set once the request may go upstream: until then body and trailers are held.
    allowed: bool,
}

impl Stream {
    /// A new stream of configuration `config`.
    pub fn new(config: &ModuleConfig) -> Stream {
        Stream { shared: Arc::clone(&config.shared), allowed: false }
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
        let shared = Arc::clone(&self.shared);
        let planned = shared.with_engine(|engine| {
            let Ok(keys) = shared.keys.read() else {
                return None;
            };
            let outcome = engine.decide(&host, &*keys, &shared.crypto, &mut &shared.usage);
            Some(plan::plan(&engine.config, &outcome, &host))
        });
        let Some(Some(plan)) = planned else {
            internal_error(f);
            return HEADERS_STOP;
        };
        self.execute(f, plan)
    }

    /// A scheduled event on this stream's worker.
    pub fn on_scheduled(&mut self, _f: Filter<'_>, _event: u64) {}

    /// The stream ended.
    pub fn on_complete(&mut self) {}

    fn execute(&mut self, f: Filter<'_>, plan: Plan) -> u32 {
        for counter in &plan.counters {
            bump(&self.shared, &f, *counter);
        }
        if let Some(line) = &plan.log {
            log(Level::Info, line);
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
