//! The ABI floor of the native build: Envoy's dynamic-module C ABI (`v0.2.0`,
//! Envoy 1.40), written from `source/extensions/dynamic_modules/abi/abi.h` and
//! checked against the 1.40 binary (`nm -D`, its `getFunctionPointer` type
//! strings, and the suites that run this module in that Envoy).
//!
//! Three parts, none of which knows the rest of the module (it imports nothing
//! of this crate):
//! - the C types (`#[repr(C)]`) and the callbacks Envoy exports (`extern "C"`);
//! - safe handles over Envoy's pointers ([`Filter`], [`ConfigHandle`],
//!   [`Scheduler`]), each valid only where the hooks create it;
//! - the conversions the hooks ([`crate::hooks`]) make: Envoy's bytes and
//!   answers copied out, our objects handed to Envoy as `const void*` and
//!   borrowed or taken back.
//!
//! Invariants the safe side relies on:
//! - a [`Filter`] is built only inside a per-stream hook, from the pointer Envoy
//!   passed to it, and is not `Send`: it is used on the stream's worker thread
//!   during that hook only;
//! - a [`ConfigHandle`] is built only inside a config hook (main thread) and is
//!   not `Send`;
//! - our config and stream objects are `Box`es handed to Envoy as `const void*`
//!   and taken back exactly once, by the matching destroy hook.
//!
//! With [`crate::hooks`] (which needs `unsafe_code` only for `#[no_mangle]` and
//! its calls into the conversions here), this is the only module that allows
//! `unsafe_code`; the workspace denies it everywhere else.

#![allow(unsafe_code)]
#![allow(non_camel_case_types)]

use std::ffi::c_void;
use std::marker::PhantomData;

/// The ABI version this module is written for (Envoy 1.40).
pub(crate) const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// Bytes owned by Envoy, valid during the hook that gave them.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct envoy_buffer {
    ptr: *const u8,
    length: usize,
}

/// Bytes owned by this module, read by Envoy during the call.
#[repr(C)]
#[derive(Clone, Copy)]
struct module_buffer {
    ptr: *const u8,
    length: usize,
}

/// A header owned by Envoy (`envoy_dynamic_module_type_envoy_http_header`).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct envoy_http_header {
    key_ptr: *const u8,
    key_length: usize,
    value_ptr: *const u8,
    value_length: usize,
}

/// A header owned by this module (`envoy_dynamic_module_type_module_http_header`).
#[repr(C)]
#[derive(Clone, Copy)]
struct module_http_header {
    key_ptr: *const u8,
    key_length: usize,
    value_ptr: *const u8,
    value_length: usize,
}

// C enums are `int`-sized; values are passed and compared as u32.
const HEADER_TYPE_REQUEST: u32 = 0;
const ATTRIBUTE_SOURCE_ADDRESS: u32 = 24;
/// `connection.sha256_peer_certificate_digest` (docs/dynamic-module-abi.md):
/// lowercase hex; absent without a client certificate.
const ATTRIBUTE_SHA256_PEER_CERTIFICATE_DIGEST: u32 = 38;
/// `connection.uri_san_peer_certificate`: the peer certificate's first URI SAN.
const ATTRIBUTE_URI_SAN_PEER_CERTIFICATE: u32 = 37;
const LOG_INFO: u32 = 2;
const LOG_WARN: u32 = 3;
const LOG_ERROR: u32 = 4;
const CALLOUT_INIT_SUCCESS: u32 = 0;
const CALLOUT_RESULT_SUCCESS: u32 = 0;
const METRICS_SUCCESS: u32 = 0;

/// `on_http_filter_request_headers` answers.
pub const HEADERS_CONTINUE: u32 = 0;
/// Pause the request (no later filter runs until [`Filter::continue_decoding`]).
pub const HEADERS_STOP: u32 = 1;
/// `on_http_filter_request_body` answers.
pub const BODY_CONTINUE: u32 = 0;
/// Hold (buffer) the body until the request is allowed.
pub const BODY_STOP_AND_BUFFER: u32 = 1;
/// `on_http_filter_request_trailers` answers.
pub const TRAILERS_CONTINUE: u32 = 0;
/// `envoy_dynamic_module_type_metadata_source` Dynamic.
const METADATA_SOURCE_DYNAMIC: u32 = 0;
/// Hold the trailers until the request is allowed.
pub const TRAILERS_STOP: u32 = 1;

extern "C" {
    fn envoy_dynamic_module_callback_log_v2(level: u32, message: module_buffer, file: module_buffer, line: u32);
    fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;

    fn envoy_dynamic_module_callback_http_get_headers_size(filter: *mut c_void, header_type: u32) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: *mut c_void,
        header_type: u32,
        result: *mut envoy_http_header,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter: *mut c_void,
        header_type: u32,
        key: module_buffer,
        value: module_buffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: *mut c_void,
        attribute: u32,
        result: *mut envoy_buffer,
    ) -> bool;
    // A bool of the dynamic metadata (source 0) `namespace.key` (top-level keys only).
    fn envoy_dynamic_module_callback_http_get_metadata_bool(
        filter: *mut c_void,
        source: u32,
        namespace: module_buffer,
        key: module_buffer,
        result: *mut bool,
    ) -> bool;
    // The serialized form (`serializeAsString`) of any filter state object.
    fn envoy_dynamic_module_callback_http_get_filter_state_typed(
        filter: *mut c_void,
        key: module_buffer,
        result: *mut envoy_buffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        filter: *mut c_void,
        status: u32,
        headers: *mut module_http_header,
        headers_size: usize,
        body: module_buffer,
        details: module_buffer,
    );
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: *mut c_void);
    // Declared without its result (a `bool` in some ABI versions, none in others):
    // ignoring it is correct either way.
    fn envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
        filter: *mut c_void,
        namespace: module_buffer,
        key: module_buffer,
        value: module_buffer,
    );

    // Tracing (docs/dynamic-module-abi.md §11): the stream's active span, NULL
    // when Envoy traces nothing (a `NullSpan`); a tag set on a NULL span is ignored.
    fn envoy_dynamic_module_callback_http_get_active_span(filter: *mut c_void) -> *mut c_void;
    fn envoy_dynamic_module_callback_http_span_set_tag(span: *mut c_void, key: module_buffer, value: module_buffer);

    fn envoy_dynamic_module_callback_http_filter_scheduler_new(filter: *mut c_void) -> *mut c_void;
    fn envoy_dynamic_module_callback_http_filter_scheduler_commit(scheduler: *mut c_void, event_id: u64);
    fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: *mut c_void);

    fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(config: *mut c_void) -> *mut c_void;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(scheduler: *mut c_void, event_id: u64);
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler: *mut c_void);

    fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: *mut c_void,
        callout_id_out: *mut u64,
        cluster: module_buffer,
        headers: *mut module_http_header,
        headers_size: usize,
        body: module_buffer,
        timeout_ms: u64,
    ) -> u32;

    fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: *mut c_void,
        callout_id_out: *mut u64,
        cluster: module_buffer,
        headers: *mut module_http_header,
        headers_size: usize,
        body: module_buffer,
        timeout_ms: u64,
    ) -> u32;

    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: *mut c_void,
        name: module_buffer,
        label_names: *mut module_buffer,
        label_names_length: usize,
        counter_id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: *mut c_void,
        id: usize,
        label_values: *mut module_buffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: *mut c_void,
        id: usize,
        label_values: *mut module_buffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
}

/// Our headers as the ABI's header array (pointing into `headers`, which must
/// outlive the call that reads it).
fn module_headers(headers: &[(&str, &str)]) -> Vec<module_http_header> {
    headers
        .iter()
        .map(|(k, v)| module_http_header {
            key_ptr: k.as_ptr(),
            key_length: k.len(),
            value_ptr: v.as_ptr(),
            value_length: v.len(),
        })
        .collect()
}

fn module(bytes: &[u8]) -> module_buffer {
    module_buffer { ptr: bytes.as_ptr(), length: bytes.len() }
}

/// Envoy's bytes as a slice; empty for a null pointer.
///
/// SAFETY: `b` comes from Envoy in the current hook, which keeps it valid (and
/// unchanged) until the hook returns; the slice does not outlive the hook.
pub(crate) unsafe fn envoy_bytes<'a>(b: envoy_buffer) -> &'a [u8] {
    if b.ptr.is_null() || b.length == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(b.ptr, b.length)
    }
}

/// Envoy's log levels this module uses.
#[derive(Clone, Copy, Debug)]
pub enum Level {
    /// `info`.
    Info,
    /// `warn`.
    Warn,
    /// `error`.
    Error,
}

impl From<cjwt_core::Level> for Level {
    fn from(level: cjwt_core::Level) -> Level {
        match level {
            cjwt_core::Level::Info => Level::Info,
            cjwt_core::Level::Warn => Level::Warn,
            cjwt_core::Level::Error => Level::Error,
        }
    }
}

/// Logs through Envoy's `dynamic_modules` logger (any thread).
pub fn log(level: Level, message: &str) {
    let level = match level {
        Level::Info => LOG_INFO,
        Level::Warn => LOG_WARN,
        Level::Error => LOG_ERROR,
    };
    // SAFETY: plain values and module-owned buffers read during the call.
    unsafe {
        if envoy_dynamic_module_callback_log_enabled(level) {
            envoy_dynamic_module_callback_log_v2(level, module(message.as_bytes()), module(b"cjwt"), 0);
        }
    }
}

/// One HTTP stream as Envoy holds it, during one hook on the stream's worker.
#[derive(Clone, Copy)]
pub struct Filter<'hook> {
    ptr: *mut c_void,
    _hook: PhantomData<&'hook ()>,
}

impl Filter<'_> {
    /// Every request header as received (pseudo-headers first), names as Envoy
    /// holds them (lowercase), repeated names as separate entries.
    pub fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let n = self.request_headers_into(&mut out);
        out.truncate(n);
        out
    }

    /// Copies every request header into the first entries of `out`, reusing the
    /// entries' allocations (a worker copies a request's headers without
    /// allocating once its buffers have grown), and returns how many there are.
    pub fn request_headers_into(&self, out: &mut Vec<(String, Vec<u8>)>) -> usize {
        // SAFETY: `ptr` is the stream's filter in the current hook; the vector has
        // room for the count Envoy reported; the entries point into Envoy's header
        // map, valid during the hook, and are copied before it returns.
        unsafe {
            let n = envoy_dynamic_module_callback_http_get_headers_size(self.ptr, HEADER_TYPE_REQUEST);
            let empty = envoy_http_header {
                key_ptr: std::ptr::null(),
                key_length: 0,
                value_ptr: std::ptr::null(),
                value_length: 0,
            };
            let mut raw = vec![empty; n];
            if n == 0
                || !envoy_dynamic_module_callback_http_get_headers(self.ptr, HEADER_TYPE_REQUEST, raw.as_mut_ptr())
            {
                return 0;
            }
            for (i, h) in raw.iter().enumerate() {
                let key = envoy_bytes(envoy_buffer { ptr: h.key_ptr, length: h.key_length });
                let value = envoy_bytes(envoy_buffer { ptr: h.value_ptr, length: h.value_length });
                if i == out.len() {
                    out.push((String::new(), Vec::new()));
                }
                if let Some((k, v)) = out.get_mut(i) {
                    k.clear();
                    k.push_str(&String::from_utf8_lossy(key));
                    v.clear();
                    v.extend_from_slice(value);
                }
            }
            n
        }
    }

    /// Replaces every value of request header `name` with `value`, or removes
    /// the header (`None`). False if Envoy refused.
    pub fn set_request_header(&self, name: &str, value: Option<&[u8]>) -> bool {
        let value = match value {
            Some(v) => module(v),
            None => module_buffer { ptr: std::ptr::null(), length: 0 },
        };
        // SAFETY: stream filter in the current hook; module buffers read during the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(self.ptr, HEADER_TYPE_REQUEST, module(name.as_bytes()), value)
        }
    }

    /// The downstream address as Envoy computed it (`ip:port`), the value the
    /// wasm build reads as the `source.address` property.
    pub fn source_address(&self) -> Option<Vec<u8>> {
        self.attribute_string(ATTRIBUTE_SOURCE_ADDRESS)
    }

    /// The downstream peer certificate's SHA-256, lowercase hex, the value the
    /// wasm build reads as `connection.sha256_peer_certificate_digest`.
    pub fn peer_certificate_digest(&self) -> Option<Vec<u8>> {
        self.attribute_string(ATTRIBUTE_SHA256_PEER_CERTIFICATE_DIGEST)
    }

    /// The downstream peer certificate's first URI SAN (e.g. a SPIFFE ID), the
    /// value the wasm build reads as `connection.uri_san_peer_certificate`.
    pub fn peer_uri_san(&self) -> Option<Vec<u8>> {
        self.attribute_string(ATTRIBUTE_URI_SAN_PEER_CERTIFICATE)
    }

    /// The serialized filter state object `key` (e.g. the MCP filter's parse,
    /// JSON), the value the wasm build reads as property `filter_state.<key>`.
    pub fn filter_state(&self, key: &str) -> Option<Vec<u8>> {
        let mut out = envoy_buffer { ptr: std::ptr::null(), length: 0 };
        // SAFETY: stream filter in the current hook; the key is read during the
        // call; `out` points into Envoy's memory, copied before the hook returns.
        unsafe {
            if envoy_dynamic_module_callback_http_get_filter_state_typed(self.ptr, module(key.as_bytes()), &mut out) {
                Some(envoy_bytes(out).to_vec())
            } else {
                None
            }
        }
    }

    /// The dynamic metadata bool `namespace.key`, if set and a bool.
    pub fn metadata_bool(&self, namespace: &str, key: &str) -> Option<bool> {
        let mut out = false;
        // SAFETY: stream filter in the current hook; the module buffers are read
        // during the call; `out` is ours.
        unsafe {
            envoy_dynamic_module_callback_http_get_metadata_bool(
                self.ptr,
                METADATA_SOURCE_DYNAMIC,
                module(namespace.as_bytes()),
                module(key.as_bytes()),
                &mut out,
            )
        }
        .then_some(out)
    }

    fn attribute_string(&self, attribute: u32) -> Option<Vec<u8>> {
        let mut out = envoy_buffer { ptr: std::ptr::null(), length: 0 };
        // SAFETY: stream filter in the current hook; `out` is written by Envoy and
        // points into its memory, copied before the hook returns.
        unsafe {
            if envoy_dynamic_module_callback_http_filter_get_attribute_string(self.ptr, attribute, &mut out) {
                Some(envoy_bytes(out).to_vec())
            } else {
                None
            }
        }
    }

    /// Answers the request locally; it never reaches the upstream.
    pub fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8], details: &str) {
        let mut raw = module_headers(headers);
        // SAFETY: stream filter in the current hook; every buffer is ours and read
        // during the call.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.ptr,
                u32::from(status),
                raw.as_mut_ptr(),
                raw.len(),
                module(body),
                module(details.as_bytes()),
            );
        }
    }

    /// Sets dynamic metadata `namespace.key` to the string `value` (for the
    /// access log: `%DYNAMIC_METADATA(namespace:key)%`).
    pub fn set_metadata(&self, namespace: &str, key: &str, value: &str) {
        // SAFETY: stream filter in the current hook; module buffers read during the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
                self.ptr,
                module(namespace.as_bytes()),
                module(key.as_bytes()),
                module(value.as_bytes()),
            )
        }
    }

    /// Sets `tags` on the stream's active span (the connection manager's span
    /// of this request) when Envoy traces it; nothing when it does not.
    pub fn tag_active_span<'t>(&self, tags: impl IntoIterator<Item = (&'t str, &'t str)>) {
        // SAFETY: stream filter in the current hook. The span pointer is Envoy's
        // span of this stream, used only within this call (during the hook).
        let span = unsafe { envoy_dynamic_module_callback_http_get_active_span(self.ptr) };
        if span.is_null() {
            return;
        }
        for (key, value) in tags {
            // SAFETY: a non-NULL span of this stream, in the current hook; module buffers read during the call.
            unsafe {
                envoy_dynamic_module_callback_http_span_set_tag(span, module(key.as_bytes()), module(value.as_bytes()))
            }
        }
    }

    /// Starts an HTTP call for this stream (its worker): `POST`-style `headers`
    /// and `body` to `cluster`, within `timeout_ms`. The answer comes to
    /// `envoy_dynamic_module_on_http_filter_http_callout_done` on this worker;
    /// Envoy cancels it if the stream ends first.
    pub fn callout(&self, cluster: &str, headers: &[(&str, &str)], body: &[u8], timeout_ms: u64) -> Option<u64> {
        // SAFETY: stream filter in the current hook, for the stream callout binding.
        unsafe {
            start_callout(
                envoy_dynamic_module_callback_http_filter_http_callout,
                self.ptr,
                cluster,
                headers,
                body,
                timeout_ms,
            )
        }
    }

    /// Resumes a request paused by [`HEADERS_STOP`].
    pub fn continue_decoding(&self) {
        // SAFETY: stream filter in the current hook.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.ptr) }
    }

    /// Increments counter `id` (defined at configuration) by `n`.
    pub fn increment(&self, id: usize, n: u64) {
        // SAFETY: stream filter in the current hook; no labels.
        let _ = unsafe {
            envoy_dynamic_module_callback_http_filter_increment_counter(self.ptr, id, std::ptr::null_mut(), 0, n)
        };
    }

    /// A scheduler that runs `envoy_dynamic_module_on_http_filter_scheduled` on
    /// this stream's worker, from any thread.
    pub fn scheduler(&self) -> Option<Scheduler> {
        // SAFETY: stream filter in the current hook.
        let ptr = unsafe { envoy_dynamic_module_callback_http_filter_scheduler_new(self.ptr) };
        (!ptr.is_null()).then_some(Scheduler { ptr, config: false })
    }
}

/// A scheduler owned by this module: commits run a hook on the thread that owns
/// it (a stream's worker, or the main thread for a configuration's). Deleted
/// exactly once, on drop.
#[derive(Debug)]
pub struct Scheduler {
    ptr: *mut c_void,
    config: bool,
}

// SAFETY: Envoy documents `*_scheduler_commit` as callable from any thread and a
// commit after the stream has ended as a no-op; the owner serialises commit and
// drop (see `crate::jwks`), so the pointer is never used after delete.
unsafe impl Send for Scheduler {}
// SAFETY: as above; `commit` takes `&self` and Envoy's commit is thread-safe.
unsafe impl Sync for Scheduler {}

impl Scheduler {
    /// Runs the owner's `scheduled` hook with `event` on its thread, later.
    pub fn commit(&self, event: u64) {
        // SAFETY: `ptr` is live until drop; commit is thread-safe.
        unsafe {
            if self.config {
                envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.ptr, event);
            } else {
                envoy_dynamic_module_callback_http_filter_scheduler_commit(self.ptr, event);
            }
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // SAFETY: created by `*_scheduler_new`, deleted once here.
        unsafe {
            if self.config {
                envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.ptr);
            } else {
                envoy_dynamic_module_callback_http_filter_scheduler_delete(self.ptr);
            }
        }
    }
}

/// A filter configuration as Envoy holds it, during one config hook (main thread).
#[derive(Clone, Copy)]
pub struct ConfigHandle<'hook> {
    ptr: *mut c_void,
    _hook: PhantomData<&'hook ()>,
}

impl ConfigHandle<'_> {
    /// Defines a counter (only during `config_new`: Envoy freezes stats after it).
    pub fn define_counter(&self, name: &str) -> Option<usize> {
        let mut id = 0usize;
        // SAFETY: config pointer in the current config hook; `id` written by Envoy.
        let r = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_counter(
                self.ptr,
                module(name.as_bytes()),
                std::ptr::null_mut(),
                0,
                &mut id,
            )
        };
        (r == METRICS_SUCCESS).then_some(id)
    }

    /// Increments counter `id` by `n` outside any stream.
    pub fn increment(&self, id: usize, n: u64) {
        // SAFETY: config pointer in the current config hook; no labels.
        let _ = unsafe {
            envoy_dynamic_module_callback_http_filter_config_increment_counter(self.ptr, id, std::ptr::null_mut(), 0, n)
        };
    }

    /// A scheduler that runs `envoy_dynamic_module_on_http_filter_config_scheduled`
    /// on the main thread, from any thread.
    pub fn scheduler(&self) -> Option<Scheduler> {
        // SAFETY: config pointer in the current config hook.
        let ptr = unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.ptr) };
        (!ptr.is_null()).then_some(Scheduler { ptr, config: true })
    }

    /// Starts an HTTP call to `cluster` not tied to any stream (main thread
    /// only): `headers` and `body` (empty: none) within `timeout_ms`; the answer
    /// comes to `envoy_dynamic_module_on_http_filter_config_http_callout_done`.
    pub fn callout(&self, cluster: &str, headers: &[(&str, &str)], body: &[u8], timeout_ms: u64) -> Option<u64> {
        // SAFETY: config pointer in a config hook on the main thread, for the
        // configuration's callout binding.
        unsafe {
            start_callout(
                envoy_dynamic_module_callback_http_filter_config_http_callout,
                self.ptr,
                cluster,
                headers,
                body,
                timeout_ms,
            )
        }
    }
}

/// The shape both callout bindings share (stream and configuration).
type CalloutFn = unsafe extern "C" fn(
    *mut c_void,
    *mut u64,
    module_buffer,
    *mut module_http_header,
    usize,
    module_buffer,
    u64,
) -> u32;

/// Starts an HTTP call through `start` (one of the two callout bindings) on
/// `owner`, the stream or configuration pointer that binding takes: `headers`
/// and `body` to `cluster` within `timeout_ms`. The call's id, or `None` when
/// Envoy would not start it.
///
/// # Safety
/// `owner` must be live and of the kind `start` takes, in a hook of the thread
/// that owns it. Our buffers are read during the call only (Envoy copies them);
/// `id` is written by Envoy.
unsafe fn start_callout(
    start: CalloutFn,
    owner: *mut c_void,
    cluster: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout_ms: u64,
) -> Option<u64> {
    let mut raw = module_headers(headers);
    let mut id = 0u64;
    // No body: a null buffer, as Envoy expects for a call without one.
    let body = if body.is_empty() { module_buffer { ptr: std::ptr::null(), length: 0 } } else { module(body) };
    // SAFETY: the caller's contract above.
    let r = unsafe { start(owner, &mut id, module(cluster.as_bytes()), raw.as_mut_ptr(), raw.len(), body, timeout_ms) };
    (r == CALLOUT_INIT_SUCCESS).then_some(id)
}

/// An HTTP call's answer: `None` status when the call failed (reset, limit).
pub struct CalloutAnswer<'hook> {
    /// The `:status` header, if the call answered.
    pub status: Option<&'hook [u8]>,
    /// The `grpc-status` and `grpc-message` headers (a gRPC error comes as a
    /// trailers-only answer; this hook is not given the trailers of others).
    pub grpc_status: Option<&'hook [u8]>,
    /// See `grpc_status`.
    pub grpc_message: Option<&'hook [u8]>,
    /// The body, concatenated (empty when longer than the hook's limit).
    pub body: Vec<u8>,
    /// The body's length as Envoy holds it (greater than `body.len()` when it
    /// was over the limit and not copied).
    pub body_len: usize,
}

/// Envoy's answer to an HTTP call, copied out of the hook's arrays. A body
/// longer than `limit` bytes is not copied.
///
/// # Safety
/// The arrays are Envoy's, valid during the current hook, or null.
pub(crate) unsafe fn callout_answer<'a>(
    result: u32,
    headers: *const envoy_http_header,
    headers_size: usize,
    body_chunks: *const envoy_buffer,
    body_chunks_size: usize,
    limit: usize,
) -> CalloutAnswer<'a> {
    if result != CALLOUT_RESULT_SUCCESS {
        return CalloutAnswer { status: None, grpc_status: None, grpc_message: None, body: Vec::new(), body_len: 0 };
    }
    let headers: &[envoy_http_header] =
        if headers.is_null() { &[] } else { std::slice::from_raw_parts(headers, headers_size) };
    let header = |name: &[u8]| {
        headers
            .iter()
            .find(|h| envoy_bytes(envoy_buffer { ptr: h.key_ptr, length: h.key_length }) == name)
            .map(|h| envoy_bytes(envoy_buffer { ptr: h.value_ptr, length: h.value_length }))
    };
    let (status, grpc_status, grpc_message) = (header(b":status"), header(b"grpc-status"), header(b"grpc-message"));
    let chunks: &[envoy_buffer] =
        if body_chunks.is_null() { &[] } else { std::slice::from_raw_parts(body_chunks, body_chunks_size) };
    let body_len = chunks.iter().fold(0usize, |n, c| n.saturating_add(c.length));
    let mut body = Vec::new();
    if body_len <= limit {
        for c in chunks {
            body.extend_from_slice(envoy_bytes(*c));
        }
    }
    CalloutAnswer { status, grpc_status, grpc_message, body, body_len }
}

// ---- our objects, handed to Envoy as `const void*` -----------------------------

/// `object` handed to Envoy: the pointer it passes back to later hooks, until
/// [`take_back`] reclaims it.
pub(crate) fn hand_out<T>(object: Box<T>) -> *const c_void {
    Box::into_raw(object) as *const c_void
}

/// The object behind `p`, shared for the current hook (any thread); `None` for null.
///
/// # Safety
/// `p` is null or a pointer [`hand_out`] returned for a `T` that [`take_back`]
/// has not reclaimed, and nothing borrows it mutably meanwhile.
pub(crate) unsafe fn borrow<'a, T>(p: *const c_void) -> Option<&'a T> {
    // SAFETY: the caller's contract above.
    unsafe { (p as *const T).as_ref() }
}

/// The object behind `p`, borrowed mutably for the current hook; `None` for null.
///
/// # Safety
/// `p` is null or a pointer [`hand_out`] returned for a `T` that [`take_back`]
/// has not reclaimed, and no other borrow of it is live (Envoy runs one hook of
/// a stream at a time, on the stream's worker).
pub(crate) unsafe fn borrow_mut<'a, T>(p: *const c_void) -> Option<&'a mut T> {
    // SAFETY: the caller's contract above.
    unsafe { (p as *mut T).as_mut() }
}

/// The object behind `p`, reclaimed (to be dropped); `None` for null.
///
/// # Safety
/// As for [`borrow`], and `p` is reclaimed once: Envoy passes it to exactly one
/// destroy hook and to no hook after it.
pub(crate) unsafe fn take_back<T>(p: *const c_void) -> Option<Box<T>> {
    // SAFETY: the caller's contract above.
    (!p.is_null()).then(|| unsafe { Box::from_raw(p as *mut T) })
}

/// The stream Envoy passed to a per-stream hook.
///
/// # Safety
/// `ptr` is the `filter_envoy` pointer of the current per-stream hook; the
/// handle is used during that hook only, on its worker thread.
pub(crate) unsafe fn filter<'a>(ptr: *mut c_void) -> Filter<'a> {
    Filter { ptr, _hook: PhantomData }
}

/// The configuration Envoy passed to a config hook.
///
/// # Safety
/// `ptr` is the `config_envoy` pointer of the current config hook (main
/// thread); the handle is used during that hook only.
pub(crate) unsafe fn config_handle<'a>(ptr: *mut c_void) -> ConfigHandle<'a> {
    ConfigHandle { ptr, _hook: PhantomData }
}
