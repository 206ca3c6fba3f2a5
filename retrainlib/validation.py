"""Champion-vs-challenger validation: is the challenger measurably better, safe to serve, compatible?

:func:`validate` scores both models on the same held-out labelled rows that neither trained on,
measures every figure once (:class:`retrainlib.gates.GateInputs`) and applies the gate table
(:data:`retrainlib.gates.GATES`), each gate a figure, a threshold and a verdict (:class:`Gate`):

- **improvement** per metric in ``validation.metrics``: challenger minus champion, read the metric's
  own way round (for a loss such as ``log_loss`` or ``rmse`` a drop is the improvement), at least
  ``improvement_threshold``; a challenger trained on rows its champion never saw passes when it is
  not significantly worse (``validation.fresher_challenger``);
- **minimum** per metric in ``validation.minimum``: the challenger at or above its floor (at or
  below it for a loss), or under it while the champion is further under it on the same holdout;
- **significance**: a paired bootstrap confidence interval of the improvement in the first metric
  over the holdout rows (:mod:`retrainlib.metrics`); its lower bound must clear zero when
  ``require_significance`` is set (otherwise the interval is reported only);
- **stability_reload**: the challenger's folder loaded strictly in a *fresh* Python process
  (:mod:`retrainlib.freshproc`) predicts exactly what the challenger in memory predicts;
- **stability_noise**: the share of predicted labels that flip when every numeric feature gets
  Gaussian noise of ``noise_fraction`` of its standard deviation (integers stay integers, exact zeros
  stay zero), measured for both models on the same noisy rows: it fails only when the challenger's
  excess share over the champion's is above ``1 - stability_threshold`` beyond sampling error, i.e.
  when the one-sided lower ``validation.confidence`` bound of that paired excess (exact,
  McNemar-style: :func:`flip_excess`) exceeds it (and, where a profile sets the absolute cap ``validation.max_flip_share``, when the
  challenger's own share is above it);
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
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import automl, freshproc
from .durable import write_json_atomic
from .errors import DataContractError, ProfileError
from .gates import LATENCY_ROWS, Gate, GateInputs, apply_gates
from .metrics import BOOTSTRAP_METRICS, bootstrap_scores, flip_excess, metric_info, signed, summarise_bootstrap
from .profiles import Profile
from .records import plain

__all__ = [
    "Gate",
    "Verdict",
    "MeasureSettings",
    "validate",
    "flip_excess",
    "bootstrap_scores",
    "plot_bootstrap",
    "plot_scores",
    "BOOTSTRAP_METRICS",
    "DECISIONS",
]

#: what :func:`validate` can decide
DECISIONS = ("promote", "reject", "bootstrap")


# --------------------------------------------------------------------------------------------
# the verdict

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
# validate


@dataclass(frozen=True)
class MeasureSettings:
    """How :func:`validate` measures, beside the profile's thresholds; each field is also a keyword argument of
    :func:`validate`.

    Attributes
    ----------
    seed : int
        Seeds the bootstrap resamples, the noise and the latency sample (default 0).
    latency_repeats : int
        Timed predictions of 1,000 rows per model (after one warm-up); p95 is taken over them (default 7).
    reload_rows : int
        At most this many holdout rows are predicted again in the fresh process (default 2,000).
    reload_timeout : float
        Seconds the fresh process may take to load and predict; longer fails the reload gate (default 600).
    regression_tolerance : float
        Regression only: a prediction counts as flipped (noise) or differing (churn) when it moves
        by more than this fraction of the holdout label's standard deviation (default 0.05).
    """

    seed: int = 0
    latency_repeats: int = 7
    reload_rows: int = 2000
    reload_timeout: float = 600.0
    regression_tolerance: float = 0.05


def validate(challenger, holdout: pd.DataFrame, *, profile: Profile, champion=None,
             challenger_dir: str | os.PathLike | None = None, champion_dir: str | os.PathLike | None = None,
             challenger_meta: Mapping[str, Any] | None = None, champion_meta: Mapping[str, Any] | None = None,
             challenger_new_rows: bool = False, settings: MeasureSettings | None = None, **options: Any) -> Verdict:
    """Score champion and challenger on ``holdout`` and apply the profile's gates; returns the :class:`Verdict`.

    Parameters
    ----------
    challenger, champion
        Loaded AutoGluon predictors; no champion means a first (bootstrap) validation.
    holdout
        Labelled rows neither model trained on; holds ``profile.data.label`` and every feature.
    profile
        Thresholds: ``improvement_threshold``, ``stability_threshold`` and ``profile.validation``.
    challenger_dir, champion_dir
        The challenger's predictor folder, reloaded in a fresh process (:mod:`retrainlib.freshproc`), and the
        champion's, whose files name its latency timing in the check cache (default: each predictor's own path).
    challenger_meta, champion_meta
        Registry metadata: ``'software'`` (:func:`retrainlib.automl.software_versions` at training)
        and ``'features'`` (feature columns). Features default to the predictors' own.
    challenger_new_rows
        The challenger trained on rows its champion never saw; with ``validation.fresher_challenger:
        not_worse`` it then passes the improvement gate when it is not significantly worse.
    settings, **options
        How the figures are measured (:class:`MeasureSettings`); its fields as keyword arguments override it.

    Raises
    ------
    DataContractError
        The holdout is empty, lacks the label or a feature, or has unlabelled rows; or the two
        models solve different problem types.
    ProfileError
        A metric in ``validation.metrics`` / ``validation.minimum`` is not one AutoGluon knows for
        the problem type.
    """
    m = replace(settings or MeasureSettings(), **options)
    automl.pin_threads(profile.training.num_cpus)
    label = profile.data.label
    folder = Path(challenger_dir) if challenger_dir is not None else automl.predictor_path(challenger)
    chal = _side(challenger, challenger_meta, folder, holdout, label, "challenger")
    champ = (_side(champion, champion_meta, Path(champion_dir or automl.predictor_path(champion)), holdout, label,
                   "champion") if champion is not None else None)
    _check_models(chal, champ, profile)
    inputs = _gate_inputs(chal, champ, holdout, profile, m, new_rows=challenger_new_rows)
    gates = apply_gates(inputs)
    failed = tuple(g.reason for g in gates if g.blocking and not g.passed)
    decision = "reject" if failed else "promote" if champion is not None else "bootstrap"
    return Verdict(decision=decision, gates=tuple(gates), scores=inputs.scores, bootstrap=inputs.bootstrap,
                   n_holdout=len(holdout), reasons=failed)


def _check_models(chal: _Side, champ: _Side | None, profile: Profile) -> None:
    """Both models solve one problem type, and every metric the gates read is one AutoGluon knows for it."""
    if champ is not None and champ.problem_type != chal.problem_type:
        raise DataContractError(
            f"the champion solves a {champ.problem_type} problem but the challenger a {chal.problem_type} one; "
            "a challenger must predict the same kind of target (retrain it with the champion's problem_type)"
        )
    if not profile.validation.metrics:
        raise ProfileError("validation.metrics is empty; list at least one metric, e.g. metrics: [roc_auc]")
    for metric in dict.fromkeys([*profile.validation.metrics, *profile.validation.minimum]):
        metric_info(metric, chal.problem_type)  # an unknown metric fails before any work starts


def _gate_inputs(chal: _Side, champ: _Side | None, holdout: pd.DataFrame, profile: Profile, m: MeasureSettings, *,
                 new_rows: bool) -> GateInputs:
    """Every figure the gates read: measured in process while a fresh process reloads the challenger, then the
    latencies (timed once the reload has answered)."""
    seeds = np.random.SeedSequence(m.seed).spawn(4)
    chal_scores = automl.predict_scores(chal.model, holdout[chal.features])
    take = np.sort(np.random.default_rng(seeds[3]).choice(len(holdout), size=min(m.reload_rows, len(holdout)), replace=False))
    # the fresh process loads and predicts beside the in-process work below
    check = (freshproc.start(chal.folder, holdout[chal.features].iloc[take], timeout=m.reload_timeout,
                             num_cpus=profile.training.num_cpus) if chal.folder.is_dir() else None)
    try:
        figures = _measure(chal, champ, chal_scores, holdout, profile=profile, seeds=seeds,
                           regression_tolerance=m.regression_tolerance,
                           every_interval=new_rows and profile.validation.fresher_challenger == "not_worse")
        answer = check.result() if check is not None else None  # collected before latency is timed
    finally:
        if check is not None:
            check.close()
    batch = holdout.iloc[np.random.default_rng(seeds[2]).integers(0, len(holdout), LATENCY_ROWS)]
    return GateInputs(
        **figures, challenger_new_rows=bool(new_rows and champ is not None),
        reload=answer, reload_expected=chal_scores[take], reload_folder=chal.folder, reload_timeout=m.reload_timeout,
        challenger_p95=_p95_latency(chal.model, batch[chal.features], m.latency_repeats, chal.folder),
        champion_p95=(_p95_latency(champ.model, batch[champ.features], m.latency_repeats, champ.folder)
                      if champ is not None else None),
    )


@dataclass(frozen=True)
class _Side:
    """One model under validation: the predictor, its folder, and what it takes and predicts."""

    model: Any
    folder: Path
    problem_type: str
    classes: Sequence | None
    features: list[str]
    meta: Mapping[str, Any]


def _side(model, meta: Mapping[str, Any] | None, folder: Path, holdout: pd.DataFrame, label: str, who: str) -> _Side:
    problem_type, classes, features = automl.model_facts(model)
    if meta and meta.get("features"):
        features = [str(c) for c in meta["features"]]
    _check_holdout(holdout, label, features, who)
    return _Side(model, folder, problem_type, classes, list(features), dict(meta or {}))


def _measure(chal: _Side, champ: _Side | None, chal_scores: np.ndarray, holdout: pd.DataFrame, *, profile: Profile,
             seeds: Sequence[np.random.SeedSequence], regression_tolerance: float, every_interval: bool = False) -> dict[str, Any]:
    """The figures every gate reads (but the reload's answer and the latencies): scores, bootstrap, flips, contracts."""
    settings, problem_type = profile.validation, chal.problem_type
    metrics = tuple(dict.fromkeys([*settings.metrics, *settings.minimum]))
    gib = {m: metric_info(m, problem_type).greater_is_better for m in metrics}
    y = holdout[profile.data.label].to_numpy()
    scores: dict[str, dict[str, float]] = {
        "champion": {}, "challenger": {m: automl.score(m, problem_type, y, chal_scores, chal.classes) for m in metrics},
    }
    primary = settings.metrics[0]
    if champ is not None:
        champ_scores = automl.predict_scores(champ.model, holdout[champ.features])
        scores["champion"] = {m: automl.score(m, problem_type, y, champ_scores, champ.classes) for m in metrics}
        def gains(metric: str) -> np.ndarray:
            """The challenger's gain on each resample: both models on the same resampled rows (one seed),
            each read with its own classes (a challenger may know a class its champion never saw)."""
            champ_boot, chal_boot = (bootstrap_scores(metric, problem_type, y, [s], c, samples=settings.bootstrap_samples, seed=seeds[0])[0]
                                     for s, c in ((champ_scores, champ.classes), (chal_scores, chal.classes)))
            return signed(chal_boot - champ_boot, gib[metric])

        observed = signed(scores["challenger"][primary] - scores["champion"][primary], gib[primary])
        bootstrap = summarise_bootstrap(gains(primary), primary, "difference", observed, settings.confidence)
        gain_intervals = {primary: (bootstrap["ci_low"], bootstrap["ci_high"])}
        if every_interval:  # only the fresher-challenger rule reads the other metrics' intervals
            gain_intervals.update({m: _interval(gains(m), settings.confidence) for m in settings.metrics[1:]})
    else:
        boot = bootstrap_scores(primary, problem_type, y, [chal_scores], chal.classes, samples=settings.bootstrap_samples, seed=seeds[0])
        bootstrap = summarise_bootstrap(boot[0], primary, "score", scores["challenger"][primary], settings.confidence)

    tolerance = regression_tolerance * float(np.nanstd(y.astype(float))) if problem_type == "regression" else 0.0
    chal_labels = automl.predict_labels(chal.model, holdout[chal.features])
    champ_labels = automl.predict_labels(champ.model, holdout[champ.features]) if champ is not None else None
    columns = list(dict.fromkeys([*chal.features, *(champ.features if champ is not None else [])]))
    noisy, touched = _perturb(holdout[columns], settings.noise_fraction, np.random.default_rng(seeds[1]))
    return dict(
        profile=profile, greater_is_better=gib, scores=scores, bootstrap=bootstrap, regression_tolerance=tolerance,
        gain_intervals=gain_intervals if champ is not None else {},
        noisy_features=touched,
        challenger_flips=_flips(chal.model, noisy, chal.features, chal_labels, tolerance),
        champion_flips=_flips(champ.model, noisy, champ.features, champ_labels, tolerance) if champ is not None else None,
        churn=np.asarray(_differs(chal_labels, champ_labels, tolerance), dtype=bool) if champ is not None else None,
        challenger_contract=_contract(chal.meta, chal.features),
        champion_contract=_contract(champ.meta, champ.features) if champ is not None else None,
        recorded_software=(chal.meta or {}).get("software") or {}, running_software=automl.software_versions(),
    )


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of the finite resampled values (NaN, NaN when none is finite)."""
    summary = summarise_bootstrap(values, "", "difference", 0.0, confidence)
    return summary["ci_low"], summary["ci_high"]


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


def _perturb(x: pd.DataFrame, fraction: float, rng: np.random.Generator) -> tuple[pd.DataFrame, list[str]]:
    """Gaussian noise of ``fraction`` of each numeric column's standard deviation; integers stay integers
    and exact zeros stay zero.

    A zero is structural in tabular data (no rain, no debt, a count of none), not a measurement with an
    error: moving it by a hair crosses LightGBM's zero/non-zero split (threshold 1e-35) and would count
    every dry day in a weather stream as a flip.
    """
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
        moved = moved.where(s != 0, s.astype(float))  # exact zeros stay zero
        noisy[col] = moved.round().astype(s.dtype) if pd.api.types.is_integer_dtype(s) else moved.astype(s.dtype)
        touched.append(str(col))
    return noisy, touched


def _differs(a: np.ndarray, b: np.ndarray, tolerance: float) -> np.ndarray:
    if tolerance > 0:
        return np.abs(a.astype(float) - b.astype(float)) > tolerance
    return a != b


def _flips(model, noisy, features, labels, tolerance) -> np.ndarray:
    return np.asarray(_differs(automl.predict_labels(model, noisy[features]), labels, tolerance), dtype=bool)


def _contract(meta: Mapping[str, Any] | None, features: Sequence[str]) -> dict[str, str | None]:
    """The data contract a model was given: input column -> kind (None when its record predates kinds)."""
    inputs = (meta or {}).get("inputs")
    if inputs:
        return {str(c): k for c, k in inputs.items()}
    return {str(c): None for c in features}


def _p95_latency(predictor, batch: pd.DataFrame, repeats: int, folder: Path | None = None) -> float:
    """p95 seconds to predict ``batch`` (1,000 rows), after one warm-up call.

    With the check cache on (a backtest: :mod:`retrainlib.freshproc`), a byte-identical model
    (``folder``'s files) timed on the same rows before is answered with that earlier timing.
    """
    root = freshproc.cache_folder()
    path = None
    if root is not None and folder is not None and folder.is_dir():
        path = root / "latency" / f"{freshproc.cache_key(folder, batch)}-{repeats}.json"
        if path.is_file():
            return float(json.loads(path.read_text())["p95"])
    value = _time_predictions(predictor, batch, repeats)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"p95": value})
    return value


def _time_predictions(predictor, batch: pd.DataFrame, repeats: int) -> float:
    automl.predict_scores(predictor, batch)
    times = []
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        automl.predict_scores(predictor, batch)
        times.append(time.perf_counter() - started)
    return float(np.percentile(times, 95))


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
