"""The validation gates: one table of small functions over one set of measured figures.

:func:`retrainlib.validation.validate` measures everything once — both models' scores, the bootstrap
interval, the flips under input noise, the churn, the data contracts, the software, the latencies
and the fresh-process reload's answer — into one :class:`GateInputs`. Each entry of :data:`GATES`
then turns those figures into :class:`Gate` results: a pure function, no model and no process, so a
gate is read (and tested) on its own. A rule's ``over`` says how often it applies: once, once per
metric, or only against a champion. The table's order is the verdict's order.

>>> [rule.name for rule in GATES]
['improvement', 'minimum', 'significance', 'stability_reload', 'stability_noise', 'schema', 'versions', 'churn', 'latency']
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from .metrics import flip_excess, signed
from .records import plain

if TYPE_CHECKING:  # pragma: no cover
    from .freshproc import CheckResult
    from .profiles import Profile

__all__ = ["Gate", "GateInputs", "GateRule", "GATES", "apply_gates", "LATENCY_ROWS"]

LATENCY_ROWS = 1000  # the batch whose p95 prediction time the latency gate compares


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
class GateInputs:
    """Every figure a gate reads, measured once by :func:`retrainlib.validation.validate`.

    Per-row indicators are boolean arrays over the same holdout rows: ``challenger_flips`` /
    ``champion_flips`` (the prediction moved under the same input noise) and ``churn`` (the
    challenger's prediction differs from the champion's). Without a champion its fields are
    empty or None. ``reload`` is the fresh-process check's answer, None when the folder is missing.
    """

    profile: "Profile"
    greater_is_better: Mapping[str, bool]
    scores: Mapping[str, Mapping[str, float]]
    bootstrap: Mapping[str, Any]
    challenger_flips: np.ndarray
    noisy_features: Sequence[str]
    recorded_software: Mapping[str, Any]
    running_software: Mapping[str, str]
    challenger_contract: Mapping[str, str | None]
    challenger_p95: float
    reload: "CheckResult | None"
    reload_expected: np.ndarray
    reload_folder: Path
    reload_timeout: float
    champion_flips: np.ndarray | None = None
    churn: np.ndarray | None = None
    champion_contract: Mapping[str, str | None] | None = None
    champion_p95: float | None = None
    regression_tolerance: float = 0.0  # absolute: a regression prediction "moves" by more than this
    challenger_new_rows: bool = False  # the challenger trained on rows its champion never saw
    gain_intervals: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # per metric: paired bootstrap interval of the gain

    @property
    def has_champion(self) -> bool:
        return bool(self.scores.get("champion"))


@dataclass(frozen=True)
class GateRule:
    """One row of :data:`GATES`: the gate's name, its function, and the metrics (or ``None``) it runs for."""

    name: str
    check: Callable[[GateInputs, str | None], Gate]
    over: Callable[[GateInputs], Sequence[str | None]]


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.4g}"


# --------------------------------------------------------------------------------------------
# which metrics a rule runs for


def _once(inputs: GateInputs) -> Sequence[str | None]:
    return (None,)


def _against_champion(inputs: GateInputs) -> Sequence[str | None]:
    return (None,) if inputs.has_champion else ()


def _each_metric(inputs: GateInputs) -> Sequence[str | None]:
    return tuple(inputs.profile.validation.metrics) if inputs.has_champion else ()


def _each_minimum(inputs: GateInputs) -> Sequence[str | None]:
    return tuple(inputs.profile.validation.minimum)


def _primary_against_champion(inputs: GateInputs) -> Sequence[str | None]:
    return (inputs.profile.validation.metrics[0],) if inputs.has_champion else ()


# --------------------------------------------------------------------------------------------
# the gates


def improvement(inputs: GateInputs, metric: str | None) -> Gate:
    """Challenger minus champion in ``metric``, read the metric's way round, at least ``improvement_threshold``.

    A challenger that trained on rows its champion never saw (newer data) also passes when it is not
    significantly worse: the paired bootstrap interval of its gain reaches zero, so the holdout cannot
    tell the two apart and the model that has seen the newer rows serves (``validation.fresher_challenger:
    not_worse``, the default; ``improve`` asks every challenger for ``improvement_threshold``).
    """
    champ, chal = inputs.scores["champion"][metric], inputs.scores["challenger"][metric]
    gib, threshold = inputs.greater_is_better[metric], inputs.profile.improvement_threshold
    gain = signed(chal - champ, gib)
    head = (f"challenger {metric} {_fmt(chal)} against the champion's {_fmt(champ)} is an improvement of {gain:+.4g} "
            f"({'higher' if gib else 'lower'} is better)")
    details = {"champion": champ, "challenger": chal, "new_rows": inputs.challenger_new_rows}
    if gain >= threshold:
        return Gate("improvement", metric, gain, threshold, True, True,
                    head + f", at or above improvement_threshold {_fmt(threshold)}", details)
    reason = head + f", below improvement_threshold {_fmt(threshold)}"
    if not (inputs.challenger_new_rows and inputs.profile.validation.fresher_challenger == "not_worse"):
        return Gate("improvement", metric, gain, threshold, False, True, reason, details)
    low, high = inputs.gain_intervals.get(metric, (math.nan, math.nan))
    confidence = inputs.profile.validation.confidence
    if math.isfinite(high):
        passed = high >= 0
        why = (f"; it trained on rows the champion never saw, and the {confidence:.0%} paired bootstrap interval of its gain "
               f"[{_fmt(low)}, {_fmt(high)}] {'reaches' if passed else 'lies below'} zero: "
               f"{'not significantly worse' if passed else 'significantly worse'} (validation.fresher_challenger: not_worse)")
    else:  # no resample defined the metric: judge the point estimate
        passed = gain >= 0
        why = (f"; it trained on rows the champion never saw and is {'not worse' if passed else 'worse'} on the holdout "
               "(no bootstrap resample defined the metric; validation.fresher_challenger: not_worse)")
    return Gate("improvement", metric, gain, threshold, passed, True, reason + why,
                {**details, "gain_interval": [low, high], "rule": "not_worse"})


def minimum(inputs: GateInputs, metric: str | None) -> Gate:
    """The challenger at or above its floor in ``validation.minimum`` (at or below it for a loss).

    A challenger below the floor still passes when the champion scores below it too, and worse, on
    the same holdout: keeping the champion does not keep the floor, it keeps the worse of two models
    under it (the other gates, improvement first, still decide; a champion below performance_threshold
    keeps firing the performance trigger and, rejection after rejection, the stuck event).
    """
    value, floor, gib = inputs.scores["challenger"][metric], inputs.profile.validation.minimum[metric], inputs.greater_is_better[metric]
    passed = value >= floor if gib else value <= floor
    side = "at or above" if gib else "at or below"
    reason = f"challenger {metric} {_fmt(value)} {'is' if passed else 'is not'} {side} the minimum {_fmt(floor)} (validation.minimum)"
    champ = inputs.scores.get("champion", {}).get(metric)
    if not passed and champ is not None and math.isfinite(champ) and signed(value - champ, gib) > 0:
        champ_below = champ < floor if gib else champ > floor
        if champ_below:
            return Gate("minimum", metric, value, floor, True, True, reason + (
                f", but the champion's {_fmt(champ)} on the same holdout is further from it: keeping the champion "
                "would keep the worse of two models under the floor"), {"champion": champ})
    return Gate("minimum", metric, value, floor, passed, True, reason)


def significance(inputs: GateInputs, metric: str | None) -> Gate:
    """The paired bootstrap interval of the improvement clears zero; blocking with ``require_significance``."""
    boot, required = inputs.bootstrap, inputs.profile.validation.require_significance
    low, high = boot["ci_low"], boot["ci_high"]
    passed = bool(math.isfinite(low) and low > 0)
    reason = (
        f"the {boot['confidence']:.0%} paired bootstrap interval of the {metric} improvement is [{_fmt(low)}, {_fmt(high)}] over "
        f"{boot['samples']} resamples; its lower bound {'clears' if passed else 'does not clear'} zero"
        + ("" if required else " (reported only: validation.require_significance is off)")
    )
    return Gate("significance", metric, low, 0.0, passed, bool(required), reason, {"ci_high": high})


def stability_reload(inputs: GateInputs, metric: str | None) -> Gate:
    """A process that never held the challenger loads its folder and predicts exactly what it predicts in memory."""
    folder, answer, expected = inputs.reload_folder, inputs.reload, inputs.reload_expected
    rows = int(len(expected))

    def failed(reason: str, details: Mapping[str, Any] | None = None) -> Gate:
        return Gate("stability_reload", None, None, 0.0, False, True, reason, details or {})

    if answer is None:
        return failed(f"challenger predictor folder {folder} does not exist, so it cannot be reloaded in a fresh process")
    if not answer.ok and answer.detail.startswith("no answer within"):
        return failed(f"reloading the challenger from {folder} in a fresh process took over {inputs.reload_timeout:g} s")
    if not answer.ok:
        return failed(f"the challenger in {folder} failed to load or predict in a fresh process: {answer.detail}")
    reloaded = answer.scores
    details = {"rows": rows, "seconds": round(answer.seconds, 3), "fresh": answer.mode,
               **{k: answer.info[k] for k in ("pid", "software") if k in answer.info}}
    if reloaded.shape != expected.shape:
        return failed(f"the reloaded challenger returned predictions of shape {reloaded.shape}, expected {expected.shape}", details)
    diff = float(np.max(np.abs(reloaded - expected))) if reloaded.size else 0.0
    identical = bool(np.array_equal(reloaded, expected))
    changed = int(np.sum(np.any((reloaded != expected).reshape(rows, -1), axis=1)))
    reason = (
        f"reloaded from {folder} in a fresh process, the challenger predicts {rows} holdout rows "
        + ("identically" if identical else f"differently on {changed} rows (largest difference {diff:.3g})")
    )
    return Gate("stability_reload", None, diff, 0.0, identical, True, reason, {**details, "rows_changed": changed})


def stability_noise(inputs: GateInputs, metric: str | None) -> Gate:
    """Flips under input noise, the challenger's against the champion's on the same noisy rows.

    The challenger fails the relative check only when the lower ``confidence`` bound of its excess
    flip share over the champion's (:func:`~retrainlib.metrics.flip_excess`) is above
    ``1 - stability_threshold``: a difference a holdout of this size produces by chance rejects no
    model. Its threshold is the share that decision allows: the champion's, the tolerance and the
    sampling allowance (excess minus bound). ``validation.max_flip_share``, when set, also bounds its
    own share. Without a champion only the cap decides, and without a cap the share is reported only.
    """
    settings = inputs.profile.validation
    cap, confidence, fraction = settings.max_flip_share, settings.confidence, settings.noise_fraction
    chal_flips, champ_flips, touched = inputs.challenger_flips, inputs.champion_flips, inputs.noisy_features
    share = float(np.mean(chal_flips))
    champ_share = float(np.mean(champ_flips)) if champ_flips is not None else None
    slack = round(1 - inputs.profile.stability_threshold, 12)
    how = f"{share:.2%} of the challenger's predictions flip when {len(touched)} numeric features get Gaussian noise of {fraction:.0%} of their standard deviation"
    parts, passed, limits = [how], True, []
    paired: dict[str, Any] = {}
    if champ_flips is not None:
        paired = flip_excess(chal_flips, champ_flips, tolerance=slack, confidence=confidence)
        ok = paired["passed"]
        passed &= ok
        limits.append(round(champ_share + slack + (paired["excess"] - paired["excess_bound"]), 12))
        parts.append(f"the champion's flip {champ_share:.2%} on the same rows; excess {paired['excess']:+.2%}, "
                     f"lower {confidence:.0%} bound {paired['excess_bound']:+.2%} (exact McNemar, n={paired['n']}, "
                     f"{paired['discordant']['challenger_only']} rows flip for the challenger only, "
                     f"{paired['discordant']['champion_only']} for the champion only), "
                     f"{'within' if ok else 'above'} {slack:.2%} (1 - stability_threshold)")
    if cap is not None:
        ok = share <= cap
        passed &= ok
        limits.append(cap)
        parts.append(f"{'within' if ok else 'above'} validation.max_flip_share {cap:.2%}")
    blocking = bool(limits)
    if not blocking:
        parts.append("reported only: no champion to compare with and validation.max_flip_share is unset")
    details = {"features": list(touched), "rows": int(len(chal_flips)), "regression_tolerance": inputs.regression_tolerance or None,
               "champion_share": champ_share, "max_flip_share": cap, "tolerance": slack,
               "excess": paired.get("excess"), "excess_bound": paired.get("excess_bound"),
               "discordant": paired.get("discordant"), "confidence": confidence if paired else None}
    return Gate("stability_noise", None, share, min(limits) if limits else None, passed, blocking, "; ".join(parts), details)


def schema(inputs: GateInputs, metric: str | None) -> Gate:
    """Same data contract: the same input columns of the same kinds (not which features AutoGluon kept)."""
    champion, challenger = inputs.champion_contract or {}, inputs.challenger_contract
    allowed = inputs.profile.validation.allow_schema_change
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


def versions(inputs: GateInputs, metric: str | None) -> Gate:
    """The running AutoGluon version and Python major.minor equal those recorded with the challenger."""
    recorded, running = dict(inputs.recorded_software or {}), dict(inputs.running_software)
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
    return Gate("versions", None, float(len(bad)), 0.0, passed, True, reason, {"recorded": recorded, "running": running})


def churn(inputs: GateInputs, metric: str | None) -> Gate:
    """The share of predictions that differ from the champion's; blocking only with ``validation.max_churn``."""
    share, max_churn = float(np.mean(inputs.churn)), inputs.profile.validation.max_churn
    if max_churn is None:
        return Gate("churn", None, share, None, True, False, f"{share:.2%} of predictions differ from the champion's (reported only: validation.max_churn is unset)")
    passed = share <= max_churn
    reason = f"{share:.2%} of predictions differ from the champion's; {'within' if passed else 'above'} validation.max_churn {max_churn:.2%}"
    return Gate("churn", None, share, max_churn, passed, True, reason)


def latency(inputs: GateInputs, metric: str | None) -> Gate:
    """p95 time to predict 1,000 rows, challenger over champion; blocking only with ``validation.max_latency_ratio``."""
    champ_p95, chal_p95, max_ratio = inputs.champion_p95, inputs.challenger_p95, inputs.profile.validation.max_latency_ratio
    ms = f"{chal_p95 * 1e3:.1f} ms"
    details = {"challenger_p95_seconds": chal_p95, "champion_p95_seconds": champ_p95, "rows": LATENCY_ROWS}
    if champ_p95 is None:
        return Gate("latency", None, None, None, True, False, f"challenger p95 {ms} per 1,000 rows (no champion to compare)", details)
    ratio = chal_p95 / champ_p95
    head = f"challenger p95 {ms} per 1,000 rows against the champion's {champ_p95 * 1e3:.1f} ms (x{ratio:.2f})"
    if max_ratio is None:
        return Gate("latency", None, ratio, None, True, False, head + " (reported only: validation.max_latency_ratio is unset)", details)
    passed = ratio <= max_ratio
    return Gate("latency", None, ratio, max_ratio, passed, True, head + f"; {'within' if passed else 'above'} validation.max_latency_ratio x{max_ratio:g}", details)


#: every gate, in the verdict's order
GATES: tuple[GateRule, ...] = (
    GateRule("improvement", improvement, _each_metric),
    GateRule("minimum", minimum, _each_minimum),
    GateRule("significance", significance, _primary_against_champion),
    GateRule("stability_reload", stability_reload, _once),
    GateRule("stability_noise", stability_noise, _once),
    GateRule("schema", schema, _against_champion),
    GateRule("versions", versions, _once),
    GateRule("churn", churn, _against_champion),
    GateRule("latency", latency, _once),
)


def apply_gates(inputs: GateInputs) -> list[Gate]:
    """Every rule of :data:`GATES` for every metric it applies to, in table order."""
    return [rule.check(inputs, metric) for rule in GATES for metric in rule.over(inputs)]
