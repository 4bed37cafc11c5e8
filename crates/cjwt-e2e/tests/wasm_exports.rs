//! The built module exports exactly the proxy-wasm callbacks cjwt needs: Envoy
//! enters the VM for every exported stream callback, so unused ones cost each
//! request a VM entry (about 3 µs of Envoy CPU in `make bench`); missing
//! request-path ones would break the filter. `make build` strips them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_harness::envoy::wasm_path;

fn leb(data: &[u8], pos: &mut usize) -> u64 {
    let (mut value, mut shift) = (0u64, 0);
    loop {
        let byte = data[*pos];
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        shift += 7;
        if byte < 0x80 {
            return value;
        }
    }
}

fn exports(module: &[u8]) -> Vec<String> {
    assert_eq!(&module[..4], b"\0asm");
    let mut pos = 8;
    while pos < module.len() {
        let id = module[pos];
        pos += 1;
        let size = leb(module, &mut pos) as usize;
        if id == 7 {
            let mut p = pos;
            let count = leb(module, &mut p);
            return (0..count)
                .map(|_| {
                    let len = leb(module, &mut p) as usize;
                    let name = String::from_utf8(module[p..p + len].to_vec()).unwrap();
                    p += len + 1;
                    leb(module, &mut p);
                    name
                })
                .collect();
        }
        pos += size;
    }
    Vec::new()
}

#[test]
fn the_module_exports_the_request_path_and_nothing_that_costs_per_stream_for_nothing() {
    let names = exports(&std::fs::read(wasm_path()).unwrap());
    for needed in [
        "proxy_abi_version_0_2_1",
        "proxy_on_memory_allocate",
        "proxy_on_context_create",
        "proxy_on_vm_start",
        "proxy_on_configure",
        "proxy_on_tick",
        "proxy_on_http_call_response",
        "proxy_on_request_headers",
        "proxy_on_request_body",
        "proxy_on_request_trailers",
        "proxy_on_delete",
    ] {
        assert!(names.iter().any(|n| n == needed), "{needed} missing from {names:?}");
    }
    for unused in [
        "proxy_on_response_headers",
        "proxy_on_response_body",
        "proxy_on_response_trailers",
        "proxy_on_log",
        "proxy_on_done",
        "proxy_on_downstream_data",
    ] {
        assert!(!names.iter().any(|n| n == unused), "{unused} is exported: build with `make build`");
    }
}
