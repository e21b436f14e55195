# One command runs every check: `make check` (lint, types, tests).
PY ?= .venv/bin/python

.PHONY: check lint format types test bench bench-quick schemas

check: lint types test

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format:
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

types:
	$(PY) -m mypy publisher examples

schemas:
	$(PY) -m publisher schemas

test:
	$(PY) -m pytest

bench:
	$(PY) -m bench

bench-quick:
	$(PY) -m bench --quick
