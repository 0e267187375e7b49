# popstream — every target sets itself up: a fresh clone needs only python3 (3.11+).
#   make demo    the main job
#   make test    the whole test suite (lint + unit + integration + e2e)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
AS_OF  ?= 2024-06-15T00:00:00Z

.PHONY: demo test unit lint bench bench-smoke clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[test,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	@$(VENV)/bin/popstream replay samples/events.jsonl --as-of $(AS_OF) --top 5

test: lint $(STAMP)
	@$(PY) -m pytest -q

unit: $(STAMP)
	@$(PY) -m pytest -q -m unit

lint: $(STAMP)
	@$(VENV)/bin/ruff check streams tests bench
	@$(VENV)/bin/mypy

bench: $(STAMP)
	@$(PY) -m bench.engine_bench --events 1000000

bench-smoke: $(STAMP)
	@$(PY) -m bench.engine_bench --events 20000 --no-write

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache .hypothesis
