# Ferry: the developer's entry points. `make run` and `make test` are the README's two commands.
SHELL := /bin/bash
# uv from the PATH, or installed once into .tools/uv when missing (needs only python3).
UV ?= $(shell bash deploy/dev/ensure-uv.sh)
export UV_LINK_MODE ?= copy

.PHONY: install run up test test-fast lint format bench migrate clean services check-packages

install:  ## Python deps of every package into .venv (uv workspace)
	$(UV) sync --frozen 2>/dev/null || $(UV) sync

run: install  ## the whole system in one process: embedded SQLite store, in-process bus, demo data
	$(UV) run ferry-demo

up: install  ## the distributed stack against the running PostgreSQL and RabbitMQ (own database, vhost; demo data)
	$(UV) run python deploy/local/stack.py

services:  ## start the local PostgreSQL and RabbitMQ the tests use, if installed and stopped
	@bash deploy/dev/ensure-services.sh

test: install services  ## the whole suite, on the local PostgreSQL and RabbitMQ
	$(UV) run pytest -q -ra

check-packages:  ## each package installed alone with only its declared dependencies
	UV=$(UV) bash deploy/dev/check-packages.sh

test-fast: install  ## unit and contract tests only
	$(UV) run pytest -q tests/unit tests/contract

lint: install  ## ruff, mypy, and the import rules of pyproject.toml's [tool.importlinter]
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy
	$(UV) run lint-imports

format: install
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

bench: install  ## each Ferry figure beside its raw baseline, measured in the same run
	$(UV) run python -m bench

clean:
	rm -rf .ferry .pytest_cache .ruff_cache .mypy_cache
