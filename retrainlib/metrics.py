"""Metric kernels for validation: the paired bootstrap, its summary, and the flip-excess bound.

:func:`bootstrap_scores` draws all resamples at once as a matrix of row counts and computes the metric
for every resample with NumPy (:data:`BOOTSTRAP_METRICS`; ROC AUC through weighted rank sums); a
metric without a vectorised form falls back to one :func:`retrainlib.automl.score` call per resample.
:func:`summarise_bootstrap` turns resampled values into the interval the significance gate reads, and
:func:`flip_excess` bounds how much less stable under input noise a challenger is than its champion.
Pure functions of arrays: no model is loaded here.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from . import automl
from .errors import DataContractError, ProfileError

__all__ = ["BOOTSTRAP_METRICS", "bootstrap_scores", "summarise_bootstrap", "flip_excess", "metric_info", "signed"]

_LOG_LOSS_EPS = 1e-15  # AutoGluon's log_loss clips probabilities here


# --------------------------------------------------------------------------------------------
# vectorised bootstrap metrics: f(y_true, scores, classes, weights (B, n)) -> (B,) values



def _binary_target(y: np.ndarray, classes: Sequence) -> np.ndarray:
    return (y == classes[1]).astype(float)


def _class_index(y: np.ndarray, classes: Sequence) -> np.ndarray:
    """Each label's column in the scores; -1 for a label the model never learnt (it gave it no probability)."""
    idx = {c: i for i, c in enumerate(classes)}
    return np.array([idx.get(v, -1) for v in y])


def _wmean(w: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (w @ v) / w.sum(axis=1)


def _accuracy(y, s, classes, w):
    if s.ndim == 1:
        correct = (s >= 0.5).astype(float) == _binary_target(y, classes)
    else:
        correct = s.argmax(axis=1) == _class_index(y, classes)
    return _wmean(w, correct.astype(float))


def _log_loss(y, s, classes, w):
    if s.ndim == 1:
        p = np.clip(s.astype(float), _LOG_LOSS_EPS, 1 - _LOG_LOSS_EPS)
        t = _binary_target(y, classes)
        loss = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    else:
        p = s / s.sum(axis=1, keepdims=True)
        eps = np.finfo(p.dtype).eps
        col = _class_index(y, classes)
        p = np.clip(np.where(col >= 0, p[np.arange(len(y)), np.maximum(col, 0)], 0.0), eps, 1 - eps)
        loss = -np.log(p)
    return _wmean(w, loss)


def _roc_auc(y, s, classes, w):
    """Weighted Mann-Whitney U: over positive-negative pairs, 1 if the positive scores higher, 0.5 on a tie.

    For each positive, the weight of negatives scored below it and up to its tie come from one
    cumulative sum over the negatives in score order, looked up at two ``searchsorted`` positions.
    """
    if s.ndim != 1:
        raise ValueError("vectorised roc_auc is for binary scores")
    positive = _binary_target(y, classes).astype(bool)
    pos_idx, neg_idx = np.flatnonzero(positive), np.flatnonzero(~positive)
    neg_order = neg_idx[np.argsort(s[neg_idx], kind="mergesort")]
    neg_sorted = s[neg_order]
    below = np.searchsorted(neg_sorted, s[pos_idx], side="left")
    up_to = np.searchsorted(neg_sorted, s[pos_idx], side="right")
    cum = np.zeros((w.shape[0], len(neg_order) + 1))
    np.cumsum(w[:, neg_order], axis=1, out=cum[:, 1:])
    w_pos = w[:, pos_idx]
    u = 0.5 * (w_pos * (cum[:, below] + cum[:, up_to])).sum(axis=1)
    denom = w_pos.sum(axis=1) * cum[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, u / np.where(denom > 0, denom, 1), np.nan)


def _mse(y, s, classes, w):
    return _wmean(w, (y.astype(float) - s) ** 2)


def _rmse(y, s, classes, w):
    return np.sqrt(_mse(y, s, classes, w))


def _mae(y, s, classes, w):
    return _wmean(w, np.abs(y.astype(float) - s))


def _r2(y, s, classes, w):
    y = y.astype(float)
    ss_res = _wmean(w, (y - s) ** 2)
    var = _wmean(w, y**2) - _wmean(w, y) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, 1 - ss_res / np.where(var > 0, var, 1), np.nan)


#: metric name -> (problem types it is vectorised for, function(y, scores, classes, weights) -> values)
BOOTSTRAP_METRICS: dict[str, tuple[tuple[str, ...], Callable]] = {
    "roc_auc": (("binary",), _roc_auc),
    "accuracy": (("binary", "multiclass"), _accuracy),
    "acc": (("binary", "multiclass"), _accuracy),
    "log_loss": (("binary", "multiclass"), _log_loss),
    "nll": (("binary", "multiclass"), _log_loss),
    "root_mean_squared_error": (("regression",), _rmse),
    "rmse": (("regression",), _rmse),
    "mean_squared_error": (("regression",), _mse),
    "mse": (("regression",), _mse),
    "mean_absolute_error": (("regression",), _mae),
    "mae": (("regression",), _mae),
    "r2": (("regression",), _r2),
}


def _resample_counts(rng: np.random.Generator, n: int, b: int) -> np.ndarray:
    """``b`` bootstrap resamples of ``n`` rows as a (b, n) matrix of how often each row was drawn."""
    idx = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(float)


def bootstrap_scores(
    metric: str,
    problem_type: str,
    y_true: Sequence,
    scores: Sequence[np.ndarray],
    classes: Sequence | None = None,
    *,
    samples: int = 500,
    seed: int = 0,
    chunk_cells: int = 4_000_000,
) -> np.ndarray:
    """The metric of each model on the same ``samples`` bootstrap resamples of the rows.

    Paired: every model is scored on the same resampled rows. Returns an array of shape
    ``(len(scores), samples)``; a resample where the metric is undefined (ROC AUC without one
    of the classes) is NaN. Resamples are drawn ``chunk_cells // n`` at a time to bound memory.

    >>> y = np.array([0, 0, 1, 1, 1]); s = np.array([0.1, 0.6, 0.4, 0.8, 0.9])
    >>> vals = bootstrap_scores("roc_auc", "binary", y, [s], [0, 1], samples=200, seed=1)
    >>> vals.shape, bool(np.nanmin(vals) >= 0.0 and np.nanmax(vals) <= 1.0)
    ((1, 200), True)
    """
    y = np.asarray(y_true)
    n = len(y)
    if n == 0:
        raise DataContractError("cannot bootstrap a metric on 0 rows; the holdout is empty")
    arrays = [np.asarray(s, dtype=float) for s in scores]
    rng = np.random.default_rng(seed)
    out = np.empty((len(arrays), samples))
    fast = BOOTSTRAP_METRICS.get(metric)
    vectorised = fast is not None and problem_type in fast[0]
    step = max(1, chunk_cells // n)
    for start in range(0, samples, step):
        b = min(step, samples - start)
        w = _resample_counts(rng, n, b)
        for k, s in enumerate(arrays):
            if vectorised:
                out[k, start : start + b] = fast[1](y, s, classes, w)
            else:
                out[k, start : start + b] = [_score_rows(metric, problem_type, y, s, classes, wi) for wi in w]
    return out


def _score_rows(metric, problem_type, y, s, classes, counts) -> float:
    idx = np.repeat(np.arange(len(y)), counts.astype(int))
    try:
        return automl.score(metric, problem_type, y[idx], s[idx], classes)
    except ValueError:  # e.g. a resample with a single class
        return float("nan")



def summarise_bootstrap(values: np.ndarray, metric: str, kind: str, observed: float, confidence: float) -> dict[str, Any]:
    """The resampled distribution as the verdict records it: the ``confidence`` interval, quantiles and every value."""
    finite = values[np.isfinite(values)]
    alpha = (1 - confidence) / 2
    if len(finite):
        low, high = np.quantile(finite, [alpha, 1 - alpha])
        quantiles = dict(zip(("p05", "p25", "p50", "p75", "p95"), np.quantile(finite, [0.05, 0.25, 0.5, 0.75, 0.95])))
        mean, std = float(finite.mean()), float(finite.std(ddof=1)) if len(finite) > 1 else 0.0
    else:
        low = high = mean = std = float("nan")
        quantiles = {}
    return {
        "metric": metric,
        "kind": kind,
        "observed": float(observed),
        "samples": int(len(values)),
        "undefined": int(len(values) - len(finite)),
        "confidence": confidence,
        "ci_low": float(low),
        "ci_high": float(high),
        "mean": mean,
        "std": std,
        **{k: float(v) for k, v in quantiles.items()},
        "values": [float(v) for v in values],
    }


def metric_info(metric: str, problem_type: str):
    """AutoGluon's scorer for ``metric``; a metric it does not know for the problem type is a :class:`ProfileError`."""
    try:
        return automl.metric_info(metric, problem_type)
    except (ValueError, KeyError) as exc:
        raise ProfileError(
            f"validation metric {metric!r} is not an AutoGluon metric for a {problem_type} problem; "
            f"fix validation.metrics / validation.minimum ({str(exc).strip().splitlines()[-1]})"
        ) from exc


def signed(diff: float, greater_is_better: bool) -> float:
    """``diff`` read the metric's own way round: positive is better."""
    return diff if greater_is_better else -diff



def _binomtest(*args, **kwargs):
    from scipy import stats  # imported when a champion is compared, not with the module

    return stats.binomtest(*args, **kwargs)


def flip_excess(challenger: np.ndarray, champion: np.ndarray, *, tolerance: float, confidence: float) -> dict[str, Any]:
    """Is the challenger less stable than the champion by more than ``tolerance``, beyond sampling error?

    ``challenger`` and ``champion`` are paired per-row indicators (did this row's prediction flip under
    the same noise). The excess is the mean of their differences, ``(b - c) / n`` with ``b`` the rows
    only the challenger flips and ``c`` those only the champion flips. Its one-sided lower bound at
    ``confidence`` is the exact conditional (McNemar) bound: given the ``m = b + c`` discordant rows,
    ``b`` is binomial(m, p) and the excess is ``m / n * (2p - 1)``; the Clopper-Pearson lower bound of
    ``p`` (:func:`scipy._binomtest`) gives ``m / n * (2 p_low - 1)``. With ``tolerance`` 0 this is
    the exact one-sided McNemar test at level ``1 - confidence``. The challenger fails only when the
    bound exceeds ``tolerance``; without discordant rows excess and bound are 0.
    """
    a, h = np.asarray(challenger, dtype=bool), np.asarray(champion, dtype=bool)
    if a.shape != h.shape or a.ndim != 1:
        raise ValueError(f"flip indicators must be two 1-d arrays of one length, got shapes {a.shape} and {h.shape}")
    n = int(a.size)
    b, c = int(np.sum(a & ~h)), int(np.sum(h & ~a))
    m = b + c
    excess = (b - c) / n if n else 0.0
    if m:
        p_low = _binomtest(b, m, alternative="greater").proportion_ci(confidence_level=confidence, method="exact").low
        bound = m / n * (2 * float(p_low) - 1)
    else:
        bound = 0.0
    excess, bound = round(float(excess), 12), round(float(bound), 12)
    return {"excess": excess, "excess_bound": bound, "n": n,
            "discordant": {"challenger_only": b, "champion_only": c}, "passed": bool(bound <= tolerance)}
