"""Step 10 measures the serving champion: its metric estimated without labels, and scored where labels arrived."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .. import automl, data, estimate
from ..records import plain
from .context import StepContext

__all__ = ["estimate_champion", "evaluate_champion"]


def estimate_champion(ctx: StepContext, predictor, champion: str, meta: dict, windows: data.Windows,
                       frames: dict[str, pd.DataFrame]) -> list[dict]:
    """Estimate the champion's metric without labels on every current batch it did not train on.

    Each new batch is first estimated, with labels hidden, by the estimator as it stands; that estimate
    is the one judged when the batch's labels arrive (``estimates.jsonl``). Then, when labelled batches
    the champion did not train on are newer than its estimator's calibration, the estimator is
    recalibrated on all of them (the current window's labelled batches; many rows keep the level
    steady), and the revision is appended to
    ``estimators.jsonl`` (the version folder stays as registered). The rows returned — the series the
    triggers read — all come from the newest revision, so a trend compares estimates of one estimator.
    A champion without a usable estimator gets rows that say why.

    Past a warm-up, each band is set by the estimator's track record on this stream (:func:`estimate.widen`: the
    judged estimates in ``evaluations.jsonl`` of batches labelled by now). Each newly labelled batch's labels are
    compared with what the estimator as it stood (before it saw them) expected (``label_check`` on its row, recorded
    with its evaluation as ``label_shift``); while the newest such check shows a label shift, every row carries
    ``unreliable: label shift …`` (the triggers then fall back to measured performance) — until the labels of a
    later batch agree with the estimator recalibrated after the shift.
    """
    trained = {s["path"] for s in meta["slices"]}
    todo = [b for b in windows.current if b.path not in trained]
    if not todo:
        return []
    logged = ctx.registry.estimates(champion)
    estimator = ctx.registry.estimator(champion)
    labelled_end = windows.holdout[-1].end if windows.holdout else None
    calibration = [b for b in todo if labelled_end is not None and b.end <= labelled_end]  # every labelled row it did not train on
    c = _Champion(ctx, predictor, champion, meta, frames, estimate.track_record(
        ctx.registry.evaluations(), metric=ctx.profile.training.eval_metric, labelled_end=labelled_end))
    known = set(estimator.calibration_batches) if estimator is not None else set()
    arrived = {b.path: _label_check(c, b, estimator) for b in calibration if b.path not in known}  # labels new since its calibration
    unreliable = _unreliable(c, calibration, arrived)
    seen = {e["batch"] for e in logged}
    first = [_estimate_row(c, b, estimator, unreliable) for b in todo if b.path not in seen]
    ctx.registry.record_estimates(first)
    if calibration and not {b.path for b in calibration} <= known:
        estimator = _recalibrate(c, estimator, calibration, trained)
    revision = estimator.revision if estimator is not None else 0
    current = {e["batch"]: e for e in [*logged, *first] if e.get("revision", 0) == revision}
    again = [_estimate_row(c, b, estimator, unreliable) for b in todo if b.path not in current]
    ctx.registry.record_estimates(again)
    current.update({e["batch"]: e for e in again})
    out = []
    for b in todo:
        r = {**current[b.path], "unreliable": unreliable if current[b.path].get("value") is not None else ""}
        if arrived.get(b.path):
            r["label_check"] = arrived[b.path]
        out.append(r)
    return out


@dataclass(frozen=True)
class _Champion:
    """The serving champion, the batches it is estimated on and its estimator's track record: what each step reads."""

    ctx: StepContext
    predictor: Any
    version: str
    meta: dict
    frames: dict[str, pd.DataFrame]
    record: Any  # estimate.track_record: the judged estimates that set the bands

    @property
    def features(self) -> list[str]:
        return self.meta["features"]


def _estimate_row(c: _Champion, b, est, unreliable: str = "") -> dict:
    """The row of batch ``b`` estimated by ``est`` with its labels hidden (a row saying why when there is no estimator)."""
    metric = c.ctx.profile.training.eval_metric
    frame = c.frames[b.path][c.features]
    if est is None:
        e = estimate.unavailable(metric, f"champion {c.version} has no estimator (registered before label-free "
                                         "estimation, or without labelled holdout rows)", batch=b.path, n_rows=len(frame))
    else:
        e = estimate.widen(est.estimate(c.predictor.scores(frame), frame, batch=b.path), c.record)
    return {"version": c.version, "run_id": c.ctx.run_id, "batch_end": b.end,
            "revision": est.revision if est is not None else 0, **e.to_dict(),
            "unreliable": unreliable if e.value is not None else ""}


def _label_check(c: _Champion, b, est) -> dict | None:
    """The batch's labels against what ``est`` expected on it (``None`` without labels or a usable estimator)."""
    label = c.ctx.profile.data.label
    if est is None or not est.usable or label not in c.frames[b.path]:
        return None
    f = c.frames[b.path]
    f = f[f[label].notna()]
    return plain(estimate.label_check(est, c.predictor.scores(f[c.features]), f[label].to_numpy(),
                                      f[c.features], batch=b.path)) if len(f) else None


def _unreliable(c: _Champion, calibration: list, arrived: dict) -> str:
    """Why the estimates are unreliable ("" when they are not).

    The newest labels checked against an estimator that had not seen them (this run's, else the record's): a shift
    there leaves the estimates unreliable until later labels agree with a recalibration made after it.
    """
    checks = [r for r in c.ctx.registry.evaluations(c.version) if r.get("label_shift")] + [
        {"batch_end": b.end, "label_shift": arrived[b.path]} for b in calibration if arrived.get(b.path)]
    newest_check = max(checks, key=lambda r: str(r.get("batch_end")))["label_shift"] if checks else None
    return estimate.unreliable_reason(newest_check)


def _recalibrate(c: _Champion, estimator, calibration: list, trained: set[str]):
    """Refit the estimator on the labelled rows of ``calibration``; a usable revision is recorded and returned.

    Else the estimator as it stands is returned and keeps estimating.
    """
    src, predictor = c.ctx.profile.data, c.predictor
    rows = pd.concat([c.frames[b.path] for b in calibration])
    rows = rows[rows[src.label].notna()] if src.label in rows else rows.iloc[:0]
    revised = estimate.fit_estimator(
        problem_type=predictor.problem_type, metric=c.ctx.profile.training.eval_metric,
        y_true=rows[src.label].to_numpy() if len(rows) else [],
        scores=predictor.scores(rows[c.features]) if len(rows) else [], features=rows[c.features],
        classes=predictor.class_labels if predictor.problem_type != "regression" else None,
        calibration_batches=[b.path for b in calibration], trained_batches=sorted(trained), seed=c.ctx.profile.training.seed)
    if not revised.usable:
        return estimator
    revised.revision = (estimator.revision if estimator is not None else 0) + 1
    revised.checks = {**revised.checks, "recalibrated_by": c.ctx.run_id}
    c.ctx.registry.record_estimator(c.version, revised, run_id=c.ctx.run_id)
    return revised


def evaluate_champion(ctx: StepContext, predictor, champion: str, meta: dict, windows: data.Windows,
                       frames: dict[str, pd.DataFrame], estimates: list[dict] = ()) -> list[dict]:
    """Score the champion on every labelled current batch it has not been scored on; persist the rows.

    Where the batch was estimated before its labels arrived, the row also carries the estimator's
    own accuracy (``estimate``: estimated, band, error, inside the band).
    """
    estimated = {e["batch"]: e for e in estimates}
    checked = {e["batch"]: e["label_check"] for e in estimates if e.get("label_check")}  # labels against expectation
    for e in reversed(ctx.registry.estimates(champion)):  # judged: the first estimate, made before recalibrations
        estimated[e["batch"]] = e
    src, metric = ctx.profile.data, ctx.profile.training.eval_metric
    done = {e["batch"] for e in ctx.registry.evaluations(champion)}
    trained = {s["path"] for s in meta["slices"]}
    rows = []
    labelled_end = windows.holdout[-1].end  # newer batches still wait for labels (data.label_delay_batches)
    for b in windows.current:
        if b.path in done or b.path in trained or b.end > labelled_end:
            continue
        frame = frames[b.path]
        if src.label not in frame or frame[src.label].isna().all():
            continue  # no labels yet: say nothing rather than guess
        frame = frame[frame[src.label].notna()]
        if predictor.problem_type != "regression" and frame[src.label].nunique() < 2:
            continue  # one class: most metrics are undefined; the holdout check says so (_check_holdout)
        value = automl.score(metric, predictor.problem_type, frame[src.label], predictor.scores(frame[meta["features"]]),
                             predictor.class_labels if predictor.problem_type != "regression" else None)
        rows.append({"time": dt.datetime.now(dt.timezone.utc).isoformat(), "run_id": ctx.run_id, "version": champion,
                     "batch": b.path, "batch_end": b.end, "metric": metric, "value": value, "n_rows": int(len(frame))})
        if b.path in estimated:
            rows[-1]["estimate"] = estimate.compare(estimated[b.path], value)
        if b.path in checked:
            rows[-1]["label_shift"] = checked[b.path]
    if rows:
        ctx.registry.record_evaluations(rows)
    return rows
