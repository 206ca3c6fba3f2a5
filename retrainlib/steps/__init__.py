"""What each notebook does, as one call per step.

Every playbook notebook opens a :class:`StepContext` from its parameters, calls its step function
and shows the result. Each step reads earlier steps' outputs through the context
(``ctx.read(Analysis)``) and writes its own (``ctx.write(output)``, ``<step>.json`` in the run
folder); data flows one way: profile → notebook → library → run folder. One module per step
(``analyze``, ``retrain``, ``validate``, ``promote``), with step 10's data checks (``checks``) and
champion measurements (``champion``) beside it; ``figures`` holds what notebooks show. The step
table and the output types live outside this package (:mod:`retrainlib.playbook`,
:mod:`retrainlib.outputs`), so the runner reads them without importing pandas or AutoGluon.
"""

from __future__ import annotations

from ..playbook import new_run_id
from .analyze import PROFILE_POLICY, AnalysisDetail, RetrainPolicy, analyze_drift
from .context import StepContext, open_step, run_lock_of
from .figures import (champion_timeline, drift_figures, drift_tables, performance_figure, training_figures,
                      training_tables, validation_figures, validation_tables)
from .promote import promote_or_rollback
from .retrain import retrain_model
from .validate import validate_challenger

__all__ = [
    "StepContext",
    "open_step",
    "run_lock_of",
    "analyze_drift",
    "retrain_model",
    "validate_challenger",
    "promote_or_rollback",
    "RetrainPolicy",
    "PROFILE_POLICY",
    "AnalysisDetail",
    "new_run_id",
    "drift_tables",
    "drift_figures",
    "performance_figure",
    "training_tables",
    "training_figures",
    "validation_tables",
    "validation_figures",
    "champion_timeline",
]
