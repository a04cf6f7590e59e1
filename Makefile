# equireg: make demo (set up + main job) and make test. Every pip call uses -c constraints.txt.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.equireg-installed
PYTEST_ARGS ?=

.PHONY: setup test test-all demo bench-groups clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt scripts/setup-system.sh
	@bash scripts/setup-system.sh
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e ".[all]" || \
	  (echo "setup: full install failed (escnn needs gfortran); installing without the escnn extra" >&2 && \
	   $(PIP) install -q -c constraints.txt -e ".[test,rot3d]")
	$(PY) -c "import equireg, torch; print('equireg', equireg.__version__, 'torch', torch.__version__)"
	@touch $(STAMP)

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-all: setup
	EQUIREG_SLOW=1 $(PY) -m pytest -q $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/equireg demo

bench-groups: setup
	$(PY) benchmarks/group_action.py

clean:
	rm -rf $(VENV) build *.egg-info
