"""Step 10 measures the serving champion: its metric estimated without labels, and scored where labels arrived."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from .. import automl, data, estimate
from .context import StepContext

__all__ = ["estimate_champion", "evaluate_champion"]


def estimate_champion(ctx: StepContext, predictor, champion: str, meta: dict, windows: data.Windows,
                       frames: dict[str, pd.DataFrame]) -> list[dict]:
    """Estimate the champion's metric without labels on every current batch it did not train on.

    An estimate is made once per batch, with labels hidden, and recorded in the registry
    (``estimates.jsonl``); a later run reuses it, so when labels arrive the estimate made before
    them is the one judged. A champion without a usable estimator gets rows that say why.
    """
    metric = ctx.profile.training.eval_metric
    trained = {s["path"] for s in meta["slices"]}
    todo = [b for b in windows.current if b.path not in trained]
    if not todo:
        return []
    done = {e["batch"]: e for e in ctx.registry.estimates(champion)}
    estimator = ctx.registry.estimator(champion) if any(b.path not in done for b in todo) else None
    out, new = [], []
    for b in todo:
        if b.path in done:
            out.append(done[b.path])
            continue
        frame = frames[b.path][meta["features"]]
        if estimator is None:
            e = estimate.unavailable(metric, f"champion {champion} has no estimator (registered before label-free "
                                             "estimation, or without labelled holdout rows)", batch=b.path, n_rows=len(frame))
        else:
            e = estimator.estimate(predictor.scores(frame), frame, batch=b.path)
        row = {"version": champion, "run_id": ctx.run_id, "batch_end": b.end, **e.to_dict()}
        out.append(row)
        new.append(row)
    ctx.registry.record_estimates(new)
    return out


def evaluate_champion(ctx: StepContext, predictor, champion: str, meta: dict, windows: data.Windows,
                       frames: dict[str, pd.DataFrame], estimates: list[dict] = ()) -> list[dict]:
    """Score the champion on every labelled current batch it has not been scored on; persist the rows.

    Where the batch was estimated before its labels arrived, the row also carries the estimator's
    own accuracy (``estimate``: estimated, band, error, inside the band).
    """
    estimated = {e["batch"]: e for e in estimates}
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
    if rows:
        ctx.registry.record_evaluations(rows)
    return rows
