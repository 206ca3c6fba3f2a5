"""One replayed playbook run at the end of one batch: the four steps as the notebooks call them, under the
strategy's retrain policy (``refit``: the newest window and no gates), as one per-batch record.

May touch: the strategy's scratch project home (its registry and the step's run folder)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pandas as pd

from .. import automl, data, steps
from ..errors import RetrainError
from ..outputs import Analysis, Promotion, Training, Validation
from ..scorecache import ChampionScores
from ..steps.promote import below_threshold
from ..training import Trainer
from .strategies import Strategy


def _policy(strategy: Strategy) -> steps.RetrainPolicy:
    """The strategy's retrain policy, with the reason its forced decisions record."""
    reason = {"always": f"backtest strategy '{strategy.name}': retrain on every batch",
              "never": f"backtest strategy '{strategy.name}': never retrain after the first champion"}.get(strategy.retrain, "")
    return steps.RetrainPolicy(strategy.retrain, reason)


def _replay_step(strategy: Strategy, prof_path: Path, home: Path, batch: data.Batch, index: int, trainer: Trainer,
                 *, policy: steps.RetrainPolicy) -> dict[str, Any]:
    """One playbook run at the end of ``batch``: the four steps, as the notebooks call them."""
    run_dir = home / "runs" / f"{index + 1:04d}-{Path(batch.name).stem}"
    ctx = steps.open_step(str(prof_path), run_dir=str(run_dir), home=str(home), as_of=batch.end)
    serving = ctx.registry.champion()
    seconds: dict[str, float] = {}

    t0 = time.monotonic()
    analysis = steps.analyze_drift(ctx, policy=policy)
    seconds["analyze"] = time.monotonic() - t0
    value = _serving_value(ctx, analysis, batch, serving)
    if not strategy.gates:
        _train_on_newest_window(ctx)

    t0 = time.monotonic()
    trained = steps.retrain_model(ctx, trainer=trainer)
    seconds["retrain"] = time.monotonic() - t0
    t0 = time.monotonic()
    verdict = steps.validate_challenger(ctx) if strategy.gates else _skip_validation(ctx, strategy)
    seconds["validate"] = time.monotonic() - t0
    t0 = time.monotonic()
    promoted = (steps.promote_or_rollback(ctx, trainer=trainer) if strategy.gates
                else _deploy_without_gates(ctx, trained, strategy))
    seconds["promote"] = time.monotonic() - t0
    return {"strategy": strategy.name, "step": index + 1, **_record(ctx, batch, serving, value, analysis, trained,
                                                                     verdict, promoted, seconds), "run_dir": str(run_dir)}


def _serving_value(ctx: steps.StepContext, analysis: Analysis, batch: data.Batch, serving: str | None) -> float:
    """The serving champion's metric on ``batch`` as step 10 scored it (NaN without one), or from its labels when they
    come later in the run."""
    newest = analysis.detail.windows.visible[-1]  # the step's live windows (the JSON counts the visible batches)
    if Path(newest.path).name != batch.name:
        raise RetrainError(f"the replay at {batch.name} saw {newest.path} as its newest batch; batch end times must be distinct")
    scored = analysis.scored(newest.path, serving)
    if not scored and serving is not None and ctx.profile.data.label_delay_batches:
        scored = [{"value": _truth(ctx, serving, newest)}]  # its labels come later in the run; the backtest knows them
    return scored[-1]["value"] if scored else math.nan


def _record(ctx: steps.StepContext, batch: data.Batch, serving: str | None, value: float, analysis: Analysis,
            trained: Training, verdict: Validation, promoted: Promotion, seconds: dict[str, float]) -> dict[str, Any]:
    """The per-batch record of one replayed run: the batch, what each step decided, and each step's seconds."""
    decision, did_train = analysis.decision, trained.trained
    return {
        "batch": batch.name,
        "batch_start": pd.Timestamp(batch.start),
        "batch_end": pd.Timestamp(batch.end),
        "rows": batch.rows,
        "champion": serving,
        "value": value,
        "decision": decision.status,
        "fired": ",".join(t.name for t in decision.triggers if t.fired),
        "reasons": " | ".join(decision.reasons),
        "bootstrap": decision.status == "bootstrap",
        "trained": did_train,
        "challenger": trained.challenger,
        "fit_cache": trained.fit_cache,
        "cpu_seconds": trained.cpu_seconds if did_train else 0.0,
        "fit_seconds": trained.fit_seconds if did_train else 0.0,
        "verdict": verdict.decision,
        "gain_low": _gain_low(verdict),
        "action": promoted.action,
        "promoted": promoted.promoted,
        "stuck": bool(promoted.stuck),
        "below_threshold": below_threshold(ctx.profile, analysis.latest_metric()),
        "champion_after": promoted.champion_after,
        "replaced": promoted.champion_before if promoted.promoted and promoted.champion_before != promoted.champion_after else None,
        **{f"{name}_seconds": seconds[name] for name in ("analyze", "retrain", "validate", "promote")},
    }


def _gain_low(verdict: Validation) -> float:
    """The lower end of the paired bootstrap interval of the challenger's gain in the first metric (step 30's
    ``significance`` gate): above zero, its holdout showed it better; NaN without a challenger judged against a champion."""
    for g in verdict.gates:
        if g.get("name") == "significance":
            return float(g["value"]) if g.get("value") is not None else math.nan
    return math.nan


def _truth(ctx, version: str, batch: data.Batch) -> float:
    """The serving champion's metric on ``batch`` from its labels, which the replayed run does not see yet."""
    src, metric = ctx.profile.data, ctx.profile.training.eval_metric
    frame = data.load_batches([batch], ctx.paths, src)
    frame = frame[frame[src.label].notna()]
    predictor = ChampionScores(ctx.registry, version)  # loaded when a score is not cached
    features = ctx.registry.version(version).metadata["features"]
    classes = predictor.class_labels if predictor.problem_type != "regression" else None
    return automl.score(metric, predictor.problem_type, frame[src.label], predictor.scores(frame[features]), classes)


def _train_on_newest_window(ctx: steps.StepContext) -> None:
    """``refit``: move the training window forward over the holdout, so the fit sees the newest labelled batch.

    Rewrites step 10's ``windows.train`` in the run folder (step 20 reads it from there) to the newest
    batches of training window + holdout — as many as the playbook's window holds (``sliding_window``),
    or all of them — and says so in the file (``backtest_refit``).
    """
    analysis = ctx.read(Analysis)
    planned, holdout = analysis.window("train"), analysis.window("holdout")
    both = planned + [b for b in holdout if b not in planned]
    keep = len(planned) if analysis.strategy == "sliding_window" else len(both)
    ctx.write(analysis.with_train_window(both[-keep:], f"backtest strategy 'refit': trains on the newest {keep} batch(es), "
                                                      f"the holdout included (planned: {[b['path'] for b in planned]})"))


def _skip_validation(ctx: steps.StepContext, strategy: Strategy) -> Validation:
    out = Validation.skip(f"backtest strategy '{strategy.name}' deploys without gates")
    ctx.write(out)
    return out


def _deploy_without_gates(ctx: steps.StepContext, trained: Training, strategy: Strategy) -> Promotion:
    """``refit``: the new fit serves from the next batch on; retention as in a run."""
    reg, prof = ctx.registry, ctx.profile
    before = reg.champion()
    events = []
    if trained.trained:
        events = [reg.promote(trained.challenger, run_id=ctx.run_id,
                              reason=f"backtest strategy '{strategy.name}': deployed without gates").to_dict()]
    removed = reg.apply_retention(max_versions=prof.max_versions, retention_days=prof.backup_retention_days)
    out = Promotion("promoted" if events else "none", before, reg.champion(), events, retention_removed=list(removed),
                    versions=[v.name for v in reg.versions()], registry_bytes=reg.total_size_bytes())
    ctx.write(out)
    return out

