# DeployForge: `make up` runs the suite on this machine, `make test` proves it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install up test unit integration integration-machine lint typecheck bench clean models

$(STAMP): pyproject.toml client/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e client -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

up: install
	$(BIN)/deployforge up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q

unit: install
	$(BIN)/pytest -q tests/unit

integration: install
	$(BIN)/pytest -q tests/integration tests/e2e tests/chaos

# CI's second pass, against the machine's own NATS and PostgreSQL (see .ci/run).
integration-machine: install
	$(BIN)/pytest -q tests/integration \
	  --ignore=tests/integration/domains --ignore=tests/integration/edge \
	  --ignore=tests/integration/ui/test_ui_browser.py

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The SDK's TypedDicts from the OpenAPI document (tests/unit/client/test_models.py).
models: install
	$(BIN)/python client/generate_models.py
