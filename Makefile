# Set-up and the two Quick start commands. Everything installs into .venv beside this file.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: setup demo test lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# The main job: Table 1's comparison on the built-in dataset, CPU-sized (resumable).
demo: setup
	$(BIN)/fqvae reproduce --paper-table 1 --profile quick

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
