# Two commands for a newcomer: `make run` and `make test`. Both create .venv on demand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Node client libraries (kafkajs) for the tests; skipped where npm is not installed.
JS_STAMP := tests/js/node_modules/.installed
JS_DEPS  := $(if $(shell command -v npm),$(JS_STAMP))

.PHONY: run test lint bench fuzz smoke clean amqp-load

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(JS_STAMP): tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
	touch $(JS_STAMP)

run: $(STAMP)
	$(BIN)/portask serve $(ARGS)

# Two pytest-xdist workers (the machines CI runs on have 2 cores); TEST_WORKERS=0 runs
# the suite in one process.
TEST_WORKERS ?= 2

test: $(STAMP) $(JS_DEPS)
	$(BIN)/ruff check portask tools tests
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)
	bash tools/install_smoke.sh

lint: $(STAMP)
	$(BIN)/ruff check portask tools tests

bench: $(STAMP)
	$(BIN)/python -m pytest tests/benchmarks --benchmark-enable -p no:randomly $(PYTEST_ARGS)

# Long fuzzing: every fuzz target with the long hypothesis profile, then the end-to-end
# fuzz test against a running broker for FUZZ_SECONDS (tests/conftest.py gives these
# tests per-test timeouts that fit).
FUZZ_SECONDS ?= 600
fuzz: $(STAMP)
	$(BIN)/python -m pytest -m fuzz --fuzz-profile=fuzz-long --fuzz-seconds=$(FUZZ_SECONDS) \
		-rxX $(PYTEST_ARGS)

# The C AMQP load tool (tools/amqp_load.c) on Debian's librabbitmq-dev: a client that
# costs the broker's CPU-per-message figures far less noise than tools/loadtest.py.
AMQP_LOAD_CC ?= gcc
AMQP_LOAD_CFLAGS ?= -O2 -Wall -Wextra -std=gnu11

amqp-load: build/amqp-load

build/amqp-load: tools/amqp_load.c
	mkdir -p build
	$(AMQP_LOAD_CC) $(AMQP_LOAD_CFLAGS) -pthread -o $@ $< -lrabbitmq -lm

clean:
	rm -rf $(VENV) build dist .pytest_cache tests/js/node_modules
