# gatehouse: every entry point a developer or CI needs.
#   make demo   run gatehouse with a local identity provider and upstream
#   make test   every test: unit, integration, interop and e2e
#   make lint   rustfmt check and clippy with warnings as errors
#   make bench  throughput, latency and memory: gatehouse vs direct upstream,
#               a bare hyper proxy and nginx, in rounds; JSON in target/bench.json
#   make symbol-order  remake the release binary's code layout list (valgrind)
#   make mutants  mutation testing of the security core against the unit tests

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all build demo test lint fmt bench symbol-order e2e mutants clean

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

# The bare hyper proxy baseline lives beside the checkout (../shared/bench);
# without it the bench says so and skips that row.
BARE_PROXY_DIR ?= ../shared/bench/bare-proxy

# The binary is built on its own, as a release or an image build makes it:
# built together with an example, it gets the dev-dependencies' features,
# and other symbol names than src/symbol-order.txt lists.
bench:
	$(CARGO) build --release --bin gatehouse
	$(CARGO) build --release --example bench
	if [ -f $(BARE_PROXY_DIR)/Cargo.toml ]; then \
	  $(CARGO) build --release --manifest-path $(BARE_PROXY_DIR)/Cargo.toml --target-dir target/bare-proxy; fi
	./target/release/examples/bench

# Remakes src/symbol-order.txt (the code the release link lays out first,
# see build.rs) by tracing the release binary under callgrind: needs
# valgrind (apt-get install -y valgrind). About 2 minutes after the build.
symbol-order:
	$(CARGO) build --release --bin gatehouse
	$(CARGO) build --release --example bench
	BENCH_ONLY=symbol-order ./target/release/examples/bench

# The security core (src/http/**, src/auth/**: gate, endpoints, sessions and
# their stores, refresh and replay guards included), mutated one edit at a
# time, each edit run against `cargo test --lib` only (the Redis-backed unit
# tests start a local redis-server). Bounded: this file list (override it
# with MUTANTS_FILES="src/auth/once.rs ..."), and MUTANTS_SHARD=k/n runs one
# slice of it. Slow (10-30 s a mutant on 2 cores, about 1,000 mutants): not
# part of `make test` or CI; measure a file or a shard at a time.
MUTANTS_FILES ?= src/http.rs src/http/** src/auth.rs src/auth/**
MUTANTS_SHARD ?= 0/1
MUTANTS_ARGS ?= --jobs 1
# no debug info for gatehouse itself: each mutant links faster
MUTANTS_CARGO = --cargo-arg=--lib \
	--cargo-arg=--config=profile.dev.package.gatehouse.debug=0 \
	--cargo-arg='--config=profile.dev.package.gatehouse.strip="debuginfo"'

mutants:
	@command -v cargo-mutants >/dev/null 2>&1 || $(CARGO) install cargo-mutants --locked
	nice -n 10 $(CARGO) mutants $(MUTANTS_ARGS) --timeout 120 --build-timeout 600 \
		--shard $(MUTANTS_SHARD) $(MUTANTS_CARGO) \
		$(foreach f,$(MUTANTS_FILES),--file '$(f)')

clean:
	$(CARGO) clean

# deploy/docker/Dockerfile's build without Docker, and the checks of the
# binary the image gets (non-root, --version, --check-config, /ping, ldd)
.PHONY: docker-mirror
docker-mirror:
	deploy/docker/build.sh
