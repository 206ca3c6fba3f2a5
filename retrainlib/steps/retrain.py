"""Step 20: train and register a challenger (or say why not); fitting and registering a version, with its estimator."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import automl, data, estimate
from ..outputs import Analysis, Training
from ..records import plain
from ..training import CHILD_PROCESS, Trainer
from .context import StepContext, under_run_lock

__all__ = ["retrain_model", "fit_and_register", "newest_end"]


# --------------------------------------------------------------------------- step 20
@under_run_lock
def retrain_model(ctx: StepContext, *, trainer: Trainer = CHILD_PROCESS) -> Training:
    """Train and register a challenger when step 10 decided so; otherwise record why not (skipped).

    ``trainer`` fits: :data:`~retrainlib.training.CHILD_PROCESS` (a child process under the wall-clock
    guard), or a :class:`~retrainlib.fitcache.FitCache` that reuses an identical earlier fit.
    Every challenger trained is a retraining attempt: the registry records it, and the schedule
    trigger counts its interval from the newest batch the last attempt saw.
    """
    analysis = ctx.read(Analysis)
    decision = analysis.decision
    if not decision.retrain:
        out = Training.skip(f"decision was '{decision.status}': " + "; ".join(decision.reasons))
        ctx.write(out)
        return out
    windows = data.Windows.from_dict(analysis.windows)
    train_batches = data.batches_from_records([b.to_dict() for b in windows.train], ctx.paths)
    fitted = fit_and_register(ctx, train_batches, windows, parent=analysis.champion, trainer=trainer)
    version, result, metadata = fitted["version"], fitted["result"], fitted["metadata"]
    ctx.registry.record_attempt(version=version.name, run_id=ctx.run_id, data_end=metadata["data_end"])
    out = Training(
        status="trained",
        challenger=version.name,
        parent=analysis.champion,
        strategy=windows.strategy,
        n_rows=metadata["n_rows"],
        slices=plain(metadata["slices"]),
        features=list(result.features),
        leaderboard=plain(result.leaderboard.to_dict(orient="records")),
        wall_seconds=result.wall_seconds,
        fit_seconds=result.fit_seconds,
        cpu_seconds=result.cpu_seconds,
        time_limit=result.time_limit,
        time_limit_binding=result.time_limit_binding,
        settings=plain(result.settings),
        resources=plain(result.resources.to_dict()),
        warnings=list(result.warnings),
        version_bytes=version.size_bytes,
        estimator=plain(fitted["estimator"].summary()),
        fit_cache=trainer.provenance(),
    )
    ctx.write(out)
    return out


def _fit_estimator(ctx: StepContext, predictor_dir: Path, windows: data.Windows, train_batches, features: list[str]):
    """The challenger's label-free estimator, calibrated on the labelled holdout rows it did not train on.

    It is stored in the version folder (checksummed with it): when the version is promoted, its
    estimator is promoted with it. A version refit on the holdout too (``refit_full``) has no such
    rows: its estimator says so instead of estimating.
    """
    prof, src = ctx.profile, ctx.profile.data
    predictor = automl.load_predictor(predictor_dir, strict=True)
    problem_type, classes, _ = automl.model_facts(predictor)
    trained = {b.path for b in train_batches}
    calibration = [b for b in windows.holdout if b.path not in trained]
    holdout_b = data.batches_from_records([b.to_dict() for b in calibration], ctx.paths)
    holdout = (data.load_batches(holdout_b, ctx.paths, src, require_label=False) if holdout_b
               else pd.DataFrame(columns=[*features, src.label]))
    if src.label in holdout:
        holdout = holdout[holdout[src.label].notna()]
        y = holdout[src.label]
    else:
        holdout, y = holdout.iloc[:0], pd.Series([], dtype=float)
    return estimate.fit_estimator(
        problem_type=problem_type, metric=prof.training.eval_metric, y_true=y.to_numpy(),
        scores=automl.predict_scores(predictor, holdout[features]) if len(holdout) else np.array([]),
        features=holdout[features], classes=classes,
        calibration_batches=[b.path for b in calibration], trained_batches=sorted(trained),
        seed=prof.training.seed,
    )


def _borrowed_estimator(ctx: StepContext, validated: str, features: list[str]):
    """The validated version's estimator for its refit on training + holdout rows: the refit has no
    labelled rows left that it did not train on, so it borrows the calibration the validated
    configuration earned on the holdout, and its checks name where the calibration came from.

    Borrowed only where the refit has every input the estimator reads: an estimator that reads features
    (direct loss estimation) fitted on a column the refit did not keep (a refit whose window dropped the
    batch where a flag varied drops that flag) would be asked for a column the champion does not have.
    The refit then carries no estimator, and says why. A refit with more columns than the estimator reads
    (its window kept a column the validated model's dropped) borrows it: the estimator reads only its own.
    """
    est = ctx.registry.estimator(validated)
    if est is None:
        return _no_estimator(ctx, f"the validated version {validated} has no estimator for its refit to borrow")
    columns = list((getattr(est, "state", None) or {}).get("columns") or [])
    gone = sorted(set(columns) - set(features))
    if gone:
        return _no_estimator(ctx, f"the validated version {validated}'s estimator reads other inputs than its refit "
                                  f"(the refit lacks {', '.join(gone)}), and the refit has no rows left that it did "
                                  f"not train on to calibrate one of its own; measured performance only until the "
                                  f"next challenger")
    est.checks = {**est.checks, "borrowed_from": validated,
                  "note": f"calibrated with {validated} on its holdout; this refit trained on those rows too"}
    return est


def _no_estimator(ctx: StepContext, reason: str):
    """An estimator that does not estimate, saying ``reason``."""
    none = estimate.fit_estimator(problem_type=ctx.profile.training.problem_type or "binary",
                                  metric=ctx.profile.training.eval_metric, y_true=np.array([]), scores=np.array([]))
    none.reason = reason
    return none


def _champion_bytes(ctx: StepContext, champion: str | None) -> int | None:
    """The champion's size on disk: what a new version will take, for the free-disk check."""
    return ctx.registry.version(champion).size_bytes if champion else None


def fit_and_register(ctx: StepContext, batches: list, windows: data.Windows, *, parent: str | None,
                      trainer: Trainer = CHILD_PROCESS, extra: dict[str, Any] | None = None, borrow_estimator: str | None = None) -> dict[str, Any]:
    """Fit the profile's configuration on the labelled rows of ``batches`` and store it as a new version.

    Its label-free estimator is calibrated on the holdout rows it did not train on; a refit on the
    holdout too (``borrow_estimator``: the validated version) carries the validated version's
    estimator instead, and says so.
    """
    prof, src = ctx.profile, ctx.profile.data
    frame = data.load_batches(batches, ctx.paths, src, max_rows=prof.training.max_rows)
    frame = frame[frame[src.label].notna()].reset_index(drop=True)
    features = data.feature_columns(frame, src)
    ctx.registry.path.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"fit-{ctx.run_id}-"))
    try:
        result = trainer.fit(frame[features + [src.label]], profile=prof, work_dir=work / "fit", disk_path=ctx.registry.path,
                     version_bytes=_champion_bytes(ctx, parent))
        trained_at = data.parse_as_of(ctx.as_of)
        metadata = {
            "parent": parent,
            "run_id": ctx.run_id,
            "trained_at": (trained_at.isoformat() if trained_at is not None else dt.datetime.now(dt.timezone.utc).isoformat()),
            "strategy": windows.strategy,
            "data_end": newest_end(windows),
            "slices": [b.to_dict() for b in batches],
            "n_rows": int(len(frame)),
            "training_fingerprint": data.frame_fingerprint(frame[features + [src.label]]),
            "label": src.label,
            "features": list(result.features),
            "inputs": data.column_kinds(frame, features),  # the data contract the schema gate compares
            "importance": result.importance,
            "eval_metric": prof.training.eval_metric,
            "settings": result.settings,
            "time_limit_binding": result.time_limit_binding,
            "fit_seconds": result.fit_seconds,
            "cpu_seconds": result.cpu_seconds,
            "software": automl.software_versions(),
            "profile": prof.name,
            **(extra or {}),
        }
        lb = work / "leaderboard.csv"
        result.leaderboard.to_csv(lb, index=False)
        estimator = (_borrowed_estimator(ctx, borrow_estimator, list(result.features)) if borrow_estimator
                     else _fit_estimator(ctx, result.predictor_dir, windows, batches, list(result.features)))
        est_file = estimator.save(work / estimate.ESTIMATOR_FILE)
        version = ctx.registry.add_version(result.predictor_dir, metadata, run_id=ctx.run_id,
                                           extra_files={"leaderboard.csv": lb, estimate.ESTIMATOR_FILE: est_file})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"version": version, "result": result, "metadata": metadata, "estimator": estimator}


def newest_end(windows: data.Windows) -> str:
    """The newest batch end a run saw, labelled or not."""
    return max(b.end for b in (*windows.holdout, *windows.current, *windows.train))
