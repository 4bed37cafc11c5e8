#!/usr/bin/env python3
"""Removes proxy-wasm callbacks cjwt does not use from a module's export section.

Envoy (proxy-wasm-cpp-host) calls a stream callback only if the module exports it.
The Rust SDK exports every callback, so without this step each request also pays
for VM entries that do nothing: response headers, response body, response trailers,
metadata, access log, done (its default answers "done", as the host does when it
is absent) and the network-filter callbacks. Kept: everything the HTTP
request path, timers, HTTP calls, shared queues and context lifecycle need
(including `proxy_on_request_body`/`_trailers`, which hold a request whose
decision is still pending).

Usage: strip-exports.py MODULE.wasm   (rewrites the file in place; idempotent)
"""
import os
import sys

from wasmbin import enc, leb, sections

UNUSED = {
    "proxy_on_response_headers",
    "proxy_on_response_body",
    "proxy_on_response_trailers",
    "proxy_on_request_metadata",
    "proxy_on_response_metadata",
    "proxy_on_log",
    "proxy_on_done",
    "proxy_on_new_connection",
    "proxy_on_downstream_data",
    "proxy_on_upstream_data",
    "proxy_on_downstream_connection_close",
    "proxy_on_upstream_connection_close",
    "proxy_on_grpc_receive_initial_metadata",
    "proxy_on_grpc_receive_trailing_metadata",
    "proxy_on_grpc_receive",
    "proxy_on_grpc_close",
}
EXPORT_SECTION = 7


def strip(module):
    out, removed = bytearray(module[:8]), []
    for section_id, start, body, end in sections(module):
        if section_id != EXPORT_SECTION:
            out += module[start:end]
            continue
        count, p = leb(module, body)
        kept = []
        for _ in range(count):
            entry = p
            name_len, p = leb(module, p)
            name = module[p : p + name_len].decode()
            p += name_len + 1  # name, then the export kind byte
            _, p = leb(module, p)  # index
            if name in UNUSED:
                removed.append(name)
            else:
                kept.append(module[entry:p])
        if p != end:
            raise SystemExit("malformed export section")
        content = enc(len(kept)) + b"".join(kept)
        out += bytes([EXPORT_SECTION]) + enc(len(content)) + content
    return bytes(out), removed


def main():
    path = sys.argv[1]
    with open(path, "rb") as f:
        module = f.read()
    stripped, removed = strip(module)
    if stripped == module:
        print(f"{path}: no unused callback exports (already stripped)")
        return
    # A new file renamed over the old one: a reader (an Envoy loading it, a
    # concurrent make) sees the whole old module or the whole new one.
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(stripped)
    os.replace(tmp, path)
    print(f"{path}: removed {len(removed)} unused callback exports")


if __name__ == "__main__":
    main()
