# popstream — every target sets itself up: a fresh clone needs only python3 (3.11+).
#   make demo    the main job
#   make test    the whole test suite (lint + unit + integration + e2e)
# The newest CPython >= 3.11 on the machine: the engine runs ~9 % faster on 3.13
# than on 3.11 (214k vs 196k events/s, bench/engine_bench.py). pyenv keeps
# non-global versions off PATH, so look there too.
PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3 \
            $(HOME)/.pyenv/versions/3.12*/bin/python3) \
          $(shell for p in python3.13 python3.12 python3; do \
            $$p -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null \
            && { echo $$p; break; }; done))
VENV   := .venv
# rustup installs cargo here, and a CI shell may not have it on PATH.
export PATH := $(HOME)/.cargo/bin:$(PATH)
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
AS_OF  ?= 2024-06-15T00:00:00Z

.PHONY: demo replay-demo test unit lint tools ops bench bench-smoke clean

# The native engine core (native/, Rust) is compiled by this install (setup.py):
# editing its sources re-runs it. POPSTREAM_NO_NATIVE=1 skips it (pure Python).
NATIVE_SRC := setup.py $(wildcard native/Cargo.toml native/Cargo.lock native/src/*.rs)

$(STAMP): pyproject.toml $(NATIVE_SRC)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@command -v cargo >/dev/null || test -n "$$POPSTREAM_NO_NATIVE" || { \
	  echo "make: cargo (Rust) builds the native engine core; install it" \
	       "(https://rustup.rs) or set POPSTREAM_NO_NATIVE=1 for the pure-Python engine" >&2; \
	  exit 1; }
	@echo "installing popstream (first time: ~2 min, the native core compiles)" >&2
	@$(PY) -m pip install -q -e '.[test,dev]'
	@touch $(STAMP)

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	@$(PY) -m pip install -q -e '.[test,dev,bench]'
	@touch $(BENCH_STAMP)

# make demo CATALOG=walmart: another marketplace's standards (amazon, walmart, ebay, a TOML)
demo: $(STAMP)
	@$(VENV)/bin/popstream demo $(if $(CATALOG),--catalog $(CATALOG))

replay-demo: $(STAMP)
	@$(VENV)/bin/popstream replay samples/events.jsonl --as-of $(AS_OF) --top 5

# The bench extra too: tests/integration/test_bench_smoke.py runs every contender
# (Quix Streams included) on a small log.
# The suite runs on the native engine core; the tests of the engine's results run
# again on the pure-Python engine (issue #14: the fallback is held to the same
# reference and the same persistence format).
ENGINE_TESTS := $(addprefix tests/unit/,test_engine_choice.py test_engine_properties.py \
    test_engine_profiles.py test_engine_bounds.py test_state_migration.py \
    test_changelog.py test_explain.py test_reference_v11.py test_orders.py \
    test_pipeline.py test_fleet.py)

test: lint $(BENCH_STAMP) tools
	@$(PY) -m pytest -q
	@echo "make test: the engine's tests again, on the pure-Python engine" >&2
	@POPSTREAM_ENGINE=python $(PY) -m pytest -q $(ENGINE_TESTS)

tools:
	@bash scripts/install-tools.sh

ops: $(STAMP)
	@$(VENV)/bin/popstream ops generate

unit: $(STAMP)
	@$(PY) -m pytest -q -m unit

lint: $(STAMP)
	@$(VENV)/bin/ruff check streams tests bench
	@$(VENV)/bin/mypy

# ~85 minutes on 2 cores (textbook Faust alone takes 40): the engine alone, then
# every contender on one broker
# (bench/compare.py). Results in bench/results/*.json.
bench: $(BENCH_STAMP)
	@$(PY) -m bench.engine_bench --events 1000000
	@$(PY) -m bench.compare

# A couple of minutes: every contender on a 20,000-event log, checked, nothing written.
bench-smoke: $(BENCH_STAMP)
	@$(PY) -m bench.engine_bench --events 20000 --no-write
	@$(PY) -m bench.compare --events 20000 --sellers 1000 --runs 1 --quick --settle 2 \
	    --recovery-orders 20000 --warmup 3 --measure 3

# Dashboards at fleet size (issue #10): 100,000 sellers' series over 6 h backfilled
# into Debian's Prometheus (promtool), every panel query of every dashboard timed in
# both export modes (bench/dashboards_bench.py; bench/results/dashboards.json).
# ~1 h on 2 cores: 48 GB of OpenMetrics text go through promtool, 12 GB at a time
# (in a temporary directory; --workdir DIR --keep to reuse the TSDBs).
.PHONY: bench-dashboards
bench-dashboards: $(STAMP) tools
	@$(PY) -m bench.dashboards_bench --sellers 100000

# A million sellers on one worker (issue #11): 10M Zipf-distributed orders with their
# events, one worker on an embedded broker; RSS, bytes per order and per seller,
# scrapes in both export modes, /health during scrapes, idle CPU, recovery after
# kill -9, each goal met or profiled (bench/scale_bench.py; bench/results/scale.json).
# ~1 hour (the first time; ~50 minutes once the 4.6 GB log is cached in .cache/bench)
# and ~13 GB of RAM at peak (the worker in all mode).
.PHONY: bench-scale
bench-scale: $(BENCH_STAMP)
	@$(PY) -m bench.scale_bench

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache .hypothesis
