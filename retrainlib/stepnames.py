"""The playbook's steps by name, in run order: the one list every other step table is built from.

It imports nothing, so Airflow's environment can read it too: :mod:`retrainlib.airflow_dags` is loaded
there by file path, without retrainlib's dependencies. :data:`retrainlib.playbook.STEPS` adds each
step's output type.

>>> [number(n) for _, n in STEP_NAMES], function("10-analyze-drift")
(['10', '20', '30', '40'], 'analyze_drift')
"""

#: (short name, notebook stem) of each step, in the order a run executes them
STEP_NAMES: tuple[tuple[str, str], ...] = (
    ("analyze", "10-analyze-drift"),
    ("retrain", "20-retrain-model"),
    ("validate", "30-validate-challenger"),
    ("promote", "40-promote-or-rollback"),
)


def number(notebook: str) -> str:
    """``10``, ``20``, …: what ``retrain step --step`` accepts besides the notebook stem."""
    return notebook.split("-", 1)[0]


def function(notebook: str) -> str:
    """The :mod:`retrainlib.steps` function the notebook calls, e.g. ``analyze_drift`` (Airflow's task id)."""
    return notebook.split("-", 1)[1].replace("-", "_")
