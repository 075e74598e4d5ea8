# Two commands on a fresh machine: `make run` and `make test`. Everything else is here too.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help install run test check lint typecheck proto proto-check migrate bench soak clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s '	'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project with its dev tools

run: $(STAMP)  ## start api, scheduler and one executor (embedded PostgreSQL unless DATABASE_URL is set)
	$(PY) -m scripts.run_local

test: $(STAMP)  ## run the test suite against real PostgreSQL (TEST_DATABASE_URL, default the local server)
	$(PY) -m pytest -n auto $(PYTEST_ARGS)

check: lint typecheck proto-check test  ## everything CI checks

lint: $(STAMP)  ## ruff and buf lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/buf lint

typecheck: $(STAMP)  ## mypy over the project (generated code excluded)
	$(VENV)/bin/mypy services shared scripts tests bench soak jobclient examples

proto: $(STAMP)  ## regenerate shared/proto from proto/
	$(PY) scripts/gen_protos.py

proto-check: proto  ## fail when the committed generated code differs from a fresh generation
	@git diff --exit-code --stat -- shared/proto || { echo "shared/proto is out of date: run 'make proto' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- shared/proto)" || { echo "untracked generated files: run 'make proto' and commit"; git status --porcelain -- shared/proto; exit 1; }

migrate: $(STAMP)  ## apply the Alembic migrations to DATABASE_URL
	$(VENV)/bin/alembic upgrade head

bench: $(STAMP)  ## run the benchmark scenarios (not part of make test)
	$(PY) -m bench

soak: $(STAMP)  ## sustained load with executors killed on a schedule (default 10 minutes; not part of make test)
	$(PY) -m soak $(SOAK_ARGS)

clean:  ## remove the venv, caches and the embedded database
	rm -rf $(VENV) .data .mypy_cache .ruff_cache .pytest_cache
