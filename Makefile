# Ferry: the developer's entry points. `make run` and `make test` are the README's two commands.
SHELL := /bin/bash
UV ?= uv
export UV_LINK_MODE ?= copy

.PHONY: install run up test test-fast lint format bench migrate clean

install:  ## Python deps of every package into .venv (uv workspace)
	$(UV) sync --frozen 2>/dev/null || $(UV) sync

run: install  ## the whole system in one process: embedded SQLite store, in-process bus, demo data
	$(UV) run ferry-api demo

up: install  ## the distributed stack against the running PostgreSQL and RabbitMQ
	$(UV) run python deploy/local/stack.py

test: install  ## the whole suite (needs PostgreSQL and RabbitMQ running; .ci/run starts them)
	$(UV) run pytest -q -ra

test-fast: install  ## unit and contract tests only
	$(UV) run pytest -q tests/unit tests/contract

lint: install
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy

format: install
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

bench: install  ## each Ferry figure beside its raw baseline, measured in the same run
	$(UV) run python -m bench

clean:
	rm -rf .ferry .pytest_cache .ruff_cache .mypy_cache
