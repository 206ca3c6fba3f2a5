"""Champion-vs-challenger gates: is the challenger measurably better, safe to serve, compatible?

:func:`validate` scores both models on the same held-out labelled rows that neither trained on and
applies the gates of the profile, each a figure, a threshold and a verdict (:class:`Gate`):

- **improvement** per metric in ``validation.metrics``: challenger minus champion, read the metric's
  own way round (for a loss such as ``log_loss`` or ``rmse`` a drop is the improvement), at least
  ``improvement_threshold``;
- **minimum** per metric in ``validation.minimum``: the challenger at or above its floor (at or
  below it for a loss);
- **significance**: a paired bootstrap confidence interval of the improvement in the first metric
  over the holdout rows; its lower bound must clear zero when ``require_significance`` is set
  (otherwise the interval is reported only);
- **stability_reload**: the challenger's folder loaded strictly in a *fresh* Python process
  (:mod:`retrainlib.freshproc`) predicts exactly what the challenger in memory predicts;
- **stability_noise**: the share of predicted labels that flip when every numeric feature gets
  Gaussian noise of ``noise_fraction`` of its standard deviation, measured for both models on the
  same noisy rows: the challenger's share is at most the champion's plus ``1 - stability_threshold``
  (and at most ``validation.max_flip_share`` where a profile sets that absolute cap);
- **schema**: the data contract: the challenger is given the champion's input columns with the same
  kinds (numeric, category, ...), unless ``allow_schema_change``; which features AutoGluon kept after
  pruning (a column constant in one window is dropped) is not part of the contract;
- **versions**: the running AutoGluon version and Python major.minor equal those recorded in the
  challenger's metadata (the rule AutoGluon's own strict load applies);
- **churn** (share of predicted labels that differ from the champion's) and **latency** (p95 time to
  predict 1,000 rows, challenger over champion): reported, and blocking only when ``max_churn`` /
  ``max_latency_ratio`` are set.

Without a champion (the first run of a registry) only minimum, stability and versions apply, and the
decision is ``'bootstrap'`` when they pass. A regression prediction counts as "flipped" or "differing"
when it moves by more than ``regression_tolerance`` (default 5%) of the holdout label's standard
deviation: input noise of 1% of each feature's spread moves even a smooth model's output by about
1% of the label's, so a tighter tolerance would flag every model.

The bootstrap draws all resamples at once as a matrix of row counts and computes the metric for
every resample with NumPy (:data:`BOOTSTRAP_METRICS`; ROC AUC through weighted rank sums); a
metric without a vectorised form falls back to one :func:`retrainlib.automl.score` call per resample.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import automl, freshproc
from .errors import DataContractError, ProfileError
from .profiles import Profile
from .records import plain

__all__ = [
    "Gate",
    "Verdict",
    "validate",
    "bootstrap_scores",
    "plot_bootstrap",
    "plot_scores",
    "BOOTSTRAP_METRICS",
    "DECISIONS",
]

#: what :func:`validate` can decide
DECISIONS = ("promote", "reject", "bootstrap")

_LOG_LOSS_EPS = 1e-15  # AutoGluon's log_loss clips probabilities here
_LATENCY_ROWS = 1000


# --------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class Gate:
    """One check of a challenger: its figure, the threshold, whether it passed and why.

    ``blocking`` gates decide; the others are reported. ``details`` holds the figures behind the
    value (both models' latencies, the reload's largest difference, ...).
    """

    name: str
    metric: str | None
    value: float | None
    threshold: float | None
    passed: bool
    blocking: bool
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return plain(
            {
                "name": self.name,
                "metric": self.metric,
                "value": self.value,
                "threshold": self.threshold,
                "passed": self.passed,
                "blocking": self.blocking,
                "reason": self.reason,
                "details": dict(self.details),
            }
        )


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`validate`.

    ``decision`` is ``'promote'`` or ``'reject'`` against a champion, ``'bootstrap'`` or ``'reject'``
    without one. ``reasons`` has one sentence per failed blocking gate (empty when it passes).
    ``scores`` maps ``'champion'`` and ``'challenger'`` to ``{metric: value}`` in the metrics' own
    units (the champion's is empty without a champion). ``bootstrap`` describes the resampled
    distribution: of the improvement in the first metric (``kind='difference'``), or of the
    challenger's own score without a champion (``kind='score'``).
    """

    decision: str
    gates: tuple[Gate, ...]
    scores: Mapping[str, Mapping[str, float]]
    bootstrap: Mapping[str, Any]
    n_holdout: int
    reasons: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """True when the decision is promote or bootstrap."""
        return self.decision != "reject"

    def gate(self, name: str, metric: str | None = None) -> Gate:
        """The gate called ``name`` (for ``metric`` when several share the name)."""
        for g in self.gates:
            if g.name == name and (metric is None or g.metric == metric):
                return g
        have = ", ".join(sorted({repr(g.name) for g in self.gates}))
        raise KeyError(f"no gate {name!r}" + (f" for metric {metric!r}" if metric else "") + f"; this verdict has {have}")

    def to_dict(self) -> dict[str, Any]:
        return plain(
            {
                "decision": self.decision,
                "n_holdout": self.n_holdout,
                "reasons": list(self.reasons),
                "scores": {k: dict(v) for k, v in self.scores.items()},
                "gates": [g.to_dict() for g in self.gates],
                "bootstrap": dict(self.bootstrap),
            }
        )

    def to_frame(self) -> pd.DataFrame:
        """The gate table: one row per gate."""
        cols = ["name", "metric", "value", "threshold", "passed", "blocking", "reason"]
        return pd.DataFrame([{c: getattr(g, c) for c in cols} for g in self.gates], columns=cols)


# --------------------------------------------------------------------------------------------
# vectorised bootstrap metrics: f(y_true, scores, classes, weights (B, n)) -> (B,) values


def _binary_target(y: np.ndarray, classes: Sequence) -> np.ndarray:
    return (y == classes[1]).astype(float)


def _class_index(y: np.ndarray, classes: Sequence) -> np.ndarray:
    idx = {c: i for i, c in enumerate(classes)}
    return np.array([idx[v] for v in y])


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
        p = np.clip(p[np.arange(len(y)), _class_index(y, classes)], eps, 1 - eps)
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


# --------------------------------------------------------------------------------------------
# validate


def validate(
    challenger,
    holdout: pd.DataFrame,
    *,
    profile: Profile,
    champion=None,
    challenger_dir: str | os.PathLike | None = None,
    champion_dir: str | os.PathLike | None = None,
    challenger_meta: Mapping[str, Any] | None = None,
    champion_meta: Mapping[str, Any] | None = None,
    seed: int = 0,
    latency_repeats: int = 7,
    reload_rows: int = 2000,
    reload_timeout: float = 600.0,
    regression_tolerance: float = 0.05,
) -> Verdict:
    """Score champion and challenger on ``holdout`` and apply the profile's gates.

    Parameters
    ----------
    challenger, champion
        Loaded AutoGluon predictors; no champion means a first (bootstrap) validation.
    holdout
        Labelled rows neither model trained on; holds ``profile.data.label`` and every feature.
    profile
        Thresholds: ``improvement_threshold``, ``stability_threshold`` and ``profile.validation``.
    challenger_dir
        The challenger's predictor folder, reloaded in a fresh process (defaults to the
        predictor's own path). ``champion_dir`` is accepted for symmetry and not needed.
    challenger_meta, champion_meta
        Registry metadata: ``'software'`` (:func:`retrainlib.automl.software_versions` at training)
        and ``'features'`` (feature columns). Features default to the predictors' own.
    seed
        Seeds the bootstrap resamples, the noise and the latency sample.
    latency_repeats
        Timed predictions of 1,000 rows per model (after one warm-up); p95 is taken over them.
    reload_rows
        At most this many holdout rows are predicted again in the fresh process.
    reload_timeout
        Seconds the fresh process may take to load and predict; longer fails the reload gate.
    regression_tolerance
        Regression only: a prediction counts as flipped (noise) or differing (churn) when it moves
        by more than this fraction of the holdout label's standard deviation.

    Returns
    -------
    Verdict

    Raises
    ------
    DataContractError
        The holdout is empty, lacks the label or a feature, or has unlabelled rows; or the two
        models solve different problem types.
    ProfileError
        A metric in ``validation.metrics`` / ``validation.minimum`` is not one AutoGluon knows for
        the problem type.
    """
    settings = profile.validation
    automl.pin_threads(profile.training.num_cpus)
    label = profile.data.label
    problem_type, classes, chal_features = automl.model_facts(challenger)
    if challenger_meta and challenger_meta.get("features"):
        chal_features = [str(c) for c in challenger_meta["features"]]
    _check_holdout(holdout, label, chal_features, "challenger")
    champ_features: list[str] = []
    champ_classes = None
    if champion is not None:
        champ_problem, champ_classes, champ_features = automl.model_facts(champion)
        if champion_meta and champion_meta.get("features"):
            champ_features = [str(c) for c in champion_meta["features"]]
        if champ_problem != problem_type:
            raise DataContractError(
                f"the champion solves a {champ_problem} problem but the challenger a {problem_type} one; "
                "a challenger must predict the same kind of target (retrain it with the champion's problem_type)"
            )
        _check_holdout(holdout, label, champ_features, "champion")

    if not settings.metrics:
        raise ProfileError("validation.metrics is empty; list at least one metric, e.g. metrics: [roc_auc]")
    for metric in dict.fromkeys([*settings.metrics, *settings.minimum]):
        _metric_info(metric, problem_type)  # an unknown metric fails before any work starts
    seeds = np.random.SeedSequence(seed).spawn(4)
    x_chal = holdout[chal_features]
    chal_scores = automl.predict_scores(challenger, x_chal)
    reload = _FreshReload(
        Path(challenger_dir) if challenger_dir is not None else automl.predictor_path(challenger),
        x_chal, chal_scores, rows=reload_rows, timeout=reload_timeout, num_cpus=profile.training.num_cpus, seed=seeds[3],
    )
    try:
        gates, scores, bootstrap = _gates(
            challenger, champion, holdout, label=label, problem_type=problem_type, classes=classes,
            champ_classes=champ_classes, chal_features=chal_features, champ_features=champ_features,
            chal_scores=chal_scores, reload=reload, profile=profile, challenger_meta=challenger_meta,
            champion_meta=champion_meta, seeds=seeds, latency_repeats=latency_repeats, regression_tolerance=regression_tolerance,
        )
    finally:
        reload.close()

    failed = tuple(g.reason for g in gates if g.blocking and not g.passed)
    if failed:
        decision = "reject"
    else:
        decision = "promote" if champion is not None else "bootstrap"
    return Verdict(
        decision=decision,
        gates=tuple(gates),
        scores=scores,
        bootstrap=bootstrap,
        n_holdout=len(holdout),
        reasons=failed,
    )


def _gates(
    challenger, champion, holdout, *, label, problem_type, classes, champ_classes, chal_features, champ_features,
    chal_scores, reload, profile, challenger_meta, champion_meta, seeds, latency_repeats, regression_tolerance,
) -> tuple[list[Gate], dict[str, dict[str, float]], dict[str, Any]]:
    """Every gate of :func:`validate`, in table order, with the scores and the bootstrap summary."""
    settings = profile.validation
    metrics = tuple(dict.fromkeys([*settings.metrics, *settings.minimum]))
    info = {m: _metric_info(m, problem_type) for m in metrics}
    y = holdout[label].to_numpy()
    x_chal = holdout[chal_features]
    scores: dict[str, dict[str, float]] = {
        "champion": {},
        "challenger": {m: automl.score(m, problem_type, y, chal_scores, classes) for m in metrics},
    }
    gates: list[Gate] = []
    if champion is not None:
        x_champ = holdout[champ_features]
        champ_scores = automl.predict_scores(champion, x_champ)
        scores["champion"] = {m: automl.score(m, problem_type, y, champ_scores, champ_classes) for m in metrics}
        gates += [_improvement_gate(m, info[m].greater_is_better, scores, profile.improvement_threshold) for m in settings.metrics]
    gates += [
        _minimum_gate(m, info[m].greater_is_better, scores["challenger"][m], floor) for m, floor in settings.minimum.items()
    ]

    primary = settings.metrics[0]
    gib = info[primary].greater_is_better
    if champion is not None:
        boot = bootstrap_scores(
            primary, problem_type, y, [champ_scores, chal_scores], classes, samples=settings.bootstrap_samples, seed=seeds[0]
        )
        diffs = (boot[1] - boot[0]) if gib else (boot[0] - boot[1])
        observed = _signed(scores["challenger"][primary] - scores["champion"][primary], gib)
        bootstrap = _summarise(diffs, primary, "difference", observed, settings.confidence)
        gates.append(_significance_gate(primary, bootstrap, settings.require_significance))
    else:
        boot = bootstrap_scores(primary, problem_type, y, [chal_scores], classes, samples=settings.bootstrap_samples, seed=seeds[0])
        bootstrap = _summarise(boot[0], primary, "score", scores["challenger"][primary], settings.confidence)

    # stability
    tolerance = regression_tolerance * float(np.nanstd(y.astype(float))) if problem_type == "regression" else 0.0
    reload_at = len(gates)  # its place in the table; collected before latency is timed
    chal_labels = automl.predict_labels(challenger, x_chal)
    champ_labels = automl.predict_labels(champion, x_champ) if champion is not None else None
    gates.append(_noise_gate(
        challenger, champion, holdout[list(dict.fromkeys([*chal_features, *champ_features]))], chal_features, champ_features,
        chal_labels, champ_labels, fraction=settings.noise_fraction, stability_threshold=profile.stability_threshold,
        cap=settings.max_flip_share, tolerance=tolerance, seed=seeds[1],
    ))

    # compatibility
    if champion is not None:
        gates.append(_schema_gate(_contract(champion_meta, champ_features), _contract(challenger_meta, chal_features),
                                  settings.allow_schema_change))
    gates.append(_versions_gate(challenger_meta))

    # churn and latency
    if champion is not None:
        gates.append(_churn_gate(champ_labels, chal_labels, settings.max_churn, tolerance))
    gates.insert(reload_at, reload.gate())
    sample_rng = np.random.default_rng(seeds[2])
    batch = holdout.iloc[sample_rng.integers(0, len(holdout), _LATENCY_ROWS)]
    chal_p95 = _p95_latency(challenger, batch[chal_features], latency_repeats)
    champ_p95 = _p95_latency(champion, batch[champ_features], latency_repeats) if champion is not None else None
    gates.append(_latency_gate(champ_p95, chal_p95, settings.max_latency_ratio))

    return gates, scores, bootstrap


def _check_holdout(holdout: pd.DataFrame, label: str, features: Sequence[str], who: str) -> None:
    if len(holdout) == 0:
        raise DataContractError("the holdout has 0 rows; validation needs the newest labelled batches (holdout_batches >= 1)")
    if label not in holdout.columns:
        raise DataContractError(
            f"label column {label!r} (data.label) is missing from the holdout; it has {', '.join(map(str, holdout.columns))}"
        )
    missing_label = int(holdout[label].isna().sum())
    if missing_label:
        raise DataContractError(
            f"{missing_label} holdout rows have no label in {label!r}; validation scores labelled rows only, drop them first"
        )
    missing = [c for c in features if c not in holdout.columns]
    if missing:
        raise DataContractError(
            f"the {who} takes feature column(s) {', '.join(map(repr, missing))} that the holdout lacks; "
            "validate on data with the training schema"
        )


def _metric_info(metric: str, problem_type: str):
    try:
        return automl.metric_info(metric, problem_type)
    except (ValueError, KeyError) as exc:
        raise ProfileError(
            f"validation metric {metric!r} is not an AutoGluon metric for a {problem_type} problem; "
            f"fix validation.metrics / validation.minimum ({str(exc).strip().splitlines()[-1]})"
        ) from exc


def _signed(diff: float, greater_is_better: bool) -> float:
    return diff if greater_is_better else -diff


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.4g}"


def _improvement_gate(metric, gib, scores, threshold) -> Gate:
    champ, chal = scores["champion"][metric], scores["challenger"][metric]
    gain = _signed(chal - champ, gib)
    way = "higher" if gib else "lower"
    passed = gain >= threshold
    reason = (
        f"challenger {metric} {_fmt(chal)} against the champion's {_fmt(champ)} is an improvement of {gain:+.4g} "
        f"({way} is better), {'at or above' if passed else 'below'} improvement_threshold {_fmt(threshold)}"
    )
    return Gate("improvement", metric, gain, threshold, passed, True, reason, {"champion": champ, "challenger": chal})


def _minimum_gate(metric, gib, value, floor) -> Gate:
    passed = value >= floor if gib else value <= floor
    side = "at or above" if gib else "at or below"
    reason = f"challenger {metric} {_fmt(value)} {'is' if passed else 'is not'} {side} the minimum {_fmt(floor)} (validation.minimum)"
    return Gate("minimum", metric, value, floor, passed, True, reason)


def _summarise(values: np.ndarray, metric: str, kind: str, observed: float, confidence: float) -> dict[str, Any]:
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


def _significance_gate(metric, boot, required) -> Gate:
    low, high = boot["ci_low"], boot["ci_high"]
    passed = bool(math.isfinite(low) and low > 0)
    pct = f"{boot['confidence']:.0%}"
    reason = (
        f"the {pct} paired bootstrap interval of the {metric} improvement is [{_fmt(low)}, {_fmt(high)}] over "
        f"{boot['samples']} resamples; its lower bound {'clears' if passed else 'does not clear'} zero"
        + ("" if required else " (reported only: validation.require_significance is off)")
    )
    return Gate("significance", metric, low, 0.0, passed, bool(required), reason, {"ci_high": high})


class _FreshReload:
    """The reload check: a process that never held the challenger loads its folder and predicts sampled rows.

    Started (:func:`retrainlib.freshproc.start`) as soon as the in-memory predictions exist and
    collected with :meth:`gate` later, so the check runs beside the in-process work.
    """

    def __init__(self, folder: Path, x: pd.DataFrame, in_process: np.ndarray, *, rows, timeout, num_cpus, seed):
        take = np.sort(np.random.default_rng(seed).choice(len(x), size=min(rows, len(x)), replace=False))
        self.folder, self.timeout, self.expected, self.rows = folder, timeout, in_process[take], len(take)
        self.check = None
        if folder.is_dir():
            self.check = freshproc.start(folder, x.iloc[take], timeout=timeout, num_cpus=num_cpus)

    def gate(self) -> Gate:
        try:
            return self._collect()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the process if it still runs and remove its files (safe to call twice)."""
        if self.check is not None:
            self.check.close()

    def _collect(self) -> Gate:
        folder = self.folder
        if self.check is None:
            reason = f"challenger predictor folder {folder} does not exist, so it cannot be reloaded in a fresh process"
            return Gate("stability_reload", None, None, 0.0, False, True, reason)
        answer = self.check.result()
        if not answer.ok and answer.detail.startswith("no answer within"):
            reason = f"reloading the challenger from {folder} in a fresh process took over {self.timeout:g} s"
            return Gate("stability_reload", None, None, 0.0, False, True, reason)
        if not answer.ok:
            reason = f"the challenger in {folder} failed to load or predict in a fresh process: {answer.detail}"
            return Gate("stability_reload", None, None, 0.0, False, True, reason)
        reloaded, expected = answer.scores, self.expected
        details = {"rows": self.rows, "seconds": round(answer.seconds, 3), "fresh": answer.mode,
                   **{k: answer.info[k] for k in ("pid", "software") if k in answer.info}}
        if reloaded.shape != expected.shape:
            reason = f"the reloaded challenger returned predictions of shape {reloaded.shape}, expected {expected.shape}"
            return Gate("stability_reload", None, None, 0.0, False, True, reason, details)
        diff = float(np.max(np.abs(reloaded - expected))) if reloaded.size else 0.0
        identical = bool(np.array_equal(reloaded, expected))
        changed = int(np.sum(np.any((reloaded != expected).reshape(self.rows, -1), axis=1)))
        reason = (
            f"reloaded from {folder} in a fresh process, the challenger predicts {self.rows} holdout rows "
            + ("identically" if identical else f"differently on {changed} rows (largest difference {diff:.3g})")
        )
        return Gate("stability_reload", None, diff, 0.0, identical, True, reason, {**details, "rows_changed": changed})


def _perturb(x: pd.DataFrame, fraction: float, rng: np.random.Generator) -> tuple[pd.DataFrame, list[str]]:
    """Gaussian noise of ``fraction`` of each numeric column's standard deviation; integers stay integers."""
    noisy = x.copy()
    touched = []
    for col in x.columns:
        s = x[col]
        if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            continue
        sd = float(np.nanstd(s.astype(float)))
        if not math.isfinite(sd) or sd == 0:
            continue
        moved = s.astype(float) + rng.normal(0.0, fraction * sd, len(s))
        noisy[col] = moved.round().astype(s.dtype) if pd.api.types.is_integer_dtype(s) else moved.astype(s.dtype)
        touched.append(str(col))
    return noisy, touched


def _differs(a: np.ndarray, b: np.ndarray, tolerance: float) -> np.ndarray:
    if tolerance > 0:
        return np.abs(a.astype(float) - b.astype(float)) > tolerance
    return a != b


def _flip_share(model, noisy, features, labels, tolerance) -> float:
    return float(np.mean(_differs(automl.predict_labels(model, noisy[features]), labels, tolerance)))


def _noise_gate(challenger, champion, x, chal_features, champ_features, chal_labels, champ_labels, *,
                fraction, stability_threshold, cap, tolerance, seed) -> Gate:
    """Flips under input noise, the challenger's against the champion's on the same noisy rows.

    The challenger may flip at most ``1 - stability_threshold`` more of its predictions than the
    champion does; ``cap`` (``validation.max_flip_share``), when set, also bounds its own share.
    Without a champion only the cap decides, and without a cap the share is reported only.
    """
    noisy, touched = _perturb(x, fraction, np.random.default_rng(seed))
    share = _flip_share(challenger, noisy, chal_features, chal_labels, tolerance)
    champ_share = _flip_share(champion, noisy, champ_features, champ_labels, tolerance) if champion is not None else None
    slack = round(1 - stability_threshold, 12)
    how = f"{share:.2%} of the challenger's predictions flip when {len(touched)} numeric features get Gaussian noise of {fraction:.0%} of their standard deviation"
    parts, passed, limits = [how], True, []
    if champ_share is not None:
        limit = round(champ_share + slack, 12)
        ok = share <= limit
        passed &= ok
        limits.append(limit)
        parts.append(f"the champion's flip {champ_share:.2%} on the same rows; {'within' if ok else 'above'} its share "
                     f"plus {slack:.2%} (1 - stability_threshold)")
    if cap is not None:
        ok = share <= cap
        passed &= ok
        limits.append(cap)
        parts.append(f"{'within' if ok else 'above'} validation.max_flip_share {cap:.2%}")
    blocking = bool(limits)
    if not blocking:
        parts.append("reported only: no champion to compare with and validation.max_flip_share is unset")
    details = {"features": touched, "rows": int(len(x)), "regression_tolerance": tolerance or None,
               "champion_share": champ_share, "max_flip_share": cap, "tolerance": slack}
    return Gate("stability_noise", None, share, min(limits) if limits else None, passed, blocking, "; ".join(parts), details)


def _contract(meta: Mapping[str, Any] | None, features: Sequence[str]) -> dict[str, str | None]:
    """The data contract a model was given: input column -> kind (None when its record predates kinds)."""
    inputs = (meta or {}).get("inputs")
    if inputs:
        return {str(c): k for c, k in inputs.items()}
    return {str(c): None for c in features}


def _schema_gate(champion: Mapping[str, str | None], challenger: Mapping[str, str | None], allowed) -> Gate:
    """Same data contract: the same input columns of the same kinds (not which features AutoGluon kept)."""
    added = [c for c in challenger if c not in champion]
    removed = [c for c in champion if c not in challenger]
    retyped = [f"{c} {champion[c]}→{challenger[c]}" for c in challenger
               if c in champion and None not in (champion[c], challenger[c]) and champion[c] != challenger[c]]
    same = not added and not removed and not retyped
    change = "; ".join(
        part for part in (f"added {', '.join(added)}" if added else "", f"removed {', '.join(removed)}" if removed else "",
                          f"changed kind of {', '.join(retyped)}" if retyped else "") if part
    )
    if same:
        reason = f"the challenger is given the champion's {len(champion)} input columns of the same kinds (the same data contract)"
    elif allowed:
        reason = f"the input contract changed ({change}), allowed by validation.allow_schema_change"
    else:
        reason = f"the challenger's input contract differs from the champion's ({change}); set validation.allow_schema_change to accept it"
    details = {"added": added, "removed": removed}
    if retyped:
        details["retyped"] = retyped
    return Gate("schema", None, float(len(added) + len(removed) + len(retyped)), 0.0, same or allowed, True, reason, details)


def _versions_gate(meta: Mapping[str, Any] | None) -> Gate:
    recorded = (meta or {}).get("software") or {}
    running = automl.software_versions()
    if not recorded.get("autogluon") or not recorded.get("python"):
        reason = "no AutoGluon/Python versions are recorded with the challenger; pass challenger_meta with 'software'"
        return Gate("versions", None, None, None, False, True, reason, {"running": running})

    def minor(v: str) -> str:
        return ".".join(str(v).split(".")[:2])

    bad = []
    if str(recorded["autogluon"]) != running["autogluon"]:
        bad.append(f"AutoGluon {recorded['autogluon']} recorded, {running['autogluon']} running")
    if minor(recorded["python"]) != minor(running["python"]):
        bad.append(f"Python {recorded['python']} recorded, {running['python']} running")
    passed = not bad
    reason = (
        f"running AutoGluon {running['autogluon']} and Python {minor(running['python'])} match the challenger's record"
        if passed
        else "the challenger was trained with other software (" + "; ".join(bad) + "); retrain it in this environment"
    )
    return Gate("versions", None, float(len(bad)), 0.0, passed, True, reason, {"recorded": dict(recorded), "running": running})


def _churn_gate(champ_labels, chal_labels, max_churn, tolerance) -> Gate:
    share = float(np.mean(_differs(chal_labels, champ_labels, tolerance)))
    if max_churn is None:
        return Gate("churn", None, share, None, True, False, f"{share:.2%} of predictions differ from the champion's (reported only: validation.max_churn is unset)")
    passed = share <= max_churn
    reason = f"{share:.2%} of predictions differ from the champion's; {'within' if passed else 'above'} validation.max_churn {max_churn:.2%}"
    return Gate("churn", None, share, max_churn, passed, True, reason)


def _p95_latency(predictor, batch: pd.DataFrame, repeats: int) -> float:
    """p95 seconds to predict ``batch`` (1,000 rows), after one warm-up call."""
    automl.predict_scores(predictor, batch)
    times = []
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        automl.predict_scores(predictor, batch)
        times.append(time.perf_counter() - started)
    return float(np.percentile(times, 95))


def _latency_gate(champ_p95, chal_p95, max_ratio) -> Gate:
    ms = f"{chal_p95 * 1e3:.1f} ms"
    details = {"challenger_p95_seconds": chal_p95, "champion_p95_seconds": champ_p95, "rows": _LATENCY_ROWS}
    if champ_p95 is None:
        return Gate("latency", None, None, None, True, False, f"challenger p95 {ms} per 1,000 rows (no champion to compare)", details)
    ratio = chal_p95 / champ_p95
    head = f"challenger p95 {ms} per 1,000 rows against the champion's {champ_p95 * 1e3:.1f} ms (x{ratio:.2f})"
    if max_ratio is None:
        return Gate("latency", None, ratio, None, True, False, head + " (reported only: validation.max_latency_ratio is unset)", details)
    passed = ratio <= max_ratio
    return Gate("latency", None, ratio, max_ratio, passed, True, head + f"; {'within' if passed else 'above'} validation.max_latency_ratio x{max_ratio:g}", details)


# --------------------------------------------------------------------------------------------
# plots


def plot_bootstrap(verdict: Verdict, ax=None):
    """Histogram of the bootstrap distribution with its confidence interval (and zero) marked."""
    import matplotlib.pyplot as plt

    boot = verdict.bootstrap
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    values = np.asarray([v for v in boot.get("values", []) if v is not None], dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        ax.text(0.5, 0.5, "no bootstrap distribution", ha="center", va="center", transform=ax.transAxes)
        return ax
    ax.hist(values, bins=min(40, max(10, len(values) // 15)), color="#8fb3d9", edgecolor="white")
    pct = f"{boot['confidence']:.0%}"
    ax.axvspan(boot["ci_low"], boot["ci_high"], color="#1f77b4", alpha=0.12, label=f"{pct} interval")
    for x in (boot["ci_low"], boot["ci_high"]):
        ax.axvline(x, color="#1f77b4", linestyle="--", linewidth=1)
    ax.axvline(boot["observed"], color="#1f77b4", linewidth=2, label=f"observed {boot['observed']:.4g}")
    if boot["kind"] == "difference":
        ax.axvline(0.0, color="black", linewidth=1.2, label="no difference")
        ax.set_xlabel(f"challenger improvement in {boot['metric']} (positive = better)")
    else:
        ax.set_xlabel(f"challenger {boot['metric']}")
    ax.set_ylabel("resamples")
    kind = "Paired bootstrap" if boot["kind"] == "difference" else "Bootstrap"
    ax.set_title(f"{kind}, {boot['samples']} resamples of {verdict.n_holdout} holdout rows")
    ax.legend(fontsize=8, frameon=False)
    return ax


def plot_scores(verdict: Verdict, ax=None):
    """Champion and challenger scores per metric, side by side, with minimum floors marked."""
    import matplotlib.pyplot as plt

    champ, chal = verdict.scores.get("champion", {}), verdict.scores.get("challenger", {})
    metrics = list(chal)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4, 1.8 * len(metrics) + 2), 3.5))
    pos = np.arange(len(metrics))
    width = 0.38
    if champ:
        bars = ax.bar(pos - width / 2, [champ.get(m, np.nan) for m in metrics], width, label="champion", color="#b0b0b0")
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
    bars = ax.bar(pos + (width / 2 if champ else 0), [chal[m] for m in metrics], width, label="challenger", color="#1f77b4")
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    labelled = False
    for g in verdict.gates:
        if g.name == "minimum" and g.metric in metrics:
            i = metrics.index(g.metric)
            ax.hlines(g.threshold, i - width, i + width, colors="crimson", linestyles="--", label=None if labelled else "minimum")
            labelled = True
    ax.set_xticks(pos, metrics)
    ax.set_ylabel("score on the holdout")
    ax.set_title(f"Scores on {verdict.n_holdout} holdout rows: {verdict.decision}")
    ax.legend(fontsize=8, frameon=False)
    return ax
