# The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint bench clean

$(VENV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): setup.cfg pyproject.toml | $(VENV)
	$(BIN)/pip install --quiet -e '.[run,test]'
	touch $(STAMP)

run: $(STAMP)
	mkdir -p var
	ACTORIM_DEV=1 ACTORIM_DATA_DIR=$${ACTORIM_DATA_DIR:-var} PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/honcho start -p $${PORT:-8080}

# Three pytest processes at once, the test files split by their recorded time, then the latency
# tests named in tests/shard.py's ALONE by themselves; `$(BIN)/python -m tests.shard --record`
# rewrites tests/durations.json. PYTEST_ARGS go to every pytest (-x, -k, -m); naming files or
# tests in them (tests/test_api.py, ...::test_x) runs one pytest.
test: $(STAMP)
	$(BIN)/python -m tests.shard $(PYTEST_ARGS)

# Pure logic, actors and in-process nodes: no server process, Redis, nginx or Chromium, and none
# of the few bulk tests; under 30 s. Markers: setup.cfg and tests/conftest.py.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not process and not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python tests/benchmarks/runtime.py
	$(BIN)/python tests/benchmarks/sends.py
	$(BIN)/python tests/benchmarks/connect.py
	$(BIN)/python tests/benchmarks/counts.py
	$(BIN)/python tests/benchmarks/quiet.py
	$(BIN)/python tests/benchmarks/redis_topologies.py
	$(BIN)/python tests/benchmarks/reconnect_storm.py

clean:
	rm -rf $(VENV) build *.egg-info
