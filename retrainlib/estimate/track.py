"""What the estimator's own track record and the arriving labels say about an estimate: the band set by past
estimate errors (adaptive conformal inference on a robust scale), kept inside the metric's range, and a label
shift named.

* :func:`track_record` — the judged estimates (estimate, realized value, inside its band) whose labels had arrived
  by a given batch end, in the order they were judged, from ``evaluations.jsonl`` rows or bare dicts.
* :func:`widen` — an :class:`~.estimator.Estimate`'s band set by that record: the past absolute estimate
  errors (on the log scale for a loss, which is positive) of the newest :data:`WINDOW` judged estimates give a
  robust scale (their upper quartile), and the radius is that scale times the normal quantile of a level that adapts as
  judged estimates arrive (adaptive conformal inference, Gibbs & Candès 2021: each miss raises the level, each
  hit lowers it a little), after a warm-up of :data:`WARMUP` judged estimates. Past the warm-up that radius takes
  the place of the model's calibration part (the record measures what it could only guess), never narrower than
  the batch's own sampling spread; before it, the band is the model's (sampling and calibration).
* :func:`clip_to_range` (from :mod:`.metrics`) — a band inside the metric's range (ROC AUC, accuracy … in [0, 1]; a
  loss above 0; R² ≤ 1).
* :func:`label_check` — once a batch's labels arrive, the realized label distribution against what the calibrated
  champion expected on it (class shares; a regression label's mean and spread), in sampling errors.

Functions of arrays and dicts; touches no file; keeps the newest class-share check in memory (:data:`_CLASS_CHECK`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Iterable

import numpy as np

from ..errors import EstimationError
from .calibration import _as_matrix, _calibrate, _sorted_columns
from .cbpe import SPREAD_ROWS
from .dle import _dle_losses
from .estimator import CONFIDENCE, Estimate, Estimator, _class_places, _content_key, _label_key, _maps
from .metrics import LOSS_METRICS, UNIT_METRICS, clip_to_range, dependence, metric_range  # noqa: F401 (re-exported)


#: judged estimates the track record needs before it widens a band (until then the band is the model's alone)
WARMUP = 3
#: the newest judged estimates the widening reads (older errors stop counting, so the band narrows again after a
#: bad spell)
WINDOW = 12
#: adaptive conformal inference's step: a miss lowers the miss rate aimed at by STEP·(1 − α), a hit raises it by STEP·α
ACI_STEP = 0.02
#: the aimed-at miss rate never goes below this (z 2.81)
MIN_ALPHA = 0.005

#: a label distribution this many sampling errors from what the champion expected is a label shift (two-sided,
#: normal: 0.1% of batches of a stationary stream per class tested; binary tests one class, multiclass each class at
#: Z_SHIFT with Bonferroni's correction, regression the mean and the spread at Z_SHIFT each)
Z_SHIFT = 3.29


def _scale(metric: str):
    """The scale errors are compared on: log for a loss (a positive quantity whose error grows with it), else as is."""
    if metric in LOSS_METRICS:
        return (lambda v: math.log(max(v, 1e-12))), math.exp
    return (lambda v: v), (lambda u: u)


# --------------------------------------------------------------------------- the track record
def track_record(rows: Iterable[dict], *, metric: str, labelled_end: str | None = None) -> list[dict]:
    """The judged estimates of ``metric`` whose labels had arrived by ``labelled_end`` (a batch end, ISO text;
    None: every row), in the order they were judged: ``{"batch", "estimated", "measured", "in_band"}``.

    ``rows``: ``evaluations.jsonl`` rows (``estimate`` holds :func:`~.estimator.compare`'s dict) or dicts with
    those four keys (and ``batch_end`` for the cut; ``band``: who set it, "model" in the warm-up, else the track
    record). A batch judged twice counts once (its first judgement).
    """
    out, seen = [], set()
    for r in rows:
        e = r.get("estimate", r)
        if not isinstance(e, dict) or e.get("estimated") is None or e.get("measured") is None:
            continue
        if r.get("metric", metric) != metric:
            continue
        end = r.get("batch_end")
        if labelled_end is not None and (end is None or str(end) > str(labelled_end)):
            continue  # its labels had not arrived when the estimate at hand was made
        key = r.get("batch")
        if key is not None and key in seen:
            continue
        seen.add(key)
        out.append({"batch": key, "batch_end": end, "estimated": float(e["estimated"]), "measured": float(e["measured"]),
                    "in_band": bool(e.get("in_band")), "band": e.get("band", "track record")})
    return out


def _aci_alpha(record: list[dict], alpha: float) -> float:
    """The miss rate aimed at after walking the record (adaptive conformal inference), within [MIN_ALPHA, 0.5]. Only
    bands the track record set move it (``band`` "model": made in the warm-up, the model's band alone)."""
    a = alpha
    for r in record:
        if r.get("band", "track record") == "model":
            continue
        a += ACI_STEP * (alpha - (0.0 if r["in_band"] else 1.0))
        a = min(max(a, MIN_ALPHA), 0.5)
    return a


def track_radius(scores: np.ndarray, alpha: float) -> tuple[float, str]:
    """The radius the past absolute errors ``scores`` call for at miss rate ``alpha``: their robust scale (the upper
    quartile of the absolute errors over 1.1503, the normal law's) times the normal quantile z(1 − α/2), with the
    prediction interval's √(1 + 1/n). A quartile, not the largest error: one batch estimated before a change was
    seen (its error many times the rest) does not keep every later band that wide, while a lasting change moves
    the quartile once a quarter of the window has seen it; adaptive conformal inference then moves ``alpha`` by
    the band's own hits and misses."""
    from scipy.special import ndtri

    s = np.asarray(scores, dtype=float)
    n = len(s)
    scale = _upper_quartile(s) / 1.1503493803760079
    z = float(-ndtri(alpha / 2))  # norm.isf(alpha / 2), the same figure, without scipy.stats' per-call checks
    return z * scale * math.sqrt(1 + 1 / n), f"z {z:.2f} x robust scale {scale:.4g} of {n} past errors"


def _upper_quartile(s: np.ndarray) -> float:
    """``np.quantile(s, 0.75)`` (its default, linear interpolation, the same float: the same lerp), without its
    general machinery, which took most of the widening's time on the dozen errors it reads."""
    x = np.sort(s)
    if len(x) == 0 or np.isnan(x[-1]):
        return float(np.quantile(s, 0.75))  # empty or NaN: as NumPy says
    h = (len(x) - 1) * 0.75
    k = int(h)
    t = h - k
    if k + 1 >= len(x):
        return float(x[k])
    a, b = float(x[k]), float(x[k + 1])
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t


def widen(e: Estimate, record: list[dict], *, confidence: float = CONFIDENCE, warmup: int = WARMUP,
          window: int = WINDOW) -> Estimate:
    """``e`` with its band set by the track record ``record`` (:func:`track_record`, already cut to what had been
    judged when ``e`` was made; see the module docstring) and kept in the metric's range; its ``parts`` say how wide
    each part is (``sampling_scale``: the sampling half-width on the scale errors are compared on)."""
    if e.value is None:
        return e
    parts = dict(e.parts or {})
    n = len(record)
    fwd, back = _scale(e.metric)
    alpha = 1 - confidence
    if n < warmup:
        parts["track_record"] = 0.0
        parts["track_record_note"] = f"warming up: {n} of {warmup} judged estimates"
        value, low, high = clip_to_range(e.metric, e.value, e.low, e.high)
        return replace(e, value=value, low=low, high=high, parts=parts)
    recent = record[-window:]
    scores = np.array([abs(fwd(r["estimated"]) - fwd(r["measured"])) for r in recent])
    a = _aci_alpha(record, alpha)
    q, how = track_radius(scores, a)
    u = fwd(e.value)
    # past the warm-up the record measures what the calibration part could only guess: the radius is the track
    # record's, never narrower than the batch's own sampling spread (the realized value of a few rows scatters so)
    sampling = float(parts.get("sampling_scale", 0.0))
    half = max(q, sampling)
    value, low, high = clip_to_range(e.metric, e.value, back(u - half), back(u + half))
    parts["track_record"] = round(q, 6)
    covered = sum(r["in_band"] for r in record)
    parts["track_record_note"] = (
        f"{n} judged estimates, {covered} inside their band; radius {q:.4g}{' (log scale)' if e.metric in LOSS_METRICS else ''}"
        f" = {how} (the newest {len(recent)}), aiming at {1 - a:.1%} coverage; "
        + ("the batch's sampling spread is wider and sets the band" if sampling > q else
           "it sets the band in place of the calibration part"))
    return replace(e, value=value, low=_r(low), high=_r(high), parts=parts)


def _r(v):
    return None if v is None else round(float(v), 6)


# --------------------------------------------------------------------------- label shift
def label_check(est: Estimator, scores, y_true, features=None, *, batch: str | None = None) -> dict[str, Any] | None:
    """The realized labels of a batch against what the calibrated champion expected on it.

    Classification: each class's share against the mean calibrated probability, in sampling errors (the labels'
    Poisson-binomial spread plus the spread of the share under the calibration's bootstrap maps). Regression: the
    label's mean against the mean prediction plus the calibration's mean residual, and its spread against the
    prediction's spread plus the residual variance (scaled by the loss model's view of the batch), each in
    sampling errors. Sampling errors are widened by how much the calibration rows' errors hang together
    (:func:`dependence`, ``checks["label_dependence"]``). ``shifted`` when any figure is past :data:`Z_SHIFT`
    (Bonferroni over classes); ``reason``
    names the figures. None when the estimator cannot say (unusable, no labels, a regression estimator stored
    before it kept the calibration's residuals).
    """
    y = np.asarray(y_true)
    keep = ~_isna(y)
    if not est.usable or keep.sum() < 2:
        return None
    scores = np.asarray(scores, dtype=float)[keep] if len(np.asarray(scores)) == len(y) else np.asarray(scores, dtype=float)
    y = y[keep]
    where = f" on {batch}" if batch else ""
    if est.method == "cbpe":
        return _class_check(est, scores, y, where)
    if features is None or "label_resid_sd" not in est.checks:  # an estimator fitted before it kept its residuals
        return None
    if len(features) != len(keep):
        raise EstimationError(f"the batch{where} has {len(features)} rows of features and {len(keep)} labels; pass the "
                              "features of exactly the labelled batch's rows, in the same order")
    return _regression_check(est, scores, y.astype(float), features if keep.all() else features[keep], where)


def _isna(y: np.ndarray) -> np.ndarray:
    import pandas as pd

    return np.asarray(pd.isna(y))


#: the newest class check (:func:`_class_check`): it reads the calibration alone, never the metric, so the estimators of
#: several metrics fitted on the same rows (which share one calibration, :data:`~.cbpe._CALIBRATIONS`) check a
#: batch's labels once
_CLASS_CHECK: dict[str, Any] = {}


def _class_check(est: Estimator, scores: np.ndarray, y: np.ndarray, where: str) -> dict[str, Any]:
    import copy

    yi = _class_places(est.classes, y)  # vectorised; an unknown label is -1, as in the dict's rule
    if (yi < 0).any():  # where the two could differ (a label equal to a class but hashed apart), the dict decides
        idx = {c: i for i, c in enumerate(est.classes)}
        yi = np.array([idx.get(v, -1) for v in y])
    key = (tuple(map(str, est.classes)), est.checks.get("label_dependence"), where,
           _content_key(scores, _label_key(yi)))
    memo = _CLASS_CHECK
    if memo.get("key") != key or memo["maps"] is not est.state["maps"] or memo["boot"] is not est.state["bootstrap"]:
        memo.update(key=key, maps=est.state["maps"], boot=est.state["bootstrap"], out=_class_figures(est, scores, yi, where))
    return copy.deepcopy(memo["out"])


def _class_figures(est: Estimator, scores: np.ndarray, yi: np.ndarray, where: str) -> dict[str, Any]:
    """:func:`_class_check` of the labels as class indices ``yi`` (-1: not a class of the model)."""
    k = len(est.classes)
    P = _as_matrix(scores, k)
    Q = est.calibrated(scores)
    n = len(yi)
    # column by column: NumPy sums a (rows, classes) table down its columns many times slower than one column
    expected = _column_means(Q)
    realized = np.array([(yi == j).mean() for j in range(k)])
    var = np.array([(q * (1 - q)).sum() for q in Q.T]) / n ** 2 * float(est.checks.get("label_dependence", 1.0))
    sub = P[:: max(1, math.ceil(n / SPREAD_ROWS))]  # every k-th row: the maps' spread of the share, as the band's
    if sub.shape[1] == 2:
        sub = sub[np.argsort(sub[:, 1], kind="stable")]  # np.interp walks sorted queries much faster
    cols = None if sub.shape[1] == 2 else _sorted_columns(sub)  # multiclass: each column sorted once for every map
    boot = np.array([_column_means(_calibrate(m, sub, cols)) for m in _maps(est, "bootstrap")])
    if len(boot) > 1:  # how far the calibration rows could have put the expected shares
        var = var + np.var(boot, axis=0, ddof=1)
    z = (realized - expected) / np.sqrt(np.maximum(var, 1e-18))
    cols = [1] if k == 2 else list(range(k))
    limit = Z_SHIFT if k == 2 else _bonferroni(k)
    worst = max(cols, key=lambda j: abs(z[j]))
    shifted = bool(abs(z[worst]) > limit)
    shares = ", ".join(f"{est.classes[j]!s} {realized[j]:.1%} (expected {expected[j]:.1%})" for j in cols)
    reason = (f"label shift{where}: class {est.classes[worst]!s} is {realized[worst]:.1%} of {n} labels, the calibrated "
              f"champion expected {expected[worst]:.1%} (± {math.sqrt(var[worst]):.1%} sampling and calibration), "
              f"{z[worst]:+.1f} sampling errors, past ±{limit:.2f}")
    return {"shifted": shifted, "kind": "class shares", "n_rows": int(n), "z": round(float(z[worst]), 3), "limit": limit,
            "expected": {str(est.classes[j]): round(float(expected[j]), 4) for j in range(k)},
            "realized": {str(est.classes[j]): round(float(realized[j]), 4) for j in range(k)},
            "reason": reason if shifted else f"labels{where} as expected: {shares}; largest gap {z[worst]:+.1f} "
                                             f"sampling errors, within ±{limit:.2f}"}


def _column_means(Q: np.ndarray) -> np.ndarray:
    """Each column's mean of a (rows, classes) table, a column at a time."""
    return np.array([q.mean() for q in Q.T])


def _bonferroni(k: int) -> float:
    from scipy.stats import norm

    return float(norm.isf(2 * norm.sf(Z_SHIFT) / 2 / k))


def _regression_check(est: Estimator, pred: np.ndarray, y: np.ndarray, features, where: str) -> dict[str, Any]:
    c, n = est.checks, len(y)
    n_cal = max(int(est.calibration_rows), 2)
    resid_var = float(c.get("label_resid_sd", 0.0)) ** 2
    bias = float(c.get("label_bias", 0.0))
    losses = _dle_losses(est, pred, features)
    ratio = float(losses.mean()) / c["mean_loss"] if c.get("mean_loss") else 1.0
    ratio = ratio if c.get("loss") == "squared" else ratio ** 2  # the residual variance the loss model sees here
    sigma2 = resid_var * max(ratio, 1e-6)
    mean_exp = float(pred.mean()) + bias
    dep = float(c.get("label_dependence", 1.0))
    mean_z = (float(y.mean()) - mean_exp) / math.sqrt(dep * (sigma2 / n + resid_var / n_cal) + 1e-18)
    var_exp = float(np.var(pred)) + sigma2
    var_obs = float(np.var(y))
    kurt = float(np.mean((y - y.mean()) ** 4) / var_obs ** 2) if var_obs > 0 else 3.0
    se_log = math.sqrt(dep * (max(kurt - 1, 0.5) / n + 2 / n_cal))
    spread_z = (math.log(max(var_obs, 1e-18)) - math.log(max(var_exp, 1e-18))) / se_log
    shifted_mean, shifted_spread = abs(mean_z) > Z_SHIFT, abs(spread_z) > Z_SHIFT
    figures = (f"label mean {y.mean():.4g} against {mean_exp:.4g} expected ({mean_z:+.1f} sampling errors), "
               f"spread (sd) {math.sqrt(var_obs):.4g} against {math.sqrt(var_exp):.4g} ({spread_z:+.1f})")
    what = " and ".join(w for w, s in (("mean", shifted_mean), ("spread", shifted_spread)) if s)
    return {"shifted": bool(shifted_mean or shifted_spread), "kind": "label mean and spread", "n_rows": int(n),
            "z": round(float(mean_z if abs(mean_z) >= abs(spread_z) else spread_z), 3), "limit": Z_SHIFT,
            "expected": {"mean": round(mean_exp, 6), "sd": round(math.sqrt(var_exp), 6)},
            "realized": {"mean": round(float(y.mean()), 6), "sd": round(math.sqrt(var_obs), 6)},
            "reason": (f"label shift{where} ({what}): {figures}, past ±{Z_SHIFT}" if what
                       else f"labels{where} as expected: {figures}, within ±{Z_SHIFT}")}


def unreliable_reason(check: dict | None) -> str:
    """What an estimate carries when the newest labelled batch shows a label shift: ``unreliable: label shift …``."""
    return f"unreliable: {check['reason']}" if check and check.get("shifted") else ""


# --------------------------------------------------------------------------- what a reader sees
def band_summary(row: dict | None) -> str:
    """One line on an estimate row (a step's ``estimates`` entry): value and band, reliable or why not, and what
    the track record added."""
    row = row or {}
    if row.get("value") is None:
        return f"not estimated: {row.get('reason') or 'no batch to estimate'}"
    parts = row.get("parts") or {}
    return (f"estimated {row.get('metric')} {row['value']:.3f} ({CONFIDENCE:.0%} band {row['low']:.3f}–{row['high']:.3f})"
            f"; {row.get('unreliable') or 'reliable: the newest labels showed no label shift'}"
            + (f"; track record: {parts['track_record_note']}" if parts.get("track_record_note") else ""))


def band_table(rows: Iterable[dict]):
    """A table of estimate rows: batch, estimate, band, the band's parts (half-widths: sampling, calibration,
    track record), the label check made when the batch's labels arrived, and the unreliable flag."""
    import pandas as pd

    out = [{"batch": str(r.get("batch", "")).rsplit("/", 1)[-1], "estimate": r.get("value"), "low": r.get("low"),
            "high": r.get("high"), **{p: (r.get("parts") or {}).get(p) for p in ("sampling", "calibration", "track_record")},
            "labels when they arrived": (r.get("label_check") or {}).get("reason", ""), "unreliable": r.get("unreliable", "")}
           for r in rows]
    return pd.DataFrame(out, columns=["batch", "estimate", "low", "high", "sampling", "calibration", "track_record",
                                      "labels when they arrived", "unreliable"])
