# `make run` and `make test` each do all the set-up they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench proto lint system-deps stack stack-down

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

system-deps:
	scripts/install-system-deps

# The daemon and one edge on loopback with examples/policy.lua (Ctrl-C stops both).
run: $(VENV)/.installed
	scripts/run-dev

# The docker compose dev stack (builds the local base image on first use).
stack: $(VENV)/.installed
	scripts/compose up -d --build --wait

stack-down: $(VENV)/.installed
	scripts/compose down

test: $(VENV)/.installed system-deps
	$(BIN)/python -m pytest -n auto

# The benchmark (about 6 minutes); results in bench/results/<time>/.
bench: $(VENV)/.installed system-deps
	$(BIN)/python -m bench

# Regenerate the gRPC bindings from proto/ (a test fails when they are stale).
proto: $(VENV)/.installed
	$(BIN)/python proto/generate.py

# Style and types: ruff, and mypy (its settings are in pyproject.toml).
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
