# Every developer command and CI step. `make ci` is the README's test command.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo fmt lint test test-fast test-es9 bench ci clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -c constraints.txt
	touch $(STAMP)

setup: $(STAMP)

demo: setup          ## analyse the shipped example with the embedded store
	$(BIN)/furui analyze examples/ --db furui.duckdb --output incidents.ndjson

fmt: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

test: setup          ## everything, the real Elasticsearch included (the fixture starts it)
	$(BIN)/python -m pytest

test-fast: setup     ## local inner loop; CI never uses it
	$(BIN)/python -m pytest -m "not es and not slow" -x -q

test-es9: setup      ## the Elasticsearch tests against a 9.x server on Java 25
	ES_VERSION=9.5.4 $(BIN)/python -m pytest tests/integration -q

bench: setup
	$(BIN)/python bench/analyze.py

ci: lint test

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
