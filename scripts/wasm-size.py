#!/usr/bin/env python3
"""What each crate costs in a wasm module: code bytes per crate (from the `name`
section's function names), plus data and the rest. `make size` runs it.

Attribution is by the crate that defines a function (generic code instantiated
for cjwt counts for the crate that wrote it), which is what "what does this
dependency cost" asks.

Usage: wasm-size.py MODULE.wasm
"""
import re
import sys
from collections import Counter

from wasmbin import leb, sections


def imported_functions(body):
    count, p = leb(body, 0)
    funcs = 0
    for _ in range(count):
        for _ in range(2):  # module, field
            n, p = leb(body, p)
            p += n
        kind = body[p]
        p += 1
        if kind == 0:
            funcs += 1
            _, p = leb(body, p)
        elif kind == 1:  # table: reftype, limits
            p += 1
            flags, p = leb(body, p)
            _, p = leb(body, p)
            if flags & 1:
                _, p = leb(body, p)
        elif kind == 2:  # memory: limits
            flags, p = leb(body, p)
            _, p = leb(body, p)
            if flags & 1:
                _, p = leb(body, p)
        elif kind == 3:  # global: type, mutability
            p += 2
    return funcs


def function_names(body):
    names, p = {}, 0
    while p < len(body):
        sub = body[p]
        size, p = leb(body, p + 1)
        end = p + size
        if sub == 1:
            count, q = leb(body, p)
            for _ in range(count):
                idx, q = leb(body, q)
                n, q = leb(body, q)
                names[idx] = body[q : q + n].decode("utf-8", "replace")
                q += n
        p = end
    return names


def crate_of(name):
    """The defining crate of a (legacy-mangled or demangled) Rust symbol."""
    m = re.match(r"_ZN(\d+)", name)
    if m:
        n = int(m.group(1))
        start = m.end()
        first = name[start : start + n]
        # `<T as Trait>` impls mangle as `_$LT$...`: take the implementing type's crate.
        inner = re.match(r"_\$LT\$(?:\$RF\$)?([a-z0-9_]+)\.\.", first)
        return inner.group(1) if inner else first
    m = re.match(r"_R.*?C(?:s[0-9a-zA-Z]*_)?(\d+)", name)  # v0 mangling: first crate root
    if m:
        return name[m.end() : m.end() + int(m.group(1))]
    m = re.match(r"<?&?([a-z0-9_]+)::", name)
    if m:
        return m.group(1)
    if name.startswith("proxy_"):
        return "proxy_wasm"
    if name.startswith("dl") or name in ("malloc", "free", "realloc", "calloc", "aligned_alloc"):
        return "dlmalloc (wasi libc)"
    return "(other: libc, compiler builtins)"


def main():
    data = open(sys.argv[1], "rb").read()
    imports, code, names, data_bytes = 0, [], {}, 0
    for sid, _, start, end in sections(data):
        body = data[start:end]
        if sid == 2:
            imports = imported_functions(body)
        elif sid == 10:
            count, p = leb(body, 0)
            for _ in range(count):
                size, q = leb(body, p)
                code.append(q + size - p)
                p = q + size
        elif sid == 11:
            data_bytes = len(body)
        elif sid == 0:
            n, q = leb(body, 0)
            if body[q : q + n] == b"name":
                names = function_names(body[q + n :])
    per_crate = Counter()
    for i, size in enumerate(code):
        per_crate[crate_of(names.get(imports + i, ""))] += size
    total = len(data)
    print(f"{sys.argv[1]}: {total} bytes; code {sum(code)}, data {data_bytes}, other (names, tables) {total - sum(code) - data_bytes}")
    print("code by crate:")
    for crate, size in per_crate.most_common(16):
        print(f"  {size:>8}  {crate}")


if __name__ == "__main__":
    main()
