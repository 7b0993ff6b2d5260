# libshardvt — build, test, demo. Every path here is relative to the repository.
SHELL := /bin/bash
export SQLITE3_NO_PKG_CONFIG := 1
CARGO ?= cargo
EXT := libshardvt.so
PY ?= python3
SQLITE3 ?= sqlite3

.PHONY: all build test unit golden slt conformance conformance-nightly python rust-host outbox-e2e outbox-e2e-nats demo bench bench-wal crash soak clean check-so

all: build

build: $(EXT)

$(EXT): Cargo.toml $(shell find src sql -type f 2>/dev/null)
	$(CARGO) build --release --lib
	cp target/release/libshardvt.so $(EXT).tmp && mv -f $(EXT).tmp $(EXT)  # atomic: running hosts keep the old mapping

# The extension must never link libsqlite3 itself (it uses the host's routines).
check-so: $(EXT)
	@if readelf -d $(EXT) | grep -q 'libsqlite3'; then echo "FAIL: $(EXT) links libsqlite3"; exit 1; fi
	@nm -D --defined-only $(EXT) | grep -q ' T sqlite3_shardvt_init' || { echo "FAIL: no sqlite3_shardvt_init"; exit 1; }
	@echo "check-so: $(EXT) exports sqlite3_shardvt_init and does not link libsqlite3"

unit:
	$(CARGO) test --lib

golden: $(EXT)
	bash tests/golden/run.sh

slt: $(EXT)
	$(PY) tests/slt/run_slt.py --ext ./$(EXT) tests/slt/*.slt

conformance: $(EXT)
	$(PY) tests/slt/run_slt.py --ext ./$(EXT) --mode hash ../shared/conformance/sqllogictest/compact
	$(PY) tests/slt/run_slt.py --ext ./$(EXT) --mode prefix ../shared/conformance/sqllogictest/compact

# SQLite's longer sqllogictest set (../shared/conformance/sqllogictest/nightly.tar.gz, 53 files,
# about 6 minutes here; not part of `make test`): unpacked into a temp folder, run natively
# first (the baseline counts), then with every table sharded by hash and by prefix.
conformance-nightly: $(EXT)
	set -o pipefail; d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && tar xzf ../shared/conformance/sqllogictest/nightly.tar.gz -C "$$d" && \
	$(PY) tests/slt/run_slt.py --mode native "$$d" | tail -1 && \
	$(PY) tests/slt/run_slt.py --ext ./$(EXT) --mode hash "$$d" | tail -3 && \
	$(PY) tests/slt/run_slt.py --ext ./$(EXT) --mode prefix "$$d" | tail -3

python: $(EXT)
	$(PY) -m pytest -q tests/python

# A Rust host (rusqlite, bundled SQLite 3.54) loads the extension; separate Cargo project.
rust-host: $(EXT)
	cd tests/rust_host && $(CARGO) build --release --quiet
	tests/rust_host/target/release/shardvt-rust-host ./$(EXT)

test: check-so unit golden slt conformance python rust-host

# Outbox → PostgreSQL end to end, directly and through NATS JetStream (needs the postgresql and
# nats-server packages, psycopg and nats-py; .ci/run installs them). Both run even if the first fails.
outbox-e2e: $(EXT)
	rc=0; bash tests/outbox_e2e/run.sh || rc=1; bash tests/outbox_e2e/run_nats.sh || rc=1; exit $$rc

outbox-e2e-nats: $(EXT)
	bash tests/outbox_e2e/run_nats.sh

# Benchmarks and long runs (not part of `make test`).
bench: $(EXT)
	$(PY) bench/bench.py --ext ./$(EXT)
	$(PY) bench/outbox_bench.py --ext ./$(EXT)

bench-wal: $(EXT)
	$(PY) bench/wal_bench.py --ext ./$(EXT)
	$(PY) bench/vfs_bench.py --ext ./$(EXT)

crash: $(EXT)
	$(PY) tests/crash/harness.py --rounds 1000

soak: $(EXT)
	$(PY) tests/crash/soak.py --procs 4 --seconds 60

demo: $(EXT)
	@rm -rf build/demo && mkdir -p build/demo
	$(SQLITE3) -bail build/demo/demo.db < examples/quickstart.sql

clean:
	$(CARGO) clean
	rm -rf $(EXT) build
