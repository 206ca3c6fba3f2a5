"""The metrics CBPE estimates, under label probabilities: expectation (closed form where there is one), variance over
label draws, and the metric of each row of drawn labels, vectorised; each metric's range (:func:`clip_to_range`) and
how much a stream's rows hang together (:func:`dependence`, which widens a sampling variance).

Pure NumPy on arrays; touches no file."""

from __future__ import annotations

import math

import numpy as np

from ..errors import EstimationError


_BINARY_FAST = ("accuracy", "roc_auc", "f1", "log_loss", "balanced_accuracy", "precision", "recall")
_MULTI_FAST = ("accuracy", "log_loss", "balanced_accuracy", "f1_macro")


_EPS = 1e-15


def _sampling_variance(problem_type: str, metric: str, P: np.ndarray, Q: np.ndarray, point: float | None) -> float | None:
    """Variance of the metric over label draws from ``Q``, in closed form where there is one."""
    if point is None:
        return None
    if problem_type == "binary":
        return _binary_variance(metric, P[:, 1], Q[:, 1], point)
    if metric == "accuracy":
        n = P.shape[0]
        c = Q[np.arange(n), P.argmax(axis=1)]
        return float((c * (1 - c)).sum() / n ** 2)
    return None


def _binary_variance(metric: str, p: np.ndarray, q: np.ndarray, point: float | None) -> float | None:
    """:func:`_sampling_variance` of a binary metric from the scores ``p`` and calibrated probabilities ``q``."""
    if point is None:
        return None
    n = len(p)
    if metric == "accuracy":
        c = np.where(p >= 0.5, q, 1 - q)  # the chance each row's decision (p >= 0.5, as _binary_metric) is right
        return float((c * (1 - c)).sum() / n ** 2)
    if metric == "log_loss":
        pc = np.clip(p, _EPS, 1 - _EPS)
        return float((q * (1 - q) * (np.log(pc) - np.log(1 - pc)) ** 2).sum() / n ** 2)
    if metric == "roc_auc":  # Hanley & McNeil (1982) at the expected class sizes
        a, n1 = point, float(q.sum())
        n0 = n - n1
        if n1 < 1 or n0 < 1:
            return None
        q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
        return float((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0))
    return None


def _binary_metric(metric: str, p: np.ndarray, L: np.ndarray, *, order: np.ndarray | None = None,
                   ranks: np.ndarray | None = None) -> np.ndarray | None:
    """The binary metric for each row of ``L`` (m, n): labels drawn from the calibrated probabilities (0/1),
    or those probabilities themselves (then each value is the metric of the expected confusion counts).
    ROC AUC: from ``ranks`` of the scores (drawn labels, ties averaged), else as the area of the expected
    ROC curve with the rows taken by falling score (``order``)."""
    n = len(p)
    yhat = (p >= 0.5).astype(L.dtype)
    pos = L.sum(axis=1, dtype=float)
    tp = L @ yhat
    fp = yhat.sum() - tp
    fn = pos - tp
    tn = n - pos - fp
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "accuracy":
            return (tp + tn) / n
        if metric == "f1":
            return 2 * tp / (2 * tp + fp + fn)
        if metric == "precision":
            return tp / (tp + fp)
        if metric == "recall":
            return tp / pos
        if metric == "balanced_accuracy":
            return (tp / pos + tn / (n - pos)) / 2
        if metric == "log_loss":
            pc = np.clip(p, _EPS, 1 - _EPS)
            l1, l0 = -np.log(pc), -np.log(1 - pc)
            return (L @ (l1 - l0) + l0.sum()) / n
        if metric == "roc_auc" and order is None:
            if ranks is None:
                from scipy.stats import rankdata

                ranks = rankdata(p)
            return (L @ ranks - pos * (pos + 1) / 2) / (pos * (n - pos))
        if metric == "roc_auc":  # by trapezoids: row i adds (1 - q_i) false positives at (TP before it + q_i / 2)
            qo = L[:, order]
            ctp = np.cumsum(qo, axis=1)
            ctp -= qo / 2
            return np.einsum("ij,ij->i", 1 - qo, ctp) / (pos * (n - pos))
    return None


#: the multiclass metrics whose expectation has a closed form here (:func:`_expected`); the others are drawn
MULTI_CLOSED_FORM = ("accuracy", "log_loss")


def _expected(problem_type: str, metric: str, P: np.ndarray, Q: np.ndarray, order: np.ndarray | None,
              yhat: np.ndarray | None = None) -> float | None:
    """The metric's expectation in closed form (ratios of expected counts), or None where there is none here.
    ``yhat``: multiclass, ``P.argmax(axis=1)``, if known."""
    n = P.shape[0]
    if problem_type != "binary":
        if metric not in MULTI_CLOSED_FORM:
            return None
        yhat = P.argmax(axis=1) if yhat is None else yhat
        if metric == "accuracy":
            return float(Q[np.arange(n), yhat].mean())
        if metric == "log_loss":
            return float(-(Q * np.log(np.clip(P, _EPS, 1))).sum(axis=1).mean())
        return None
    values = _binary_metric(metric, P[:, 1], Q[None, :, 1], order=order)
    return None if values is None or not np.isfinite(values[0]) else float(values[0])


def _metric_draws(problem_type: str, metric: str, P: np.ndarray, Y: np.ndarray, ranks: np.ndarray | None = None) -> np.ndarray:
    """The metric for each row of drawn labels ``Y`` (draws, n), vectorised."""
    n = P.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        if problem_type == "binary":
            out = _binary_metric(metric, P[:, 1], Y, ranks=ranks)
            if out is not None:
                return out
        else:
            yhat = P.argmax(axis=1)
            if metric == "accuracy":
                return (Y == yhat).mean(axis=1)
            if metric == "log_loss":
                logp = np.log(np.clip(P, _EPS, 1))
                return -np.take_along_axis(np.broadcast_to(logp, (len(Y), *logp.shape)), Y[..., None], 2)[..., 0].mean(axis=1)
            k = P.shape[1]
            recalls, f1s = [], []
            for c in range(k):  # counts of true values: count_nonzero, the same whole numbers as a sum, far faster
                is_c = Y == c
                pred_c = yhat == c
                tp = np.count_nonzero(is_c & pred_c, axis=1).astype(float)
                support = np.count_nonzero(is_c, axis=1)
                recalls.append(tp / support)
                f1s.append(2 * tp / (support + pred_c.sum()))
            if metric == "balanced_accuracy":
                return np.nanmean(np.vstack(recalls), axis=0)
            if metric == "f1_macro":
                return np.nanmean(np.vstack(f1s), axis=0)
    raise EstimationError(f"metric {metric} has no estimator for {problem_type}")  # fit_estimator refuses it first


#: metrics that live in [0, 1]
UNIT_METRICS = frozenset({"accuracy", "roc_auc", "f1", "balanced_accuracy", "precision", "recall", "f1_macro"})
#: losses: above 0 (their bands and errors are taken on the log scale)
LOSS_METRICS = frozenset({"log_loss", "mean_absolute_error", "root_mean_squared_error", "mean_squared_error"})


def metric_range(metric: str) -> tuple[float, float]:
    """The values ``metric`` can take: (0, 1) for the rates, (0, inf) for losses, (-inf, 1) for R²."""
    if metric in UNIT_METRICS:
        return 0.0, 1.0
    if metric in LOSS_METRICS:
        return 0.0, math.inf
    if metric == "r2":
        return -math.inf, 1.0
    return -math.inf, math.inf


def clip_to_range(metric: str, value: float | None, low: float | None, high: float | None):
    """``(value, low, high)`` inside the metric's range (None stays None)."""
    lo, hi = metric_range(metric)
    c = lambda v: v if v is None or v != v else float(min(max(v, lo), hi))  # noqa: E731
    return c(value), c(low), c(high)


#: contiguous blocks the calibration rows are cut into to measure how much their labels' errors hang together
DEPENDENCE_BLOCKS = 10


def dependence(residuals: np.ndarray, iid_variance: float, blocks: int = DEPENDENCE_BLOCKS) -> float:
    """How much more a batch mean of ``residuals`` (labels minus what was expected, in row order) varies than if the
    rows were independent: the batch-means estimate of the long-run variance (block size × variance of the means of
    contiguous blocks) over ``iid_variance``, at least 1. Rows of a day-by-day stream hang together (a wet spell, a
    warm month), so a batch's share or mean strays further than row-by-row sampling says; the label check's
    sampling error is widened by this factor's square root."""
    r = np.asarray(residuals, dtype=float)
    size = len(r) // blocks
    if size < 2 or iid_variance <= 0:
        return 1.0
    means = r[: size * blocks].reshape(blocks, size).mean(axis=1)
    return float(max(1.0, size * float(np.var(means, ddof=1)) / iid_variance))
