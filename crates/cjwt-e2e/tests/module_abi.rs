//! The native module's C ABI against the Envoy binary the suites run: every
//! callback libcjwt.so calls is one this Envoy exports, and every hook Envoy
//! requires of an HTTP filter module is exported (checked with `nm -D`, as the
//! bindings in crates/cjwt-module/src/ffi.rs were). Runs whatever CJWT_BUILD says:
//! it tests the built module file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// `nm -D` symbol names of `file`: defined ones, or undefined ones.
fn dynamic_symbols(file: &Path, defined: bool) -> BTreeSet<String> {
    let flag = if defined { "--defined-only" } else { "--undefined-only" };
    let out = Command::new("nm").args(["-D", flag]).arg(file).output().expect("nm (binutils) runs");
    assert!(out.status.success(), "nm -D {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect()
}

/// The hooks Envoy 1.40 looks up for an HTTP filter and refuses to load without
/// (measured one by one with `envoy --mode validate`), and the program hook.
const REQUIRED_HOOKS: [&str; 21] = [
    "envoy_dynamic_module_on_program_init",
    "envoy_dynamic_module_on_http_filter_config_new",
    "envoy_dynamic_module_on_http_filter_config_destroy",
    "envoy_dynamic_module_on_http_filter_new",
    "envoy_dynamic_module_on_http_filter_destroy",
    "envoy_dynamic_module_on_http_filter_request_headers",
    "envoy_dynamic_module_on_http_filter_request_body",
    "envoy_dynamic_module_on_http_filter_request_trailers",
    "envoy_dynamic_module_on_http_filter_response_headers",
    "envoy_dynamic_module_on_http_filter_response_body",
    "envoy_dynamic_module_on_http_filter_response_trailers",
    "envoy_dynamic_module_on_http_filter_stream_complete",
    "envoy_dynamic_module_on_http_filter_http_callout_done",
    "envoy_dynamic_module_on_http_filter_http_stream_headers",
    "envoy_dynamic_module_on_http_filter_http_stream_data",
    "envoy_dynamic_module_on_http_filter_http_stream_trailers",
    "envoy_dynamic_module_on_http_filter_http_stream_complete",
    "envoy_dynamic_module_on_http_filter_http_stream_reset",
    "envoy_dynamic_module_on_http_filter_scheduled",
    "envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark",
    "envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark",
];

#[test]
fn every_callback_the_module_calls_is_exported_by_this_envoy() {
    let module = cjwt_harness::envoy::module_dir().join("libcjwt.so");
    let envoy = cjwt_harness::envoy::envoy_binary();
    let wanted: BTreeSet<String> = dynamic_symbols(&module, false)
        .into_iter()
        .filter(|s| s.starts_with("envoy_dynamic_module_callback_"))
        .collect();
    assert!(wanted.len() >= 10, "the module calls Envoy: {wanted:?}");
    let exported = dynamic_symbols(&envoy, true);
    let missing: Vec<&String> = wanted.iter().filter(|s| !exported.contains(*s)).collect();
    assert!(missing.is_empty(), "callbacks {} does not export: {missing:?}", envoy.display());
}

#[test]
fn every_hook_envoy_requires_is_exported_by_the_module() {
    let module = cjwt_harness::envoy::module_dir().join("libcjwt.so");
    let exported = dynamic_symbols(&module, true);
    let missing: Vec<&&str> = REQUIRED_HOOKS.iter().filter(|h| !exported.contains(**h)).collect();
    assert!(missing.is_empty(), "hooks libcjwt.so does not export: {missing:?}");
    // Nothing but hooks is exported under Envoy's prefix.
    for s in exported.iter().filter(|s| s.starts_with("envoy_dynamic_module_")) {
        assert!(s.starts_with("envoy_dynamic_module_on_"), "unexpected export {s}");
    }
}
