"""Fitting an estimator: checks the calibration rows (not the model's training rows, enough of them, known classes
and metric) and hands them to CBPE or DLE; refusals give an unusable :class:`~.estimator.Estimator` with the reason.

Touches no file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import EstimationError
from .cbpe import _fit_cbpe
from .dle import _REGRESSION, _fit_dle
from .estimator import Estimator, _class_places
from .metrics import _BINARY_FAST, _MULTI_FAST


#: fewest labelled calibration rows an estimator is fitted on
MIN_ROWS = 200
#: fewest rows of each class among the calibration rows (classification)
MIN_CLASS_ROWS = 10


def fit_estimator(
    *,
    problem_type: str,
    metric: str,
    y_true,
    scores,
    features: pd.DataFrame | None = None,
    classes: Sequence | None = None,
    calibration_batches: Sequence[str] = (),
    trained_batches: Sequence[str] = (),
    min_rows: int = MIN_ROWS,
    seed: int = 0,
) -> Estimator:
    """Fit the estimator of ``metric`` for one model from labelled rows it did not train on.

    ``calibration_batches`` names where the rows came from and ``trained_batches`` the model's
    training slices: any overlap raises :class:`EstimationError` (an estimator calibrated on its own
    training rows is over-confident). Too few rows, a class too rare, an unsupported metric, or a
    score calibration cannot fix give an estimator with ``usable=False`` and the reason.
    """
    _check_not_trained_on(calibration_batches, trained_batches)
    rows = _labelled_rows(y_true, scores, features, base=dict(
        problem_type=problem_type, metric=metric, method="dle" if problem_type == "regression" else "cbpe",
        classes=list(classes) if classes is not None else None, calibration_batches=list(calibration_batches), seed=seed))
    if len(rows.y) < min_rows:
        return rows.refuse(f"{len(rows.y)} labelled calibration rows the model did not train on, need {min_rows}")
    if problem_type == "regression":
        return _fit_regression(rows, metric, seed)
    return _fit_classification(rows, problem_type, metric, classes, seed)


@dataclass(frozen=True)
class _Rows:
    """The labelled calibration rows (unlabelled ones dropped) and the fields every estimator fitted on them records."""

    y: np.ndarray
    scores: np.ndarray
    features: pd.DataFrame | None
    base: dict

    def refuse(self, reason: str) -> Estimator:
        """An unusable estimator that says why."""
        return Estimator(usable=False, reason=reason, checks={}, state={}, **self.base)


def _check_not_trained_on(calibration_batches: Sequence[str], trained_batches: Sequence[str]) -> None:
    """Raise :class:`EstimationError` when a calibration batch is among the model's training slices."""
    overlap = sorted(set(calibration_batches) & set(trained_batches))
    if overlap:
        raise EstimationError(
            f"calibration batches {', '.join(overlap)} are among the model's training slices; calibrate only on "
            "labelled batches the model did not train on (e.g. its validation holdout)"
        )


def _labelled_rows(y_true, scores, features: pd.DataFrame | None, *, base: dict) -> _Rows:
    """The rows whose label is known; ``base`` gains their count."""
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=float)
    keep = ~pd.isna(y)
    if features is not None and len(features) != len(y):
        raise EstimationError(f"the calibration features have {len(features)} rows and the labels {len(y)}; pass the "
                              "features of exactly the labelled rows, in the same order")
    if features is not None and not keep.all():  # positional: the loss model reads the rows in order, not the index
        features = features[keep]
    y, s = y[keep], s[keep]
    return _Rows(y=y, scores=s, features=features, base={**base, "calibration_rows": int(len(y))})


def _fit_regression(rows: _Rows, metric: str, seed: int) -> Estimator:
    """Direct loss estimation, when the metric is one it knows and the rows' features are given."""
    if metric not in _REGRESSION:
        return rows.refuse(f"metric {metric} cannot be estimated; direct loss estimation knows {', '.join(_REGRESSION)}")
    if rows.features is None:
        raise EstimationError("direct loss estimation needs the calibration rows' features")
    return _fit_dle(rows.base, rows.y.astype(float), rows.scores, rows.features, seed)


def _fit_classification(rows: _Rows, problem_type: str, metric: str, classes: Sequence | None, seed: int) -> Estimator:
    """CBPE, when every label is one of the model's classes, each class has enough rows, and the metric is known."""
    if classes is None:
        raise EstimationError("classification needs the model's class labels in its own order")
    y = rows.y
    yi = _class_places(classes, y)  # vectorised; where it matches every label, so does the dict below
    if (yi < 0).any():  # the dict is the rule where the two could differ, and names the labels it does not know
        idx = {c: i for i, c in enumerate(classes)}
        unknown = sorted({str(v) for v in pd.unique(y) if v not in idx})
        if unknown:
            return rows.refuse(f"calibration labels {', '.join(unknown[:5])} are not among the model's classes "
                               f"{list(classes)} (a class new since it trained; a model that learnt it can be estimated)")
        yi = np.array([idx[v] for v in y])
    counts = np.bincount(yi, minlength=len(classes))
    if counts.min() < MIN_CLASS_ROWS:
        rare = classes[int(counts.argmin())]
        return rows.refuse(f"class {rare!r} has {int(counts.min())} calibration rows, need {MIN_CLASS_ROWS}")
    if problem_type == "binary" and metric not in _BINARY_FAST or problem_type == "multiclass" and metric not in _MULTI_FAST:
        known = _BINARY_FAST if problem_type == "binary" else _MULTI_FAST
        return rows.refuse(f"metric {metric} cannot be estimated for {problem_type}; CBPE here knows {', '.join(known)}")
    return _fit_cbpe(rows.base, yi, rows.scores, seed)
