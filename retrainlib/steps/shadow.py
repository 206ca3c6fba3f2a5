"""Step 10's shadow trial: shadow and champion scored on the same labelled rows of each new batch, and the verdict.

With a shadow on trial (:meth:`Registry.shadow_record`, ``validation.shadow_batches``), step 10 scores it
and the champion on every labelled batch newer than both the shadow's training rows and the holdout it
was validated on, and not yet scored for it, appends those rows
to the registry (``shadows.jsonl``, once per batch), and judges the pooled rows so far with
:func:`retrainlib.shadow.judge`: ``promote``, ``drop`` or ``continue``. Step 40 acts on that verdict
(:func:`retrainlib.steps.promote.promote_or_rollback`). The trial's record goes into step 10's output
(``Analysis.shadow``), so the run folder holds what was decided and replay compares it.

Batches whose labels have not arrived yet (``data.label_delay_batches``) cannot judge the trial; for
them the shadow's and the champion's predictions are recorded side by side in the run folder
(``10-shadow-predictions.parquet``: batch, row, each model's prediction) and summarised in the trial's
``unlabelled`` entries (rows, and how often the two agree, or their mean absolute difference), so the
labels can score them when they come.

May touch: the registry's ``shadows.jsonl`` (through the facade) and ``10-shadow-predictions.parquet`` in
the run folder; reads the batches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import automl, data
from ..records import plain
from ..scorecache import ChampionScores
from ..shadow import judge, paired_gain
from .context import StepContext

__all__ = ["shadow_trial", "shadow_summary", "shadow_table", "shadow_views", "PREDICTIONS_FILE"]

#: the shadow's and the champion's predictions on the batches still without labels, in the run folder
PREDICTIONS_FILE = "10-shadow-predictions.parquet"


def _labelled(ctx: StepContext, batches: list[data.Batch]) -> pd.DataFrame:
    label = ctx.profile.data.label
    frame = data.load_batches(batches, ctx.paths, ctx.profile.data)
    return frame[frame[label].notna()]


def _scores(ctx: StepContext, version: str, frame: pd.DataFrame) -> tuple[np.ndarray, list | None, str]:
    model = ChampionScores(ctx.registry, version)
    features = ctx.registry.version(version).metadata["features"]
    classes = model.class_labels if model.problem_type != "regression" else None
    return np.asarray(model.scores(frame[features])), classes, model.problem_type


def _predictions(scores: np.ndarray, classes: list | None) -> np.ndarray:
    """One prediction per row: the value (regression), or the most probable class."""
    if classes is None:
        return np.asarray(scores, dtype=float)
    if scores.ndim == 1:  # binary: the positive class's probability
        return np.where(scores >= 0.5, classes[-1], classes[0])
    return np.asarray(classes, dtype=object)[np.argmax(scores, axis=1)]


def _unlabelled(ctx: StepContext, batches: list[data.Batch], shadow: str, champion: str) -> list[dict[str, Any]]:
    """Shadow and champion predictions on ``batches`` (their labels not due yet), written to the run folder."""
    frames, out = [], []
    for b in batches:
        frame = data.load_batches([b], ctx.paths, ctx.profile.data, require_label=False)
        if frame.empty:
            continue
        (s_new, c_new, problem), (s_old, c_old, _) = _scores(ctx, shadow, frame), _scores(ctx, champion, frame)
        p_new, p_old = _predictions(s_new, c_new), _predictions(s_old, c_old)
        frames.append(pd.DataFrame({"batch": b.path, "row": np.arange(len(frame)), "shadow": p_new, "champion": p_old}))
        entry = {"batch": b.path, "batch_end": b.end, "n_rows": int(len(frame))}
        if problem == "regression":
            entry["mean_abs_difference"] = float(np.mean(np.abs(p_new.astype(float) - p_old.astype(float))))
        else:
            entry["agreement"] = float(np.mean(p_new.astype(str) == p_old.astype(str)))
        out.append(entry)
    if frames:
        table = pd.concat(frames, ignore_index=True)
        for col in ("shadow", "champion"):  # one type a column (classes may be numbers or text)
            if table[col].dtype == object:
                table[col] = table[col].astype(str)
        table.to_parquet(ctx.run_dir / PREDICTIONS_FILE, index=False)
    return out


def shadow_trial(ctx: StepContext, windows: data.Windows, champion: str | None) -> dict[str, Any] | None:
    """The shadow's trial as of this run (None without a shadow or a champion); new batches recorded in the registry."""
    reg, prof = ctx.registry, ctx.profile
    start = reg.shadow_record()
    if start is None or champion is None:
        return None
    shadow, metric = start["version"], prof.training.eval_metric
    trained_end = max(pd.Timestamp(s["end"]) for s in reg.version(shadow).metadata["slices"])
    if start.get("data_end"):  # the holdout it was validated on is no evidence twice
        trained_end = max(trained_end, pd.Timestamp(start["data_end"]))
    labelled_end = pd.Timestamp(windows.holdout[-1].end)  # newer batches wait for their labels
    done = {r["batch"] for r in reg.shadow_batches()}
    todo = [b for b in windows.visible if trained_end < pd.Timestamp(b.end) <= labelled_end and b.path not in done]
    rows = []
    for b in todo:
        frame = _labelled(ctx, [b])
        if frame.empty:
            continue
        y = frame[prof.data.label].to_numpy()
        (s_new, c_new, problem), (s_old, c_old, _) = _scores(ctx, shadow, frame), _scores(ctx, champion, frame)
        rows.append({"version": shadow, "champion": champion, "batch": b.path, "batch_end": b.end, "n_rows": int(len(frame)),
                     "metric": metric, "shadow_value": float(automl.score(metric, problem, y, s_new, c_new)),
                     "champion_value": float(automl.score(metric, problem, y, s_old, c_old)), "run_id": ctx.run_id})
    reg.record_shadow_batches(rows)
    pooled = [r for r in reg.shadow_batches() if r["champion"] == champion]  # a rollback by hand starts the count again
    needed = int(start.get("needed") or prof.validation.shadow_batches or 1)
    settings = prof.validation
    scored = {r["batch"] for r in pooled}
    frame = _labelled(ctx, [b for b in windows.visible if b.path in scored]) if pooled else None

    def gain_at(level: float) -> dict[str, Any]:
        y = frame[prof.data.label].to_numpy()
        (s_new, c_new, problem), (s_old, c_old, _) = _scores(ctx, shadow, frame), _scores(ctx, champion, frame)
        gib = automl.metric_info(metric, problem).greater_is_better
        return paired_gain(metric, problem, y, (s_new, c_new), (s_old, c_old), greater_is_better=gib,
                           samples=settings.bootstrap_samples, confidence=level, seed=prof.training.seed)

    waiting = [b for b in windows.visible if pd.Timestamp(b.end) > max(labelled_end, trained_end)]
    unlabelled = _unlabelled(ctx, waiting, shadow, champion)
    verdict = judge(len(pooled), needed, gain_at, improvement_threshold=prof.improvement_threshold,
                    confidence=settings.confidence, fresher_challenger=settings.fresher_challenger,
                    require_significance=settings.require_significance, metric=metric)
    return plain({"version": shadow, "champion": champion, "since": start["time"], "started_by": start.get("run_id"),
                  "needed": needed, "batches": [{k: r[k] for k in ("batch", "batch_end", "n_rows", "shadow_value",
                                                                   "champion_value")} for r in pooled],
                  "new_batches": [r["batch"] for r in rows], "unlabelled": unlabelled, "judgement": verdict.to_dict()})



def shadow_summary(analysis) -> str:
    """One line for notebook 10: the shadow on trial and the running test's verdict, or that there is none."""
    trial = analysis.shadow
    if not trial:
        return "no shadow on trial (validation.shadow_batches is off, or no challenger awaits its trial)"
    j = trial["judgement"]
    return (f"shadow {trial['version']} beside champion {trial['champion']} since {trial['since'][:19]}: "
            f"{len(trial['batches'])} of {trial['needed']} batch(es) scored; verdict {j['decision']}: {j['reason']}")


def shadow_table(analysis) -> pd.DataFrame:
    """Champion against shadow per batch of the trial (empty without a shadow): notebook 10's table."""
    rows = (analysis.shadow or {}).get("batches") or []
    frame = pd.DataFrame(rows, columns=["batch", "batch_end", "n_rows", "champion_value", "shadow_value"])
    return frame.assign(shadow_gain=frame["shadow_value"] - frame["champion_value"])


def shadow_views(analysis) -> list:
    """What notebook 10 shows of the shadow: the summary line, and the per-batch table while a trial runs."""
    return [shadow_summary(analysis), *([shadow_table(analysis)] if analysis.shadow else [])]
