"""Step 10: compare reference and current windows, measure the champion, and decide whether to retrain."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from .. import automl, data, drift, quality, triggers
from ..errors import RetrainError
from ..outputs import Analysis
from ..profiles import Profile
from ..records import plain
from ..scorecache import ChampionScores, compare_once
from .champion import estimate_champion, evaluate_champion
from .checks import (assess_batches, broken_batches, check_holdout, label_classes, load_checked, neighbours,
                     quarantine, quality_verdict, recent_history)
from .context import StepContext, under_run_lock
from .retrain import newest_end
from .shadow import shadow_trial

__all__ = ["analyze_drift", "AnalysisDetail", "RetrainPolicy", "PROFILE_POLICY"]


# --------------------------------------------------------------------------- step 10
@dataclass(frozen=True)
class AnalysisDetail:
    """Step 10's live objects for a notebook's tables and plots (never written: the JSON has their dicts)."""

    quality: Any  # quality.QualityReport of the window
    drift: Any | None  # drift.DriftReport (None on a first run: nothing to compare with)
    target_drift: Any | None
    prediction_drift: Any | None
    windows: data.Windows
    reference: pd.DataFrame | None = field(default=None, repr=False)
    current: pd.DataFrame | None = field(default=None, repr=False)


def _analysis(decision, q, report, windows: data.Windows, performance, evaluations, *, champion=None, target=None,
              pred=None, estimates=(), batch_quality=(), holdout_check=None, reference=None, current=None) -> Analysis:
    """Step 10's output from its parts (the JSON fields plain, the live objects in ``detail``)."""
    def as_dict(x):
        return plain(x.to_dict()) if x is not None else None

    return Analysis(champion, decision, as_dict(q), as_dict(report), as_dict(target), as_dict(pred), plain(performance),
                    plain(list(evaluations)), plain(list(estimates)), windows.to_dict(),
                    [as_dict(b) for b in batch_quality], plain(holdout_check),
                    detail=AnalysisDetail(q, report, target, pred, windows, reference, current))


@dataclass(frozen=True)
class RetrainPolicy:
    """Who decides whether step 10 says retrain: the profile's triggers (``profile``), or ``always`` / ``never``.

    ``always`` and ``never`` (backtest strategies such as "retrain every batch" or "never retrain")
    replace the policy's verdict with ``reason``; every trigger is still measured and recorded, and a
    bootstrap or a data-quality block still wins.
    """

    mode: str = "profile"  # 'profile' | 'always' | 'never'
    reason: str = ""

    MODES = ("profile", "always", "never")

    def __post_init__(self) -> None:
        if self.mode not in self.MODES:
            raise RetrainError(f"retrain policy {self.mode!r} is not one of {', '.join(self.MODES)}")

    def apply(self, decision: triggers.Decision) -> triggers.Decision:
        if self.mode == "profile" or decision.status not in ("retrain", "no-retrain"):
            return decision
        retrain = self.mode == "always"
        return triggers.Decision(retrain, "retrain" if retrain else "no-retrain", decision.policy,
                                 (self.reason or f"forced: retrain={retrain}",), decision.triggers)


PROFILE_POLICY = RetrainPolicy()

@under_run_lock
def analyze_drift(ctx: StepContext, *, policy: RetrainPolicy = PROFILE_POLICY) -> Analysis:
    """Compare reference and current windows, measure the champion, and decide whether to retrain.

    ``policy`` (:class:`RetrainPolicy`) says who decides: the profile's triggers (the playbook), or
    ``always`` / ``never`` (backtest strategies).
    """
    prof, src = ctx.profile, ctx.profile.data
    visible = data.list_batches(src, ctx.paths, as_of=ctx.as_of)
    champion = ctx.registry.champion()
    meta = ctx.registry.version(champion).metadata if champion else None
    slices = data.batches_from_records(meta["slices"], ctx.paths) if meta else None
    windows = data.plan_windows(visible, training=prof.training, champion_slices=slices,
                                label_delay_batches=src.label_delay_batches)
    required = list(meta["features"]) if meta else []
    combine, use = prof.triggers.resolved()

    if not meta:  # bootstrap: check the data we would train on, nothing to compare against
        return _bootstrap(ctx, windows, required, combine, use)

    if not windows.current:  # every batch is in the champion's data: a run between batches
        return _nothing_new(ctx, windows, champion)
    w = _check_window(ctx, windows, visible, required)
    report = compare_once(w.reference[required], w.current[required], settings=prof.drift,
                          drift_threshold=prof.drift_threshold, importance=meta.get("importance"), seed=prof.training.seed)
    target = drift.target_drift(w.reference[src.label], w.current[src.label]) if src.label in w.current else None
    predictor = ChampionScores(ctx.registry, champion)  # loaded when a score is not cached
    pred = _prediction_drift(predictor, w, prof.training.seed)
    m = _measure(ctx, predictor, champion, meta, w)
    fired = _fired(ctx, visible, meta, w, report, m)
    decision = triggers.decide(fired, combine=combine, use=use, policy=prof.triggers.policy,
                               quality_passed=w.passed, quality_reason=_with_note(w.why, w.kept))
    decision = _noted(policy.apply(decision), w.kept)
    _record_block(ctx, decision, w.kept.reports, w.windows)
    result = _analysis(decision, w.quality, report, w.windows, m.performance(prof), m.evaluations, champion=champion,
                       target=target, pred=pred, estimates=m.estimates, batch_quality=w.per_batch, holdout_check=w.holdout,
                       reference=w.reference, current=w.current)
    if decision.status != "blocked-by-quality":  # a shadow on trial: scored beside the champion (never on broken data)
        result = replace(result, shadow=shadow_trial(ctx, w.windows, champion))
    ctx.write(result)
    return result


@dataclass(frozen=True)
class _Checked:
    """The current window loaded and checked (quarantined batches left out): what the rest of step 10 reads."""

    windows: data.Windows  # after the quarantine
    reference: pd.DataFrame
    current: pd.DataFrame  # the kept rows of the current window
    frames: dict[str, pd.DataFrame]  # every current batch as loaded, by path
    per_batch: list  # each current batch's quality report
    kept: Any  # checks.Quarantine
    quality: Any  # quality.QualityReport of the window
    holdout: dict[str, Any]  # checks.check_holdout
    required: list[str]  # the champion's features
    passed: bool  # checks.quality_verdict: whether the data may be trained and validated on
    why: str


def _check_window(ctx: StepContext, windows: data.Windows, visible: list, required: list[str]) -> _Checked:
    """Load the reference and current windows, check each current batch, the window and the holdout."""
    prof, src = ctx.profile, ctx.profile.data
    reference = load_checked(ctx, windows.reference, required, require_label=True)
    current_batches: dict[str, pd.DataFrame] = {}
    current = load_checked(ctx, windows.current, required, require_label=False, per_batch=current_batches)
    labelled_end = pd.Timestamp(windows.holdout[-1].end)  # rows after it wait for their labels (label_delay_batches)
    earlier = [b for b in visible if b.path not in {r.path for r in windows.reference} | set(current_batches)]
    classes = label_classes(ctx, reference[src.label], earlier)
    late = {b.path for b in windows.current if pd.Timestamp(b.end) > labelled_end}
    neighbour_frames = recent_history(ctx, windows, windows.current[0].path)  # changed data is judged against these
    per_batch = assess_batches(ctx, current_batches, reference=reference, classes=classes, late=late,
                               history=neighbour_frames, near=neighbours(windows))
    kept = quarantine(ctx, windows, current_batches, per_batch)
    windows, current = kept.windows, kept.frame(current)
    recent = pd.concat(list(neighbour_frames.values()), ignore_index=True) if neighbour_frames else reference
    q = quality.assess(current, reference=recent, label=src.label, threshold=prof.data_quality_threshold,
                       required=required, ignore_columns=src.ignore_columns, source="current window",
                       label_classes=classes, labels_due=(current[src.time_column] <= labelled_end).to_numpy(),
                       label_problem=prof.training.problem_type, constraints=src.constraints)
    holdout = check_holdout(ctx, windows, current_batches, reference=reference, classes=classes, required=required)
    passed, why = quality_verdict(q, kept, holdout)
    return _Checked(windows, reference, current, current_batches, per_batch, kept, q, holdout, required, passed, why)


def _prediction_drift(predictor: ChampionScores, w: _Checked, seed: int):
    """The champion's scores on up to 5,000 reference rows against up to 5,000 current rows."""
    rng = np.random.default_rng(seed)
    ref_s = w.reference.iloc[rng.permutation(len(w.reference))[:5000]]
    cur_s = w.current.iloc[rng.permutation(len(w.current))[:5000]]
    return drift.prediction_drift(predictor.scores(ref_s[w.required]), predictor.scores(cur_s[w.required]))


@dataclass(frozen=True)
class _Measured:
    """The champion's metric on the current window: estimated without labels, and measured where labels arrived."""

    champion: ChampionScores
    estimates: list[dict]
    evaluations: list[dict]  # this run's new scored rows
    scored: list[dict]  # the champion's scored history, one row per batch
    newest: str  # the newest labelled batch
    value: float | None  # the champion's measured metric on it
    source: str  # triggers.performance_source
    info: Any  # automl.metric_info of the metric
    history: list[float]  # what the step reports and the triggers read

    @property
    def newest_estimate(self) -> dict | None:
        return self.estimates[-1] if self.estimates else None

    def performance(self, prof: Profile) -> dict:
        """The ``performance`` field of step 10's output."""
        return {"metric": prof.training.eval_metric, "value": self.value, "batch": self.newest,
                "threshold": prof.performance_threshold, "history": self.history, "source": self.source,
                "measured_history": [{"batch": e["batch"], "batch_end": e["batch_end"], "value": e["value"]}
                                     for e in self.scored],
                "estimate": self.newest_estimate}


def _measure(ctx: StepContext, predictor: ChampionScores, champion: str, meta: dict, w: _Checked) -> _Measured:
    """Estimate and score the champion on the current window's batches; persist the rows."""
    prof = ctx.profile
    estimates = estimate_champion(ctx, predictor, champion, meta, w.windows, w.frames)
    evaluations = evaluate_champion(ctx, predictor, champion, meta, w.windows, w.frames, estimates)
    info = automl.metric_info(prof.training.eval_metric, predictor.problem_type)
    newest = w.windows.holdout[-1].path
    scored = _dedup_by_batch(ctx.registry.evaluations(champion))  # the champion's history, one row per batch
    value = next((e["value"] for e in scored if e["batch"] == newest), None)
    source = prof.triggers.performance_source
    return _Measured(predictor, estimates, evaluations, scored, newest, value, source, info,
                     _trigger_history(scored, estimates, source))


def _fired(ctx: StepContext, visible: list, meta: dict, w: _Checked, report, m: _Measured) -> list:
    """Every trigger measured: schedule, drift, performance, degradation and data quality."""
    prof = ctx.profile
    days, since = _days_since_attempt(ctx, meta, w.windows)
    return [
        triggers.schedule_trigger(days, interval_days=prof.retraining_interval, since=since,
                                  slack_days=0.1 * _batch_spacing_days(visible)),
        triggers.drift_trigger(report.score, threshold=prof.drift_threshold,
                               joint_auc=report.multivariate.auc if report.multivariate else None,
                               joint_drifted=bool(report.multivariate and report.multivariate.drifted)),
        _performance(m.value, m.newest, m.newest_estimate, m.source, prof, m.info),
        _degradation(m.scored, m.estimates, m.source, prof, m.info, frames=w.frames, champion=m.champion,
                     features=w.required),
        triggers.quality_trigger(w.quality.score, threshold=prof.data_quality_threshold, mode=prof.triggers.quality,
                                 detail="; ".join(f"{c.name}: {c.detail}" for c in w.quality.checks if not c.passed)),
    ]


def _bootstrap(ctx: StepContext, windows: data.Windows, required: list[str], combine: str, use) -> Analysis:
    """Step 10 on an empty registry: the data a first champion would train on, checked batch by batch (the
    holdout too), with nothing to compare against; the decision is ``bootstrap`` or a block."""
    prof, src = ctx.profile, ctx.profile.data
    train_batches: dict[str, pd.DataFrame] = {}  # the training window's files, then the holdout's
    train = load_checked(ctx, windows.train, required, require_label=True, per_batch=train_batches)
    load_checked(ctx, [b for b in windows.holdout if b.path not in train_batches], required, require_label=False,
                 per_batch=train_batches)
    neighbour_frames = recent_history(ctx, windows, windows.train[0].path)
    per_batch = assess_batches(ctx, train_batches, reference=None, classes=None, history=neighbour_frames,
                               near=neighbours(windows))
    kept = quarantine(ctx, windows, train_batches, per_batch)
    if kept.left_out:
        windows = kept.windows
        train = pd.concat([kept.kept[b.path] for b in windows.train], ignore_index=True) if windows.train else train
    q = quality.assess(train, reference=None, label=src.label, threshold=prof.data_quality_threshold,
                       required=required, ignore_columns=src.ignore_columns, source="training window",
                       constraints=src.constraints)
    holdout = check_holdout(ctx, windows, train_batches, reference=train,
                             classes=label_classes(ctx, train[src.label]), required=required)
    passed, why = quality_verdict(q, kept, holdout)
    decision = triggers.decide([], combine=combine, use=use, policy=prof.triggers.policy,
                               quality_passed=passed, quality_reason=_with_note(why, kept), bootstrap=True)
    decision = _noted(decision, kept)
    _record_block(ctx, decision, kept.reports, windows)
    result = _analysis(decision, q, None, windows, None, [], current=train, batch_quality=per_batch,
                       holdout_check=holdout)
    ctx.write(result)
    return result


def _with_note(why: str, kept) -> str:
    """The block's reason, with the batches left out of training named after it."""
    note = kept.note()
    return f"{why}; {note}" if why and note else why


def _noted(decision: triggers.Decision, kept) -> triggers.Decision:
    """A decision that is no block names the batches left out of training among its reasons."""
    if kept.left_out and decision.status != "blocked-by-quality":
        return dataclasses.replace(decision, reasons=(*decision.reasons, kept.note()))
    return decision


def _record_block(ctx: StepContext, decision: triggers.Decision, reports: list, windows: data.Windows) -> None:
    """A run that broken data blocked is recorded with its broken batches: later runs leave them out
    (no permanent block), and the stuck rule counts the block."""
    if decision.status == "blocked-by-quality":
        ctx.registry.record_block(run_id=ctx.run_id, data_end=newest_end(windows),
                                  batches=broken_batches(reports, windows), reasons=decision.reasons)


def _nothing_new(ctx: StepContext, windows: data.Windows, champion: str) -> Analysis:
    """No batch is newer than the champion's data (a scheduled run between batches): nothing to judge,
    no retraining, and a calm reason instead of an error."""
    newest = windows.visible[-1]
    reason = (f"no new batch: the champion {champion} was trained on every visible batch up to {newest.path} "
              f"({newest.end[:10]}); nothing to analyze until the next batch arrives")
    decision = triggers.Decision(False, "no-retrain", ctx.profile.triggers.policy, (reason,), ())
    q = quality.QualityReport((), 1.0, ctx.profile.data_quality_threshold, True, "no new batch", 0)
    result = _analysis(decision, q, None, windows, None, [], champion=champion)
    ctx.write(result)
    return result


def _days_since_attempt(ctx: StepContext, meta: dict, windows: data.Windows) -> tuple[float, str]:
    """Days from the newest batch the last retraining attempt saw to the newest batch visible now.

    The attempt record (promoted or not) is the clock; a registry without one falls back to the
    champion's own record of the data it saw.
    """
    last = ([a for a in ctx.registry.attempts() if a.get("outcome") != "blocked"] or [None])[-1]
    if last is not None:
        seen, since = last["data_end"], f"the data of the last retraining attempt ({last['version']}, {last['data_end'][:10]})"
    else:
        seen = meta.get("data_end") or max(s["end"] for s in meta["slices"])
        since = f"the data the champion saw ({seen[:10]})"
    return (pd.Timestamp(newest_end(windows)) - pd.Timestamp(seen)).total_seconds() / 86400, since


def _batch_spacing_days(batches: list) -> float:
    """The median days between consecutive batch ends (0 with fewer than two batches)."""
    ends = pd.to_datetime([b.end for b in batches])
    gaps = np.diff(ends.values).astype("timedelta64[s]").astype(float) / 86400 if len(ends) > 1 else []
    return float(np.median(gaps)) if len(gaps) else 0.0


def _dedup_by_batch(rows: list[dict]) -> list[dict]:
    seen: dict[str, dict] = {}
    for r in rows:
        seen[r["batch"]] = r
    return sorted(seen.values(), key=lambda r: r["batch_end"])


def _performance(measured: float | None, newest: str, newest_estimate: dict | None, source: str, prof: Profile,
                 info) -> triggers.TriggerResult:
    """The performance trigger on the profile's ``triggers.performance_source``."""
    common = dict(threshold=prof.performance_threshold, metric=prof.training.eval_metric,
                  greater_is_better=info.greater_is_better)
    unreliable = (newest_estimate or {}).get("unreliable")
    if unreliable and source == "estimated":  # a label shift the estimator cannot see: measured until recalibrated past it
        m = triggers.performance_trigger(measured, **common)
        return triggers.TriggerResult("performance", m.value, m.threshold, m.fired,
                                      f"estimate {unreliable}; measured instead: {m.reason}", source="measured")
    if unreliable and source == "both":  # the measured half keeps firing; the estimated half says why it is left out
        return triggers.performance_trigger(measured, **common, source="both",
                                            estimated={"value": None, "reason": f"estimate {unreliable}"})
    if source == "estimated":
        e = newest_estimate or {}
        if e.get("value") is None:
            why = e.get("reason") or "no batch to estimate"
            return triggers.TriggerResult("performance", None, prof.performance_threshold, False,
                                          f"performance not estimated: {why}", source="estimated")
        return triggers.performance_trigger(e["value"], **common, source="estimated", band=(e["low"], e["high"]),
                                            batch=e["batch"])
    if source == "both":
        return triggers.performance_trigger(measured, **common, source="both", estimated=newest_estimate)
    return triggers.performance_trigger(measured, **common)


def _trigger_history(scored: list[dict], estimates: list[dict], source: str) -> list[float]:
    """The champion's metric history the step reports: measured values, or estimates for ``estimated`` — measured
    values too while the newest estimate is ``unreliable`` (a label shift it cannot see)."""
    if source == "estimated" and not (estimates and estimates[-1].get("unreliable")):
        return [e["value"] for e in estimates if e.get("value") is not None]
    return [e["value"] for e in scored]


def _degradation(scored: list[dict], estimates: list[dict], source: str, prof: Profile, info, *,
                 frames: dict[str, pd.DataFrame] | None = None, champion: ChampionScores | None = None,
                 features: list[str] = ()) -> triggers.TriggerResult:
    """Page-Hinkley on the measured history, the estimated one, or — for ``both`` — on each separately
    (never one series mixing the two: an estimate a little below the measured level would read as a
    decline), firing when either does.

    With ``triggers.degradation_detector`` a river detector, that detector instead reads the champion's
    per-row losses on the labelled rows of every batch it was scored on (``frames``, the current window's
    batches), batches in time order and rows by the time column."""
    t = prof.triggers
    if t.degradation_detector != "metric":
        from ..detectors import row_losses

        src, losses = prof.data, []
        for e in scored:
            frame = (frames or {}).get(e["batch"])
            if frame is None or champion is None or src.label not in frame:
                continue
            rows = frame[frame[src.label].notna()].sort_values(src.time_column, kind="stable")
            if len(rows):
                losses.append((e["batch"], row_losses(rows[src.label].to_numpy(), champion.scores(rows[list(features)]),
                                                      problem_type=champion.problem_type, classes=champion.class_labels)))
        return triggers.degradation_trigger([], delta=t.degradation_delta, threshold=t.degradation_lambda,
                                            min_history=t.min_history, detector=t.degradation_detector, losses=losses,
                                            level=t.detector_level, seed=prof.training.seed)
    common = dict(delta=prof.triggers.degradation_delta, threshold=prof.triggers.degradation_lambda,
                  min_history=prof.triggers.min_history, greater_is_better=info.greater_is_better)
    if source != "both":
        return triggers.degradation_trigger(_trigger_history(scored, estimates, source), **common, source=source)
    m = triggers.degradation_trigger(_trigger_history(scored, estimates, "measured"), **common, source="measured")
    e = triggers.degradation_trigger(_trigger_history(scored, estimates, "estimated"), **common, source="estimated")
    value = max((r.value for r in (m, e) if r.value is not None), default=None)
    return triggers.TriggerResult("degradation", value, prof.triggers.degradation_lambda, m.fired or e.fired,
                                  f"{m.reason}; {e.reason}", source="both")
