"""Replay a run folder and compare its decisions: the audit of one run.

:func:`replay` takes ``runs/<run-id>/`` and re-executes the playbook from its record alone:

1. **Inputs first.** Every batch record of the run's windows (step 10's output: holdout, reference, current,
   train) is checked against the file on disk before anything runs; a changed or missing file stops
   the replay with a :class:`~retrainlib.errors.ReplayError` naming it.
2. **The registry as it stood.** A scratch copy of the model's registry holds the versions that
   existed before the run (hard links: versions are immutable), ``CHAMPION`` = the run's
   ``champion_before``, and the history and evaluation rows written before the run started.
3. **The profile as run.** The manifest's recorded profile text (not the file on disk, which may
   have changed since), with two overrides: ``registry`` points at the scratch copy and ``notify``
   is emptied (a replay must not announce a promotion); an ``mlflow`` section is dropped (it must
   not move the real model's alias). The data source is untouched, so batch
   paths resolve exactly as they did.
4. **Run** :func:`~retrainlib.pipeline.run_playbook` with the same ``as_of`` into a new folder in
   the original ``runs/``, named ``<timestamp>-<profile>-replay`` and marked ``replay_of``.
5. **Compare** (:func:`compare_runs`): every decision and gate verdict must match; every metric
   must agree within ``tolerance`` (absolute); the challenger's predictions on the held-out rows
   must be identical when the original fit was bounded by configuration
   (``time_limit_binding`` false). When the original fit's time limit was binding its model depends
   on the machine's load, so the report says so and compares decisions and metrics only.

The result is a frozen :class:`ReplayReport`; ``replay.json`` is also written into the replay's run
folder (and its manifest's file list refreshed).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from . import data
from .durable import write_atomic
from .errors import DataContractError, ProfileError, ReplayError
from .manifest import MANIFEST, ManifestError, RunManifest, write_json_atomic
from .outputs import Analysis, Training, Validation
from .paths import Paths
from .playbook import new_run_id

__all__ = [
    "Check",
    "ReplayReport",
    "replay",
    "check_inputs",
    "rebuild_registry",
    "compare_runs",
    "compare_predictions",
    "DEFAULT_TOLERANCE",
]

#: absolute tolerance for metrics: a seeded, configuration-bounded run reproduces them to the bit
DEFAULT_TOLERANCE = 1e-6
#: gates whose figure is a timing of this machine: their verdict is compared, their figure is not
_TIMED_GATES = ("latency",)
_WINDOWS = ("holdout", "reference", "current", "train")


# --------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class Check:
    """One compared item: a decision, gate verdict, input, metric or the predictions.

    ``matched`` is ``None`` for items reported but not compared (timings, wall-clock retention).
    """

    kind: str  # decision | gate | data | setting | metric | predictions | info
    name: str
    original: Any
    replay: Any
    matched: bool | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "original": self.original, "replay": self.replay,
                "matched": self.matched, "note": self.note}


@dataclass(frozen=True)
class ReplayReport:
    """What replaying one run folder found.

    >>> same = Check("decision", "verdict", "promote", "promote", True)
    >>> ReplayReport("20240602T060000Z-demo", "20240610T080000Z-demo-replay", None, 1e-6, False, False, (same,)).reason()
    'replay 20240610T080000Z-demo-replay of 20240602T060000Z-demo matches: decisions, gate verdicts and metrics (tolerance 1e-06)'
    >>> other = Check("decision", "verdict", "promote", "reject", False)
    >>> ReplayReport("20240602T060000Z-demo", "r", None, 1e-6, False, False, (same, other)).matched
    False
    """

    original_run: str
    replay_run: str | None
    replay_dir: str | None
    tolerance: float
    time_limit_binding: bool | None  # the original fit's; None when no challenger was trained
    predictions_compared: bool
    checks: tuple[Check, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def matched(self) -> bool:
        """True when no compared item differs."""
        return not self.mismatches

    @property
    def mismatches(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.matched is False)

    def reason(self) -> str:
        """One line: what matched, or the first differences."""
        if self.matched:
            what = "decisions, gate verdicts and metrics" + (
                ", and the challenger's predictions" if self.predictions_compared else "")
            return f"replay {self.replay_run} of {self.original_run} matches: {what} (tolerance {self.tolerance:g})"
        bad = self.mismatches
        shown = "; ".join(f"{c.kind} {c.name}: {_short(c.original)} -> {_short(c.replay)}" for c in bad[:3])
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        tail = "; the original fit's time limit was binding, so its model depended on machine load" if self.time_limit_binding else ""
        return f"replay {self.replay_run} of {self.original_run} differs in {len(bad)} item(s): {shown}{more}{tail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "original_run": self.original_run,
            "replay_run": self.replay_run,
            "replay_dir": self.replay_dir,
            "matched": self.matched,
            "reason": self.reason(),
            "tolerance": self.tolerance,
            "time_limit_binding": self.time_limit_binding,
            "predictions_compared": self.predictions_compared,
            "notes": list(self.notes),
            "checks": [c.to_dict() for c in self.checks],
        }

    def to_text(self) -> str:
        """The comparison as a plain-text table, grouped by kind."""
        lines = [f"replay of {self.original_run} -> {self.replay_run}", f"  folder: {self.replay_dir}"]
        lines += [f"  note: {n}" for n in self.notes]
        for kind, title in (("data", "inputs"), ("decision", "decisions"), ("gate", "gate verdicts"),
                            ("setting", "training settings"), ("predictions", "challenger predictions on the held-out rows"),
                            ("metric", f"metrics (absolute tolerance {self.tolerance:g})"), ("info", "reported, not compared")):
            rows = [c for c in self.checks if c.kind == kind]
            if not rows:
                continue
            lines.append(f"{title}:")
            width = max(len(c.name) for c in rows)
            for c in rows:
                mark = {True: "same", False: "DIFF", None: "    "}[c.matched]
                text = _short(c.original) if c.matched else f"{_short(c.original)} -> {_short(c.replay)}"
                lines.append(f"  {mark}  {c.name.ljust(width)}  {text}" + (f"  ({c.note})" if c.note else ""))
        lines.append(("MATCHED: " if self.matched else "DIFFERS: ") + self.reason())
        return "\n".join(lines)


def _short(value: Any, limit: int = 60) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, default=str, sort_keys=True)
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------
# inputs


def _load_record(run: RunManifest | str | os.PathLike) -> RunManifest:
    """The run's record, checked to be a finished original run whose step 10 recorded its windows (read once).

    A :class:`~retrainlib.manifest.RunManifest` already loaded is checked and handed back as it is.
    """
    if isinstance(run, RunManifest):
        return run
    run_dir = Path(run)
    if not (run_dir / MANIFEST).is_file():
        raise ReplayError(f"{run_dir} holds no manifest.json; expected a run folder such as runs/<run-id>/")
    try:
        manifest = RunManifest.load(run_dir)
        analysis = manifest.analysis
    except ManifestError as exc:
        raise ReplayError(f"{exc.path} is not a readable run record ({' '.join(exc.problem.split())[:160]}); "
                          "restore it from backup") from None
    if manifest.status == "running":
        raise ReplayError(f"run {manifest.run_id} is still running (or was killed without a record); replay a finished run")
    if not (analysis and analysis.windows):
        raise ReplayError(
            f"run {manifest.run_id} recorded no data windows (it stopped before 10-analyze-drift read its data: "
            f"{manifest.error.message if manifest.error else 'no error recorded'}); there is nothing to replay"
        )
    if manifest.replay_of:
        raise ReplayError(
            f"run {manifest.run_id} is itself a replay of {manifest.replay_of} (against a scratch registry that "
            f"is gone); replay the original: runs/{manifest.replay_of}"
        )
    if not manifest.profile.content:
        raise ReplayError(f"the manifest of run {manifest.run_id} lacks the profile's content; it cannot be replayed")
    return manifest


def _paths(manifest: RunManifest) -> Paths:
    """The home of the run's folder: ``<home>/runs/<run-id>``."""
    return Paths(manifest.run_dir.resolve().parent.parent)


def check_inputs(run: RunManifest | str | os.PathLike) -> list[data.Batch]:
    """Check every batch record of the run's windows against the file on disk, before anything runs.

    ``run``: the run folder, or its record already loaded. Returns the distinct batches; raises
    :class:`ReplayError` naming every changed or missing file.
    """
    manifest = _load_record(run)
    paths = _paths(manifest)
    analysis = manifest.analysis
    seen: set[str] = set()
    batches, problems = [], []
    for name in _WINDOWS:
        for rec in analysis.window(name):
            if rec["path"] in seen:
                continue
            seen.add(rec["path"])
            try:
                batches += data.batches_from_records([rec], paths, verify=True)
            except DataContractError as exc:
                problems.append(str(exc))
    if problems:
        raise ReplayError(
            f"cannot replay run {manifest.run_id}: {len(problems)} recorded input(s) changed or missing: "
            + " | ".join(problems)
        )
    return batches


def _check_visible(manifest: RunManifest, paths: Paths, as_of: str | None) -> None:
    """The batch folder must show the run as many batches as it saw (a file added since would shift the windows)."""
    from .profiles import DataSource

    analysis = manifest.analysis
    recorded = analysis.windows.get("visible")
    if recorded is None:
        return
    now = data.list_batches(DataSource.model_validate(manifest.profile.resolved["data"]), paths, as_of=as_of)
    if len(now) != recorded:
        known = {r["path"] for w in _WINDOWS for r in analysis.window(w)}
        extra = [b.path for b in now if b.path not in known]
        raise ReplayError(
            f"cannot replay run {manifest.run_id}: its batch folder now shows {len(now)} batch(es) up to as_of "
            f"{as_of}, the run saw {recorded}; batches in no recorded window: {', '.join(extra[:5]) or 'none'}. "
            "Move files added since the run out of the folder, or restore removed ones"
        )


# --------------------------------------------------------------------------------------------
# the registry as it stood


def rebuild_registry(run: RunManifest | str | os.PathLike, target_root: str | os.PathLike) -> dict[str, Any]:
    """Write under ``target_root`` the run's model registry as it stood before the run started.

    A :func:`retrainlib.registry.snapshot.snapshot` of the live registry before the run's start,
    leaving out the run's own rows, with ``CHAMPION`` = the run's ``champion_before``. Returns what
    was rebuilt: ``{"path", "versions", "champion", "history_rows", "evaluation_rows", "missing"}``
    (``missing``: versions the history names as existing then that are gone now).
    """
    from .errors import RegistryError
    from .registry.layout import parse_time
    from .registry.snapshot import snapshot

    manifest = _load_record(run)
    model = manifest.profile.model_name
    source = _paths(manifest).resolve(manifest.profile.registry) / model
    # the manifest's start is truncated to the second; the run's own rows are told apart by run_id
    # (its retention rows, which carry none, come tens of seconds later, in step 40)
    started = parse_time(manifest.started) + dt.timedelta(seconds=1)
    try:
        snap = snapshot(source, Path(target_root) / model, before=started, run_id=manifest.run_id,
                        champion=manifest.champion_before, since=manifest.started)
    except RegistryError as exc:
        raise ReplayError(f"cannot replay run {manifest.run_id}: {exc}") from exc
    return snap.to_dict()


# --------------------------------------------------------------------------------------------
# comparison


def _same_number(a: Any, b: Any, tol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    try:
        fa, fb = float(a), float(b)
    except (TypeError, ValueError):
        return a == b
    if math.isnan(fa) or math.isnan(fb):
        return math.isnan(fa) and math.isnan(fb)
    return abs(fa - fb) <= tol


class _Checks:
    def __init__(self, tolerance: float):
        self.tolerance = tolerance
        self.items: list[Check] = []

    def equal(self, kind: str, name: str, a: Any, b: Any, note: str = "") -> None:
        self.items.append(Check(kind, name, a, b, a == b, note))

    def number(self, name: str, a: Any, b: Any, *, tolerance: float | None = None, note: str = "") -> None:
        tol = self.tolerance if tolerance is None else tolerance
        self.items.append(Check("metric", name, a, b, _same_number(a, b, tol), note))

    def info(self, name: str, a: Any, b: Any, note: str) -> None:
        self.items.append(Check("info", name, a, b, None, note))


def _batch_keys(records: Iterable[dict[str, Any]]) -> list[list[str]]:
    return [[r["path"], r["sha256"]] for r in records]


def _run(run: RunManifest | str | os.PathLike) -> RunManifest:
    """A run's record: as given, or read from its folder (any run folder, a replay's too)."""
    return run if isinstance(run, RunManifest) else RunManifest.load(run)


def _json(value: Any) -> dict[str, Any]:
    """A nested record of a step output (a JSON object), ``{}`` when absent."""
    return value if isinstance(value, dict) else {}


def compare_runs(original: RunManifest | str | os.PathLike, replayed: RunManifest | str | os.PathLike, *,
                 tolerance: float = DEFAULT_TOLERANCE, schedule_tolerance: float | None = None) -> list[Check]:
    """Compare two runs' records and step outputs: decisions, gate verdicts, inputs, settings, metrics.

    Pure: reads the two folders' JSON only (each a run folder or its record already loaded).
    ``schedule_tolerance`` (days) replaces ``tolerance`` for the schedule trigger's age when the
    original run had no ``as_of`` and was replayed as of its start.
    """
    ma, mb = _run(original), _run(replayed)
    c = _Checks(tolerance)
    c.equal("decision", "run status", ma.status, mb.status)
    c.equal("decision", "outcome", ma.outcome, mb.outcome)
    c.equal("decision", "failed step", ma.error and ma.error.step, mb.error and mb.error.step)
    a10, b10 = ma.analysis, mb.analysis
    _compare_analysis(c, a10, b10, ma, mb, schedule_tolerance)
    _compare_shadow(c, a10 and a10.shadow, b10 and b10.shadow)
    _compare_training(c, ma.training, mb.training)
    _compare_validation(c, ma.validation, mb.validation)
    # step 40: what happened to the champion
    a40, b40 = ma.promotion, mb.promotion
    c.equal("decision", "promotion", a40 and a40.action, b40 and b40.action)
    c.equal("decision", "champion after", ma.champion_after, mb.champion_after)
    c.info("retention removed", a40 and a40.retention_removed, b40 and b40.retention_removed,
           "retention ages versions by the wall clock")
    return c.items


def _compare_shadow(c: _Checks, sa: dict[str, Any] | None, sb: dict[str, Any] | None) -> None:
    """A shadow on trial (step 10's ``shadow``): its version, the batches paired, the verdict."""
    if not (sa or sb):
        return
    sa, sb = _json(sa), _json(sb)
    ja, jb = _json(sa.get("judgement")), _json(sb.get("judgement"))
    c.equal("decision", "shadow", sa.get("version"), sb.get("version"))
    c.equal("decision", "shadow batches", [b["batch"] for b in sa.get("batches") or []],
            [b["batch"] for b in sb.get("batches") or []])
    c.equal("decision", "shadow verdict", ja.get("decision"), jb.get("decision"))
    c.number("shadow gain", ja.get("gain"), jb.get("gain"))


def _compare_analysis(c: _Checks, a10: Analysis | None, b10: Analysis | None, ma: RunManifest, mb: RunManifest,
                      schedule_tolerance: float | None) -> None:
    """Step 10: inputs, decision, triggers, quality, drift, champion's evaluations."""
    wa, wb = (a10.windows if a10 else {}), (b10.windows if b10 else {})
    c.equal("data", "strategy", wa.get("strategy"), wb.get("strategy"))
    c.equal("data", "visible batches", wa.get("visible"), wb.get("visible"))
    for name in _WINDOWS:
        c.equal("data", f"{name} window", _batch_keys(wa.get(name, [])), _batch_keys(wb.get(name, [])))
    c.equal("decision", "champion before", ma.champion_before, mb.champion_before)
    da, db = (a10.decision if a10 else None), (b10.decision if b10 else None)
    c.equal("decision", "decision status", da and da.status, db and db.status)
    c.equal("decision", "decision retrain", da and da.retrain, db and db.retrain)
    c.equal("decision", "decision policy", da and da.policy, db and db.policy)
    c.equal("decision", "decision reasons", da and list(da.reasons), db and list(db.reasons))
    ta = {t.name: t for t in (da.triggers if da else ())}
    tb = {t.name: t for t in (db.triggers if db else ())}
    for name in sorted(set(ta) | set(tb)):
        c.equal("decision", f"trigger {name} fired", ta[name].fired if name in ta else None,
                tb[name].fired if name in tb else None)
        tol = schedule_tolerance if name == "schedule" and schedule_tolerance is not None else None
        note = "original run had no as_of: replayed as of its start" if tol is not None else ""
        c.number(f"trigger {name}", ta[name].value if name in ta else None, tb[name].value if name in tb else None,
                 tolerance=tol, note=note)
    qa, qb = _json(a10 and a10.quality), _json(b10 and b10.quality)
    c.equal("decision", "quality passed", qa.get("passed"), qb.get("passed"))
    c.number("quality score", qa.get("score"), qb.get("score"))
    if a10 and (a10.drift or (b10 and b10.drift)):
        _compare_drift(c, a10, b10)
    ea = {e["batch"]: e["value"] for e in (a10.evaluations if a10 else [])}
    eb = {e["batch"]: e["value"] for e in (b10.evaluations if b10 else [])}
    c.equal("decision", "champion evaluated on", sorted(ea), sorted(eb))
    for batch in sorted(set(ea) | set(eb)):
        c.number(f"champion on {Path(batch).name}", ea.get(batch), eb.get(batch))


def _compare_drift(c: _Checks, a10: Analysis, b10: Analysis | None) -> None:
    """Step 10's drift: the verdict, the scores, each feature's statistic, target and prediction drift."""
    ra, rb = _json(a10.drift), _json(b10 and b10.drift)
    c.equal("decision", "dataset drifted", ra.get("drifted"), rb.get("drifted"))
    c.equal("decision", "drifted features", ra.get("drifted_features"), rb.get("drifted_features"))
    c.number("drift score", ra.get("score"), rb.get("score"))
    c.number("multivariate drift auc", _json(ra.get("multivariate")).get("auc"), _json(rb.get("multivariate")).get("auc"))
    fa = {f["column"]: f.get("statistic") for f in ra.get("features") or []}
    fb = {f["column"]: f.get("statistic") for f in rb.get("features") or []}
    for col in sorted(set(fa) | set(fb)):
        c.number(f"drift {col}", fa.get(col), fb.get(col))
    for key in ("target_drift", "prediction_drift"):
        c.number(key.replace("_", " "), _json(getattr(a10, key)).get("statistic"),
                 _json(getattr(b10, key, None)).get("statistic"))


def _compare_training(c: _Checks, a20: Training | None, b20: Training | None) -> None:
    """Step 20: the challenger and how it was fitted."""
    c.equal("decision", "training", a20 and a20.status, b20 and b20.status)
    if not ((a20 and a20.trained) or (b20 and b20.trained)):
        return
    a20, b20 = a20 or Training.skip(""), b20 or Training.skip("")
    c.equal("decision", "challenger version", a20.challenger, b20.challenger)
    c.equal("setting", "training slices", _batch_keys(a20.slices), _batch_keys(b20.slices))
    c.equal("setting", "training rows", a20.n_rows, b20.n_rows)
    c.equal("setting", "features", a20.features or None, b20.features or None)
    c.equal("setting", "AutoGluon settings", a20.settings or None, b20.settings or None)
    c.info("time limit binding", a20.time_limit_binding, b20.time_limit_binding,
           "a binding limit makes the model depend on machine load")
    la = {r["model"]: r.get("score_val") for r in a20.leaderboard}
    lb = {r["model"]: r.get("score_val") for r in b20.leaderboard}
    c.equal("setting", "models fitted", sorted(la), sorted(lb))
    for model in sorted(set(la) | set(lb)):
        c.number(f"validation score {model}", la.get(model), lb.get(model))
    c.info("fit seconds", a20.fit_seconds, b20.fit_seconds, "a timing of this machine")


def _compare_validation(c: _Checks, a30: Validation | None, b30: Validation | None) -> None:
    """Step 30: verdict and every gate."""
    c.equal("decision", "validation", a30 and a30.status, b30 and b30.status)
    if not ((a30 and not a30.skipped) or (b30 and not b30.skipped)):
        return
    a30, b30 = a30 or Validation.skip(""), b30 or Validation.skip("")
    c.equal("decision", "verdict", a30.decision, b30.decision)
    c.equal("data", "holdout rows", a30.verdict.get("n_holdout"), b30.verdict.get("n_holdout"))
    ga = {g["name"]: g for g in a30.gates}
    gb = {g["name"]: g for g in b30.gates}
    c.equal("gate", "gates applied", list(ga), list(gb))
    for name in [*ga, *(n for n in gb if n not in ga)]:
        gate_a, gate_b = ga.get(name, {}), gb.get(name, {})
        c.equal("gate", f"{name} passed", gate_a.get("passed"), gate_b.get("passed"))
        if name in _TIMED_GATES:
            c.info(f"gate {name}", gate_a.get("value"), gate_b.get("value"), "a timing of this machine")
        else:
            c.number(f"gate {name}", gate_a.get("value"), gate_b.get("value"))
    for who in ("champion", "challenger"):
        sa, sb = _json(a30.scores.get(who)), _json(b30.scores.get(who))
        for metric in sorted(set(sa) | set(sb)):
            c.number(f"{who} {metric}", sa.get(metric), sb.get(metric))
    ba, bb = _json(a30.verdict.get("bootstrap")), _json(b30.verdict.get("bootstrap"))
    for key in ("observed", "ci_low", "ci_high"):
        c.number(f"bootstrap {key}", ba.get(key), bb.get(key))


def compare_predictions(original: RunManifest | str | os.PathLike, replayed: RunManifest | str | os.PathLike, *,
                        scratch_registry: str | os.PathLike) -> Check | None:
    """The challengers' predictions on the held-out rows: original (live registry) against replay (scratch).

    ``None`` when either run trained no challenger. When the original fit's time limit was binding its
    model depended on the machine's load: the check says so and is not compared (``matched`` None).
    """
    import numpy as np

    from . import automl
    from .errors import RegistryError
    from .profiles import DataSource
    from .registry import Registry

    ma, mb = _run(original), _run(replayed)
    a20, b20 = ma.training, mb.training
    if not (a20 and a20.trained and b20 and b20.trained):
        return None
    if a20.time_limit_binding:
        return Check("predictions", "held-out rows", None, None, None,
                     "not compared: the original fit's time limit was binding, so its model depended on the "
                     "machine's load; decisions and metrics only")
    paths, profile = _paths(ma), ma.profile
    live = Registry(paths.resolve(profile.registry), profile.model_name)
    try:
        original_model = live.load(a20.challenger)
    except RegistryError as exc:
        return Check("predictions", "held-out rows", None, None, None,
                     f"not compared: the original challenger {a20.challenger} cannot be loaded ({exc})")
    replayed_model = Registry(Path(scratch_registry), profile.model_name).load(b20.challenger)
    source = DataSource.model_validate(profile.resolved["data"])
    holdout = data.load_batches(data.batches_from_records(ma.analysis.window("holdout"), paths), paths, source)
    holdout = holdout[holdout[source.label].notna()] if source.label in holdout else holdout
    pa = automl.predict_scores(original_model, holdout[a20.features])
    pb = automl.predict_scores(replayed_model, holdout[b20.features])
    same_shape = pa.shape == pb.shape
    identical = bool(same_shape and np.array_equal(pa, pb))
    diff = float(np.max(np.abs(pa - pb))) if same_shape and pa.size else None
    note = "identical" if identical else (f"max abs difference {diff:.3g}" if diff is not None else "different shapes")
    return Check("predictions", "held-out rows", f"{len(pa)} rows, sha256 {_digest(pa)}",
                 f"{len(pb)} rows, sha256 {_digest(pb)}", identical, note)


def _digest(values) -> str:
    import numpy as np

    from .durable import sha256_bytes

    return sha256_bytes(np.ascontiguousarray(values, dtype=float).tobytes())[:16]


# --------------------------------------------------------------------------------------------
# replay


def _replay_profile(manifest: RunManifest, scratch_registry: Path) -> tuple[dict[str, Any], list[str]]:
    """The recorded profile text with the registry pointed at the scratch copy, notifications and the MLflow mirror off."""
    try:
        raw = yaml.safe_load(manifest.profile.content)
    except yaml.YAMLError as exc:
        raise ReplayError(f"the profile recorded by run {manifest.run_id} is not valid YAML ({exc})") from exc
    overrides = [f"registry: {raw.get('registry', 'models')} -> {scratch_registry} (a scratch copy as it stood before the run)"]
    raw["registry"] = str(scratch_registry)
    if raw.get("notify"):
        overrides.append("notify: emptied (a replay announces nothing)")
        raw["notify"] = {}
    if raw.get("mlflow"):
        overrides.append("mlflow: removed (a replay must not move the real model's alias)")
        del raw["mlflow"]
    return raw, overrides


def replay(
    run_dir: str | os.PathLike,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    keep_scratch: bool = False,
    lock_timeout: float = 0,
    progress: bool | None = False,
) -> ReplayReport:
    """Re-execute a run folder from its record and compare (see the module docstring).

    The record is read once and handed to every step of the replay.

    Parameters
    ----------
    run_dir : path
        ``<home>/runs/<run-id>``; the replay's folder goes beside it.
    tolerance : float
        Absolute tolerance for every metric.
    keep_scratch : bool
        Keep the scratch registry (``runs/.replay-<replay-id>/``) for inspection; removed by default.

    Raises
    ------
    ReplayError
        before anything runs, when a recorded input batch changed or is missing, the batch folder
        shows the run a different number of batches, or the champion before the run is gone.
    """
    from .pipeline import run_playbook

    manifest = _load_record(run_dir)
    check_inputs(manifest)  # every recorded batch, before anything runs
    paths = _paths(manifest)
    as_of, schedule_tolerance, notes = _replay_as_of(manifest)
    _check_visible(manifest, paths, as_of)

    replay_id = f"{new_run_id(manifest.profile.name)}-replay"
    scratch = paths.runs / f".replay-{replay_id}"
    scratch.mkdir(parents=True, exist_ok=False)
    try:
        profile_path = _stage(manifest, scratch, notes)
        new_manifest, new_dir = run_playbook(profile_path, home=paths.home, as_of=as_of, run_id=replay_id,
                                             replay_of=manifest.run_id, lock_timeout=lock_timeout, progress=progress)
        if new_manifest.git_commit != manifest.git_commit:
            notes.append(f"code differs: the run was at commit {manifest.git_commit}, the replay at "
                         f"{new_manifest.git_commit}")
        checks = compare_runs(manifest, new_manifest, tolerance=tolerance, schedule_tolerance=schedule_tolerance)
        a20 = manifest.training
        binding = a20.time_limit_binding if a20 and a20.trained else None
        if binding:
            notes.append("the original fit's time limit was binding: comparing decisions and metrics only")
        check = compare_predictions(manifest, new_manifest, scratch_registry=scratch / "models")
        notes += [f"scratch registry kept in {scratch}"] if keep_scratch else []
        report = ReplayReport(manifest.run_id, new_dir.name, str(new_dir), tolerance, binding,
                              check is not None and check.matched is not None, (*checks, *([check] if check else [])), tuple(notes))
        _attach(report, new_manifest)
        return report
    finally:
        if not keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def _replay_as_of(manifest: RunManifest) -> tuple[str, float | None, list[str]]:
    """The replay's ``as_of``, the schedule trigger's tolerance (days) and a note when the run had no ``as_of``."""
    if manifest.as_of:
        return manifest.as_of, None, []
    first = next((s.started for s in manifest.steps if s.started), None) or manifest.started
    # ~15 minutes: the original measured the champion's age at its own "now"
    return first, 0.01, [f"the original run had no as_of; replayed as of its first step's start {first}"]


def _stage(manifest: RunManifest, scratch: Path, notes: list[str]) -> Path:
    """Build the scratch registry and the replay's profile under ``scratch``; note what differs. The profile's path."""
    from . import automl
    from .profiles import load_profile

    rebuilt = rebuild_registry(manifest, scratch / "models")
    if rebuilt["missing"]:
        notes.append(f"versions that existed before the run but are gone now: {', '.join(rebuilt['missing'])}")
    notes.append(f"registry as it stood: versions {', '.join(rebuilt['versions']) or '(none)'}, champion "
                 f"{rebuilt['champion'] or '(none)'}, {rebuilt['history_rows']} history and "
                 f"{rebuilt['evaluation_rows']} evaluation rows")
    raw, overrides = _replay_profile(manifest, (scratch / "models").resolve())
    notes += [f"profile override {o}" for o in overrides]
    (scratch / "params").mkdir()
    profile_path = scratch / "params" / f"{manifest.profile.name}.yaml"
    write_atomic(profile_path, yaml.safe_dump(raw, sort_keys=False))
    try:
        load_profile(profile_path)
    except ProfileError as exc:  # the schema changed since the run
        raise ReplayError(f"the profile recorded by run {manifest.run_id} no longer validates: {exc}") from exc
    running = automl.software_versions()
    diff = {k: f"{v} -> {running.get(k)}" for k, v in manifest.software.items() if running.get(k) != v}
    if diff:
        notes.append("software differs from the run's: " + ", ".join(f"{k} {v}" for k, v in diff.items()))
    return profile_path


def _attach(report: ReplayReport, manifest: RunManifest) -> None:
    """Write replay.json into the replay's run folder and refresh its manifest's file list."""
    write_json_atomic(manifest.run_dir / "replay.json", report.to_dict())
    manifest.write(manifest.run_dir)
