# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Each creates the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo console test test-fast lint format clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/klaviyo-export demo

# The web console and API on the demo's own Redis, sandbox and workers, until Ctrl-C;
# CONSOLE_ARGS adds flags (CONSOLE_ARGS="--port 8081").
console: $(STAMP)
	$(BIN)/klaviyo-export demo --serve $(CONSOLE_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

# The 100k-profile benchmark (BENCHMARKS.md); BENCH_ARGS adds or overrides flags.
bench: $(STAMP)
	$(BIN)/python -m bench.run --profiles 100000 --workers 2 $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
