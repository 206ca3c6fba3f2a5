"""Label-free performance estimation: what the champion's metric probably is on a batch without labels.

Two methods, one API (:func:`fit_estimator` → :class:`Estimator` → :meth:`Estimator.estimate` →
:class:`Estimate`):

* **classification** (binary, multiclass) — confidence-based estimation (CBPE): the champion's
  probabilities are calibrated with isotonic regression (SciPy's PAVA) on labelled rows the
  champion did *not* train on; on a new batch each row's calibrated probability is the chance of
  each label, so the metric's expectation under them is the estimate (closed form where there is one,
  else the mean over label draws). The band adds two variances: the metric's over label draws
  (sampling) and the calibration's — the mean squared distance from the estimate of the estimates
  under isotonic maps re-fitted on bootstrap samples of the calibration rows. The model's own
  probabilities are kept instead of a map only where they do as well on held-out rows *and* pass as
  calibrated on all of them; the band then still spans the isotonic alternative the rows cannot rule out.
  The calibration does not depend on the metric: estimators of several metrics fitted on the same rows
  share it.
* **regression** — direct loss estimation (DLE): a small LightGBM (one thread) learns the
  champion's absolute or squared error from the features and the prediction, on labelled rows
  the champion did not train on; a batch's estimated MAE / RMSE / R² follows from the predicted
  losses, the band from the out-of-fold error of that loss model.

Both only see *covariate* shift: when the link between features and label changes (a concept
change) the probabilities stay confident and the estimate stays where it was.

Nothing is estimated silently: too little calibration data, a score that calibration cannot fix
(cross-fitted calibration error above what sampling explains), or a batch too small yields an
:class:`Estimate` with ``value=None`` and the reason.

The estimator is plain JSON (isotonic thresholds, the LightGBM model text): it is written into the
registry version it belongs to and checksummed with it.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> p = rng.uniform(0, 1, 2000); y = (rng.uniform(0, 1, 2000) < p).astype(int)
>>> est = fit_estimator(problem_type="binary", metric="accuracy", y_true=y, scores=p, classes=[0, 1])
>>> est.usable
True
>>> e = est.estimate(p[:1000])
>>> abs(e.value - 0.75) < 0.03, e.low < e.value < e.high
(True, True)
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .errors import EstimationError

__all__ = [
    "Estimate",
    "Estimator",
    "fit_estimator",
    "unavailable",
    "compare",
    "ESTIMATOR_FILE",
    "MIN_ROWS",
    "MIN_BATCH_ROWS",
]

#: file name of the estimator inside a registry version folder
ESTIMATOR_FILE = "estimator.json"
#: fewest labelled calibration rows an estimator is fitted on
MIN_ROWS = 200
#: fewest rows of each class among the calibration rows (classification)
MIN_CLASS_ROWS = 10
#: fewest rows a batch needs to be estimated
MIN_BATCH_ROWS = 30
#: bootstrap re-fits of the calibration map (its uncertainty goes into the band)
N_MAPS = 10
#: label draws per batch (for the sampling spread)
N_DRAWS = 100
#: the band's coverage
CONFIDENCE = 0.95

_BINARY_FAST = ("accuracy", "roc_auc", "f1", "log_loss", "balanced_accuracy", "precision", "recall")
_MULTI_FAST = ("accuracy", "log_loss", "balanced_accuracy", "f1_macro")
_REGRESSION = {
    "mean_absolute_error": "absolute",
    "root_mean_squared_error": "squared",
    "mean_squared_error": "squared",
    "r2": "squared",
}
_EPS = 1e-15


@dataclass(frozen=True)
class Estimate:
    """The estimated metric of one batch, with its band; ``value`` is None when not estimated (``reason`` says why)."""

    metric: str
    value: float | None
    low: float | None
    high: float | None
    n_rows: int
    method: str
    reason: str = ""
    batch: str | None = None
    source: str = "estimated"

    @property
    def estimated(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Estimate":
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__ if k in d})

    def describe(self) -> str:
        """``estimated roc_auc 0.712 (95% band 0.690–0.734, 1500 rows)`` or why not."""
        if self.value is None:
            return f"{self.metric} not estimated: {self.reason}"
        return (f"estimated {self.metric} {self.value:.3f} ({CONFIDENCE:.0%} band {self.low:.3f}–{self.high:.3f}, "
                f"{self.n_rows} rows)")


def unavailable(metric: str, reason: str, *, batch: str | None = None, n_rows: int = 0, method: str = "none") -> Estimate:
    """An estimate that was not made, and why."""
    return Estimate(metric, None, None, None, int(n_rows), method, reason, batch)


def compare(estimate: Estimate | dict, measured: float) -> dict[str, Any]:
    """The estimator's own accuracy once labels arrive: estimate, measured, error, inside the band."""
    e = estimate if isinstance(estimate, Estimate) else Estimate.from_dict(estimate)
    if e.value is None:
        return {"estimated": None, "measured": float(measured), "error": None, "in_band": None}
    return {
        "estimated": e.value,
        "low": e.low,
        "high": e.high,
        "measured": float(measured),
        "error": float(e.value - measured),
        "in_band": bool(e.low <= measured <= e.high),
    }


# --------------------------------------------------------------------------- the estimator
@dataclass
class Estimator:
    """A fitted label-free estimator of one model's metric (see the module docstring)."""

    problem_type: str
    metric: str
    method: str  # 'cbpe' | 'dle'
    classes: list | None
    usable: bool
    reason: str
    calibration_rows: int
    calibration_batches: list[str]
    checks: dict[str, Any]
    state: dict[str, Any] = field(repr=False)
    seed: int = 0

    # ---- persistence
    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["format"] = 1
        return json.loads(json.dumps(d, default=_json_default))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Estimator":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), default=_json_default) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Estimator":
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EstimationError(f"{path}: not a readable estimator ({type(exc).__name__}: {exc}); "
                                  "re-register the version or estimate without it") from exc

    def summary(self) -> dict[str, Any]:
        """What a step JSON shows about the estimator (no model state)."""
        return {"method": self.method, "metric": self.metric, "usable": self.usable, "reason": self.reason,
                "calibration_rows": self.calibration_rows, "calibration_batches": self.calibration_batches,
                "checks": self.checks}

    # ---- estimation
    def calibrated(self, scores) -> np.ndarray:
        """The calibrated class probabilities (n, classes) the estimate rests on; their column means are the
        class shares the estimator expects (compare them with the realized shares once labels arrive)."""
        if self.method != "cbpe" or not self.usable:
            raise EstimationError(f"calibrated probabilities need a usable classification estimator (this one: {self.method}"
                                  f"{', ' + self.reason if self.reason else ''})")
        return _calibrate(_maps(self, "maps"), _as_matrix(np.asarray(scores, dtype=float), len(self.classes)))

    def estimate(self, scores, features: pd.DataFrame | None = None, *, batch: str | None = None) -> Estimate:
        """Estimate the metric of one batch from the model's scores (and, for regression, its features).

        ``scores`` is what :func:`retrainlib.automl.predict_scores` returns: the positive-class
        probability (binary), the class probabilities (multiclass) or the predictions (regression).
        """
        scores = np.asarray(scores, dtype=float)
        n = int(len(scores))
        if not self.usable:
            return unavailable(self.metric, self.reason, batch=batch, n_rows=n, method=self.method)
        if n < MIN_BATCH_ROWS:
            return unavailable(self.metric, f"batch has {n} rows, fewer than {MIN_BATCH_ROWS}", batch=batch,
                               n_rows=n, method=self.method)
        if self.method == "cbpe":
            value, low, high = _cbpe_estimate(self, scores)
        else:
            if features is None:
                raise EstimationError("a regression estimate needs the batch's features (direct loss estimation)")
            value, low, high = _dle_estimate(self, scores, features)
        return Estimate(self.metric, _r(value), _r(low), _r(high), n, self.method, "", batch)


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
    overlap = sorted(set(calibration_batches) & set(trained_batches))
    if overlap:
        raise EstimationError(
            f"calibration batches {', '.join(overlap)} are among the model's training slices; calibrate only on "
            "labelled batches the model did not train on (e.g. its validation holdout)"
        )
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=float)
    keep = ~pd.isna(y)
    if features is not None:
        features = features.reset_index(drop=True)[keep]
    y, s = y[keep], s[keep]
    method = "dle" if problem_type == "regression" else "cbpe"
    base = dict(problem_type=problem_type, metric=metric, method=method,
                classes=list(classes) if classes is not None else None,
                calibration_rows=int(len(y)), calibration_batches=list(calibration_batches), seed=seed)

    def refuse(reason: str, checks: dict | None = None) -> Estimator:
        return Estimator(usable=False, reason=reason, checks=checks or {}, state={}, **base)

    if len(y) < min_rows:
        return refuse(f"{len(y)} labelled calibration rows the model did not train on, need {min_rows}")
    if problem_type == "regression":
        if metric not in _REGRESSION:
            return refuse(f"metric {metric} cannot be estimated; direct loss estimation knows {', '.join(_REGRESSION)}")
        if features is None:
            raise EstimationError("direct loss estimation needs the calibration rows' features")
        return _fit_dle(base, y.astype(float), s, features, seed)
    if classes is None:
        raise EstimationError("classification needs the model's class labels in its own order")
    idx = {c: i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in pd.unique(y) if v not in idx})
    if unknown:
        return refuse(f"calibration labels {', '.join(unknown[:5])} are not among the model's classes {list(classes)} "
                      f"(a class new since it trained; a model that learnt it can be estimated)")
    yi = np.array([idx[v] for v in y])
    counts = np.bincount(yi, minlength=len(classes))
    if counts.min() < MIN_CLASS_ROWS:
        rare = classes[int(counts.argmin())]
        return refuse(f"class {rare!r} has {int(counts.min())} calibration rows, need {MIN_CLASS_ROWS}")
    if problem_type == "binary" and metric not in _BINARY_FAST or problem_type == "multiclass" and metric not in _MULTI_FAST:
        known = _BINARY_FAST if problem_type == "binary" else _MULTI_FAST
        return refuse(f"metric {metric} cannot be estimated for {problem_type}; CBPE here knows {', '.join(known)}")
    return _fit_cbpe(base, yi, s, seed)


# --------------------------------------------------------------------------- CBPE
def _isotonic(x: np.ndarray, y: np.ndarray) -> dict[str, list]:
    """Isotonic regression of ``y`` on ``x`` (SciPy's pool-adjacent-violators, ties in ``x`` pooled first),
    as the points the map interpolates between — what scikit-learn's ``IsotonicRegression`` fits,
    without its per-call overhead (it is fitted 15 times per estimator)."""
    xs, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return _isotonic_pooled(xs, np.bincount(inverse, weights=y), counts)


def _isotonic_pooled(xs: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> dict[str, list]:
    """:func:`_isotonic` from the distinct ``xs`` (rising), the sum of ``y`` and the count of rows at each."""
    from scipy.optimize import isotonic_regression

    fitted = np.clip(isotonic_regression(sums / counts, weights=counts.astype(float)).x, 0.0, 1.0)
    # keep the two ends of each constant block: the same map with far fewer points to search
    change = np.flatnonzero(np.diff(fitted))
    keep = np.unique(np.concatenate([[0, len(xs) - 1], change, change + 1]))
    return {"x": xs[keep].tolist(), "y": fitted[keep].tolist()}


def _bootstrap_maps(P: np.ndarray, yi: np.ndarray, rng: np.random.Generator, times: int) -> list[list[dict]]:
    """The one-vs-rest isotonic maps fitted on ``times`` bootstrap samples of the rows — the same maps as
    :func:`_fit_maps` on each resample, from one sort of the scores (a resample only re-weights their distinct values)."""
    cols = [1] if P.shape[1] == 2 else range(P.shape[1])
    grids = [np.unique(P[:, j], return_inverse=True) for j in cols]
    out = []
    for _ in range(times):
        take = rng.integers(0, len(yi), len(yi))
        maps = []
        for j, (xs, inverse) in zip(cols, grids):
            at = inverse[take]
            counts = np.bincount(at, minlength=len(xs))
            sums = np.bincount(at, weights=(yi[take] == j).astype(float), minlength=len(xs))
            seen = counts > 0
            maps.append(_isotonic_pooled(xs[seen], sums[seen], counts[seen]))
        out.append(maps)
    return out


def _apply(m: dict[str, list], x: np.ndarray) -> np.ndarray:
    return np.interp(x, m["x"], m["y"])


def _as_matrix(s: np.ndarray, k: int) -> np.ndarray:
    """Class-probability matrix (n, k) from binary positive-class scores or multiclass rows."""
    return np.column_stack([1 - s, s]) if s.ndim == 1 else s.reshape(len(s), k)


def _calibrate(maps: list[dict], P: np.ndarray) -> np.ndarray:
    """One-vs-rest isotonic maps applied and renormalised (binary: the positive class only)."""
    if len(maps) == 1:
        p1 = _apply(maps[0], P[:, 1])
        return np.column_stack([1 - p1, p1])
    Q = np.column_stack([_apply(m, P[:, j]) for j, m in enumerate(maps)])
    Q = np.clip(Q, 1e-6, None)
    return Q / Q.sum(axis=1, keepdims=True)


def _fit_maps(P: np.ndarray, yi: np.ndarray) -> list[dict]:
    k = P.shape[1]
    cols = [1] if k == 2 else range(k)
    return [_isotonic(P[:, j], (yi == j).astype(float)) for j in cols]


def _ece(P: np.ndarray, Q: np.ndarray, Y: np.ndarray, bins: int = 10, idx: list | None = None) -> np.ndarray:
    """Calibration error conditional on the raw score, for each row of labels ``Y`` (draws, n).

    Rows are binned by the model's own probability of each class (equal-frequency bins); in each bin
    the calibrated probability is compared with the observed share, weighted by rows, averaged over
    classes (binary: the positive class only). ``idx``: each class column's rows by rising score, if known
    (:func:`_score_order`).
    """
    n = P.shape[0]
    cols = [1] if P.shape[1] == 2 else range(P.shape[1])
    idx = _score_order(P) if idx is None else idx
    sizes = [n // bins + 1] * (n % bins) + [n // bins] * (bins - n % bins)  # np.array_split's bins, in score order
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    total = np.zeros(len(Y))
    for j, order in zip(cols, idx):
        hit = Y[:, order] if P.shape[1] == 2 else (Y[:, order] == j)  # binary labels are already 0/1
        observed = np.add.reduceat(hit, starts, axis=1, dtype=float)
        expected = np.add.reduceat(Q[order, j], starts)
        total += np.abs(expected[None, :] - observed).sum(axis=1) / n
    return total / len(cols)


def _score_order(P: np.ndarray) -> list[np.ndarray]:
    """Rows by rising score of each class column :func:`_ece` bins (binary: the positive class only)."""
    return [np.argsort(P[:, j], kind="stable") for j in ([1] if P.shape[1] == 2 else range(P.shape[1]))]


def _draw_labels(Q: np.ndarray, rng: np.random.Generator, draws: int) -> np.ndarray:
    """(draws, n) class indices drawn row by row from the probabilities ``Q``."""
    u = rng.random((draws, len(Q)), dtype=np.float32)
    if Q.shape[1] == 2:
        return (u < Q[:, 1].astype(np.float32)).astype(np.float32)
    cum = np.cumsum(Q, axis=1).astype(np.float32)
    return (u[:, :, None] > cum[None, :, :-1]).sum(axis=2)


#: the calibration of the newest few (labels, scores, seed): it does not depend on the metric, so estimators of
#: several metrics of one model on the same rows share it instead of fitting it again
_CALIBRATIONS: dict[tuple, tuple] = {}


def _fit_cbpe(base: dict, yi: np.ndarray, s: np.ndarray, seed: int) -> Estimator:
    import hashlib

    k = len(base["classes"])
    P = np.ascontiguousarray(_as_matrix(s, k))
    key = (k, seed, N_MAPS, hashlib.blake2b(P.tobytes() + np.ascontiguousarray(yi, dtype=np.int64).tobytes()).hexdigest())
    if key not in _CALIBRATIONS:
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


def _calibration(P: np.ndarray, yi: np.ndarray, seed: int) -> tuple[dict, dict, float, float]:
    """Choose and fit the calibration (checks, state, error after it, the error sampling explains)."""
    k = P.shape[1]
    rng = np.random.default_rng(seed)
    maps = _fit_maps(P, yi)
    # cross-fitted check: calibrate on one half, measure on the other, against what sampling alone gives.
    # Where the model's own probabilities are already as well calibrated on held-out rows, they are kept
    # (an isotonic step function fitted to few rows only adds noise), as NannyML's CBPE does.
    perm = rng.permutation(len(yi))
    halves = np.array_split(perm, 2)
    raw, cal, null_raw, null_cal = [], [], [], []
    for a, b in (halves, halves[::-1]):
        Qb = _calibrate(_fit_maps(P[a], yi[a]), P[b])
        idx = _score_order(P[b])
        cal.append(float(_ece(P[b], Qb, yi[b][None, :], idx=idx)[0]))
        raw.append(float(_ece(P[b], P[b], yi[b][None, :], idx=idx)[0]))
        null_cal.extend(_ece(P[b], Qb, _draw_labels(Qb, rng, 100), idx=idx).tolist())
        null_raw.extend(_ece(P[b], P[b], _draw_labels(P[b], rng, 100), idx=idx).tolist())
    ece_raw, ece_cal = float(np.mean(raw)), float(np.mean(cal))
    # the model's own probabilities are kept only if they also pass as calibrated on all the rows (their error
    # within what sampling gives 95% of the time): on few rows the cross-fitted comparison alone often prefers a
    # miscalibrated model to an isotonic map fitted on half of them
    idx = _score_order(P)
    ece_raw_all = float(_ece(P, P, yi[None, :], idx=idx)[0])
    raw_passes = ece_raw_all <= float(np.quantile(_ece(P, P, _draw_labels(P, rng, 100), idx=idx), 0.95))
    keep_raw = ece_raw <= ece_cal and raw_passes
    ece_after = ece_raw if keep_raw else ece_cal
    limit = float(np.quantile(null_raw if keep_raw else null_cal, 0.99)) * 1.5
    # isotonic maps re-fitted on bootstrap samples of the rows: how far their estimates fall from the point is the
    # calibration's share of the band — also when the model's own probabilities are kept (then the band spans
    # the isotonic alternative the rows cannot rule out)
    boot = _bootstrap_maps(P, yi, rng, N_MAPS)
    if keep_raw:
        maps = [{"x": [0.0, 1.0], "y": [0.0, 1.0]} for _ in maps]
        how = "none: the model's own probabilities are as well calibrated on held-out rows"
    else:
        how = "isotonic, one-vs-rest" if k > 2 else "isotonic"
    checks = {"ece_raw": round(ece_raw, 4), "ece_calibrated": round(ece_cal, 4), "raw_passes": bool(raw_passes),
              "ece_limit": round(limit, 4), "calibration": how}
    return checks, {"maps": maps, "bootstrap": boot}, ece_after, limit


def _cbpe_estimate(est: Estimator, s: np.ndarray) -> tuple[float, float, float]:
    """Point: the metric's expectation under the calibrated probabilities (closed form where there is
    one, else the mean of label draws). Band: normal, from the sampling variance of the metric when the
    labels are drawn from those probabilities (closed form where there is one, else from draws) plus
    the mean squared distance of the expectation under each bootstrap re-fit of the calibration map from
    the point. Binary: the map and its re-fits are applied and evaluated at once, one row each."""
    k = len(est.classes)
    P = _as_matrix(s, k)
    rng = np.random.default_rng(est.seed)
    order = np.argsort(-P[:, 1]) if est.problem_type == "binary" and est.metric == "roc_auc" else None
    spread = None
    if est.problem_type == "binary":
        m = _maps(est, "maps")[0]
        q = np.interp(P[:, 1], m["x"], m["y"])
        Q = np.column_stack([1 - q, q])
        values = _binary_metric(est.metric, P[:, 1], q[None, :], order=order)
        point = None if values is None or not np.isfinite(values[0]) else float(values[0])
        spread = _binary_spread(est, P[:, 1]) if point is not None else None
    else:
        Q = _calibrate(_maps(est, "maps"), P)
        point = _expected(est.problem_type, est.metric, P, Q, order)
    var = _sampling_variance(est.problem_type, est.metric, P, Q, point)
    if point is None or var is None:
        ranks = None
        if order is not None:
            from scipy.stats import rankdata

            ranks = rankdata(P[:, 1]).astype(np.float32)
        draws = _metric_draws(est.problem_type, est.metric, P, _draw_labels(Q, rng, N_DRAWS), ranks)
        point = float(np.nanmean(draws)) if point is None else point
        var = float(np.nanvar(draws))
    if spread is None:
        spread = [_expected(est.problem_type, est.metric, P, _calibrate(m, P), order) for m in _maps(est, "bootstrap")]
        spread = np.array([v - point for v in spread if v is not None])
    # calibration: mean squared distance of the bootstrap re-fits' estimates from the map's (their variance, plus
    # their gap to it where the model's own probabilities are kept)
    calib = float(np.mean(np.square(spread))) if len(spread) else 0.0
    sd = math.sqrt(var + calib)
    z = 1.959963984540054
    return point, point - z * sd, point + z * sd


def _sampling_variance(problem_type: str, metric: str, P: np.ndarray, Q: np.ndarray, point: float | None) -> float | None:
    """Variance of the metric over label draws from ``Q``, in closed form where there is one."""
    if point is None:
        return None
    n = P.shape[0]
    if metric == "accuracy":
        yhat = P.argmax(axis=1)
        c = Q[np.arange(n), yhat]
        return float((c * (1 - c)).sum() / n ** 2)
    if problem_type != "binary":
        return None
    q = Q[:, 1]
    if metric == "log_loss":
        pc = np.clip(P[:, 1], _EPS, 1 - _EPS)
        return float((q * (1 - q) * (np.log(pc) - np.log(1 - pc)) ** 2).sum() / n ** 2)
    if metric == "roc_auc":  # Hanley & McNeil (1982) at the expected class sizes
        a, n1 = point, float(q.sum())
        n0 = n - n1
        if n1 < 1 or n0 < 1:
            return None
        q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
        return float((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0))
    return None


def _maps(est: Estimator, key: str):
    """The calibration maps as arrays, converted once per estimator."""
    cache = est.__dict__.setdefault("_arrays", {})
    if key not in cache:
        as_arrays = lambda ms: [{"x": np.asarray(m["x"]), "y": np.asarray(m["y"])} for m in ms]  # noqa: E731
        cache[key] = as_arrays(est.state["maps"]) if key == "maps" else [as_arrays(b) for b in est.state["bootstrap"]]
    return cache[key]


#: the calibration's share of a binary band is measured on at most this many of the batch's rows (every k-th)
SPREAD_ROWS = 2000


def _binary_spread(est: Estimator, p: np.ndarray) -> np.ndarray:
    """How far the metric moves under each bootstrap re-fit of the calibration map, from its value under the
    map itself — on the same (at most :data:`SPREAD_ROWS`, evenly strided) rows of the batch, all maps at once."""
    maps = [_maps(est, "maps")[0]] + [b[0] for b in _maps(est, "bootstrap")]
    if len(maps) == 1:
        return np.array([])
    ps = p[:: max(1, math.ceil(len(p) / SPREAD_ROWS))]
    rising = np.argsort(ps, kind="stable")  # np.interp walks sorted queries much faster than scattered ones
    Q1 = np.empty((len(maps), len(ps)))
    for i, m in enumerate(maps):
        Q1[i, rising] = np.interp(ps[rising], m["x"], m["y"])
    values = _binary_metric(est.metric, ps, Q1, order=rising[::-1] if est.metric == "roc_auc" else None)
    moved = values[1:] - values[0]
    return moved[np.isfinite(moved)]


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


def _expected(problem_type: str, metric: str, P: np.ndarray, Q: np.ndarray, order: np.ndarray | None) -> float | None:
    """The metric's expectation in closed form (ratios of expected counts), or None where there is none here."""
    n = P.shape[0]
    if problem_type != "binary":
        yhat = P.argmax(axis=1)
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
            for c in range(k):
                is_c = Y == c
                pred_c = yhat == c
                tp = (is_c & pred_c).sum(axis=1).astype(float)
                support = is_c.sum(axis=1)
                recalls.append(tp / support)
                f1s.append(2 * tp / (support + pred_c.sum()))
            if metric == "balanced_accuracy":
                return np.nanmean(np.vstack(recalls), axis=0)
            if metric == "f1_macro":
                return np.nanmean(np.vstack(f1s), axis=0)
    raise EstimationError(f"metric {metric} has no estimator for {problem_type}")  # fit_estimator refuses it first


# --------------------------------------------------------------------------- DLE
_DLE_PARAMS = {"objective": "regression", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 20,
               "feature_fraction": 0.9, "bagging_fraction": 0.9, "bagging_freq": 1, "lambda_l2": 1.0,
               "num_threads": 1, "verbose": -1, "deterministic": True, "force_row_wise": True}
_DLE_ROUNDS = 150


def _dle_frame(features: pd.DataFrame, prediction: np.ndarray, categories: dict[str, list]) -> pd.DataFrame:
    cols: dict[str, Any] = {}  # built as arrays, the frame made once (a column set at a time costs more than the model)
    for c in features.columns:
        col = features[c]
        if c in categories:
            cols[c] = pd.Categorical(col.astype("string").astype(object), categories=categories[c])
        elif pd.api.types.is_datetime64_any_dtype(col):
            cols[c] = col.astype("int64", errors="ignore").to_numpy(dtype=float)
        else:
            cols[c] = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    cols["__prediction__"] = np.asarray(prediction, dtype=float)
    return pd.DataFrame(cols)


def _categories(features: pd.DataFrame) -> dict[str, list]:
    out = {}
    for c in features.columns:
        col = features[c]
        if col.dtype == object or isinstance(col.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(col) \
                or pd.api.types.is_bool_dtype(col):
            out[c] = sorted(col.dropna().astype("string").astype(object).unique().tolist())
    return out


def _loss(kind: str, y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return np.abs(y - pred) if kind == "absolute" else (y - pred) ** 2


def _train_lgb(X: pd.DataFrame, target: np.ndarray, seed: int):
    import lightgbm as lgb

    params = {**_DLE_PARAMS, "seed": seed}
    return lgb.train(params, lgb.Dataset(X, target, free_raw_data=True), num_boost_round=_DLE_ROUNDS)


def _fit_dle(base: dict, y: np.ndarray, pred: np.ndarray, features: pd.DataFrame, seed: int) -> Estimator:
    kind = _REGRESSION[base["metric"]]
    cats = _categories(features)
    X = _dle_frame(features, pred, cats)
    loss = _loss(kind, y, pred)
    rng = np.random.default_rng(seed)
    folds = np.array_split(rng.permutation(len(y)), 2)
    oof = np.empty(len(y))
    models = []
    for a, b in (folds, folds[::-1]):  # two cross-fitted halves: their out-of-fold error is the band,
        booster = _train_lgb(X.iloc[a], loss[a], seed)  # their average the estimator
        oof[b] = np.clip(booster.predict(X.iloc[b]), 0, None)
        models.append(booster.model_to_string())
    resid = loss - oof
    skill = 1 - float(np.mean(resid ** 2)) / float(np.var(loss)) if np.var(loss) > 0 else 0.0
    checks = {"loss": kind, "loss_model_r2": round(skill, 4), "resid_sd": float(np.std(resid)),
              "bias": float(np.mean(resid)), "mean_loss": float(np.mean(loss))}
    state = {"models": models, "categories": cats, "columns": list(features.columns), "kind": kind}
    return Estimator(usable=True, reason="", checks=checks, state=state, **base)


def _dle_estimate(est: Estimator, pred: np.ndarray, features: pd.DataFrame) -> tuple[float, float, float]:
    import lightgbm as lgb

    st = est.state
    missing = [c for c in st["columns"] if c not in features.columns]
    if missing:
        raise EstimationError(f"the batch lacks the estimator's feature columns {', '.join(missing[:5])}")
    X = _dle_frame(features[st["columns"]], pred, st["categories"])
    if "_boosters" not in est.__dict__:  # parsed once per estimator
        est.__dict__["_boosters"] = [lgb.Booster(model_str=m) for m in st["models"]]
    boosters = est.__dict__["_boosters"]
    losses = np.clip(np.mean([b.predict(X, num_threads=1) for b in boosters], axis=0), 0, None)
    n = len(losses)
    mean = float(losses.mean())
    z = 1.959963984540054
    half = z * est.checks["resid_sd"] / math.sqrt(n) + abs(est.checks["bias"])
    lo, hi = max(mean - half, 0.0), mean + half
    metric = est.metric
    if metric == "mean_absolute_error" or metric == "mean_squared_error":
        return mean, lo, hi
    if metric == "root_mean_squared_error":
        return math.sqrt(mean), math.sqrt(lo), math.sqrt(hi)
    var_pred = float(np.var(pred))  # r2: Var(y) ≈ Var(prediction) + MSE (errors uncorrelated with predictions)
    r2 = lambda mse: 1 - mse / (var_pred + mse) if var_pred + mse > 0 else float("nan")  # noqa: E731
    return r2(mean), r2(hi), r2(lo)


def _r(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 6)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
