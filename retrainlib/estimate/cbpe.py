"""Confidence-based performance estimation (classification): fit the calibration into an :class:`~.estimator.Estimator`,
estimate a batch's metric and its band from the calibrated probabilities.

Touches no file; keeps the newest few calibrations in memory (:data:`_CALIBRATIONS`)."""

from __future__ import annotations

import math

import numpy as np

from .calibration import N_MAPS, _apply, _as_matrix, _calibrate, _calibration, _draw_labels, _sorted_columns
from .estimator import Estimator, _content_key, _label_key, _maps, estimates_batches
from .metrics import MULTI_CLOSED_FORM, _binary_metric, _binary_variance, _expected, _metric_draws, _sampling_variance


#: label draws per batch (for the sampling spread)
N_DRAWS = 100


#: the calibration of the newest few (labels, scores, seed): it does not depend on the metric, so estimators of
#: several metrics of one model on the same rows share it instead of fitting it again
_CALIBRATIONS: dict[tuple, tuple] = {}


def _fit_cbpe(base: dict, yi: np.ndarray, s: np.ndarray, seed: int) -> Estimator:
    k = len(base["classes"])
    # the scores as given (binary: the positive class, which the matrix only mirrors) and the labels name the rows
    key = (k, seed, N_MAPS, s.shape, _content_key(np.asarray(s, dtype=float), _label_key(yi)))
    if key not in _CALIBRATIONS:
        P = np.ascontiguousarray(_as_matrix(s, k))
        if len(_CALIBRATIONS) >= 4:
            _CALIBRATIONS.pop(next(iter(_CALIBRATIONS)))
        _CALIBRATIONS[key] = _calibration(P, yi, seed)
    checks, state, ece_after, limit = _CALIBRATIONS[key]
    checks, state = dict(checks), {"maps": state["maps"], "bootstrap": state["bootstrap"]}
    if ece_after > limit:
        return Estimator(usable=False, checks=checks, state=state, reason=(
            f"miscalibrated: after isotonic calibration the model's probabilities still miss the labels by "
            f"{ece_after:.3f} (expected calibration error, cross-fitted), more than sampling explains "
            f"({limit:.3f}); its scores do not order the risk, so an estimate would be a guess"), **base)
    return Estimator(usable=True, reason="", checks=checks, state=state, **base)


@estimates_batches("cbpe")
def _cbpe_estimate(est: Estimator, s: np.ndarray, features=None) -> tuple[float, float, float, dict]:
    """Point: the metric's expectation under the calibrated probabilities (closed form where there is
    one, else the mean of label draws). Band: normal, from the sampling variance of the metric when the
    labels are drawn from those probabilities (closed form where there is one, else from draws) plus
    the mean squared distance of the expectation under each bootstrap re-fit of the calibration map from
    the point. Binary: on the positive-class scores alone; for ROC AUC they are sorted once (its expectation
    needs the score order, and the maps, which rise with the score, keep it)."""
    k = len(est.classes)
    spread = P = cols = yhat = None
    if est.problem_type == "binary":
        p = np.sort(s) if est.metric == "roc_auc" else s
        q = _apply(_maps(est, "maps")[0], p)
        order = _FALLING if est.metric == "roc_auc" else None
        values = _binary_metric(est.metric, p, q[None, :], order=order)
        point = None if values is None or not np.isfinite(values[0]) else float(values[0])
        var = _binary_variance(est.metric, p, q, point)
        spread = _binary_spread(est, p) if point is not None else None
    else:
        P = _as_matrix(s, k)
        cols = _sorted_columns(P)  # each class column sorted once, for the map and every bootstrap map
        yhat = P.argmax(axis=1)  # and the model's classes found once
        Q = _calibrate(_maps(est, "maps"), P, cols)
        order = None
        point = _expected(est.problem_type, est.metric, P, Q, order, yhat)
        var = _sampling_variance(est.problem_type, est.metric, P, Q, point)
    if point is None or var is None:
        ranks = None
        if P is None:  # binary, without a closed form: the draws' matrices
            P, Q = np.column_stack([1 - p, p]), np.column_stack([1 - q, q])
        if est.problem_type == "binary" and est.metric == "roc_auc":
            from scipy.stats import rankdata

            ranks = rankdata(P[:, 1]).astype(np.float32)
        rng = np.random.default_rng(est.seed)
        draws = _metric_draws(est.problem_type, est.metric, P, _draw_labels(Q, rng, N_DRAWS), ranks)
        point = float(np.nanmean(draws)) if point is None else point
        var = float(np.nanvar(draws))
    if spread is None and P.shape[1] > 2 and est.metric not in MULTI_CLOSED_FORM:
        spread = np.array([])  # no closed form under a map (as _expected says for each): nothing to apply them for
    if spread is None:
        spread = [_expected(est.problem_type, est.metric, P, _calibrate(m, P, cols), order, yhat)
                  for m in _maps(est, "bootstrap")]
        spread = np.array([v - point for v in spread if v is not None])
    # calibration: mean squared distance of the bootstrap re-fits' estimates from the map's (their variance, plus
    # their gap to it where the model's own probabilities are kept)
    calib = float(np.mean(np.square(spread))) if len(spread) else 0.0
    sd = math.sqrt(var + calib)
    z = 1.959963984540054
    parts = {"sampling": round(z * math.sqrt(var), 6), "calibration": round(z * math.sqrt(calib), 6),
             "sampling_scale": z * math.sqrt(var), "shape": "normal, sampling and calibration variances added"}
    return point, point - z * sd, point + z * sd, parts


#: rows sorted by rising score, taken by falling score (a view: no copy)
_FALLING = slice(None, None, -1)


#: the calibration's share of a binary band is measured on at most this many of the batch's rows (every k-th)
SPREAD_ROWS = 2000


def _binary_spread(est: Estimator, p: np.ndarray) -> np.ndarray:
    """How far the metric moves under each bootstrap re-fit of the calibration map, from its value under the
    map itself — on the same (at most :data:`SPREAD_ROWS`, every k-th) rows of the batch, all maps at once.
    ROC AUC passes the scores sorted (its point needs them so), which makes every k-th row a sample stratified by
    score; the other metrics pass them in the batch's order."""
    maps = [_maps(est, "maps")[0]] + [b[0] for b in _maps(est, "bootstrap")]
    if len(maps) == 1:
        return np.array([])
    ps = np.sort(p[:: max(1, math.ceil(len(p) / SPREAD_ROWS))])  # np.interp walks sorted queries much faster
    Q1 = np.empty((len(maps), len(ps)))
    for i, m in enumerate(maps):
        Q1[i] = _apply(m, ps)
    values = _binary_metric(est.metric, ps, Q1, order=_FALLING if est.metric == "roc_auc" else None)
    moved = values[1:] - values[0]
    return moved[np.isfinite(moved)]
