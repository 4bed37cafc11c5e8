//! One HTTP stream: read the request, ask the core, then forward or refuse.

use super::host::{ProxyHost, SharedDataCounter};
use super::jwks;
use super::state::{Shared, Waiter};
use cjwt_core::engine::{Decision, Denial};
use cjwt_core::outcome::forward::{self, HeaderEdits};
use cjwt_core::outcome::response::refusal;
use cjwt_core::reason::Reason;
use cjwt_core::request::host::header_values;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};
use std::cell::Cell;
use std::rc::Rc;

/// One HTTP stream's context.
pub struct CjwtHttp {
    shared: Option<Rc<Shared>>,
    me: Waiter,
}

impl CjwtHttp {
    /// The stream `context_id` of a VM configured with `shared` (`None`: not configured).
    pub fn new(context_id: u32, shared: Option<Rc<Shared>>) -> CjwtHttp {
        CjwtHttp { shared, me: Waiter { context: context_id, allowed: Rc::new(Cell::new(false)) } }
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

impl Context for CjwtHttp {
    fn on_http_call_response(&mut self, token_id: u32, _headers: usize, body_size: usize, _trailers: usize) {
        if let Some(shared) = &self.shared {
            let released = jwks::on_response(shared, token_id, body_size, Some(self.me.context));
            answer_waiters(shared, released);
        }
    }
}

impl HttpContext for CjwtHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "fault-injection")]
        fault_injection();
        let Some(shared) = self.shared.clone() else {
            // No configuration: Envoy would not have started; refuse anyway.
            return refuse(Reason::KeysUnavailable, "cjwt", true);
        };
        #[cfg(feature = "vm-bench")]
        if super::vm_bench::answer(&shared) {
            return Action::Pause;
        }
        let action = process(&shared, Some(&self.me));
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

/// Decides the current request and acts on it. With `waiter` set, a request
/// refused only because its provider's keys are missing waits (paused) for a
/// key fetch instead; [`answer_waiters`] decides it again without waiting.
pub fn process(shared: &Shared, waiter: Option<&Waiter>) -> Action {
    let Some(host) = ProxyHost::read() else {
        log::error!("cjwt: the host clock cannot be read; refusing");
        return unavailable();
    };
    let (Ok(mut engine), Ok(keys)) = (shared.engine.try_borrow_mut(), shared.keys.try_borrow()) else {
        return refuse(Reason::KeysUnavailable, "cjwt", true);
    };
    let host_calls = shared.crypto.calls.get();
    let outcome = engine.decide(&host, &*keys, &shared.crypto, &mut SharedDataCounter);
    drop(keys);
    shared.metrics.cache(outcome.cache_hit);
    shared.metrics.host_verifications(shared.crypto.calls.get().saturating_sub(host_calls));
    let config = &engine.config;
    match outcome.decision {
        Decision::Allow { token, credential } => {
            shared.metrics.allowed();
            let edits = forward::edits(&config.forward, token.as_deref(), credential.as_ref(), &host);
            apply_or_fail(&edits, &host)
        }
        Decision::Deny(Denial { provider: Some(p), .. }) | Decision::DryRunDeny(Denial { provider: Some(p), .. })
            if waiter.is_some() && jwks::wait_for_keys(shared, p, waiter) =>
        {
            Action::Pause
        }
        Decision::DryRunDeny(denial) => {
            shared.metrics.dry_run_denied(denial.reason);
            log_denial(&denial, true);
            apply_or_fail(&forward::edits(&config.forward, None, denial.credential.as_ref(), &host), &host)
        }
        Decision::Deny(denial) => {
            shared.metrics.denied(denial.reason);
            log_denial(&denial, false);
            refuse(denial.reason, &config.realm, config.detail)
        }
    }
}

/// Decides again every request that a key fetch released (it waited for the
/// keys), and resumes the ones now allowed; the others get their refusal.
pub fn answer_waiters(shared: &Shared, waiters: Vec<Waiter>) {
    if waiters.is_empty() {
        return;
    }
    for waiter in waiters {
        // A stream that ended while it waited cannot be made current: skip it.
        if hostcalls::set_effective_context(waiter.context).is_err() {
            continue;
        }
        let allowed = process(shared, None) == Action::Continue;
        waiter.allowed.set(allowed);
        if allowed {
            let _ = hostcalls::resume_http_request();
        }
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

fn log_denial(denial: &Denial, dry_run: bool) {
    if log::log_enabled!(log::Level::Info) {
        let mode = if dry_run { " (dry_run: allowed)" } else { "" };
        let fp = denial.fingerprint.as_deref().unwrap_or("-");
        log::info!("cjwt: denied reason={} status={} token={fp}{mode}", denial.reason.code(), denial.reason.status());
    }
}

/// Sends the local refusal and stops the request; it never reaches the upstream.
fn refuse(reason: Reason, realm: &str, detail: bool) -> Action {
    let r = refusal(reason, realm, detail);
    let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _ = hostcalls::send_http_response(r.status, headers, Some(r.body.as_bytes()));
    Action::Pause
}

/// Applies the edits and continues; if Envoy refuses an edit, the request is
/// refused with 503 rather than forwarded with a client-supplied header intact.
fn apply_or_fail(edits: &HeaderEdits, host: &ProxyHost) -> Action {
    if apply(edits, host).is_ok() {
        return Action::Continue;
    }
    log::error!("cjwt: could not rewrite request headers; refusing");
    unavailable()
}

/// 503: cjwt cannot decide or act safely; the request never reaches the upstream.
fn unavailable() -> Action {
    let _ = hostcalls::send_http_response(
        503,
        vec![("content-type", "application/json")],
        Some(b"{\"error\":\"unavailable\"}"),
    );
    Action::Pause
}

/// Removes client copies of forwarded headers, then sets verified values.
fn apply(edits: &HeaderEdits, host: &ProxyHost) -> Result<(), proxy_wasm::types::Status> {
    for name in &edits.remove {
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None)?;
    }
    for (name, value) in &edits.set {
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))?;
    }
    if let Some(path) = &edits.path {
        hostcalls::set_map_value(MapType::HttpRequestHeaders, ":path", Some(path))?;
    }
    if let Some(cookie) = &edits.drop_cookie {
        let joined: Vec<String> = header_values(host, "cookie")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .filter_map(|v| forward::remove_cookie(v, cookie))
            .collect();
        let value = if joined.is_empty() { None } else { Some(joined.join("; ")) };
        hostcalls::set_map_value(MapType::HttpRequestHeaders, "cookie", value.as_deref())?;
    }
    Ok(())
}
