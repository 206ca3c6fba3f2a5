"""Step 40: promote a validated challenger (refit on training + holdout rows, smoke-tested), or put it on trial as the
shadow (``validation.shadow_batches``) and settle the shadow's trial; or roll back; then retention."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .. import automl, data
from ..outputs import Analysis, Promotion, Validation
from ..records import plain
from ..shadow import shown_better
from ..training import CHILD_PROCESS, Trainer
from .context import StepContext, under_run_lock
from .retrain import fit_and_register

__all__ = ["promote_or_rollback", "below_threshold", "STUCK_OUTCOMES"]


# --------------------------------------------------------------------------- step 40
@under_run_lock
def promote_or_rollback(ctx: StepContext, *, rollback: bool = False, rollback_to: str = "", reason: str = "",
                        trainer: Trainer = CHILD_PROCESS) -> Promotion:
    """Promote a validated challenger (with a fresh-process smoke test), or roll back when asked; then retention.

    With ``training.refit_full`` the validated configuration is fitted again on the training and
    holdout rows and that refit is the version stored, smoke-tested and promoted; the verdict is
    the validated model's and the record names both. A rejection that leaves a champion below
    ``performance_threshold`` after ``validation.stuck_after`` rejections in a row is ``stuck``.
    ``trainer`` (as in :func:`retrain_model`) fits the refit.

    With ``validation.shadow_batches`` a passing challenger (its refit) does not serve yet: it becomes the
    shadow (``shadow-started``; a shadow on trial is replaced) — with ``validation.shadow_when: uncertain`` only
    when its holdout could not show it better (:func:`retrainlib.shadow.shown_better`); one it did serves at once
    and ends the trial on hand as ``replaced``. First, the shadow on trial is settled as step
    10 judged it (:mod:`retrainlib.steps.shadow`): promoted with the same smoke test (``promoted-from-shadow``)
    or dropped (``shadow-dropped``); the action names that unless the challenger's own action says more.
    """
    reg, prof = ctx.registry, ctx.profile
    before = reg.champion()
    if rollback or rollback_to:
        ev = reg.roll_back(to=rollback_to or None, run_id=ctx.run_id, reason=reason or "rollback requested by the run's parameters")
        action, events, refit, stuck, shadow = "rolled-back", [ev.to_dict()], None, None, None
    else:
        action, events, refit, stuck, shadow = _act_on_verdict(ctx, trainer)
    removed = reg.apply_retention(max_versions=prof.max_versions, retention_days=prof.backup_retention_days)
    out = Promotion(action, before, reg.champion(), plain(events), plain(refit), plain(stuck), plain(removed),
                    [v.name for v in reg.versions()], reg.total_size_bytes(), plain(shadow))
    ctx.write(out)
    return out


def _act_on_verdict(ctx: StepContext, trainer: Trainer) -> tuple[str, list[dict], dict | None, dict | None, dict | None]:
    """Settle the shadow on trial, then act on step 30's verdict: deploy, reject or nothing; record the attempt and
    whether the champion is stuck. Returns the run's action, the registry's events, the refit, stuck and shadow."""
    reg = ctx.registry
    verdict = ctx.read(Validation)
    analysis = ctx.read(Analysis)
    shadow = _settle_shadow(ctx, analysis)
    events: list[dict] = list(shadow.pop("events", [])) if shadow else []
    refit: dict[str, Any] | None = None
    stuck: dict[str, Any] | None = None
    if verdict.skipped:
        action = "none"
    elif verdict.passed:
        action, deployed, refit, shadow = _deploy(ctx, verdict, analysis, shadow, trainer)
        events += deployed
    else:
        action = "rejected"
    if action != "none":
        reg.record_attempt_outcome(verdict.challenger, outcome=action, run_id=ctx.run_id,
                                   failed_gates=verdict.failed_gates(), reasons=verdict.reasons)
    if action == "rejected" or (verdict.skipped and ctx.read(Analysis).decision.status == "blocked-by-quality"):
        stuck = _stuck(ctx, ctx.read(Analysis))
    settled = shadow.get("settled") if shadow and shadow["outcome"] == "shadow-started" else shadow
    if settled and action != "promoted" and (settled["outcome"] in ("promoted-from-shadow", "auto-rolled-back")
                                             or (action in ("none", "rejected") and settled["outcome"] != "continue")):
        action = settled["outcome"]  # the run's outcome: a new champion from the shadow, or the shadow dropped
    return action, events, refit, stuck, shadow


def _deploy(ctx: StepContext, verdict: Validation, analysis: Analysis, shadow: dict[str, Any] | None,
            trainer: Trainer) -> tuple[str, list[dict], dict[str, Any] | None, dict[str, Any] | None]:
    """A passing challenger (its refit with ``training.refit_full``): promoted after its smoke test, or put on trial
    as the shadow. Returns the action, the registry's events, the refit and the shadow."""
    reg, prof = ctx.registry, ctx.profile
    holdout_b = data.batches_from_records(analysis.window("holdout"), ctx.paths)
    deploy, refit = verdict.challenger, None
    if prof.training.refit_full:
        refit = _refit_on_train_and_holdout(ctx, analysis, verdict.challenger, holdout_b, trainer)
        deploy = refit["version"]
    features = reg.version(deploy).metadata["features"]
    why = "first champion (bootstrap)" if verdict.decision == "bootstrap" else "passed every validation gate"
    if refit:
        why += f" as {verdict.challenger}; refit on training + holdout rows as {deploy}"
    if prof.validation.shadow_batches and verdict.decision != "bootstrap" and reg.champion() is not None:
        shown = (shown_better(verdict.verdict.get("bootstrap") or {}, confidence=prof.validation.confidence,
                              needed=prof.validation.shadow_batches) if prof.validation.shadow_when == "uncertain" else None)
        if shown is None:
            return "shadow-started", [], refit, _start_shadow(ctx, deploy, verdict.challenger, why, settled=shadow,
                                                              data_end=analysis.window("holdout")[-1]["end"])
        why += f"; it serves without a shadow trial: {shown} (validation.shadow_when: uncertain)"
        res, ended = reg.promote_instead_of_shadow(deploy, _smoke_rows(ctx, holdout_b, features), run_id=ctx.run_id,
                                                   reason=why)  # a trial on hand is moot: its champion is replaced
        if ended:
            shadow = {**(shadow or {}), "version": ended["version"], "outcome": "shadow-replaced", "replaced_by": deploy,
                      "reason": ended["reason"]}
        return "promoted" if res.promoted else "auto-rolled-back", [e.to_dict() for e in res.events], refit, shadow
    res = reg.promote_verified(deploy, _smoke_rows(ctx, holdout_b, features), run_id=ctx.run_id, reason=why)
    return "promoted" if res.promoted else "auto-rolled-back", [e.to_dict() for e in res.events], refit, shadow


def _settle_shadow(ctx: StepContext, analysis: Analysis) -> dict[str, Any] | None:
    """Act on step 10's verdict on the shadow: promote it (smoke test and all), drop it, or let its trial go on."""
    trial, reg = analysis.shadow, ctx.registry
    if not trial or reg.shadow() != trial["version"]:
        return None
    verdict = trial["judgement"]
    common = {"version": trial["version"], "champion": trial["champion"], "reason": verdict["reason"],
              "batches": len(trial["batches"]), "needed": trial["needed"]}
    if verdict["decision"] == "promote":
        holdout_b = data.batches_from_records(analysis.window("holdout"), ctx.paths)
        sample = _smoke_rows(ctx, holdout_b, reg.version(trial["version"]).metadata["features"])
        res, _ = reg.promote_shadow(sample, run_id=ctx.run_id, reason=f"promoted from shadow: {verdict['reason']}")
        return {**common, "outcome": "promoted-from-shadow" if res.promoted else "auto-rolled-back",
                "events": [e.to_dict() for e in res.events]}
    if verdict["decision"] == "drop":
        reg.drop_shadow(run_id=ctx.run_id, reason=verdict["reason"])
        return {**common, "outcome": "shadow-dropped"}
    return {**common, "outcome": "continue"}


def _start_shadow(ctx: StepContext, version: str, validated: str, why: str, *, settled: dict | None,
                  data_end: str) -> dict[str, Any]:
    """Put the passing challenger's deployable version on trial (a shadow still on trial is replaced); its trial
    counts the batches after ``data_end``, the newest batch its validation saw."""
    n = ctx.profile.validation.shadow_batches
    started = ctx.registry.start_shadow(version, needed=n, run_id=ctx.run_id, validated=validated, data_end=data_end,
                                        reason=why + f"; on trial beside the champion for {n} batch(es)")
    return {"outcome": "shadow-started", "version": version, "champion": started["champion"], "needed": n,
            "reason": started["reason"], "replaced": settled["version"] if settled and settled["outcome"] == "continue" else None,
            "settled": settled}


SMOKE_ROWS = 200


def _smoke_rows(ctx: StepContext, holdout_b: list, features: list[str], n: int = SMOKE_ROWS) -> pd.DataFrame:
    """The oldest ``n`` holdout rows the smoke test predicts on, reading only as many batches as it takes."""
    frames, rows = [], 0
    for b in holdout_b:
        frames.append(data.load_batches([b], ctx.paths, ctx.profile.data)[features])
        rows += len(frames[-1])
        if rows >= n:
            break
    return pd.concat(frames, ignore_index=True).head(n)


def _refit_on_train_and_holdout(ctx: StepContext, analysis: Analysis, validated: str, holdout_b: list,
                                trainer: Trainer = CHILD_PROCESS) -> dict[str, Any]:
    """The validated configuration fitted again, with the same settings, on training + holdout rows —
    for ``sliding_window`` the newest window of them (the window moves forward over the holdout)."""
    windows = data.Windows.from_dict(analysis.windows)
    meta = ctx.registry.version(validated).metadata
    train_b = data.batches_from_records(meta["slices"], ctx.paths)
    seen = {b.path for b in train_b}
    batches = train_b + [b for b in holdout_b if b.path not in seen]
    t = ctx.profile.training  # a sliding window slides over the holdout: the same span, its newest batches
    if windows.strategy == "sliding_window" and t.window_days is not None:
        start = max(pd.Timestamp(b.end) for b in batches) - pd.Timedelta(days=t.window_days)
        batches = [b for b in batches if pd.Timestamp(b.end) > start]
    elif windows.strategy == "sliding_window":
        batches = batches[-t.window_batches:]
    fitted = fit_and_register(ctx, batches, windows, parent=meta.get("parent"), trainer=trainer,
                               extra={"refit_of": validated, "validated_version": validated}, borrow_estimator=validated)
    return {"version": fitted["version"].name, "validated": validated, "n_rows": fitted["metadata"]["n_rows"],
            "slices": fitted["metadata"]["slices"], "fit_seconds": fitted["result"].fit_seconds}


def _stuck(ctx: StepContext, analysis: Analysis) -> dict[str, Any] | None:
    """The champion is below performance_threshold and the last ``stuck_after`` attempts were all rejected
    or blocked by broken data (:data:`STUCK_OUTCOMES`)."""
    prof = ctx.profile
    value = analysis.latest_metric()
    champion = analysis.champion
    if value is None or champion is None:
        return None
    gib = automl.metric_info(prof.training.eval_metric, prof.training.problem_type or "binary").greater_is_better
    if not below_threshold(prof, value):
        return None
    streak = []  # rejections and blocks in a row, newest first (one rule with the backtest's acceptance check)
    for a in reversed(ctx.registry.attempts()):
        if a.get("outcome") not in STUCK_OUTCOMES:
            break
        streak.append(a)
    limit = prof.validation.stuck_after
    if len(streak) < limit:
        return None
    counts: dict[str, int] = {}
    for a in streak:
        for g in (["blocked by data quality"] if a.get("outcome") == "blocked" else a.get("failed_gates") or []):
            counts[g] = counts.get(g, 0) + 1
    gate, n = max(counts.items(), key=lambda kv: kv[1]) if counts else ("unknown", 0)
    latest = (streak[0].get("reasons") or [""])[0]  # the newest rejection's first reason, with its figures
    word = "below" if gib else "above"
    reason = (
        f"stuck: champion {champion} {prof.training.eval_metric} {value:.4g} is {word} performance_threshold "
        f"{prof.performance_threshold:g} and the last {len(streak)} attempts were rejected or blocked "
        f"({', '.join(_attempt_name(a) for a in reversed(streak))}; validation.stuck_after {limit}); "
        f"the gate that keeps rejecting is {gate} ({n} of {len(streak)})" + (f": {latest}" if latest else "")
    )
    return {"champion": champion, "metric": prof.training.eval_metric, "value": value,
            "threshold": prof.performance_threshold, "rejections": len(streak), "stuck_after": limit,
            "gate": gate, "gate_count": n, "versions": [_attempt_name(a) for a in reversed(streak)], "reason": reason}


#: attempt outcomes that make up a stuck streak: a challenger rejected, or a run that broken data blocked
STUCK_OUTCOMES = ("rejected", "blocked")


def below_threshold(prof, value: float | None) -> bool | None:
    """Whether the champion's measured ``value`` is worse than ``performance_threshold`` (None: not measured).
    The stuck rule's first half, read by step 40 and by the backtest's acceptance check alike."""
    if value is None:
        return None
    gib = automl.metric_info(prof.training.eval_metric, prof.training.problem_type or "binary").greater_is_better
    return bool(value < prof.performance_threshold if gib else value > prof.performance_threshold)


def _attempt_name(attempt: dict) -> str:
    """A rejected challenger's version, or ``blocked (<data end>)`` for a blocked run."""
    return attempt.get("version") or f"blocked ({str(attempt.get('data_end', ''))[:10]})"
