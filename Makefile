# Two commands on a fresh machine: `make run` (the embedded default) and `make test` (the whole suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Starts its own PostgreSQL under OSIRIS_DATA_DIR (default ./.osiris), migrates, serves on :8000.
run: install
	$(BIN)/osiris serve

# Uses OSIRIS_TEST_DATABASE_URL when set (a fresh database per run on that server), else the
# embedded server in a temporary folder.
test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check osiris tests bench scripts
	$(BIN)/ruff format --check osiris tests bench scripts

# Every bench in bench/ at reduced sizes (about 10 min), then docs/benchmarks.md from their --json output.
# Set OSIRIS_BENCH_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1:5432/postgres) for a scratch-database server.
bench: install
	$(BIN)/python bench/report.py

clean:
	rm -rf $(VENV) .osiris .pytest_cache
