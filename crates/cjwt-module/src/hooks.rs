//! The hooks Envoy looks up by name (`envoy_dynamic_module_on_*`): each turns
//! Envoy's pointers into this module's objects and handles (through the floor,
//! [`crate::ffi`]) and hands the event to [`crate::config`] or [`crate::stream`].
//! Every hook catches panics: a panic never unwinds into Envoy. A panic while
//! deciding a request answers 503 and stops it (see [`crate::stream`]).
//!
//! `unsafe_code` is allowed here for two reasons only: `#[no_mangle]` (which the
//! lint counts) on every hook, and the calls into the floor's conversions, each
//! with its SAFETY note. No pointer is dereferenced here, and no C type is
//! declared: that is [`crate::ffi`]'s, the one module below this one.

#![allow(unsafe_code)]

use crate::config::ModuleConfig;
use crate::ffi::{
    borrow, borrow_mut, callout_answer, config_handle, envoy_buffer, envoy_bytes, envoy_http_header, filter, hand_out,
    log, take_back, Level, ABI_VERSION, BODY_CONTINUE, BODY_STOP_AND_BUFFER, HEADERS_STOP, TRAILERS_CONTINUE,
    TRAILERS_STOP,
};
use crate::stream::Stream;
use cjwt_core::StoreCall;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, turning a panic into `on_panic()`'s value; the panic's message goes
/// to Envoy's log.
fn guard<T>(f: impl FnOnce() -> T, on_panic: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        log(Level::Error, &format!("cjwt: internal error (panic: {message}); failing closed"));
        on_panic()
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    ABI_VERSION.as_ptr()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: *mut c_void,
    _name: envoy_buffer,
    config: envoy_buffer,
) -> *const c_void {
    // SAFETY: this config hook's own pointer, used during the hook.
    let handle = unsafe { config_handle(config_envoy) };
    // SAFETY: Envoy's config bytes, valid during this hook.
    let bytes = unsafe { envoy_bytes(config) };
    guard(
        || match ModuleConfig::new(handle, bytes) {
            Some(c) => hand_out(Box::new(c)),
            None => std::ptr::null(),
        },
        || {
            log(Level::Error, "cjwt: internal error while loading the configuration; refused");
            std::ptr::null()
        },
    )
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config_module: *const c_void) {
    // SAFETY: the Box handed out by config_new, taken back once, here.
    if let Some(boxed) = unsafe { take_back::<ModuleConfig>(config_module) } {
        guard(move || drop(boxed), || ());
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    config_envoy: *mut c_void,
    config_module: *const c_void,
    event: u64,
) {
    // SAFETY: this config hook's own pointer, used during the hook.
    let handle = unsafe { config_handle(config_envoy) };
    // SAFETY: our live config (Envoy runs no config hook after destroy).
    if let Some(c) = unsafe { borrow::<ModuleConfig>(config_module) } {
        guard(|| c.on_scheduled(handle, event), || log(Level::Error, "cjwt: internal error in a scheduled task"));
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    config_envoy: *mut c_void,
    config_module: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const envoy_http_header,
    headers_size: usize,
    body_chunks: *const envoy_buffer,
    body_chunks_size: usize,
) {
    // SAFETY: this config hook's own pointer, used during the hook.
    let handle = unsafe { config_handle(config_envoy) };
    // SAFETY: Envoy's arrays, valid during this hook (or null/0 on failure).
    let answer = unsafe { callout_answer(result, headers, headers_size, body_chunks, body_chunks_size, usize::MAX) };
    // SAFETY: our live config.
    if let Some(c) = unsafe { borrow::<ModuleConfig>(config_module) } {
        guard(
            || c.on_callout_done(handle, callout_id, answer),
            || log(Level::Error, "cjwt: internal error handling a key fetch"),
        );
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config_module: *const c_void,
    _filter_envoy: *mut c_void,
) -> *const c_void {
    // SAFETY: our live config (streams are created only while it is).
    let Some(c) = (unsafe { borrow::<ModuleConfig>(config_module) }) else {
        return std::ptr::null();
    };
    guard(|| hand_out(Box::new(Stream::new(c))), std::ptr::null)
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter_module: *const c_void) {
    // SAFETY: the Box handed out by filter_new, taken back once, here.
    if let Some(boxed) = unsafe { take_back::<Stream>(filter_module) } {
        guard(move || drop(boxed), || ());
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: *mut c_void,
    filter_module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: this stream hook's own pointer, used during the hook, on its worker.
    let f = unsafe { filter(filter_envoy) };
    // SAFETY: our live stream, on its worker.
    let Some(s) = (unsafe { borrow_mut::<Stream>(filter_module) }) else {
        crate::stream::internal_error(f);
        return HEADERS_STOP;
    };
    guard(
        || s.on_request_headers(f),
        || {
            crate::stream::internal_error(f);
            HEADERS_STOP
        },
    )
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _filter_envoy: *mut c_void,
    filter_module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: our live stream, on its worker.
    match unsafe { borrow_mut::<Stream>(filter_module) } {
        Some(s) if s.allowed() => BODY_CONTINUE,
        _ => BODY_STOP_AND_BUFFER,
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter_envoy: *mut c_void,
    filter_module: *const c_void,
) -> u32 {
    // SAFETY: our live stream, on its worker.
    match unsafe { borrow_mut::<Stream>(filter_module) } {
        Some(s) if s.allowed() => TRAILERS_CONTINUE,
        _ => TRAILERS_STOP,
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _f: *mut c_void,
    _m: *const c_void,
    _eos: bool,
) -> u32 {
    0
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_response_body(_f: *mut c_void, _m: *const c_void, _eos: bool) -> u32 {
    0
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(_f: *mut c_void, _m: *const c_void) -> u32 {
    0
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy: *mut c_void,
    filter_module: *const c_void,
) {
    // SAFETY: our live stream, on its worker.
    if let Some(s) = unsafe { borrow_mut::<Stream>(filter_module) } {
        guard(|| s.on_complete(), || ());
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    filter_envoy: *mut c_void,
    filter_module: *const c_void,
    event: u64,
) {
    // SAFETY: this stream hook's own pointer, used during the hook, on its worker.
    let f = unsafe { filter(filter_envoy) };
    // SAFETY: our live stream, on its worker.
    if let Some(s) = unsafe { borrow_mut::<Stream>(filter_module) } {
        guard(|| s.on_scheduled(f, event), || crate::stream::internal_error(f));
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    filter_envoy: *mut c_void,
    filter_module: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const envoy_http_header,
    headers_size: usize,
    body_chunks: *const envoy_buffer,
    body_chunks_size: usize,
) {
    // The stream's own calls: the usage store's (key fetches are configuration-level).
    // SAFETY: this stream hook's own pointer, used during the hook, on its worker.
    let f = unsafe { filter(filter_envoy) };
    // SAFETY: Envoy's arrays, valid during this hook (or null/0 on failure).
    let answer = unsafe {
        callout_answer(result, headers, headers_size, body_chunks, body_chunks_size, StoreCall::MAX_ANSWER_BYTES)
    };
    // SAFETY: our live stream, on its worker.
    if let Some(s) = unsafe { borrow_mut::<Stream>(filter_module) } {
        guard(|| s.on_callout_done(f, callout_id, answer), || crate::stream::internal_error(f));
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _f: *mut c_void,
    _m: *const c_void,
    _stream: u64,
    _headers: *const envoy_http_header,
    _size: usize,
    _end: bool,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _f: *mut c_void,
    _m: *const c_void,
    _stream: u64,
    _data: *const envoy_buffer,
    _count: usize,
    _end: bool,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _f: *mut c_void,
    _m: *const c_void,
    _stream: u64,
    _trailers: *const envoy_http_header,
    _size: usize,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _f: *mut c_void,
    _m: *const c_void,
    _stream: u64,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _f: *mut c_void,
    _m: *const c_void,
    _stream: u64,
    _reason: u32,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _f: *mut c_void,
    _m: *const c_void,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _f: *mut c_void,
    _m: *const c_void,
) {
}
