//! Any bytes as plugin configuration (JSON or protobuf Struct): refused or
//! compiled, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cjwt_core::config::Config::from_plugin_bytes(data);
});
