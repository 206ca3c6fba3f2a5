"""Shadow promotion's rule and its paired sequential test; the paired gain a promotion's regret reads too.

A challenger that passes every gate with ``validation.shadow_batches: N`` does not serve at once: it
becomes the *shadow*. Each following labelled batch scores shadow and champion on the same rows
(:mod:`retrainlib.steps.shadow`); :func:`judge` reads the pooled rows so far and says ``promote``,
``drop`` or ``continue``:

* after ``N`` batches, the improvement gate's rule over the pooled rows: the shadow is promoted when
  its gain is at least ``improvement_threshold``, or (``validation.fresher_challenger: not_worse``,
  the default; the shadow always trained on rows its champion never saw) when the paired bootstrap
  interval of its gain reaches zero — not significantly worse. With ``require_significance`` the
  interval's lower bound must clear zero as well. Otherwise it is dropped;
* sooner, a group-sequential paired test: at each of the ``N`` looks the interval is taken at the
  Bonferroni-spent level ``1 - (1 - confidence) / N`` (so the chance of any early stop by noise stays
  within ``1 - confidence``); a lower bound above zero promotes at once (significantly better), an upper
  bound below zero drops at once (significantly worse).

With ``validation.shadow_when: uncertain`` (the default) a challenger goes on trial only when its validation
holdout could not show it better: :func:`shown_better` treats the holdout as the trial's first look, so the
gain's interval must clear zero at the early looks' level (:func:`early_level`) for it to serve at once.

:func:`paired_gain` is the paired bootstrap both use (:func:`retrainlib.metrics.bootstrap_scores`, the
same resampled rows for both models), read the metric's way round: positive is better for ``new``.
Pure functions of arrays: no model is loaded here, no file touched.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from .metrics import bootstrap_scores, signed, summarise_bootstrap

__all__ = ["paired_gain", "judge", "early_level", "shown_better", "ShadowJudgement", "OUTCOMES"]

#: what a run's shadow outcome can be (the run's outcome names and exit codes: :mod:`retrainlib.errors`)
OUTCOMES = ("shadow-started", "promoted-from-shadow", "shadow-dropped")


def paired_gain(metric: str, problem_type: str, y: Sequence, new: tuple[np.ndarray, Sequence | None],
                old: tuple[np.ndarray, Sequence | None], *, greater_is_better: bool, samples: int, confidence: float,
                seed: int = 0) -> dict[str, Any]:
    """``new``'s gain over ``old`` in ``metric`` on the same rows, with its paired bootstrap interval.

    ``new`` and ``old`` are ``(scores, classes)`` of the two models on the rows whose labels are ``y``.
    Returns ``{"gain", "low", "high", "n", "confidence"}``: the observed gain (positive: ``new`` is
    better) and the central ``confidence`` interval of the resampled gains (NaN when no resample
    defined the metric).
    """
    from . import automl

    y = np.asarray(y)
    values = {}
    for who, (scores, classes) in (("new", new), ("old", old)):
        values[who] = automl.score(metric, problem_type, y, scores, classes)
    gain = signed(values["new"] - values["old"], greater_is_better)
    boot = [bootstrap_scores(metric, problem_type, y, [s], c, samples=samples, seed=seed)[0] for s, c in (new, old)]
    summary = summarise_bootstrap(signed(boot[0] - boot[1], greater_is_better), metric, "difference", gain, confidence)
    return {"gain": float(gain), "low": summary["ci_low"], "high": summary["ci_high"], "n": int(len(y)),
            "confidence": confidence, "new": float(values["new"]), "old": float(values["old"])}


def early_level(confidence: float, needed: int) -> float:
    """The interval's confidence at a look before the last: ``1 - (1 - confidence) / needed`` (Bonferroni over ``needed``)."""
    return 1 - (1 - confidence) / needed


def shown_better(bootstrap: dict[str, Any], *, confidence: float, needed: int) -> str | None:
    """Why the validation holdout already shows the challenger better, so it needs no trial; None when it does not.

    ``bootstrap`` is step 30's resampled gain in the first metric (``kind='difference'``, its ``values``). The
    holdout counts as the trial's first look: it must clear the bar of the sequential test's early promotion,
    the lower end of the gain's interval at :func:`early_level` above zero (with ``needed`` 1, ``confidence``).
    """
    values = np.asarray(bootstrap.get("values") or [], dtype=float)
    if bootstrap.get("kind") != "difference" or not np.isfinite(values).any():
        return None
    level = early_level(confidence, needed)
    low = summarise_bootstrap(values, bootstrap.get("metric", ""), "difference", bootstrap.get("observed", math.nan),
                              level)["ci_low"]
    if not low > 0:
        return None
    return (f"the {level:.1%} paired bootstrap interval of its {bootstrap.get('metric', '')} gain on the holdout lies above "
            f"zero (lower end {_fmt(low)}; the level of the trial's early looks, Bonferroni over {needed})")


@dataclass(frozen=True)
class ShadowJudgement:
    """What :func:`judge` decided from the pooled rows so far: ``promote``, ``drop`` or ``continue``, and why."""

    decision: str
    reason: str
    batches: int
    needed: int
    gain: float
    low: float
    high: float
    level: float  # the confidence the interval was taken at (Bonferroni-spent before the last look)
    early: bool  # decided by the sequential test before the N-th batch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fmt(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:+.4g}"


def judge(batches: int, needed: int, gain_at: Any, *, improvement_threshold: float, confidence: float,
          fresher_challenger: str = "not_worse", require_significance: bool = False, metric: str = "") -> ShadowJudgement:
    """The shadow's fate after ``batches`` of ``needed`` paired batches.

    ``gain_at(level)`` returns :func:`paired_gain`'s dict on the pooled rows at interval confidence
    ``level`` (the caller resamples; the level differs between the looks and the last one).
    """
    if batches <= 0:
        return ShadowJudgement("continue", f"no labelled batch after the shadow started yet (0 of {needed})", 0, needed,
                               math.nan, math.nan, math.nan, confidence, False)
    final = batches >= needed
    level = confidence if final else early_level(confidence, needed)
    g = gain_at(level)
    gain, low, high = g["gain"], g["low"], g["high"]
    where = (f"shadow {metric} gain {_fmt(gain)} over the champion on {g['n']} pooled rows of {batches} batch(es), "
             f"{level:.1%} paired bootstrap interval [{_fmt(low)}, {_fmt(high)}]")
    if not final:
        if math.isfinite(low) and low > 0:
            return ShadowJudgement("promote", where + f": significantly better before batch {needed} (sequential test, "
                                   f"Bonferroni-spent level over {needed} looks)", batches, needed, gain, low, high, level, True)
        if math.isfinite(high) and high < 0:
            return ShadowJudgement("drop", where + f": significantly worse before batch {needed} (sequential test, "
                                   f"Bonferroni-spent level over {needed} looks)", batches, needed, gain, low, high, level, True)
        return ShadowJudgement("continue", where + f": undecided, {needed - batches} batch(es) to go", batches, needed,
                               gain, low, high, level, False)
    if gain >= improvement_threshold and not (require_significance and not (math.isfinite(low) and low > 0)):
        return ShadowJudgement("promote", where + f": at or above improvement_threshold {improvement_threshold:g}",
                               batches, needed, gain, low, high, level, False)
    if require_significance:
        ok = math.isfinite(low) and low > 0
        why = "its lower bound clears zero" if ok else "its lower bound does not clear zero (validation.require_significance)"
    elif fresher_challenger == "not_worse":
        ok = high >= 0 if math.isfinite(high) else gain >= 0
        why = ("not significantly worse (validation.fresher_challenger: not_worse)" if ok
               else "significantly worse (validation.fresher_challenger: not_worse)")
    else:
        ok, why = False, f"below improvement_threshold {improvement_threshold:g} (validation.fresher_challenger: improve)"
    return ShadowJudgement("promote" if ok else "drop", where + ": " + why, batches, needed, gain, low, high, level, False)
