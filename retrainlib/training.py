"""Training a challenger: in a child process, within max_retraining_time, watched.

:func:`train_challenger` writes the training rows and the AutoGluon settings to a work folder and
fits in a child process, the ``fit`` kind of :func:`retrainlib.freshproc.launch` (a child of the warm
fork server, or ``python -m retrainlib.freshproc fit WORK_DIR`` cold), which runs :func:`fit_entry`.
AutoGluon gets ``max_retraining_time`` as its own ``time_limit``; a hard wall-clock guard kills the
child's process tree if it overruns anyway, which ends the step as a :class:`TrainingTimeout` — the
champion is untouched. CPU, memory and disk are sampled while it runs.
"""

from __future__ import annotations

import json
import resource
import subprocess
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

from . import automl
from .errors import ResourceLimitExceeded, TrainingError, TrainingTimeout
from . import freshproc
from .freshproc import kill_tree
from .monitoring import ResourceMonitor, ResourceReport, check_disk, disk_needs
from .profiles import Profile

__all__ = ["TrainingResult", "train_challenger", "guard_seconds", "fit_settings", "Trainer", "ChildProcessTrainer",
           "CHILD_PROCESS", "fit_entry"]

#: seconds allowed beyond max_retraining_time for start-up, the deployment clone and importance
GRACE_SECONDS = 45.0


def guard_seconds(max_retraining_time: float, grace: float = GRACE_SECONDS) -> float:
    """The hard wall-clock limit: AutoGluon's time limit plus a margin for start-up and saving."""
    return max_retraining_time * 1.1 + grace


def fit_settings(profile: Profile) -> dict[str, Any]:
    """The AutoGluon settings a fit uses, as recorded with the version (and replayed)."""
    t = profile.training
    return {
        "label": profile.data.label,
        "eval_metric": t.eval_metric,
        "problem_type": t.problem_type,
        "presets": t.presets,
        "time_limit": profile.max_retraining_time,
        "num_cpus": t.num_cpus,
        "seed": t.seed,
        "hyperparameters": t.hyperparameters,
        "included_model_types": list(t.included_model_types) if t.included_model_types else None,
        "excluded_model_types": list(t.excluded_model_types) if t.excluded_model_types else None,
        "num_bag_folds": t.num_bag_folds,
    }


@dataclass(frozen=True)
class TrainingResult:
    """What a fit produced and cost."""

    predictor_dir: Path  # the deployment clone, ready for the registry
    leaderboard: pd.DataFrame
    features: tuple[str, ...]
    importance: dict[str, float]
    n_rows: int
    wall_seconds: float
    fit_seconds: float
    cpu_seconds: float
    time_limit: float
    time_limit_binding: bool
    settings: dict[str, Any]
    resources: ResourceReport
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["predictor_dir"] = str(self.predictor_dir)
        d["leaderboard"] = self.leaderboard.to_dict(orient="records")
        d["resources"] = self.resources.to_dict()
        d["features"] = list(self.features)
        d["warnings"] = list(self.warnings)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, predictor_dir: Path, leaderboard: pd.DataFrame) -> "TrainingResult":
        """Rebuild a result recorded with :meth:`to_dict` (whose predictor and leaderboard were stored apart)."""
        fields = {k: d[k] for k in ("n_rows", "wall_seconds", "fit_seconds", "cpu_seconds", "time_limit",
                                    "time_limit_binding", "settings", "importance")}
        return cls(predictor_dir=predictor_dir, leaderboard=leaderboard, features=tuple(d["features"]),
                   resources=ResourceReport.from_dict(d["resources"]), warnings=tuple(d["warnings"]), **fields)


def _children_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def train_challenger(
    train: pd.DataFrame,
    *,
    profile: Profile,
    work_dir: str | Path,
    disk_path: str | Path,
    version_bytes: int | None = None,
    sample_interval: float = 0.5,
    grace_seconds: float = GRACE_SECONDS,
) -> TrainingResult:
    """Fit a challenger on ``train`` in a child process within the profile's limits.

    Parameters
    ----------
    train : DataFrame
        Training rows: the features and the label (no time column or key).
    profile : Profile
        Supplies the AutoGluon settings, ``max_retraining_time`` and the resource thresholds.
    work_dir : path
        A new folder for this fit; the deployment clone ends up in ``work_dir/predictor``.
    disk_path : path
        Where the version will be stored (the registry), for the free-disk check.
    version_bytes : int, optional
        The size of a comparable stored version (the champion's), for the free-disk check
        (:func:`~retrainlib.monitoring.disk_needs`); estimated from the rows without one.
    sample_interval : float
        Seconds between two samples of the child's CPU, memory and disk.
    grace_seconds : float
        Margin beyond ``max_retraining_time`` before the guard kills the fit.

    Raises
    ------
    TrainingTimeout
        The fit overran the wall-clock guard and was killed.
    ResourceLimitExceeded
        The fit's processes used more than ``memory_threshold`` of the machine's memory and were
        stopped (the host is protected; the champion is untouched).
    TrainingError
        Too few rows, too little disk, or the fit itself failed (its error is in the message).
    """
    work_dir = Path(work_dir)
    settings = _prepare(train, profile, work_dir, disk_path, version_bytes)
    guard = guard_seconds(profile.max_retraining_time, grace_seconds)
    run = _fit_in_child(work_dir, profile, disk_path, guard=guard, sample_interval=sample_interval)
    return _collect(run, work_dir, n_rows=len(train), settings=settings, time_limit=profile.max_retraining_time)


def _prepare(train: pd.DataFrame, profile: Profile, work_dir: Path, disk_path: str | Path,
             version_bytes: int | None) -> dict[str, Any]:
    """Refuse too few rows or too little disk; write the rows and the settings into a new ``work_dir``."""
    if len(train) < profile.training.min_train_rows:
        raise TrainingError(
            f"the training window has {len(train)} rows, fewer than training.min_train_rows="
            f"{profile.training.min_train_rows}; widen window_batches or wait for more data"
        )
    needs = disk_needs(int(train.memory_usage(deep=True).sum()), work_dir=work_dir, registry=disk_path,
                       version_bytes=version_bytes)
    check_disk(needs, disk_threshold=profile.disk_threshold)
    work_dir.mkdir(parents=True, exist_ok=False)
    train.to_parquet(work_dir / "train.parquet", index=False)
    settings = fit_settings(profile)
    (work_dir / "spec.json").write_text(json.dumps(settings, indent=2))
    return settings


@dataclass(frozen=True)
class _ChildRun:
    """How the fit's child ended: its exit code, whether it was warm, its wall and CPU seconds, its resources."""

    code: int
    warm: bool
    wall_seconds: float
    cpu_seconds: float  # of a cold child and its workers (a warm child reports its own in result.json)
    resources: ResourceReport


def _fit_in_child(work_dir: Path, profile: Profile, disk_path: str | Path, *, guard: float,
                  sample_interval: float) -> _ChildRun:
    """The ``fit`` child (:func:`retrainlib.freshproc.launch`), sampled, killed with its workers past ``guard`` s
    (:class:`TrainingTimeout`) or past the memory limit (:class:`ResourceLimitExceeded`)."""
    cpu0, t0 = _children_cpu_seconds(), time.monotonic()
    child = freshproc.launch("fit", [work_dir], log=work_dir / "fit.log", num_cpus=profile.training.num_cpus)
    monitor = ResourceMonitor(
        child.pid, disk_path=disk_path, interval=sample_interval, cpu_threshold=profile.cpu_threshold,
        memory_threshold=profile.memory_threshold, disk_threshold=profile.disk_threshold,
        memory_limit_bytes=int(profile.memory_threshold * psutil.virtual_memory().total),
        on_limit=lambda why: kill_tree(child.pid, wait=False),  # the waiting thread below sees it end
    )
    with monitor:
        try:
            code = child.wait(timeout=max(0.001, guard - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            child.kill()
            raise TrainingTimeout(
                f"training overran its wall-clock guard of {guard:.0f} s (max_retraining_time="
                f"{profile.max_retraining_time:g} s plus start-up margin) and was stopped; the champion is "
                "untouched. Raise max_retraining_time or bound the fit with fewer/lighter models"
            ) from None
        except BaseException:  # KeyboardInterrupt/SIGTERM: never leave an orphan fit behind
            kill_tree(child.pid)
            raise
    run = _ChildRun(code, child.warm, time.monotonic() - t0, _children_cpu_seconds() - cpu0, monitor.report())
    if monitor.limit_hit:
        kill_tree(child.pid)  # workers the first kill missed
        raise ResourceLimitExceeded(
            f"training stopped to protect the host: {monitor.limit_hit}; the champion is untouched. Raise "
            "memory_threshold, lower training.max_rows, or choose lighter models in training.hyperparameters"
        )
    return run


def _collect(run: _ChildRun, work_dir: Path, *, n_rows: int, settings: dict[str, Any], time_limit: float) -> TrainingResult:
    """The :class:`TrainingResult` the child left in ``work_dir``, or its failure as a :class:`TrainingError`."""
    if run.code != 0:
        err = (work_dir / "error.txt").read_text() if (work_dir / "error.txt").exists() else ""
        tail = (work_dir / "fit.log").read_text()[-2000:]
        raise TrainingError(f"AutoGluon fit failed (exit code {run.code}): {err.strip() or tail.strip()}")
    out = json.loads((work_dir / "result.json").read_text())
    return TrainingResult(
        predictor_dir=work_dir / "predictor",
        leaderboard=pd.read_csv(work_dir / "leaderboard.csv"),
        features=tuple(out["features"]),
        importance=out["importance"],
        n_rows=n_rows,
        wall_seconds=run.wall_seconds,
        fit_seconds=out["fit_seconds"],
        cpu_seconds=out.get("cpu_seconds", run.cpu_seconds) if run.warm else run.cpu_seconds,
        time_limit=time_limit,
        time_limit_binding=out["time_limit_binding"],
        settings=settings,
        resources=run.resources,
        warnings=run.resources.warnings,
    )


def _own_cpu_seconds() -> float:
    """User + system CPU of this process and the workers it waited for."""
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))


def fit_entry(argv: list[str]) -> int:
    """The ``fit`` kind of fresh process (:func:`retrainlib.freshproc.launch`, warm or cold): fit in the work
    folder ``argv[0]`` in this process; 0 done, 1 failed with ``error.txt`` (read by the parent's TrainingError)."""
    work_dir = Path(argv[0])
    try:
        _child(work_dir)
    except Exception as exc:
        (work_dir / "error.txt").write_text(f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}")
        return 1
    return 0


class Trainer:
    """How a step fits a challenger: the strategy :func:`retrainlib.steps.retrain_model` is given.

    ``fit`` takes :func:`train_challenger`'s arguments and returns its :class:`TrainingResult`;
    ``provenance`` says where the latest fit came from, for the step's record (``None``: always
    computed, nothing to say). :class:`~retrainlib.fitcache.FitCache` is the other strategy.
    """

    def fit(self, train: pd.DataFrame, *, profile: Profile, work_dir: str | Path, disk_path: str | Path,
            version_bytes: int | None = None) -> TrainingResult:
        raise NotImplementedError

    def provenance(self) -> str | None:
        return None


class ChildProcessTrainer(Trainer):
    """Every fit computed, in a child process under the wall-clock guard (:func:`train_challenger`)."""

    def fit(self, train: pd.DataFrame, *, profile: Profile, work_dir: str | Path, disk_path: str | Path,
            version_bytes: int | None = None) -> TrainingResult:
        return train_challenger(train, profile=profile, work_dir=work_dir, disk_path=disk_path, version_bytes=version_bytes)


#: the playbook's trainer
CHILD_PROCESS = ChildProcessTrainer()


def _child(work_dir: Path) -> None:
    """The child's work: fit, clone for deployment, leaderboard, importance."""
    spec = json.loads((work_dir / "spec.json").read_text())
    train = pd.read_parquet(work_dir / "train.parquet")
    t0 = time.monotonic()
    predictor = automl.fit_predictor(
        train,
        label=spec["label"],
        path=work_dir / "autogluon",
        eval_metric=spec["eval_metric"],
        problem_type=spec["problem_type"],
        presets=spec["presets"],
        time_limit=spec["time_limit"],
        num_cpus=spec["num_cpus"],
        seed=spec["seed"],
        hyperparameters=spec["hyperparameters"],
        included_model_types=spec["included_model_types"],
        excluded_model_types=spec["excluded_model_types"],
        num_bag_folds=spec["num_bag_folds"],
    )
    fit_seconds = time.monotonic() - t0
    automl.leaderboard(predictor).to_csv(work_dir / "leaderboard.csv", index=False)
    sample = train.iloc[-min(len(train), 2000) :]
    importance = automl.feature_importance(predictor, sample, seed=spec["seed"], time_limit=min(60.0, spec["time_limit"] / 4))
    automl.deploy_clone(predictor, work_dir / "predictor")
    result = {
        "features": list(predictor.features()),
        "importance": importance,
        "fit_seconds": fit_seconds,
        # a fit that used (nearly) all of its budget may have been cut short: its result depends on load
        "time_limit_binding": fit_seconds >= 0.9 * spec["time_limit"],
        "cpu_seconds": _own_cpu_seconds(),  # read by the parent of a warm child, which is not its waiting parent
    }
    (work_dir / "result.json").write_text(json.dumps(result, indent=2))
