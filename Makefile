# Two commands for a newcomer: `make run` and `make test`. Both create .venv on demand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench smoke clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/portask serve $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check portask tools tests
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	bash tools/install_smoke.sh

lint: $(STAMP)
	$(BIN)/ruff check portask tools tests

bench: $(STAMP)
	$(BIN)/python -m pytest tests/benchmarks --benchmark-enable -p no:randomly $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist .pytest_cache
