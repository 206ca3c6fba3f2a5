# make demo: set up and run the playbook twice on the built-in demo data.
# make test: set up and run the whole test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
export OMP_NUM_THREADS ?= 1
export MPLBACKEND ?= Agg

.PHONY: setup demo test lab report clean-runs
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

demo: setup
	$(BIN)/retrain demo --fresh

test: setup
	$(BIN)/pytest

lab: setup
	$(BIN)/jupyter lab notebooks/

report: setup
	$(BIN)/retrain report
