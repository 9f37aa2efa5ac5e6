# visionml: `make demo` and `make test` on a fresh machine (both run `make setup` first).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Re-install only when the project's dependencies change.
STAMP := $(VENV)/.visionml-setup-stamp
DEMO_DIR ?= demo

.PHONY: setup demo test test-quick fuzz clean-demo

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,mlflow,ray,openvino]'
	touch $(STAMP)

# Two pytest-xdist workers, one torch thread each (tests/conftest.py), a file's tests on one worker
# (--dist loadgroup) so module fixtures are made once: ~17 minutes on 2 cores against ~25 in one
# process (TEST_WORKERS=0). The two timing failures that once made one process the default came from
# SIGINT being ignored in background runs (conftest.py now restores it), not from the load.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup tests

# The suite without the tests marked slow (training through the CLI end to end, sweeps in worker
# processes, PostgreSQL, server subprocesses, browsers): a quick check while editing.
test-quick: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup -m 'not slow' tests

# The fuzz properties of tests/reliability for FUZZ_SECONDS per group (benchmarks/fuzz.py).
FUZZ_SECONDS ?= 600
fuzz: setup
	OMP_NUM_THREADS=1 $(PY) benchmarks/fuzz.py --seconds $(FUZZ_SECONDS) --report benchmarks/results/fuzz.md

demo: setup
	DEMO_DIR=$(DEMO_DIR) PY=$(PY) bash scripts/demo.sh

clean-demo:
	rm -rf $(DEMO_DIR)
