#!/usr/bin/env bash
# Assembles the build context for docker/envoy/Dockerfile in DIR:
#   DIR/Dockerfile, DIR/rootfs/usr/local/bin/envoy, DIR/rootfs/<every library
#   ldd names, at its path>, DIR/rootfs/<the ELF interpreter>, DIR/rootfs/tmp.
# Libraries are copied as files (symlinks resolved), so the image has no links.
#   assemble.sh ENVOY_BINARY DIR
set -euo pipefail
envoy=$1
dir=$2
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$dir"
mkdir -p "$dir/rootfs/usr/local/bin" "$dir/rootfs/tmp"
chmod 1777 "$dir/rootfs/tmp"
cp "$here/Dockerfile" "$dir/Dockerfile"
cp "$envoy" "$dir/rootfs/usr/local/bin/envoy"
# `ldd` lines: "libm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x...)" and the
# loader "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file.
ldd_out=$(ldd "$envoy")
if grep -q 'not found' <<<"$ldd_out"; then echo "$envoy: missing libraries:"; echo "$ldd_out"; exit 1; fi
libs=$(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_out")
[ -n "$libs" ] || { echo "ldd named no libraries for $envoy"; exit 1; }
# The native module (libcjwt.so, a Rust cdylib that unwinds panics) needs
# libgcc_s beyond what Envoy links: add it so the image loads either build.
gcc_s=$(ldconfig -p | awk '$1 == "libgcc_s.so.1" && $NF ~ /^\// { print $NF; exit }')
[ -n "$gcc_s" ] || { echo "libgcc_s.so.1 not found (ldconfig -p)"; exit 1; }
libs="$libs $gcc_s"
for lib in $libs; do
  mkdir -p "$dir/rootfs$(dirname "$lib")"
  cp -L "$lib" "$dir/rootfs$lib"
  echo "  $lib"
done
