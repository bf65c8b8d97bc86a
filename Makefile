# `make demo` and `make test` work on a machine with only python3: each creates .venv and installs into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The embedded default: MOCCA on scikit-learn's digits, ten one-vs-rest tasks, prints the AUROC table (~2 min).
demo: $(VENV)/.installed
	$(BIN)/python -m jaxad.main --config=configs/quickstart.py --workdir=workdirs/quickstart

# Tests that need the real CIFAR-10/100 and MNIST arrays read $$JAXAD_DATA_DIR (see README, "Data").
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n 2

clean:
	rm -rf $(VENV) workdirs
