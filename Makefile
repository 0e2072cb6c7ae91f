# Set-up and the two Quick start commands. Everything installs into .venv beside this file.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: setup demo test test-all lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# The main job: Table 1's comparison on the built-in dataset, CPU-sized (resumable).
demo: setup
	$(BIN)/fqvae reproduce --paper-table 1 --profile quick

# The tests in two tiers (tests/conftest.py marks a test `full` by what it does: it starts a process, a
# server or a browser, or compiles). `test`: the default tier, every module in about a minute on two cores.
# `test-all`: everything, with PostgreSQL, Chromium, child processes, SIGKILL resume, concurrency,
# torch.compile and the wheel (what .ci/run runs). Both run in one process per core (pytest-xdist, idle
# processes take tests from busy ones). pytest's exit 5 (no test collected) fails with a sentence.
TEST_PROCS ?= auto
PYTEST = status=0; $(BIN)/python -m pytest -q -n $(TEST_PROCS) --dist worksteal $(1) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make: pytest collected no tests" >&2; fi; exit $$status

test: setup
	@$(call PYTEST,-m "not full")

test-all: setup
	@$(call PYTEST,)

lint: setup
	$(BIN)/ruff check .
