#!/usr/bin/env bash
# Assembles the build context of an image FROM scratch out of host binaries
# (docker/envoy, docker/etcd) in DIR:
#   DIR/Dockerfile, DIR/rootfs/usr/local/bin/<each binary's name>,
#   DIR/rootfs/<every library ldd names for any of them, at its path>,
#   DIR/rootfs/<the ELF interpreter>, DIR/rootfs/tmp (mode 1777).
# Libraries are copied as files (symlinks resolved), so the image has no links.
# `--lib SONAME` adds a library no binary links but something loaded later
# needs (found with `ldconfig -p`).
#   assemble.sh [--lib SONAME]... DOCKERFILE DIR BINARY...
set -euo pipefail
extra=()
while [ "${1:-}" = --lib ]; do extra+=("$2"); shift 2; done
[ $# -ge 3 ] || { echo "usage: $0 [--lib SONAME]... DOCKERFILE DIR BINARY..." >&2; exit 2; }
dockerfile=$1
dir=$2
shift 2
rm -rf "$dir"
mkdir -p "$dir/rootfs/usr/local/bin" "$dir/rootfs/tmp"
chmod 1777 "$dir/rootfs/tmp"
cp "$dockerfile" "$dir/Dockerfile"
libs=""
for bin in "$@"; do
  cp "$bin" "$dir/rootfs/usr/local/bin/$(basename "$bin")"
  # `ldd` lines: "libm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x...)" and the
  # loader "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file.
  ldd_out=$(ldd "$bin")
  if grep -q 'not found' <<<"$ldd_out"; then echo "$bin: missing libraries:"; echo "$ldd_out"; exit 1; fi
  found=$(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_out")
  [ -n "$found" ] || { echo "ldd named no libraries for $bin"; exit 1; }
  libs="$libs $found"
done
# The cache is read whole first: with pipefail, an awk that stopped at the first match
# would fail the pipe whenever ldconfig was still writing (SIGPIPE, exit 141).
cache=$(ldconfig -p)
for soname in ${extra[@]+"${extra[@]}"}; do
  path=$(awk -v n="$soname" '$1 == n && $NF ~ /^\// && !found { print $NF; found = 1 }' <<<"$cache")
  [ -n "$path" ] || { echo "$soname not found (ldconfig -p)"; exit 1; }
  libs="$libs $path"
done
for lib in $(tr ' ' '\n' <<<"$libs" | sort -u); do
  mkdir -p "$dir/rootfs$(dirname "$lib")"
  cp -L "$lib" "$dir/rootfs$lib"
  echo "  $lib"
done
