# Two commands on a fresh machine: `make run` and `make test`. Everything else is here too.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help install run test test-multiserver check lint typecheck proto proto-check docs migrate bench soak clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s '	'

CLIENT := clients/python

# Two distributions: the server (this folder) and the client (clients/python), both editable. The client
# goes second: in a venv from before the split, reinstalling the server removes the jobctl it used to own.
$(STAMP): pyproject.toml $(CLIENT)/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	$(VENV)/bin/pip install --quiet -e '$(CLIENT)[completion]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the server and the client (editable) with the dev tools

run: $(STAMP)  ## start api, scheduler and one executor (embedded PostgreSQL unless DATABASE_URL is set, a mail sink unless SMTP_HOST is set)
	$(PY) -m scripts.run_local

test: $(STAMP)  ## run the test suite against real PostgreSQL (TEST_DATABASE_URL, default the local server)
	$(PY) -m pytest -n auto -m "not multiserver" $(PYTEST_ARGS)

test-multiserver: $(STAMP)  ## the PgBouncer and failover tests: private servers, many processes, one at a time (minutes)
	$(PY) -m pytest -n 0 -m multiserver $(PYTEST_ARGS)

check: lint typecheck proto-check test  ## everything CI checks

lint: $(STAMP)  ## ruff and buf lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/buf lint

typecheck: $(STAMP)  ## mypy over the project (generated code excluded)
	$(VENV)/bin/mypy services shared scripts tests bench soak $(CLIENT)/jobclient examples

GENERATED := shared/proto $(CLIENT)/jobclient/_proto

proto: $(STAMP)  ## regenerate from proto/: shared/proto (the Python code and the OpenAPI document) and the client's jobclient/_proto
	$(PY) -m scripts.gen_protos

proto-check: proto  ## fail when the committed generated code differs from a fresh generation
	@git diff --exit-code --stat -- $(GENERATED) || { echo "generated code is out of date: run 'make proto' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- $(GENERATED))" || { echo "untracked generated files: run 'make proto' and commit"; git status --porcelain -- $(GENERATED); exit 1; }

docs: $(STAMP)  ## rewrite the settings tables in README.md and docs/*.md from the settings' declarations
	$(PY) -m scripts.gen_settings_docs

migrate: $(STAMP)  ## apply the migrations to DATABASE_URL (jobservice migrate)
	$(VENV)/bin/jobservice migrate

bench: $(STAMP)  ## run the benchmark scenarios (not part of make test)
	$(PY) -m bench

soak: $(STAMP)  ## sustained load with executors killed on a schedule (default 10 minutes; not part of make test)
	$(PY) -m soak $(SOAK_ARGS)

clean:  ## remove the venv, caches and the embedded database
	rm -rf $(VENV) .data .mypy_cache .ruff_cache .pytest_cache
