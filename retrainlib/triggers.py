"""When to retrain: triggers with memory, combined by the profile's policy into a :class:`Decision`.

Each trigger returns a :class:`TriggerResult` (name, value, threshold, fired, reason). Data quality
plays two parts (:mod:`retrainlib.quality`): *broken* data blocks retraining (a model is never
retrained on it), and *changed* data whose score falls below ``data_quality_threshold`` is the
``data_quality`` trigger (:func:`quality_trigger`), a reason to retrain as the guide's
``monitor_data_quality`` asks (``triggers.quality: retrain``), or only reported (``report``).

>>> drift_trigger(0.3, threshold=0.25).fired
True
>>> drift_trigger(0.25, threshold=0.25).fired
False
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Sequence

__all__ = [
    "TriggerResult",
    "Decision",
    "schedule_trigger",
    "drift_trigger",
    "performance_trigger",
    "degradation_trigger",
    "quality_trigger",
    "page_hinkley",
    "decide",
]


@dataclass(frozen=True)
class TriggerResult:
    """One trigger's figure against its threshold."""

    name: str
    value: float | None
    threshold: float | None
    fired: bool
    reason: str
    enabled: bool = True
    source: str | None = None  # performance/degradation: 'measured', 'estimated' or 'both'

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """Retrain or not, and every reason."""

    retrain: bool
    status: str  # 'bootstrap' | 'retrain' | 'no-retrain' | 'blocked-by-quality'
    policy: str
    reasons: tuple[str, ...]
    triggers: tuple[TriggerResult, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "retrain": self.retrain,
            "status": self.status,
            "policy": self.policy,
            "reasons": list(self.reasons),
            "triggers": [t.to_dict() for t in self.triggers],
        }

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([t.to_dict() for t in self.triggers])


def schedule_trigger(days_since_attempt: float, *, interval_days: float, since: str = "the last retraining attempt",
                     slack_days: float = 0.0) -> TriggerResult:
    """Fires when the newest data is at least ``interval_days`` past the data of the last attempt.

    The clock runs on the data's time axis: ``days_since_attempt`` is the newest batch's end minus
    the newest batch end the last retraining attempt (promoted or not) saw, so one attempt is made
    per interval, in a live run and in a backtest alike. ``slack_days`` absorbs the jitter of batch
    end times (a weekly batch whose last row came 6.98 days after the previous one's is a week later).

    >>> schedule_trigger(1.0, interval_days=1).fired
    True
    >>> schedule_trigger(6.98, interval_days=7, slack_days=0.7).fired
    True
    """
    fired = days_since_attempt >= interval_days - slack_days - 1e-9
    rel = "≥" if fired else "<"
    return TriggerResult(
        "schedule", round(days_since_attempt, 3), interval_days, fired,
        f"the newest batch is {days_since_attempt:.1f} days past {since} {rel} retraining_interval {interval_days:g} days"
        + (f" (less {slack_days:.2g} days of batch-time jitter)" if slack_days else ""),
    )


def drift_trigger(score: float, *, threshold: float, joint_auc: float | None = None, joint_drifted: bool = False) -> TriggerResult:
    """Fires when the dataset drift score exceeds ``drift_threshold``, or when the multivariate
    domain classifier finds a joint shift that no single column shows (``joint_drifted``).

    >>> drift_trigger(0.0, threshold=0.25, joint_auc=0.71, joint_drifted=True).reason
    'drift score 0.000 ≤ drift_threshold 0.25, but a domain classifier tells the windows apart (AUC 0.710): joint shift'
    """
    fired = score > threshold
    rel = ">" if fired else "≤"
    reason = f"drift score {score:.3f} {rel} drift_threshold {threshold:g}"
    if joint_drifted and not fired:
        fired = True
        reason += f", but a domain classifier tells the windows apart (AUC {joint_auc:.3f}): joint shift"
    return TriggerResult("drift", round(score, 4), threshold, fired, reason)


def quality_trigger(score: float | None, *, threshold: float, detail: str = "", mode: str = "retrain") -> TriggerResult:
    """Fires when the changed-data score falls below ``data_quality_threshold``; ``mode`` ``report``
    records it without making it a reason to retrain.

    >>> quality_trigger(0.6, threshold=0.8, detail="out_of_range: temp 40% outside [17, 60]").reason
    'changed-data score 0.60 < data_quality_threshold 0.8: out_of_range: temp 40% outside [17, 60]'
    >>> quality_trigger(0.6, threshold=0.8, mode="report").enabled
    False
    """
    if score is None:
        return TriggerResult("data_quality", None, threshold, False, "no changed-data score", enabled=mode == "retrain")
    fired = score < threshold
    rel = "<" if fired else "≥"
    reason = f"changed-data score {score:.2f} {rel} data_quality_threshold {threshold:g}" + (f": {detail}" if detail and fired else "")
    if fired and mode != "retrain":
        reason += " (triggers.quality: report, so no retraining for it)"
    return TriggerResult("data_quality", round(score, 4), threshold, fired, reason, enabled=mode == "retrain")


def performance_trigger(value: float | None, *, threshold: float, metric: str, greater_is_better: bool = True,
                        source: str = "measured", band: tuple[float, float] | None = None, batch: str | None = None,
                        estimated: dict | None = None) -> TriggerResult:
    """Fires when the champion's metric on the newest batch is worse than the threshold.

    ``source`` says where ``value`` comes from: ``measured`` (labels of the newest labelled batch)
    or ``estimated`` (label-free, :mod:`retrainlib.estimate`, with its ``band``); ``both`` checks the
    measured value and, in ``estimated`` (an estimate's dict), the newest batch's estimate, and fires
    when either is worse. The reason names the source and the band.

    >>> performance_trigger(0.70, threshold=0.75, metric="roc_auc", source="estimated", band=(0.68, 0.72)).reason
    'champion roc_auc 0.700 (estimated without labels, 95% band 0.680–0.720) is below performance_threshold 0.75'
    """
    if source == "both":
        m = performance_trigger(value, threshold=threshold, metric=metric, greater_is_better=greater_is_better)
        e = _estimated_performance(estimated, threshold=threshold, metric=metric, greater_is_better=greater_is_better)
        fired = [r for r in (m, e) if r.fired]
        pick = fired[0] if fired else (e if e.value is not None else m)
        return TriggerResult("performance", pick.value, threshold, bool(fired), f"{m.reason}; {e.reason}", source="both")
    if value is None:
        what = "no estimate for the newest batch" if source == "estimated" else "no new labelled batch: performance not measured"
        return TriggerResult("performance", None, threshold, False, what, source=source)
    fired = value < threshold if greater_is_better else value > threshold
    word = "below" if greater_is_better else "above"
    verdict = word if fired else ("at or above" if greater_is_better else "at or below")
    if source == "estimated":
        how = "estimated without labels" + (f", 95% band {band[0]:.3f}–{band[1]:.3f}" if band else "")
    else:
        how = "measured on labels"
    where = f" on {batch}" if batch else ""
    return TriggerResult(
        "performance", round(value, 4), threshold, fired,
        f"champion {metric} {value:.3f} ({how}{where}) is {verdict} performance_threshold {threshold:g}", source=source,
    )


def _estimated_performance(estimated: dict | None, *, threshold: float, metric: str, greater_is_better: bool) -> TriggerResult:
    if not estimated or estimated.get("value") is None:
        why = (estimated or {}).get("reason") or "no estimator for the champion"
        return TriggerResult("performance", None, threshold, False, f"performance not estimated: {why}", source="estimated")
    return performance_trigger(estimated["value"], threshold=threshold, metric=metric, greater_is_better=greater_is_better,
                               source="estimated", band=(estimated["low"], estimated["high"]), batch=estimated.get("batch"))


def page_hinkley(values: Sequence[float], *, delta: float, threshold: float, greater_is_better: bool = True) -> tuple[float, int | None]:
    """Page-Hinkley test for a sustained *decline* of a quality metric.

    Returns the final statistic and the index where it first crossed ``threshold`` (None if never).
    ``delta`` is the tolerated drift per step, ``threshold`` (lambda) the alarm level — as in river's
    ``drift.PageHinkley(mode="down")``.

    >>> page_hinkley([0.8] * 10, delta=0.005, threshold=0.05)[1] is None
    True
    >>> page_hinkley([0.80 - 0.01 * i for i in range(15)], delta=0.005, threshold=0.05)[1] is not None
    True
    """
    mean = 0.0
    cum = 0.0
    peak = 0.0
    alarm = None
    stat = 0.0
    for i, v in enumerate(values, start=1):
        x = v if greater_is_better else -v
        mean += (x - mean) / i
        cum += mean - x - delta  # grows while x falls below its running mean
        peak = min(peak, cum)
        stat = cum - peak
        if alarm is None and stat > threshold:
            alarm = i - 1
    return stat, alarm


def degradation_trigger(
    history: Sequence[float], *, delta: float, threshold: float, min_history: int, greater_is_better: bool = True,
    source: str = "measured", detector: str = "metric", losses: Sequence[tuple[str, Any]] = (), level: float | None = None,
    seed: int = 0,
) -> TriggerResult:
    """Fires on a sustained downward trend of the champion's metric across its evaluation history.

    ``source`` names what the history holds: ``measured`` values, ``estimated`` ones, or ``both``
    (measured where labels arrived, estimated for the newer batches); the reason says which.

    ``detector`` other than ``metric`` (a name of :data:`retrainlib.detectors.DETECTORS`) runs that river
    detector at ``level`` on the champion's per-row ``losses`` instead — ``(batch, losses)`` pairs in the
    order the batches arrived — and fires on its first upward alarm; ``history`` is then not read.

    >>> import numpy as np
    >>> steady = [("b1", np.full(400, 0.5)), ("b2", np.full(400, 0.5))]
    >>> degradation_trigger([], delta=0, threshold=0, min_history=2, detector="page-hinkley", losses=steady).fired
    False
    """
    if detector != "metric":
        return _detector_trigger(losses, detector=detector, level=level, seed=seed)
    what = {"measured": "measured", "estimated": "estimated", "both": "measured and estimated"}.get(source, source)
    if len(history) < min_history:
        return TriggerResult(
            "degradation", None, threshold, False, f"{len(history)} {what} evaluation(s) in history, need {min_history} for a trend",
            source=source,
        )
    stat, alarm = page_hinkley(history, delta=delta, threshold=threshold, greater_is_better=greater_is_better)
    fired = alarm is not None
    if fired:
        reason = f"Page-Hinkley {stat:.3f} > {threshold:g}: sustained decline since evaluation {alarm + 1} of {len(history)} ({what})"
    else:
        reason = f"Page-Hinkley {stat:.3f} ≤ {threshold:g} over {len(history)} {what} evaluations: no sustained decline"
    return TriggerResult("degradation", round(stat, 4), threshold, fired, reason, source=source)


def _detector_trigger(losses: Sequence[tuple[str, Any]], *, detector: str, level: float | None, seed: int) -> TriggerResult:
    """A river detector (:mod:`retrainlib.detectors`) over the per-row losses of the champion's labelled batches."""
    from .detectors import check_detector, scan

    spec = check_detector(detector)
    names = [name for name, _ in losses]
    if not names:
        return TriggerResult("degradation", None, level or spec.default_level, False,
                             f"{spec.river_name}: no labelled batch scored since the champion was trained", source="measured")
    s = scan([v for _, v in losses], detector=detector, level=level, seed=seed)
    word = spec.level_means.split(",")[0]
    if s.alarm is None:
        return TriggerResult("degradation", None, s.level, False,
                             f"{spec.river_name} ({word} {s.level:g}) quiet over {s.rows:,} per-row losses of "
                             f"{len(names)} batch(es): no rise", source="measured")
    a = s.alarm
    return TriggerResult(
        "degradation", round(a.after / a.before, 4) if a.before else None, s.level, True,
        f"{spec.river_name} ({word} {s.level:g}) saw the per-row loss rise from {a.before:.2f} to {a.after:.2f} "
        f"(× the first rows' mean) at row {a.row_in_part + 1:,} of batch {names[a.part]} ({a.part + 1} of {len(names)})",
        source="measured")


def decide(
    triggers: Sequence[TriggerResult],
    *,
    combine: str,
    use: Sequence[str],
    policy: str,
    quality_passed: bool,
    quality_reason: str = "",
    bootstrap: bool = False,
) -> Decision:
    """Combine triggers by policy; broken data blocks, an empty registry bootstraps.

    The ``data_quality`` trigger (:func:`quality_trigger`) stands outside the policy's combination:
    when it is enabled (``triggers.quality: retrain``) and fires, it is a reason to retrain by itself.
    """
    marked = tuple(
        t if t.name == "data_quality" else replace(t, fired=t.fired and t.name in use, enabled=t.name in use)
        for t in triggers
    )
    if not quality_passed:
        return Decision(False, "blocked-by-quality", policy, (f"blocked: {quality_reason}",), marked)
    if bootstrap:
        return Decision(True, "bootstrap", policy, ("no champion yet: train the first model",), marked)
    quality = [t for t in marked if t.name == "data_quality" and t.enabled and t.fired]
    active = [t for t in marked if t.enabled and t.name != "data_quality"]
    fired = [t for t in active if t.fired]
    go = bool(active) and (all(t.fired for t in active) if combine == "all" else bool(fired))
    if go or quality:
        return Decision(True, "retrain", policy, tuple(t.reason for t in (*(fired if go else ()), *quality)), marked)
    why = "no trigger fired" if not fired else f"policy '{policy}' needs all of {', '.join(use)}"
    return Decision(False, "no-retrain", policy, (why, *(t.reason for t in active)), marked)
