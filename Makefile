# Everything runs in a local virtual environment, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install clean

$(BIN)/cacscore: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(BIN)/cacscore

install: $(BIN)/cacscore

demo: install
	$(BIN)/cacscore demo --out demo-output --force

test: install
	$(BIN)/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) demo-output
