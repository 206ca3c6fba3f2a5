"""What each notebook does, as one call per step.

Every playbook notebook opens a :class:`StepContext` from its parameters, calls its step function
and shows the result. Step functions read earlier steps' JSON from the run folder and write their
own (``<step>.json``); data flows one way: profile → notebook → library → run folder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import pandas as pd

from . import automl, data, drift, estimate, quality, triggers
from .durable import write_json_atomic
from .errors import RetrainError
from .paths import Paths
from .profiles import Profile, load_profile
from .records import plain
from .manifest import mark_abandoned
from .registry import RUN_LOCK_HELD_ENV, Registry
from .training import train_challenger

__all__ = [
    "StepContext",
    "open_step",
    "analyze_drift",
    "retrain_model",
    "validate_challenger",
    "promote_or_rollback",
    "read_output",
    "new_run_id",
    "STEP_FILES",
    "run_lock_of",
]

T = TypeVar("T")

STEP_FILES = {
    "analyze": "10-analyze-drift.json",
    "retrain": "20-retrain-model.json",
    "validate": "30-validate-challenger.json",
    "promote": "40-promote-or-rollback.json",
}


def new_run_id(profile_name: str, now: dt.datetime | None = None) -> str:
    """``<UTC timestamp>-<profile>``, e.g. ``20240310T120000Z-demo``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{profile_name}"


@dataclass
class StepContext:
    """Everything a step needs: the profile, the folders, the registry and the run folder."""

    profile: Profile
    profile_path: Path
    paths: Paths
    run_dir: Path
    registry: Registry
    as_of: str | None

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    def write(self, key: str, payload: dict[str, Any]) -> Path:
        path = self.run_dir / STEP_FILES[key]
        write_json_atomic(path, plain(payload), sort_keys=False)
        return path

    def save_figure(self, fig, name: str) -> Path:
        """Save a matplotlib figure as ``<run folder>/<name>.png`` (and keep it shown in the notebook)."""
        path = self.run_dir / f"{name}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        return path


def open_step(profile: str, run_dir: str = "", home: str = "", as_of: str = "", *, new_run: bool = False) -> StepContext:
    """Open a step from a notebook's parameters.

    With ``run_dir`` empty (an interactive session in JupyterLab), the first step (``new_run``) makes
    a new ``runs/<id>-<profile>-interactive`` folder and the later steps continue the newest one.
    """
    paths = Paths.discover(home or None)
    profile_path = paths.profile(profile)
    prof = load_profile(profile_path)
    automl.pin_threads(prof.training.num_cpus)
    registry = Registry(paths.resolve(prof.registry), prof.model_name)
    if run_dir:
        rd = Path(run_dir)
    elif new_run:
        rd = paths.runs / f"{new_run_id(prof.name)}-interactive"
    else:
        found = sorted(paths.runs.glob(f"*-{prof.name}-interactive"))
        if not found:
            raise RetrainError(
                f"no interactive run of profile '{prof.name}' in {paths.runs}: run 10-analyze-drift first, "
                "or set run_dir to the run folder to continue"
            )
        rd = found[-1]
    ctx = StepContext(prof, profile_path.resolve(), paths, rd.resolve(), registry, as_of or None)
    with run_lock_of(ctx):  # refuses (RunLocked) while another run goes on, before anything is written
        mark_abandoned(paths.runs, by=f"open_step {rd.name}")
        registry.recover()
    rd.mkdir(parents=True, exist_ok=True)
    return ctx


@contextlib.contextmanager
def run_lock_of(ctx: StepContext) -> Iterator[None]:
    """Hold the model's run lock for a step, unless the runner executing this run folder holds it already.

    ``retrain run`` takes the lock and tells its notebooks so (:data:`~retrainlib.registry.RUN_LOCK_HELD_ENV`);
    a step run by hand (JupyterLab, a hand-run papermill) takes it itself and raises
    :class:`~retrainlib.errors.RunLocked` at once while another run holds it.
    """
    if os.environ.get(RUN_LOCK_HELD_ENV) == str(ctx.run_dir):
        yield
        return
    with ctx.registry.run_lock(timeout=0):
        yield


def _under_run_lock(step: Callable[..., T]) -> Callable[..., T]:
    """A step function that runs under :func:`run_lock_of` its context."""

    @functools.wraps(step)
    def locked(ctx: StepContext, *args: Any, **kwargs: Any) -> T:
        with run_lock_of(ctx):
            return step(ctx, *args, **kwargs)

    return locked


def read_output(ctx: StepContext, key: str) -> dict[str, Any]:
    """An earlier step's JSON; a clear error when that step has not run in this run folder."""
    path = ctx.run_dir / STEP_FILES[key]
    if not path.exists():
        raise RetrainError(f"{path.name} is missing from {ctx.run_dir}: run the earlier step's notebook first")
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- step 10
@dataclass
class DriftAnalysis:
    """Step 10's result; frames are kept for plots and not written to JSON."""

    decision: triggers.Decision
    quality: Any
    drift: Any | None
    windows: data.Windows
    performance: dict[str, Any] | None
    evaluations: list[dict[str, Any]]
    target_drift: Any | None = None
    prediction_drift: Any | None = None
    champion: str | None = None
    estimates: list[dict[str, Any]] = field(default_factory=list)
    batch_quality: list = field(default_factory=list)  # a QualityReport per batch
    holdout_check: dict[str, Any] | None = None  # the holdout's own checks (see _check_holdout)
    reference: pd.DataFrame | None = field(default=None, repr=False)
    current: pd.DataFrame | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "champion": self.champion,
            "decision": self.decision.to_dict(),
            "quality": self.quality.to_dict(),
            "drift": self.drift.to_dict() if self.drift is not None else None,
            "target_drift": self.target_drift.to_dict() if self.target_drift is not None else None,
            "prediction_drift": self.prediction_drift.to_dict() if self.prediction_drift is not None else None,
            "performance": self.performance,
            "evaluations": self.evaluations,
            "estimates": self.estimates,
            "windows": self.windows.to_dict(),
            "batch_quality": [b.to_dict() for b in self.batch_quality],
            "holdout_check": self.holdout_check,
        }


def _load_checked(ctx: StepContext, batches, required: list[str], *, require_label: bool,
                  per_batch: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Load batches, stopping at a hard break (label or required column gone) named by its file.

    ``per_batch``, when given, also receives each file's own rows (for scoring batch by batch).
    """
    src = ctx.profile.data
    label = src.label if require_label else None

    def hard_breaks(frame: pd.DataFrame, batch: data.Batch) -> None:
        quality.check_hard_breaks(frame, label=label, required=required, source=batch.path)
        if per_batch is not None:
            per_batch[batch.path] = frame

    return data.load_batches(batches, ctx.paths, src, require_label=require_label, check=hard_breaks)


def _as_of_time(ctx: StepContext) -> pd.Timestamp:
    cut = data.parse_as_of(ctx.as_of)
    return cut if cut is not None else pd.Timestamp.now(tz="UTC").tz_localize(None)


@_under_run_lock
def analyze_drift(ctx: StepContext, *, force: bool | None = None, force_reason: str = "") -> DriftAnalysis:
    """Compare reference and current windows, measure the champion, and decide whether to retrain.

    ``force`` (a backtest strategy such as "never retrain" or "retrain every batch") replaces the
    policy's verdict with ``force_reason``; every trigger is still measured and recorded, and a
    bootstrap or a data-quality block still wins. ``None`` (the playbook) follows the policy.
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
        train_batches: dict[str, pd.DataFrame] = {}
        train = _load_checked(ctx, windows.train, required, require_label=True, per_batch=train_batches)
        q = quality.assess(train, reference=None, label=src.label, threshold=prof.data_quality_threshold,
                           required=required, ignore_columns=src.ignore_columns, source="training window")
        per_batch = _assess_batches(ctx, train_batches, reference=None, classes=None)
        holdout = _check_holdout(ctx, windows, train_batches, reference=train,
                                 classes=_label_classes(ctx, train[src.label]), required=required)
        passed, why = _quality_verdict(q, per_batch, holdout)
        decision = triggers.decide([], combine=combine, use=use, policy=prof.triggers.policy,
                                   quality_passed=passed, quality_reason=why, bootstrap=True)
        result = DriftAnalysis(decision, q, None, windows, None, [], current=train, batch_quality=per_batch,
                               holdout_check=holdout)
        ctx.write("analyze", result.to_dict())
        return result

    reference = _load_checked(ctx, windows.reference, required, require_label=True)
    current_batches: dict[str, pd.DataFrame] = {}
    current = _load_checked(ctx, windows.current, required, require_label=False, per_batch=current_batches)
    labelled_end = pd.Timestamp(windows.holdout[-1].end)  # rows after it wait for their labels (label_delay_batches)
    earlier = [b for b in visible if b.path not in {r.path for r in windows.reference} | set(current_batches)]
    classes = _label_classes(ctx, reference[src.label], earlier)
    q = quality.assess(current, reference=reference, label=src.label, threshold=prof.data_quality_threshold,
                       required=required, ignore_columns=src.ignore_columns, source="current window",
                       label_classes=classes, labels_due=(current[src.time_column] <= labelled_end).to_numpy(),
                       label_problem=prof.training.problem_type)
    late = {b.path for b in windows.current if pd.Timestamp(b.end) > labelled_end}
    per_batch = _assess_batches(ctx, current_batches, reference=reference, classes=classes, late=late)
    holdout = _check_holdout(ctx, windows, current_batches, reference=reference, classes=classes, required=required)
    quality_passed, quality_why = _quality_verdict(q, per_batch, holdout)
    report = drift.compare(reference[required], current[required], settings=prof.drift,
                           drift_threshold=prof.drift_threshold, importance=meta.get("importance"), seed=prof.training.seed)
    target = drift.target_drift(reference[src.label], current[src.label]) if src.label in current else None

    predictor = ctx.registry.load(champion)
    rng = np.random.default_rng(prof.training.seed)
    ref_s = reference.iloc[rng.permutation(len(reference))[:5000]]
    cur_s = current.iloc[rng.permutation(len(current))[:5000]]
    pred = drift.prediction_drift(automl.predict_scores(predictor, ref_s[required]), automl.predict_scores(predictor, cur_s[required]))

    estimates = _estimate_champion(ctx, predictor, champion, meta, windows, current_batches)
    evaluations = _evaluate_champion(ctx, predictor, champion, meta, windows, current_batches, estimates)
    info = automl.metric_info(prof.training.eval_metric, predictor.problem_type)
    newest = windows.holdout[-1].path
    scored = _dedup_by_batch(ctx.registry.evaluations(champion))  # the champion's history, one row per batch
    perf_value = next((e["value"] for e in scored if e["batch"] == newest), None)
    source = prof.triggers.performance_source
    newest_estimate = estimates[-1] if estimates else None
    history = _trigger_history(scored, estimates, source)

    days, since = _days_since_attempt(ctx, meta, windows)
    fired = [
        triggers.schedule_trigger(days, interval_days=prof.retraining_interval, since=since,
                                  slack_days=0.1 * _batch_spacing_days(visible)),
        triggers.drift_trigger(report.score, threshold=prof.drift_threshold,
                               joint_auc=report.multivariate.auc if report.multivariate else None,
                               joint_drifted=bool(report.multivariate and report.multivariate.drifted)),
        _performance(perf_value, newest, newest_estimate, source, prof, info),
        _degradation(scored, estimates, source, prof, info),
    ]
    decision = triggers.decide(fired, combine=combine, use=use, policy=prof.triggers.policy,
                               quality_passed=quality_passed, quality_reason=quality_why)
    if force is not None and decision.status in ("retrain", "no-retrain"):
        decision = triggers.Decision(force, "retrain" if force else "no-retrain", decision.policy,
                                     (force_reason or f"forced: retrain={force}",), decision.triggers)
    performance = {"metric": prof.training.eval_metric, "value": perf_value, "batch": newest,
                   "threshold": prof.performance_threshold, "history": history, "source": source,
                   "measured_history": [{"batch": e["batch"], "batch_end": e["batch_end"], "value": e["value"]} for e in scored],
                   "estimate": newest_estimate}
    result = DriftAnalysis(decision, q, report, windows, performance, evaluations, target, pred, champion,
                           estimates=estimates, batch_quality=per_batch, holdout_check=holdout, reference=reference, current=current)
    ctx.write("analyze", result.to_dict())
    return result


def _label_classes(ctx: StepContext, labels: pd.Series, earlier: list[data.Batch] | None = None) -> list | None:
    """The label's known classes for a classifier (``None`` for regression): what ``unseen_labels`` and
    ``new_labels`` compare with — the classes of ``labels`` and of every ``earlier`` labelled batch."""
    kind = ctx.profile.training.problem_type
    known = labels.dropna()
    if kind == "regression" or (kind is None and pd.api.types.is_float_dtype(known) and known.nunique() > 20):
        return None
    classes = dict.fromkeys(pd.unique(known))
    for b in earlier or ():  # only the label column of each file
        frame = data.read_columns(ctx.paths.resolve(b.path), [ctx.profile.data.label])
        classes.update(dict.fromkeys(pd.unique(frame.iloc[:, 0].dropna())) if frame.shape[1] else {})
    return list(classes)


def _assess_batches(ctx: StepContext, frames: dict[str, pd.DataFrame], *, reference: pd.DataFrame | None,
                    classes: list | None, late: set[str] = frozenset()) -> list:
    """Every batch judged on its own: a fault in one batch is not diluted by the others in its window.

    Batches in ``late`` (newer than the holdout: their labels are not due yet, ``data.label_delay_batches``)
    are judged without their label: unlabelled rows there are expected.
    """
    prof, src = ctx.profile, ctx.profile.data
    return quality.assess_batches(frames, reference=reference, label=src.label, threshold=prof.data_quality_threshold,
                                  ignore_columns=src.ignore_columns, label_classes=classes,
                                  label_problem=prof.training.problem_type, unlabelled=late)


def _check_holdout(ctx: StepContext, windows: data.Windows, frames: dict[str, pd.DataFrame], *,
                   reference: pd.DataFrame, classes: list | None, required: list[str]) -> dict[str, Any]:
    """The holdout's own checks, before anything is trained or validated on it.

    Its labelled rows must exist (and hold two classes or more for a classifier) and pass the
    quality checks against ``reference``.
    """
    prof, src = ctx.profile, ctx.profile.data
    todo = [b for b in windows.holdout if b.path not in frames]
    if todo:
        _load_checked(ctx, todo, required, require_label=False, per_batch=frames)
    files = ", ".join(b.path for b in windows.holdout)
    holdout = pd.concat([frames[b.path] for b in windows.holdout], ignore_index=True)
    labelled = holdout[holdout[src.label].notna()] if src.label in holdout else holdout.iloc[:0]
    out: dict[str, Any] = {"batches": [b.path for b in windows.holdout], "rows": int(len(holdout)),
                           "labelled_rows": int(len(labelled)), "classes": None, "quality": None, "problems": []}
    if len(labelled) == 0:
        out["problems"].append(f"the holdout {files} has no labelled row ({src.label!r} is empty or missing), so no "
                               f"challenger could be validated on it; wait for its labels, or make the holdout the newest "
                               f"labelled batches")
    else:
        if classes is not None:
            out["classes"] = int(labelled[src.label].nunique())
            if out["classes"] < 2:
                out["problems"].append(f"the holdout {files} holds one {src.label!r} class only "
                                       f"({quality._scalar(labelled[src.label].iloc[0])!r}); validation needs two or more; raise "
                                       f"training.holdout_batches or fix the labels in that file")
        q = quality.assess(labelled, reference=reference, label=src.label, threshold=prof.data_quality_threshold,
                           ignore_columns=src.ignore_columns, source=f"holdout {files}", label_classes=classes,
                           label_problem=prof.training.problem_type)
        out["quality"] = q.to_dict()
        if not q.passed:
            out["problems"].append(q.reason())
    out["passed"] = not out["problems"]
    return out


def _quality_verdict(window, per_batch: list, holdout: dict[str, Any]) -> tuple[bool, str]:
    """Whether the data may be trained and validated on, and if not, one line naming each file and check.

    The holdout comes first (nothing could be validated), then the first bad batch (it names the
    file to fix), then the window; whatever follows the first is named briefly, after "also".
    """
    found: list[tuple[str, str]] = [(f"data quality: {p}", p.split(";")[0]) for p in holdout["problems"]]
    bad = [b for b in per_batch if not b.passed]
    if bad:
        more = f" (and {len(bad) - 1} more batches)" if len(bad) > 1 else ""
        found.append((f"data quality of batch {bad[0].reason()}{more}",
                      f"batch {bad[0].source} failed {', '.join(bad[0].failed)}{more}"))
    if not window.passed:
        found.append((f"data quality of the {window.reason()}", f"the {window.source} failed {', '.join(window.failed)}"))
    if not found:
        return True, ""
    rest = [brief for _, brief in found[1:]]
    return False, found[0][0] + (f"; also {'; '.join(rest)}" if rest else "")

def _days_since_attempt(ctx: StepContext, meta: dict, windows: data.Windows) -> tuple[float, str]:
    """Days from the newest batch the last retraining attempt saw to the newest batch visible now.

    The attempt record (promoted or not) is the clock; a registry without one falls back to the
    champion's own record of the data it saw.
    """
    last = (ctx.registry.attempts() or [None])[-1]
    if last is not None:
        seen, since = last["data_end"], f"the data of the last retraining attempt ({last['version']}, {last['data_end'][:10]})"
    else:
        seen = meta.get("data_end") or max(s["end"] for s in meta["slices"])
        since = f"the data the champion saw ({seen[:10]})"
    return (pd.Timestamp(_newest_end(windows)) - pd.Timestamp(seen)).total_seconds() / 86400, since


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
    """The champion's metric history the step reports: measured values, or estimates for ``estimated``."""
    if source == "estimated":
        return [e["value"] for e in estimates if e.get("value") is not None]
    return [e["value"] for e in scored]


def _degradation(scored: list[dict], estimates: list[dict], source: str, prof: Profile, info) -> triggers.TriggerResult:
    """Page-Hinkley on the measured history, the estimated one, or — for ``both`` — on each separately
    (never one series mixing the two: an estimate a little below the measured level would read as a
    decline), firing when either does."""
    common = dict(delta=prof.triggers.degradation_delta, threshold=prof.triggers.degradation_lambda,
                  min_history=prof.triggers.min_history, greater_is_better=info.greater_is_better)
    if source != "both":
        return triggers.degradation_trigger(_trigger_history(scored, estimates, source), **common, source=source)
    m = triggers.degradation_trigger(_trigger_history(scored, estimates, "measured"), **common, source="measured")
    e = triggers.degradation_trigger(_trigger_history(scored, estimates, "estimated"), **common, source="estimated")
    value = max((r.value for r in (m, e) if r.value is not None), default=None)
    return triggers.TriggerResult("degradation", value, prof.triggers.degradation_lambda, m.fired or e.fired,
                                  f"{m.reason}; {e.reason}", source="both")


def _estimate_champion(ctx: StepContext, predictor, champion: str, meta: dict, windows: data.Windows,
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
            e = estimator.estimate(automl.predict_scores(predictor, frame), frame, batch=b.path)
        row = {"version": champion, "run_id": ctx.run_id, "batch_end": b.end, **e.to_dict()}
        out.append(row)
        new.append(row)
    ctx.registry.record_estimates(new)
    return out


def _evaluate_champion(ctx: StepContext, predictor, champion: str, meta: dict, windows: data.Windows,
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
        value = automl.score(metric, predictor.problem_type, frame[src.label], automl.predict_scores(predictor, frame[meta["features"]]),
                             predictor.class_labels if predictor.problem_type != "regression" else None)
        rows.append({"time": dt.datetime.now(dt.timezone.utc).isoformat(), "run_id": ctx.run_id, "version": champion,
                     "batch": b.path, "batch_end": b.end, "metric": metric, "value": value, "n_rows": int(len(frame))})
        if b.path in estimated:
            rows[-1]["estimate"] = estimate.compare(estimated[b.path], value)
    if rows:
        ctx.registry.record_evaluations(rows)
    return rows


# --------------------------------------------------------------------------- step 20
@_under_run_lock
def retrain_model(ctx: StepContext, *, fit_cache=None) -> dict[str, Any]:
    """Train and register a challenger when step 10 decided so; otherwise record why not.

    ``fit_cache`` (a :class:`retrainlib.fitcache.FitCache`) reuses an identical earlier fit.
    Every challenger trained is a retraining attempt: the registry records it, and the schedule
    trigger counts its interval from the newest batch the last attempt saw.
    """
    analysis = read_output(ctx, "analyze")
    decision = analysis["decision"]
    if not decision["retrain"]:
        out = {"status": "skipped", "reason": f"decision was '{decision['status']}': " + "; ".join(decision["reasons"])}
        ctx.write("retrain", out)
        return out
    windows = data.Windows.from_dict(analysis["windows"])
    train_batches = data.batches_from_records([b.to_dict() for b in windows.train], ctx.paths)
    fitted = _fit_and_register(ctx, train_batches, windows, parent=analysis["champion"], fit_cache=fit_cache)
    version, result, metadata = fitted["version"], fitted["result"], fitted["metadata"]
    ctx.registry.record_attempt(version=version.name, run_id=ctx.run_id, data_end=metadata["data_end"])
    out = {
        "status": "trained",
        "challenger": version.name,
        "parent": analysis["champion"],
        "strategy": windows.strategy,
        "n_rows": metadata["n_rows"],
        "slices": metadata["slices"],
        "features": list(result.features),
        "leaderboard": result.leaderboard.to_dict(orient="records"),
        "wall_seconds": result.wall_seconds,
        "fit_seconds": result.fit_seconds,
        "cpu_seconds": result.cpu_seconds,
        "time_limit": result.time_limit,
        "time_limit_binding": result.time_limit_binding,
        "settings": result.settings,
        "resources": result.resources.to_dict(),
        "warnings": list(result.warnings),
        "version_bytes": version.size_bytes,
        "estimator": fitted["estimator"].summary(),
    }
    if fit_cache is not None:
        out["fit_cache"] = "reused" if fit_cache.last_hit else "computed"
    ctx.write("retrain", out)
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


def _borrowed_estimator(ctx: StepContext, validated: str):
    """The validated version's estimator for its refit on training + holdout rows: the refit has no
    labelled rows left that it did not train on, so it borrows the calibration the validated
    configuration earned on the holdout, and its checks name where the calibration came from."""
    est = ctx.registry.estimator(validated)
    if est is None:
        none = estimate.fit_estimator(problem_type=ctx.profile.training.problem_type or "binary",
                                      metric=ctx.profile.training.eval_metric, y_true=np.array([]), scores=np.array([]))
        none.reason = f"the validated version {validated} has no estimator for its refit to borrow"
        return none
    est.checks = {**est.checks, "borrowed_from": validated,
                  "note": f"calibrated with {validated} on its holdout; this refit trained on those rows too"}
    return est


def _champion_bytes(ctx: StepContext, champion: str | None) -> int | None:
    """The champion's size on disk: what a new version will take, for the free-disk check."""
    return ctx.registry.version(champion).size_bytes if champion else None


def _fit_and_register(ctx: StepContext, batches: list, windows: data.Windows, *, parent: str | None,
                      fit_cache=None, extra: dict[str, Any] | None = None, borrow_estimator: str | None = None) -> dict[str, Any]:
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
        fit = fit_cache.train_challenger if fit_cache is not None else train_challenger
        result = fit(frame[features + [src.label]], profile=prof, work_dir=work / "fit", disk_path=ctx.registry.path,
                     version_bytes=_champion_bytes(ctx, parent))
        trained_at = data.parse_as_of(ctx.as_of)
        metadata = {
            "parent": parent,
            "run_id": ctx.run_id,
            "trained_at": (trained_at.isoformat() if trained_at is not None else dt.datetime.now(dt.timezone.utc).isoformat()),
            "strategy": windows.strategy,
            "data_end": _newest_end(windows),
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
        estimator = (_borrowed_estimator(ctx, borrow_estimator) if borrow_estimator
                     else _fit_estimator(ctx, result.predictor_dir, windows, batches, list(result.features)))
        est_file = estimator.save(work / estimate.ESTIMATOR_FILE)
        version = ctx.registry.add_version(result.predictor_dir, metadata, run_id=ctx.run_id,
                                           extra_files={"leaderboard.csv": lb, estimate.ESTIMATOR_FILE: est_file})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"version": version, "result": result, "metadata": metadata, "estimator": estimator}


def _newest_end(windows: data.Windows) -> str:
    """The newest batch end a run saw, labelled or not."""
    return max(b.end for b in (*windows.holdout, *windows.current, *windows.train))


# --------------------------------------------------------------------------- step 30
@_under_run_lock
def validate_challenger(ctx: StepContext):
    """Score champion and challenger on the same holdout and apply every gate; ``None`` when skipped."""
    from . import validation

    trained = read_output(ctx, "retrain")
    if trained["status"] != "trained":
        ctx.write("validate", {"status": "skipped", "reason": "no challenger was trained in this run"})
        return None
    analysis = read_output(ctx, "analyze")
    prof, src = ctx.profile, ctx.profile.data
    holdout_b = data.batches_from_records(analysis["windows"]["holdout"], ctx.paths)
    holdout = data.load_batches(holdout_b, ctx.paths, src)
    holdout = holdout[holdout[src.label].notna()]
    challenger_v = ctx.registry.version(trained["challenger"])
    champion = compared = analysis["champion"]
    champion_v = ctx.registry.version(champion) if champion else None
    # A challenger that trained on no row its champion (a refit) did not is the champion's own fit: it cannot
    # show what newer rows earn. The champion then stands as the model it was validated as, at the challenger's lag.
    stand_in = champion_v.metadata.get("validated_version") if champion_v else None
    if (stand_in and stand_in in {v.name for v in ctx.registry.versions()}
            and {b["path"] for b in challenger_v.metadata["slices"]} <= {b["path"] for b in champion_v.metadata["slices"]}):
        compared, champion_v = stand_in, ctx.registry.version(stand_in)
    verdict = validation.validate(
        ctx.registry.load(challenger_v.name),
        holdout,
        profile=prof,
        champion=ctx.registry.load(compared) if champion else None,
        challenger_dir=ctx.registry.predictor_path(challenger_v.name),
        champion_dir=ctx.registry.predictor_path(compared) if champion else None,
        challenger_meta=challenger_v.metadata,
        champion_meta=champion_v.metadata if champion_v else None,
        seed=prof.training.seed,
    )
    ctx.write("validate", {"status": "validated", "challenger": challenger_v.name, "champion": champion,
                           "compared_with": compared, "holdout": [b.to_dict() for b in holdout_b], **verdict.to_dict()})
    return verdict


# --------------------------------------------------------------------------- step 40
@_under_run_lock
def promote_or_rollback(ctx: StepContext, *, rollback: bool = False, rollback_to: str = "", reason: str = "",
                        fit_cache=None) -> dict[str, Any]:
    """Promote a validated challenger (with a fresh-process smoke test), or roll back when asked; then retention.

    With ``training.refit_full`` the validated configuration is fitted again on the training and
    holdout rows and that refit is the version stored, smoke-tested and promoted; the verdict is
    the validated model's and the record names both. A rejection that leaves a champion below
    ``performance_threshold`` after ``validation.stuck_after`` rejections in a row is ``stuck``.
    ``fit_cache`` (as in :func:`retrain_model`) reuses an identical earlier refit.
    """
    reg, prof = ctx.registry, ctx.profile
    before = reg.champion()
    events: list[dict] = []
    refit: dict[str, Any] | None = None
    stuck: dict[str, Any] | None = None
    if rollback or rollback_to:
        ev = reg.roll_back(to=rollback_to or None, run_id=ctx.run_id, reason=reason or "rollback requested by the run's parameters")
        action, events = "rolled-back", [ev.to_dict()]
    else:
        verdict = read_output(ctx, "validate")
        if verdict.get("status") == "skipped":
            action = "none"
        elif verdict["decision"] in ("promote", "bootstrap"):
            analysis = read_output(ctx, "analyze")
            holdout_b = data.batches_from_records(analysis["windows"]["holdout"], ctx.paths)
            holdout = data.load_batches(holdout_b, ctx.paths, prof.data)
            deploy = verdict["challenger"]
            if prof.training.refit_full:
                refit = _refit_on_train_and_holdout(ctx, analysis, verdict["challenger"], holdout_b, fit_cache)
                deploy = refit["version"]
            features = reg.version(deploy).metadata["features"]
            why = "first champion (bootstrap)" if verdict["decision"] == "bootstrap" else "passed every validation gate"
            if refit:
                why += f" as {verdict['challenger']}; refit on training + holdout rows as {deploy}"
            res = reg.promote_verified(deploy, holdout[features].head(200), run_id=ctx.run_id, reason=why)
            events = [e.to_dict() for e in res.events]
            action = "promoted" if res.promoted else "auto-rolled-back"
        else:
            action = "rejected"
        if action != "none":
            reg.record_attempt_outcome(verdict["challenger"], outcome=action, run_id=ctx.run_id,
                                       failed_gates=_failed_gates(verdict), reasons=verdict.get("reasons", []))
        if action == "rejected":
            stuck = _stuck(ctx, read_output(ctx, "analyze"))
    removed = reg.apply_retention(max_versions=prof.max_versions, retention_days=prof.backup_retention_days)
    out = {
        "action": action,
        "champion_before": before,
        "champion_after": reg.champion(),
        "events": events,
        "refit": refit,
        "stuck": stuck,
        "retention_removed": removed,
        "versions": [v.name for v in reg.versions()],
        "registry_bytes": reg.total_size_bytes(),
    }
    ctx.write("promote", out)
    return out


def _refit_on_train_and_holdout(ctx: StepContext, analysis: dict, validated: str, holdout_b: list,
                                fit_cache=None) -> dict[str, Any]:
    """The validated configuration fitted again, with the same settings, on training + holdout rows —
    for ``sliding_window`` the newest window of them (the window moves forward over the holdout)."""
    windows = data.Windows.from_dict(analysis["windows"])
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
    fitted = _fit_and_register(ctx, batches, windows, parent=meta.get("parent"), fit_cache=fit_cache,
                               extra={"refit_of": validated, "validated_version": validated}, borrow_estimator=validated)
    return {"version": fitted["version"].name, "validated": validated, "n_rows": fitted["metadata"]["n_rows"],
            "slices": fitted["metadata"]["slices"], "fit_seconds": fitted["result"].fit_seconds}


def _failed_gates(verdict: dict) -> list[str]:
    return [g["name"] + (f" ({g['metric']})" if g.get("metric") else "") for g in verdict.get("gates", [])
            if g.get("blocking") and not g.get("passed")]


def _stuck(ctx: StepContext, analysis: dict) -> dict[str, Any] | None:
    """The champion is below performance_threshold and the last ``stuck_after`` challengers were all rejected."""
    prof = ctx.profile
    perf = analysis.get("performance") or {}
    value = perf.get("value")
    if value is None and perf.get("history"):
        value = perf["history"][-1]
    champion = analysis.get("champion")
    if value is None or champion is None:
        return None
    gib = automl.metric_info(prof.training.eval_metric, prof.training.problem_type or "binary").greater_is_better
    below = value < prof.performance_threshold if gib else value > prof.performance_threshold
    if not below:
        return None
    streak = []
    for a in reversed(ctx.registry.attempts()):
        if a.get("outcome") != "rejected":
            break
        streak.append(a)
    limit = prof.validation.stuck_after
    if len(streak) < limit:
        return None
    counts: dict[str, int] = {}
    for a in streak:
        for g in a.get("failed_gates") or []:
            counts[g] = counts.get(g, 0) + 1
    gate, n = max(counts.items(), key=lambda kv: kv[1]) if counts else ("unknown", 0)
    latest = (streak[0].get("reasons") or [""])[0]  # the newest rejection's first reason, with its figures
    word = "below" if gib else "above"
    reason = (
        f"stuck: champion {champion} {prof.training.eval_metric} {value:.4g} is {word} performance_threshold "
        f"{prof.performance_threshold:g} and the last {len(streak)} challengers were rejected "
        f"({', '.join(a['version'] for a in reversed(streak))}; validation.stuck_after {limit}); "
        f"the gate that keeps rejecting is {gate} ({n} of {len(streak)})" + (f": {latest}" if latest else "")
    )
    return {"champion": champion, "metric": prof.training.eval_metric, "value": value,
            "threshold": prof.performance_threshold, "rejections": len(streak), "stuck_after": limit,
            "gate": gate, "gate_count": n, "versions": [a["version"] for a in reversed(streak)], "reason": reason}


# --------------------------------------------------------------------------- figures
def drift_figures(ctx: StepContext, analysis: DriftAnalysis) -> list:
    """Drift per feature and the most drifted distributions; on a first run, the training window per batch."""
    import matplotlib.pyplot as plt

    figs = []
    if analysis.drift is not None:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        drift.plot_feature_drift(analysis.drift, ax=ax)
        ctx.save_figure(fig, "10-drift-per-feature")
        figs.append(fig)
        fig = drift.plot_distributions(analysis.reference, analysis.current, analysis.drift, top=4)
        ctx.save_figure(fig, "10-distributions")
        figs.append(fig)
        if analysis.performance and (analysis.performance.get("measured_history") or analysis.estimates):
            fig = performance_figure(analysis.performance, analysis.estimates)
            ctx.save_figure(fig, "10-performance-history")
            figs.append(fig)
    else:
        frame, src = analysis.current, ctx.profile.data
        per = frame.groupby(frame[src.time_column].dt.to_period("W").dt.start_time)[src.label].agg(["size", "mean"])
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.bar(per.index.astype(str), per["size"], color="#9ecae1", label="rows")
        ax2 = ax.twinx()
        ax2.plot(per.index.astype(str), per["mean"], color="#d62728", marker="o", label=f"mean {src.label}")
        ax.set_title("First run: the training window per batch")
        ax.tick_params(axis="x", rotation=60)
        ctx.save_figure(fig, "10-training-window")
        figs.append(fig)
    return figs


def performance_figure(performance: dict[str, Any], estimates: list[dict[str, Any]]):
    """The champion's metric per batch: measured where labels exist, estimated with its 95% band where
    they do not yet (and, for comparison, where they do)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    metric = performance["metric"]
    est = [e for e in estimates if e.get("value") is not None]
    if est:
        t = pd.to_datetime([e["batch_end"] for e in est])
        ax.fill_between(t, [e["low"] for e in est], [e["high"] for e in est], color="#ff7f0e", alpha=0.2, label="95% band")
        ax.plot(t, [e["value"] for e in est], color="#ff7f0e", marker="o", markerfacecolor="white", linestyle="--",
                label=f"estimated {metric} (no labels)")
    measured = performance.get("measured_history") or []
    if measured:
        ax.plot(pd.to_datetime([m["batch_end"] for m in measured]), [m["value"] for m in measured], color="#1f77b4",
                marker="o", label=f"measured {metric} (labels)")
    ax.axhline(performance["threshold"], color="red", linestyle=":", label="performance_threshold")
    unestimated = [e for e in estimates if e.get("value") is None]
    title = f"Champion {metric}: measured vs estimated (trigger source: {performance.get('source', 'measured')})"
    if unestimated:
        title += f"\nnot estimated: {unestimated[-1]['reason'][:90]}"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("batch end")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=8, loc="lower left")
    return fig


def training_figures(ctx: StepContext, outcome: dict[str, Any]) -> list:
    """Resources while training (nothing when training was skipped)."""
    from .monitoring import plot_resources
    import matplotlib.pyplot as plt

    if outcome["status"] != "trained":
        return []
    fig, ax = plt.subplots(figsize=(8, 3))
    plot_resources(outcome["resources"], ax=ax)
    ctx.save_figure(fig, "20-resources")
    return [fig]


def validation_figures(ctx: StepContext, verdict) -> list:
    """Both models' scores side by side and the bootstrap distribution of their difference."""
    from . import validation
    import matplotlib.pyplot as plt

    if verdict is None:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    validation.plot_scores(verdict, ax=axes[0])
    validation.plot_bootstrap(verdict, ax=axes[1])
    fig.tight_layout()
    ctx.save_figure(fig, "30-validation")
    return [fig]


def champion_timeline(ctx: StepContext) -> list:
    """Which version was champion when, with promotions and rollbacks marked."""
    import matplotlib.pyplot as plt

    events = [e.to_dict() for e in ctx.registry.history()]
    fig, ax = plt.subplots(figsize=(8, 3))
    if events:
        times = pd.to_datetime([e["time"] for e in events])
        versions = [e["version"] or "(none)" for e in events]  # an auto-rollback of a first promotion leaves none
        ax.step(times, versions, where="post", color="#555")
        for kind, marker, color in (("promote", "^", "green"), ("rollback", "v", "red"), ("auto-rollback", "x", "red")):
            pts = [(t, v) for t, v, e in zip(times, versions, events) if e["event"] == kind]
            if pts:
                ax.scatter(*zip(*pts), marker=marker, color=color, s=80, label=kind, zorder=3)
        ax.legend(loc="upper left")
    ax.set_title(f"Champion of {ctx.profile.model_name} over time")
    ax.set_xlabel("time (UTC)")
    ctx.save_figure(fig, "40-champion-timeline")
    return [fig]
