"""Airflow DAG file: one DAG per profile in $RETRAIN_HOME/params/, and the backtest DAG.

Point Airflow's ``dags_folder`` here (docs/guides/airflow.md). The factory lives in
``retrainlib/airflow_dags.py``; it is loaded by file path so that nothing else of retrainlib (nor
its dependencies) is imported into Airflow's environment.

Environment of the scheduler, DAG processor and workers:

- ``RETRAIN_HOME``: the project home (params/, data/, models/, runs/), e.g. on shared storage;
  default: the checkout this file lives in.
- ``RETRAIN_BIN``: the project's ``retrain`` command; default: ``.venv/bin/retrain`` of the checkout
  this file lives in (``make setup`` there), whatever ``RETRAIN_HOME`` is. A path that is not an
  executable file fails the first task, ``take_lease``, at once (no retries) with one line naming it.
- ``RETRAIN_LEASE_POKE`` (seconds between lease attempts, default 60), ``RETRAIN_RETRIES``
  (retries of a failed step task, default 0).
"""

import importlib.util
from pathlib import Path

_source = Path(__file__).resolve().parents[1] / "retrainlib" / "airflow_dags.py"
_spec = importlib.util.spec_from_file_location("retrain_airflow_dags", _source)
_factory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_factory)

# module-level names are how Airflow finds DAGs ("airflow" and "dag" in this file let it parse it)
globals().update(_factory.build_dags())
