# The two commands of the README: `make run` and `make test`. Both set up what they need.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
DOCS_STAMP := $(VENV)/.docs-installed

.PHONY: run test check lint format services chromium venv soak fuzz bench bench-quick docs clean

$(STAMP): pyproject.toml scripts/bootstrap.sh
	VENV=$(VENV) ./scripts/bootstrap.sh
	@touch $(STAMP)

venv: $(STAMP)

services:
	@./scripts/ensure-services.sh

## Debian's Chromium, which the dashboard's browser tests drive.
chromium:
	@./scripts/ensure-chromium.sh

## Run the service on this machine: migrate, then the API, workers, relay and sweeper.
run: venv services
	$(BIN)/durable-sessions up

## Run the tests against real RabbitMQ, PostgreSQL and SQLite, the dashboard in Chromium.
test: venv services chromium
	$(BIN)/pytest

## Only the fuzzers (schemathesis against a real up, hypothesis over the WS-RM decoder); make
## test runs them too. DS_FUZZ_EXAMPLES and DS_FUZZ_DECODER_EXAMPLES bound them.
fuzz: venv services
	$(BIN)/pytest -m fuzz

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

## Measure throughput, latency, recovery and scale against same-run baselines (4-8 min).
bench: $(BENCH_STAMP) services
	$(BIN)/python -m benchmarks

## The same scenarios with small counts and one run (< 1 min).
bench-quick: $(BENCH_STAMP) services
	$(BIN)/python -m benchmarks --quick

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,docs]'
	@touch $(DOCS_STAMP)

## Build the reference in docs/ as a site in site/; any warning (a broken link) fails it.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## The quality gate: lint, types and tests, the same locally and in CI.
check: lint test

## The crash-safety tests, round after round, each round with a new random seed.
SOAK_ROUNDS ?= 5
soak: venv services
	@for round in $$(seq 1 $(SOAK_ROUNDS)); do \
	  seed=$$(od -An -N4 -tu4 /dev/urandom | tr -d ' '); \
	  echo "==> soak round $$round of $(SOAK_ROUNDS): DS_E2E_SEED=$$seed"; \
	  DS_E2E_SEED=$$seed $(BIN)/pytest -q -m e2e tests/e2e tests/system || exit 1; \
	done; echo "==> soak: $(SOAK_ROUNDS) rounds passed"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis site
