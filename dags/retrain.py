"""Airflow DAG file: one DAG per profile in $RETRAIN_HOME/params/, and the backtest DAG.

Point Airflow's ``dags_folder`` here (README: "Run on Airflow"). The factory lives in
``retrainlib/airflow_dags.py``; it is loaded by file path so that nothing else of retrainlib (nor
its dependencies) is imported into Airflow's environment.
"""

import importlib.util
from pathlib import Path

_source = Path(__file__).resolve().parents[1] / "retrainlib" / "airflow_dags.py"
_spec = importlib.util.spec_from_file_location("retrain_airflow_dags", _source)
_factory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_factory)

# module-level names are how Airflow finds DAGs ("airflow" and "dag" in this file let it parse it)
globals().update(_factory.build_dags())
