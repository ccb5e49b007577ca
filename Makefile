# Everything runs in a local virtual environment, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# `make FORMAT_CHECK=0 check` leaves out the formatting check (e.g. while a change is half done).
FORMAT_CHECK ?= 1

.PHONY: demo test check install clean

$(BIN)/cacscore: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(BIN)/cacscore

install: $(BIN)/cacscore

demo: install
	$(BIN)/cacscore demo --out demo-output --force

# Lint (with the complexity limit), types and the docstring examples; `make test` runs it first.
check: install
	$(BIN)/ruff check src tests benchmarks scripts
	if [ "$(FORMAT_CHECK)" = 1 ]; then $(BIN)/ruff format --check src tests benchmarks scripts; fi
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider --doctest-modules src/cacscore

test: check
	$(BIN)/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) demo-output
