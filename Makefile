# vmportal — `make help` lists the targets.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "} {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

install: ## Create .venv and install vmportal with its test tools
	@scripts/venv.sh

run: install ## Run the portal on its embedded default (SQLite, simulator, in-process tasks, demo data)
	$(VENV)/bin/vmportal serve --demo

bootstrap: ## Install Debian packages and start PostgreSQL and Redis (needs root)
	@scripts/bootstrap.sh

lint: install ## ruff, mypy and the rules of docs/architecture.md (lint-imports, queries in repositories)
	$(VENV)/bin/ruff check vmportal hypervisors policies tests bench scripts
	$(VENV)/bin/ruff format --check vmportal hypervisors policies tests bench scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	$(PY) scripts/check_queries.py

test: bootstrap lint ## Everything: lint, the whole suite on SQLite, the API suite on PostgreSQL
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)
	VMPORTAL_TEST_DB=postgres $(PY) -m pytest -n 2 tests/api tests/web/test_vm_lane.py tests/security/test_processing_coalesced.py $(PYTEST_ARGS)

test-fast: install ## The suite on SQLite only, no lint
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

migration: install ## Generate a migration from model changes: make migration m="what changed"
	$(PY) -m vmportal.app.devtools new-migration "$(m)"

.PHONY: help install run bootstrap lint test test-fast migration
