# matloop: `make run` runs the default campaign, `make test` runs the test suite.
# Both set up everything first (idempotent): a virtual environment in .venv, torch==2.13.0 (CPU build)
# installed before anything else, then matloop with pinned dependencies (constraints.txt).

VENV        ?= .venv
PYTHON      ?= python3
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.matloop-setup
# e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu" on machines that would pull CUDA
TORCH_PIP_ARGS ?=
ARGS        ?=
PYTEST_ARGS ?=
# two pytest workers, one test file at a time each (SLURM files on one worker; tests/conftest.py)
TEST_WORKERS ?= 2

export OMP_NUM_THREADS ?= 1
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: setup cp2k run test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV) || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); \
	  else echo "error: python3 -m venv failed; install python3-venv" >&2; exit 1; fi; }

$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -q torch==2.13.0 $(TORCH_PIP_ARGS)
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# the default campaign runs real DFT (dft.backend: local): CP2K from Debian when we may install it
cp2k:
	@command -v cp2k.psmp >/dev/null || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then bash .ci/cp2k.sh; \
	  else echo "warning: cp2k.psmp not found; DFT calculations will be recorded as failed" \
	            "(install cp2k + cp2k-data, or ARGS='--set dft.backend=none')" >&2; fi; }

run: setup cp2k
	$(VENV)/bin/matloop run $(ARGS)

test: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/campaign.py $(ARGS)

clean:
	rm -rf $(VENV) campaigns .pytest_cache
