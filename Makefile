# Every target bootstraps .venv from the project's own files when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
# Prefect gives the temporary server it starts without PREFECT_API_URL 20 s; on a busy
# 2-core machine it needs 20-30 s, and the demo and tests failed before they began.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 300

.PHONY: demo demo-distributed test lint docs bench deploy-e2e clean

# tests/custom_backend: a store defined outside the package, registered by entry point,
# that the conformance suite and a results_map test run on (no dependencies of its own).
$(STAMP): pyproject.toml constraints.txt tests/custom_backend/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[postgres,pandas,dask,s3,dev,bench,docs]"
	$(BIN)/python -m pip install --quiet --no-deps -e tests/custom_backend
	touch $(STAMP)

# The main job on the embedded default store, with Prefect's temporary server in a
# throwaway PREFECT_HOME. Run it twice: the first run computes, the second reuses.
demo: $(STAMP)
	@home=$$(mktemp -d) && trap 'rm -rf "$$home"' EXIT && \
	echo "python examples/parallel_resume.py" && \
	env -u PREFECT_API_URL PREFECT_HOME="$$home" $(BIN)/python examples/parallel_resume.py

# The same pipeline on a local Dask cluster of 2 worker processes over PostgreSQL
# (each Prefect task run costs ~0.1 s on Dask here, hence fewer items by default).
PG ?= postgresql://postgres@127.0.0.1:5432/postgres
ITEMS ?= 300
demo-distributed: $(STAMP)
	@home=$$(mktemp -d) && trap 'rm -rf "$$home"' EXIT && \
	echo "python examples/distributed.py $(PG) --items $(ITEMS)" && \
	env -u PREFECT_API_URL PREFECT_HOME="$$home" \
	$(BIN)/python examples/distributed.py $(PG) --items $(ITEMS)

# A real local Prefect server, a process work pool, prefect deploy, a run with
# parameters, a worker, the results in a store, everything stopped (about a minute).
deploy-e2e: $(STAMP)
	$(BIN)/python deployments/e2e.py

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=20

lint: $(STAMP)
	$(BIN)/ruff check results_flow tests examples bench deployments
	$(BIN)/ruff format --check results_flow
	$(BIN)/mypy

# The documentation site in site/ (MkDocs + Material; API pages from the docstrings), built
# strictly: a broken link, a missing page or a docstring warning fails it. The CLI
# reference, docs/cli.md, is first written from each command's --help.
docs: $(STAMP)
	$(BIN)/python -m results_flow.cli_docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

bench: $(STAMP)
	$(BIN)/python bench/store.py
	$(BIN)/python bench/concurrent_writes.py
	$(BIN)/python bench/fill.py
	$(BIN)/python bench/file_reads.py
	$(BIN)/python bench/resume.py
	$(BIN)/python bench/resume.py --chunked
	$(BIN)/python bench/etl.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/upgrade.py
	$(BIN)/python bench/prefect_storage.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
