# Set-up and the two Quick start commands. Everything installs into .venv beside this file.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# The main job on the built-in dataset.
demo: setup
	$(BIN)/fqvae data prepare synth3d
	$(BIN)/fqvae data info synth3d
	$(BIN)/fqvae data show synth3d --out synth3d_sheet.png

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
