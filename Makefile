# gatehouse: every entry point a developer or CI needs.
#   make demo   run gatehouse with a local identity provider and upstream
#   make test   every test: unit, integration, interop and e2e
#   make lint   rustfmt check and clippy with warnings as errors
#   make bench  throughput, latency and memory, gatehouse vs direct upstream

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all build demo test lint fmt bench e2e clean

all: build

build:
	$(CARGO) build --release

demo:
	$(CARGO) run --example demo

test:
	$(CARGO) test --all-targets --no-fail-fast

e2e:
	GATEHOUSE_REQUIRE_E2E=1 $(CARGO) test --all-targets --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench:
	$(CARGO) build --release --bin gatehouse --example bench
	./target/release/examples/bench

clean:
	$(CARGO) clean
