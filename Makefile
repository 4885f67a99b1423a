# `make demo` and `make test` work on a fresh machine: they create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export DASK_LOGGING__DISTRIBUTED := warning

.PHONY: setup demo test test-integration bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch is pinned and installed first: an unpinned resolve would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/sammed3d demo --out demo-output

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/bench_curation.py
	$(BIN)/python bench/bench_model.py
	$(BIN)/python bench/bench_patches.py
	$(BIN)/python bench/bench_handover.py
	$(BIN)/python bench/bench_dask.py
	$(BIN)/python bench/bench_duplicates.py
	$(BIN)/python bench/bench_s3_patches.py

test-integration: setup
	$(BIN)/python -m pytest -q tests/flows/test_integration.py tests/flows/test_faults.py

clean:
	rm -rf demo-output bench/out .pytest_cache
