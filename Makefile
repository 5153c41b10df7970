# Two set-up commands: `make run` and `make test`. Each bootstraps .venv from requirements.lock.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-all lint fmt ui bench dev clean

$(STAMP): requirements.lock pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -c "from segment2b.storage.compiled import warm_up; warm_up()"
	touch $(STAMP)

dev: $(STAMP)

run: $(STAMP)
	$(BIN)/segment2b run

test: $(STAMP)
	$(BIN)/python -m ruff check segment2b segment2b_tests
	$(BIN)/python -m pytest

test-all: $(STAMP)
	$(BIN)/python -m pytest -m ""

lint: $(STAMP)
	$(BIN)/python -m ruff check segment2b segment2b_tests
	$(BIN)/python -m ruff format --check segment2b segment2b_tests

fmt: $(STAMP)
	$(BIN)/python -m ruff format segment2b segment2b_tests
	$(BIN)/python -m ruff check --fix segment2b segment2b_tests

ui: $(STAMP)
	$(BIN)/segment2b ui

bench: $(STAMP)
	$(BIN)/segment2b bench

clean:
	rm -rf $(VENV) .segment2b
