# Short aliases for the usual chores. See README.md ("Running") for what each one does.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv run test lint clean

help:  ## List the targets.
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

venv: $(STAMP)  ## Create .venv and install the project with its dev extras.

# Reinstalls only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

run: venv  ## Migrate, seed the demo users, run Redis (if needed), daphne and the listener.
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python scripts/run_stack.py

test: venv  ## Run the test suite (extra pytest arguments: make test PYTEST_ARGS="-k bell").
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv  ## Ruff lint and format check.
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:  ## Remove caches and build output (keeps .venv and the SQLite database).
	rm -rf .pytest_cache .ruff_cache build *.egg-info test-artifacts
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
