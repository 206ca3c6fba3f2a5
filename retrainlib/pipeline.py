"""The runner: executes the playbook's notebooks in order with papermill into a run folder.

This is the one module that calls papermill. :func:`run_playbook` validates the profile before it
writes anything, takes the model's run lock (one run at a time per registry), executes
``10-analyze-drift`` … ``40-promote-or-rollback`` into ``runs/<run-id>/``, and writes
``manifest.json`` after every step. A step that raises stops the run: papermill keeps its partially
executed notebook, the manifest says which step failed and why, and the champion is untouched.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import automl, lease
from .durable import write_atomic
from .errors import DamagedPointer, RetrainError, exit_code_of
from .manifest import (MANIFEST, OUTCOMES, ErrorRecord, MlflowRecord, ProfileRecord, RunManifest, StepRecord, git_commit,
                       mark_abandoned, this_process)
from .outputs import Analysis, Promotion, Training, Validation
from .paths import NOTEBOOKS, Paths
from .playbook import NOTEBOOK_NAMES, new_run_id, read_output
from .playbook import step as playbook_step
from .preflight import check_run
from .profiles import load_profile, profile_sha256
from .registry import RUN_LOCK_HELD_ENV, Registry

__all__ = ["run_playbook", "begin_run", "run_step", "finish_run", "outcome_so_far", "execute_notebook", "fill_manifest"]

log = logging.getLogger("retrainlib")

def execute_notebook(source: Path, output: Path, parameters: dict[str, Any], *, cwd: Path, progress: bool) -> None:
    """Run one notebook with papermill (the failed notebook is saved before papermill raises).

    Its kernel is :class:`retrainlib.kernels.RunKernelManager`'s: it dies with this process (a SIGKILL
    included) and talks over private IPC sockets, so concurrent runs' kernels never collide.
    """
    import papermill as pm

    from .kernels import RunKernelManager

    pm.execute_notebook(
        str(source),
        str(output),
        parameters=parameters,
        cwd=str(cwd),
        kernel_name="python3",
        kernel_manager_class=RunKernelManager,
        progress_bar=progress,
        log_output=False,
        request_save_on_cell_execute=True,
        # the kernel's own log stays out of the run's log: its start-up notes (the local-TCP warning) in every run, and
        # its traceback when it is stopped mid-reply by SIGTERM. A cell's error reaches the notebook and the manifest.
        extra_arguments=list(KERNEL_ARGUMENTS),
    )


#: the kernel's own logs silenced: the app's, and tornado's, whose "Uncaught exception in ZMQStream callback"
#: traceback a kernel sometimes prints while it is shut down after the last cell (seen on a loaded machine)
KERNEL_ARGUMENTS = ("--IPKernelApp.log_level=CRITICAL",
                    "--IPKernelApp.exec_lines=__import__('logging').getLogger('tornado').setLevel(50)")


def fill_manifest(manifest: RunManifest, run_dir: Path) -> None:
    """Fill the outcome, reasons, metrics, challenger and warnings from the steps' outputs.

    The outputs themselves are not copied: :meth:`RunManifest.write` refers to each step's file by its sha256.
    """
    analyze, retrain, validate, promote = (read_output(run_dir, t) for t in (Analysis, Training, Validation, Promotion))
    if analyze:
        d = analyze.decision
        manifest.reasons = list(d.reasons)
    if retrain and retrain.trained:
        manifest.warnings = list(retrain.warnings)  # resource thresholds crossed while training
        manifest.challenger = retrain.challenger
    if validate and not validate.skipped:
        manifest.metrics = validate.scores
    if promote:
        if promote.rolled_back:
            manifest.reasons = promote.rollback_reasons() or manifest.reasons
    if manifest.status == "failed":
        manifest.outcome = "failed"
    elif promote and promote.rolled_back:
        manifest.outcome = "rolled-back"
    elif promote and promote.stuck and analyze and analyze.decision.status == "blocked-by-quality":
        manifest.outcome = "stuck"  # blocked again, with the champion below performance_threshold
        manifest.reasons = [promote.stuck_reason, *manifest.reasons]
    elif analyze and analyze.decision.status == "blocked-by-quality":
        manifest.outcome = "blocked-by-quality"
    elif promote and promote.action in ("shadow-started", "promoted-from-shadow", "shadow-dropped"):
        manifest.outcome = promote.action  # validation.shadow_batches: what became of the shadow
    elif analyze and not analyze.decision.retrain:
        manifest.outcome = "no-retrain-needed"
    elif promote and promote.promoted:
        manifest.outcome = "bootstrapped" if analyze and analyze.bootstrap else "promoted"
    elif promote and promote.stuck:
        manifest.outcome = "stuck"
        manifest.reasons = [promote.stuck_reason, *manifest.reasons]
    elif promote:
        manifest.outcome = "rejected"
    manifest.exit_code = OUTCOMES.get(manifest.outcome or "failed", 1)
    if manifest.outcome == "failed" and manifest.error:  # a training failure exits 9, a broken contract 2, ...
        manifest.exit_code = exit_code_of(str(manifest.error.message or "").split(":", 1)[0])


def run_playbook(
    profile: str | os.PathLike,
    *,
    home: str | os.PathLike | None = None,
    as_of: str | None = None,
    run_id: str | None = None,
    replay_of: str | None = None,
    lock_timeout: float = 0,
    notebooks: Path = NOTEBOOKS,
    progress: bool | None = None,
    rollback: bool = False,
    rollback_to: str | None = None,
    rollback_reason: str = "",
) -> tuple[RunManifest, Path]:
    """Run the playbook once; return the manifest and the run folder.

    ``rollback=True`` runs only ``40-promote-or-rollback`` with ``rollback=True`` (to the previous
    champion, or ``rollback_to``): a rollback by hand gets its run folder, manifest, outcome
    ``rolled-back`` and notification like any run, under the same run lock.

    Raises
    ------
    ProfileError
        before anything is written, when the profile is missing or invalid.
    RunLocked
        when another run holds the model's run lock for longer than ``lock_timeout`` seconds.
    """
    paths = Paths.discover(home)
    profile_path = paths.profile(profile)
    prof = load_profile(profile_path)  # fails before anything is written
    check_run(prof, paths, profile_path, as_of=as_of, data=not rollback)  # so does all else that can be checked now
    registry = Registry(paths.resolve(prof.registry), prof.model_name)
    progress = sys.stderr.isatty() if progress is None else progress
    for var in automl.THREAD_VARIABLES:  # the kernels inherit these
        os.environ[var] = str(prof.training.num_cpus)

    step_names = NOTEBOOK_NAMES[-1:] if rollback else NOTEBOOK_NAMES
    with registry.run_lock(timeout=lock_timeout):
        lease.check_free(registry)  # a run whose steps run as separate tasks holds the model too
        _recover_before_reading(paths, registry)
        run_id = run_id or (new_run_id(prof.name) + ("-rollback" if rollback else ""))
        manifest, run_dir = _new_run(paths, prof, profile_path, registry, as_of=as_of, run_id=run_id, replay_of=replay_of,
                                     step_names=step_names, process=this_process())
        extra = {"rollback": True, "rollback_to": rollback_to or "", "rollback_reason": rollback_reason} if rollback else {}
        _execute_steps(manifest, run_dir, paths, registry, prof, notebooks=notebooks, progress=progress, extra_params=extra)
    _mirror(manifest, run_dir, prof, registry)  # after the run lock too; an interrupted run is caught up by the next one
    _announce(manifest, run_dir, prof)  # after the run lock is released: a slow webhook holds no run back
    return manifest, run_dir


def _execute_steps(manifest: RunManifest, run_dir: Path, paths: Paths, registry: Registry, prof, *, notebooks: Path,
                   progress: bool, extra_params: dict[str, Any]) -> None:
    """Execute the run's steps in order under the run lock, stopping at a failed one; then finish the record.

    Ctrl-C or SIGTERM mid-step leaves a complete, failed record (and its notification), then propagates.
    """
    t_run, t_wall = time.monotonic(), time.time()
    os.environ[RUN_LOCK_HELD_ENV] = str(run_dir.resolve())  # the kernels' steps know this run holds the lock
    try:
        for rec in manifest.steps:
            _execute_step(manifest, rec, run_dir, paths, notebooks=notebooks, progress=progress, extra_params=extra_params)
            if rec.status == "failed":
                break
        else:
            manifest.status = "succeeded"
    except BaseException as exc:  # Ctrl-C or SIGTERM mid-step: leave a complete, failed record
        _interrupted(manifest, exc)
        _stop_children(started_after=t_wall)  # the kernel and its training child die with the run
        _finish(manifest, run_dir, registry, time.monotonic() - t_run)
        _announce(manifest, run_dir, prof)
        raise
    finally:
        os.environ.pop(RUN_LOCK_HELD_ENV, None)
    for rec in manifest.steps:
        if rec.status == "pending":
            rec.status = "not-run"
    _finish(manifest, run_dir, registry, time.monotonic() - t_run)


def _recorded_profile(prof, profile_path: Path) -> dict[str, Any]:
    """The profile as the manifest and the run folder keep it: URL secrets (webhook paths, tokens in queries) redacted."""
    from .notify import redact_profile_text, redact_url

    tracking = getattr(getattr(prof, "mlflow", None), "tracking_uri", None)  # may carry user:password@
    urls = [prof.notify.webhook_url, prof.notify.report_base_url, tracking]
    resolved = prof.to_dict()
    resolved["notify"] = {k: redact_url(v) if k in ("webhook_url", "report_base_url") and v else v
                          for k, v in resolved["notify"].items()}
    if tracking and isinstance(resolved.get("mlflow"), dict):
        resolved["mlflow"]["tracking_uri"] = redact_url(tracking)
    return {
        "name": prof.name,
        "path": str(profile_path.resolve()),
        "sha256": profile_sha256(profile_path),
        "content": redact_profile_text(profile_path.read_text(encoding="utf-8"), urls),
        "resolved": resolved,
    }


def _recover_before_reading(paths: Paths, registry: Registry) -> None:
    """Complete what killed runs left: their records (``abandoned``) and the registry; refuse a damaged pointer.

    Runs under the run lock, before the run reads its champion, so a run never judges an
    unverified promotion that a crash left behind.
    """
    mark_abandoned(paths.runs, by="retrain run")
    registry.recover()
    problem = registry.pointer_problem()
    if problem:
        raise DamagedPointer(problem)


def _new_run(paths: Paths, prof, profile_path: Path, registry: Registry, *, as_of: str | None, run_id: str | None,
             replay_of: str | None, step_names=NOTEBOOK_NAMES, process: dict[str, Any] | None = None) -> tuple[RunManifest, Path]:
    """Create ``runs/<run-id>/`` with the profile and a manifest whose four steps are pending.

    ``process`` (this one, for :func:`run_playbook`) lets the next command mark the run abandoned
    when that process dies mid-run; a run whose steps are separate tasks names none (its lease expires).
    """
    run_dir = _free_run_dir(paths, run_id or new_run_id(prof.name))
    run_dir.mkdir(parents=True)
    manifest = RunManifest(
        run_id=run_dir.name,
        profile=ProfileRecord.from_dict(_recorded_profile(prof, profile_path)),
        as_of=as_of,
        started=RunManifest.now(),
        git_commit=git_commit(paths.home),
        software=automl.software_versions(),
        environment={v: os.environ.get(v, "") for v in automl.THREAD_VARIABLES},
        champion_before=registry.champion(),
        steps=[StepRecord(name=s) for s in step_names],
        replay_of=replay_of,
        process=process,
    )
    write_atomic(run_dir / "profile.yaml", manifest.profile.content)
    manifest.write(run_dir)
    return manifest, run_dir


def _free_run_dir(paths: Paths, run_id: str) -> Path:
    """``runs/<run-id>``, or ``runs/<run-id>-2`` … when that folder exists."""
    run_dir, suffix = paths.runs / run_id, 1
    while run_dir.exists():
        suffix += 1
        run_dir = paths.runs / f"{run_id}-{suffix}"
    return run_dir


def _execute_step(manifest: RunManifest, rec: StepRecord, run_dir: Path, paths: Paths, *, notebooks: Path, progress: bool,
                  extra_params: dict[str, Any] | None = None) -> None:
    """Execute one step's notebook into the run folder and record it (a failed step fails the manifest)."""
    params = {"profile": manifest.profile.path, "run_dir": str(run_dir), "home": str(paths.home), "as_of": manifest.as_of or "",
              **(extra_params or {})}
    rec.status, rec.started, rec.notebook, rec.error = "running", RunManifest.now(), f"{rec.name}.ipynb", None
    manifest.write(run_dir)
    if not progress:
        log.info("%s: running %s", manifest.run_id, rec.name)
    t0 = time.monotonic()
    try:
        execute_notebook(notebooks / f"{rec.name}.ipynb", run_dir / rec.notebook, params, cwd=paths.home, progress=progress)
    except Exception as exc:  # papermill's PapermillExecutionError, or a kernel that died
        rec.status, rec.error = "failed", _describe(exc)
        manifest.status = "failed"
        manifest.error = ErrorRecord(rec.name, rec.error)
    else:
        rec.status = "succeeded"
        out = run_dir / playbook_step(rec.name).json_file
        rec.output = out.name if out.exists() else None
    finally:
        rec.finished, rec.seconds = RunManifest.now(), round(time.monotonic() - t0, 3)
        manifest.write(run_dir)


def _interrupted(manifest: RunManifest, exc: BaseException) -> None:
    """Mark the running step failed and the pending ones not run: the run was stopped mid-step."""
    for rec in manifest.steps:
        if rec.status == "running":
            rec.status, rec.error = "failed", f"interrupted ({type(exc).__name__})"
        elif rec.status == "pending":
            rec.status = "not-run"
    manifest.status = "failed"
    manifest.error = ErrorRecord(next((r.name for r in manifest.steps if r.status == "failed"), None),
                                 f"interrupted ({type(exc).__name__})")


# ---- one run as separate step processes (an orchestrator's tasks: see retrainlib.airflow_dags) --------------


def begin_run(
    profile: str | os.PathLike,
    *,
    owner: str,
    home: str | os.PathLike | None = None,
    as_of: str | None = None,
    run_id: str | None = None,
    lease_ttl: float = lease.DEFAULT_TTL,
) -> tuple[RunManifest, Path]:
    """Lease the model to ``owner`` and create the run folder that :func:`run_step` fills step by step.

    The same owner beginning again (a retried task) gets its own run folder back. Raises
    :class:`ProfileError` before anything is written, :class:`RunLocked` when another run holds the
    model (its run lock or its lease).
    """
    paths = Paths.discover(home)
    profile_path = paths.profile(profile)
    prof = load_profile(profile_path)
    registry = Registry(paths.resolve(prof.registry), prof.model_name)
    for var in automl.THREAD_VARIABLES:  # recorded in the manifest as run_playbook records them
        os.environ[var] = str(prof.training.num_cpus)
    held = lease.read(registry)
    if held is not None and held["owner"] == owner and (paths.runs / held["run_id"] / MANIFEST).is_file():
        lease.take(registry, run_id=held["run_id"], owner=owner, ttl=lease_ttl)
        run_dir = paths.runs / held["run_id"]
        return RunManifest.load(run_dir), run_dir
    check_run(prof, paths, profile_path, as_of=as_of)  # before anything is written, as run_playbook does
    run_id = _free_run_dir(paths, run_id or new_run_id(prof.name)).name
    lease.take(registry, run_id=run_id, owner=owner, ttl=lease_ttl)
    try:
        _recover_before_reading(paths, registry)  # the model is ours now: complete what crashed runs left
        return _new_run(paths, prof, profile_path, registry, as_of=as_of, run_id=run_id, replay_of=None)
    except BaseException:
        lease.release(registry, owner=owner)
        raise


def run_step(run_dir: str | os.PathLike, step: str, *, home: str | os.PathLike | None = None,
             notebooks: Path = NOTEBOOKS, progress: bool | None = None) -> tuple[RunManifest, StepRecord]:
    """Execute one step (``"10"`` or ``"10-analyze-drift"``) of a begun run, as :func:`run_playbook` does.

    The earlier steps must have succeeded and the run must hold the model's lease (renewed here).
    A step that already succeeded is not run again (a retried task); a failed one is.
    """
    run_dir = Path(run_dir).resolve()
    manifest = RunManifest.load(run_dir)
    names = [r.name for r in manifest.steps]
    matches = [r for r in manifest.steps if step in (r.name, playbook_step(r.name).number)]
    if not matches:
        raise RetrainError(f"unknown step {step!r} for {run_dir}; expected one of " + ", ".join(names))
    rec = matches[0]
    earlier = manifest.steps[: names.index(rec.name)]
    if any(r.status != "succeeded" for r in earlier):
        raise RetrainError(f"step {rec.name} of {run_dir.name} cannot run: an earlier step has not succeeded "
                           f"({', '.join(f'{r.name} {r.status}' for r in earlier)})")
    if manifest.status == "succeeded" or rec.status == "succeeded":
        return manifest, rec
    paths = Paths.discover(home)
    prof = load_profile(Path(manifest.profile.path))
    registry = Registry(paths.resolve(prof.registry), prof.model_name)
    lease.renew(registry, run_id=manifest.run_id)
    for var in automl.THREAD_VARIABLES:
        os.environ[var] = str(prof.training.num_cpus)
    progress = sys.stderr.isatty() if progress is None else progress
    manifest.status, manifest.error = "running", None
    t_wall = time.time()
    try:
        _execute_step(manifest, rec, run_dir, paths, notebooks=notebooks, progress=progress)
    except BaseException as exc:
        _interrupted(manifest, exc)
        _stop_children(started_after=t_wall)
        manifest.write(run_dir)
        raise
    lease.renew(registry, run_id=manifest.run_id)
    return manifest, rec


def outcome_so_far(manifest: RunManifest, run_dir: Path) -> str | None:
    """The outcome the run's step files already decide (e.g. ``no-retrain-needed`` after step 10), or None."""
    import copy

    probe = copy.deepcopy(manifest)
    fill_manifest(probe, run_dir)
    return probe.outcome


def finish_run(run_dir: str | os.PathLike, *, home: str | os.PathLike | None = None) -> RunManifest:
    """Close a begun run: outcome, champion after, notifications; then release the model's lease.

    Steps never run are ``not-run``; a step left ``running`` (its task died) is failed. Finishing
    a finished run only releases the lease again.
    """
    run_dir = Path(run_dir).resolve()
    manifest = RunManifest.load(run_dir)
    paths = Paths.discover(home)
    prof = load_profile(Path(manifest.profile.path))
    registry = Registry(paths.resolve(prof.registry), prof.model_name)
    if manifest.finished is None:
        for rec in manifest.steps:
            if rec.status == "running":
                rec.status, rec.error = "failed", "its task ended before the step finished"
                manifest.status, manifest.error = "failed", ErrorRecord(rec.name, rec.error)
            elif rec.status == "pending":
                rec.status = "not-run"
        if manifest.status == "running":
            manifest.status = "succeeded" if all(r.status == "succeeded" for r in manifest.steps) else "failed"
            if manifest.status == "failed" and manifest.error is None:
                manifest.error = ErrorRecord(None, "the run was finished before all its steps ran")
        started = dt.datetime.fromisoformat(manifest.started)
        _finish(manifest, run_dir, registry, (dt.datetime.now(dt.timezone.utc) - started).total_seconds())
        lease.release(registry, run_id=manifest.run_id)
        _mirror(manifest, run_dir, prof, registry)
        _announce(manifest, run_dir, prof)
    else:
        lease.release(registry, run_id=manifest.run_id)
    return manifest


def _finish(manifest: RunManifest, run_dir: Path, registry: Registry, seconds: float) -> None:
    fill_manifest(manifest, run_dir)
    manifest.champion_after = registry.champion()
    manifest.finished = RunManifest.now()
    manifest.seconds = round(seconds, 3)
    manifest.write(run_dir)


def _mirror(manifest: RunManifest, run_dir: Path, prof, registry: Registry) -> None:
    """Mirror the runs and versions into MLflow when the profile says where (:mod:`retrainlib.mlflow_mirror`).

    Like a notification it never fails the run: what happened, or why not, goes into the manifest.
    """
    if prof.mlflow is None:
        return
    try:
        from . import mlflow_mirror
    except ImportError as exc:
        manifest.mlflow = MlflowRecord("failed", prof.mlflow.tracking_uri,
                                       error=f"{exc}; install the optional extra: pip install -r requirements-mlflow.txt")
        log.warning("%s: mlflow is not installed; the mirror is skipped (pip install -r requirements-mlflow.txt)", manifest.run_id)
    else:
        manifest.mlflow = MlflowRecord.from_dict(mlflow_mirror.sync(
            prof.mlflow, runs_dir=run_dir.parent, registry=registry, profile_name=prof.name, model_name=prof.model_name,
            current_run=manifest.run_id))
    manifest.write(run_dir)


def _announce(manifest: RunManifest, run_dir: Path, prof) -> None:
    """Log the run's event and send its webhook (:mod:`retrainlib.notify`); keep the result in the manifest.

    A notification never fails the run: an unexpected error is logged and recorded instead.
    """
    from . import notify

    try:
        records = notify.notify_run(manifest, run_dir, prof)
    except Exception as exc:  # the boundary: the run's record is complete, a notifier bug must not undo it
        # only the error's kind: its text may quote a request header (the token) or a secret URL
        log.error("%s: notification failed (%s)", manifest.run_id, type(exc).__name__)
        records = [{"channel": "notify", "status": "failed", "error": f"{type(exc).__name__} (details withheld: they may hold a secret)"}]
    if records:
        manifest.notifications = records
        manifest.write(run_dir)


def _stop_children(*, started_after: float, grace: float = 5.0) -> None:
    """Terminate this process's descendants started during the run (papermill's kernel, a training child)."""
    from .freshproc import kill_tree

    kill_tree(os.getpid(), grace=grace, include_root=False, started_after=started_after - 1)


def _describe(exc: Exception) -> str:
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    return f"{type(exc).__name__}: {exc}"
