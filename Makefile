# Short aliases for the usual chores. See README.md ("Running") for what each one does.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two installs, one stamp each: `make run` needs the runtime only (the app, its
# dependencies and the PostgreSQL driver), `make test` adds the test tools. Each stamp is
# redone only when pyproject.toml is newer, so going back and forth reinstalls nothing.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv run test lint clean

help:  ## List the targets.
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

venv: $(DEV_STAMP)  ## Create .venv and install the project with its dev extras.

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The distribution was called notifyproject before it held the app alone; an old checkout's
# editable install of that name would shadow the new one, so it goes first.
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip uninstall -y -q notifyproject 2>/dev/null || true
	$(BIN)/python -m pip install -e ".[postgres]"
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip uninstall -y -q notifyproject 2>/dev/null || true
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

# run_stack checks the port and Redis before it migrates and seeds (once: a restart logs
# nobody out), so a start that fails changes nothing.
run: $(RUN_STAMP)  ## Run Redis (if needed), migrate, seed the demo users once, daphne, the listener.
	$(BIN)/python manage.py run_stack

# The custom-user-model suite needs settings of its own (AUTH_USER_MODEL is fixed per run).
# Exit status 5 is pytest's "no tests collected" (e.g. PYTEST_ARGS filtered them all out).
test: $(DEV_STAMP)  ## Run the test suite (extra pytest arguments: make test PYTEST_ARGS="-k bell").
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	if [ -d tests/custom_user ]; then \
		$(BIN)/python -m pytest -p no:cacheprovider --ds=tests.settings_custom_user \
			tests/custom_user $(PYTEST_ARGS) || [ $$? -eq 5 ]; \
	fi

lint: $(DEV_STAMP)  ## Ruff lint and format check.
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:  ## Remove caches and build output (keeps .venv and the SQLite database).
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info test-artifacts
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
