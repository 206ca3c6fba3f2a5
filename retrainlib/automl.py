"""The AutoGluon adapter: the one module that calls ``autogluon.tabular``.

Fitting, strict loading, predicting, scoring with AutoGluon's own metrics, deployment clones and
the environment record all go through here, so AutoGluon's API churn touches one file.
"""

from __future__ import annotations

import logging
import os
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "pin_threads",
    "fit_predictor",
    "load_predictor",
    "deploy_clone",
    "predict_scores",
    "predict_labels",
    "model_facts",
    "predictor_path",
    "score",
    "metric_info",
    "software_versions",
    "leaderboard",
    "feature_importance",
    "THREAD_VARIABLES",
]

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def pin_threads(num_cpus: int) -> None:
    """Pin BLAS/OpenMP threads for this process (and children it starts) to ``num_cpus``.

    On 2 cores an unpinned gradient-boosting fit was seen to slow from 0.4 s to over a minute.
    """
    for var in THREAD_VARIABLES:
        os.environ[var] = str(num_cpus)
    try:  # also the pools already loaded in this process
        from threadpoolctl import threadpool_limits

        threadpool_limits(num_cpus)
    except Exception:  # pragma: no cover - threadpoolctl is optional at run time
        pass


def _quiet() -> None:
    # AutoGluon prints a torch warning we do not need (torch is not used by the tabular models here).
    logging.getLogger("autogluon").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*torch.*")


def _predictor_class():
    _quiet()
    from autogluon.tabular import TabularPredictor

    if os.environ.get("RETRAIN_FRESH", "warm").strip().lower() != "cold":  # freshproc.MODE_VARIABLE
        remember_package_listing()
    return TabularPredictor


def remember_package_listing() -> None:
    """Take AutoGluon's listing of installed packages once in this process, not on every save and load.

    AutoGluon records the installed packages with each saved predictor and compares them on each load,
    reading the metadata of every installed distribution each time (about 1 s here, with some 190 of
    them). Inside one process they cannot change, so the first listing serves every later one; the
    fork server takes it before it forks, so its children inherit it (:mod:`retrainlib.freshproc`).
    Off with ``RETRAIN_FRESH=cold`` (the behaviour before, for comparison).
    """
    import copy
    import functools

    from autogluon.tabular.predictor import predictor as module

    if getattr(module.get_autogluon_metadata, "remembered", False):
        return
    listing = functools.lru_cache(maxsize=1)(module.get_autogluon_metadata)

    def get_autogluon_metadata() -> dict[str, Any]:
        return copy.deepcopy(listing())  # a caller may edit its copy

    get_autogluon_metadata.remembered = True
    module.get_autogluon_metadata = get_autogluon_metadata


@dataclass(frozen=True)
class MetricInfo:
    """How to read a metric: its name and which direction is better."""

    name: str
    greater_is_better: bool
    needs_proba: bool


def metric_info(name: str, problem_type: str) -> MetricInfo:
    """Direction and needs of an AutoGluon metric, e.g. ``log_loss`` is lower-is-better.

    >>> metric_info("log_loss", "binary").greater_is_better
    False
    """
    from autogluon.core.metrics import get_metric

    s = get_metric(name, problem_type=problem_type)
    return MetricInfo(name=name, greater_is_better=s._sign > 0, needs_proba=bool(s.needs_proba or s.needs_threshold))


def score(metric: str, problem_type: str, y_true: Sequence, y_proba: np.ndarray, classes: Sequence | None = None) -> float:
    """The metric's value in its own units (log loss positive), from scores :func:`predict_scores` made."""
    from autogluon.core.metrics import get_metric

    s = get_metric(metric, problem_type=problem_type)
    y_true = np.asarray(y_true)
    if problem_type == "regression":
        return float(s.convert_score_to_original(s(y_true, y_proba)))
    classes = list(classes) if classes is not None else sorted(pd.unique(y_true))
    if problem_type == "binary":
        y_bin = (y_true == classes[1]).astype(int)
        pred = y_proba if (s.needs_proba or s.needs_threshold) else (y_proba >= 0.5).astype(int)
        return float(s.convert_score_to_original(s(y_bin, pred)))
    idx = {c: i for i, c in enumerate(classes)}
    unseen = [v for v in pd.unique(y_true) if v not in idx]  # labels the model never learnt: it gave them no probability
    idx.update({v: len(classes) + k for k, v in enumerate(unseen)})
    y_idx = np.array([idx[v] for v in y_true])
    proba = np.asarray(y_proba)
    if unseen:
        proba = np.hstack([proba, np.zeros((len(proba), len(unseen)))])
    pred = proba if s.needs_proba else proba.argmax(axis=1)
    return float(s.convert_score_to_original(s(y_idx, pred)))


def fit_predictor(
    train: pd.DataFrame,
    *,
    label: str,
    path: str | os.PathLike,
    eval_metric: str,
    problem_type: str | None,
    presets: str,
    time_limit: float,
    num_cpus: int,
    seed: int,
    hyperparameters: dict[str, Any] | None = None,
    included_model_types: Sequence[str] | None = None,
    excluded_model_types: Sequence[str] | None = None,
    num_bag_folds: int = 0,
):
    """Fit a TabularPredictor into a new directory ``path`` and return it.

    Threads are pinned to ``num_cpus``. AutoGluon seeds its split and every model with fixed values
    (0 unless a model's hyperparameters set one), so a fit bounded by configuration rather than by
    ``time_limit`` is reproducible; ``seed`` seeds NumPy's global generator for anything else.
    """
    pin_threads(num_cpus)
    Predictor = _predictor_class()
    np.random.seed(seed)
    kwargs: dict[str, Any] = {}
    if hyperparameters is not None:
        kwargs["hyperparameters"] = custom_models(hyperparameters)
    if included_model_types:
        kwargs["included_model_types"] = list(included_model_types)
    if excluded_model_types:
        kwargs["excluded_model_types"] = list(excluded_model_types)
    if num_bag_folds:
        kwargs["num_bag_folds"] = num_bag_folds
    predictor = Predictor(label=label, path=str(path), eval_metric=eval_metric, problem_type=problem_type, verbosity=0)
    predictor.fit(
        train,
        presets=presets,
        time_limit=time_limit,
        num_cpus=num_cpus,
        num_gpus=0,
        **kwargs,
    )
    return predictor


def custom_models(hyperparameters: dict[str, Any]) -> dict[Any, Any]:
    """``hyperparameters`` with each ``"package.module:Class"`` key replaced by that AutoGluon model class.

    AutoGluon takes a custom model (a subclass of its ``AbstractModel``) as a hyperparameters key; a
    profile, being YAML, names it by import path instead. Other keys (``GBM``, ``CAT``, ...) pass as given.
    """
    import importlib

    out: dict[Any, Any] = {}
    for key, value in hyperparameters.items():
        if isinstance(key, str) and ":" in key:
            module, _, name = key.partition(":")
            try:
                key = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError) as exc:
                raise ValueError(f"training.hyperparameters key {key!r} names no importable model class ({exc})") from exc
        out[key] = value
    return out


def load_predictor(path: str | os.PathLike, *, strict: bool = True):
    """Load a predictor; ``strict`` refuses a different AutoGluon or Python version."""
    Predictor = _predictor_class()
    return Predictor.load(str(path), verbosity=0, require_version_match=strict, require_py_version_match=strict)


def deploy_clone(predictor, path: str | os.PathLike) -> Path:
    """A lean copy holding only what prediction needs (AutoGluon's clone_for_deployment)."""
    out = predictor.clone_for_deployment(str(path), dirs_exist_ok=False)
    return Path(out)


def predict_scores(predictor, data: pd.DataFrame) -> np.ndarray:
    """Positive-class probability (binary), class probabilities (multiclass) or values (regression)."""
    if predictor.problem_type == "regression":
        return predictor.predict(data).to_numpy(dtype=float)
    proba = predictor.predict_proba(data)
    if predictor.problem_type == "binary":
        return proba[predictor.class_labels[1]].to_numpy(dtype=float)
    return proba[predictor.class_labels].to_numpy(dtype=float)


def predict_labels(predictor, data: pd.DataFrame) -> np.ndarray:
    """Predicted labels (values for regression), with the predictor's own decision threshold."""
    return predictor.predict(data).to_numpy()


def model_facts(predictor) -> tuple[str, list | None, list[str]]:
    """(problem_type, class labels or None, input feature columns) of a predictor."""
    problem_type = predictor.problem_type
    classes = list(predictor.class_labels) if problem_type != "regression" else None
    return problem_type, classes, [str(c) for c in predictor.original_features]


def predictor_path(predictor) -> Path:
    """The folder a predictor was loaded from or saved to."""
    return Path(predictor.path)


def leaderboard(predictor, data: pd.DataFrame | None = None) -> pd.DataFrame:
    cols = ["model", "score_val", "fit_time", "pred_time_val", "stack_level"]
    lb = predictor.leaderboard(data, silent=True) if data is not None else predictor.leaderboard(silent=True)
    keep = [c for c in ["model", "score_test", *cols[1:]] if c in lb.columns]
    return lb[keep]


def feature_importance(predictor, data: pd.DataFrame, *, seed: int = 0, time_limit: float = 30) -> dict[str, float]:
    """Permutation importance on ``data``, clipped at 0 and normalised to sum to 1."""
    np.random.seed(seed)  # AutoGluon shuffles with NumPy's global generator
    fi = predictor.feature_importance(data, num_shuffle_sets=2, time_limit=time_limit, silent=True, include_confidence_band=False)
    imp = fi["importance"].clip(lower=0.0)
    total = float(imp.sum())
    if total <= 0:
        return {str(k): 1.0 / len(imp) for k in imp.index}
    return {str(k): float(v) / total for k, v in imp.items()}


def software_versions() -> dict[str, str]:
    """The versions a model is recorded with and strictly loaded against."""
    import autogluon.tabular as agt
    import sklearn

    return {
        "python": platform.python_version(),
        "autogluon": agt.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }
