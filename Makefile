# Two commands on a fresh machine: `make run` (the embedded default) and `make test` (the whole suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two stamps: `make run` installs the application alone, `make test` (and lint, bench) with the
# test extras. The test install covers the run install, so it refreshes both stamps.
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install install-test run test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e .
	touch $(RUN_STAMP)

$(TEST_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(TEST_STAMP) $(RUN_STAMP)

install: $(RUN_STAMP)

install-test: $(TEST_STAMP)

# Starts its own PostgreSQL under OSIRIS_DATA_DIR (default ./.osiris), migrates, serves on :8000.
run: install
	$(BIN)/osiris serve

# Uses OSIRIS_TEST_DATABASE_URL when set (a fresh database per run on that server), else the
# embedded server in a temporary folder.
test: install-test
	$(BIN)/pytest

lint: install-test
	$(BIN)/ruff check osiris tests bench scripts
	$(BIN)/ruff format --check osiris tests bench scripts

# Every bench in bench/ at reduced sizes (about 10 min), then docs/benchmarks.md from their --json output.
# Set OSIRIS_BENCH_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1:5432/postgres) for a scratch-database server.
bench: install-test
	$(BIN)/python bench/report.py

# PNGs of the portal for the README (docs/screenshots/): a fresh `osiris serve` on a free port and a
# temporary data dir, seeded through the REST API, photographed in Debian's chromium (about 30 s).
.PHONY: screenshots
screenshots: install-test
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) .osiris .pytest_cache

# deploy/k8s/ from the Helm chart deploy/helm/osiris with its default values (Helm's engine from the
# helm-python-sdk test extra; docs/deploy.md). tests/deploy fails when the two differ.
.PHONY: k8s
k8s: install-test
	$(BIN)/python deploy/render.py
