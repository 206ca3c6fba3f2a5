"""The step context: what every step is given (profile, folders, registry, run folder), and the run lock.

A notebook opens it from its parameters (:func:`open_step`); a step reads earlier steps' outputs
through it (``ctx.read(Analysis)``) and writes its own (``ctx.write(output)``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from .. import automl
from ..durable import write_json_atomic
from ..errors import RetrainError
from ..manifest import mark_abandoned
from ..outputs import Analysis, Promotion, Training, Validation
from ..paths import Paths
from ..playbook import new_run_id, step_of
from ..profiles import Profile, load_profile
from ..records import plain
from ..registry import RUN_LOCK_HELD_ENV, Registry

__all__ = ["StepContext", "open_step", "run_lock_of", "under_run_lock"]

T = TypeVar("T")
O = TypeVar("O", Analysis, Training, Validation, Promotion)


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

    def write(self, output: Analysis | Training | Validation | Promotion) -> Path:
        """Write a step's output as its ``<step>.json`` in the run folder."""
        path = self.run_dir / step_of(output).json_file
        write_json_atomic(path, plain(output.to_dict()), sort_keys=False)
        return path

    def read(self, kind: type[O]) -> O:
        """An earlier step's output; a clear error when that step has not run in this run folder."""
        path = self.run_dir / step_of(kind).json_file
        if not path.exists():
            raise RetrainError(f"{path.name} is missing from {self.run_dir}: run the earlier step's notebook first")
        return kind.from_dict(json.loads(path.read_text()))

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


def under_run_lock(step: Callable[..., T]) -> Callable[..., T]:
    """A step function that runs under :func:`run_lock_of` its context."""

    @functools.wraps(step)
    def locked(ctx: StepContext, *args: Any, **kwargs: Any) -> T:
        with run_lock_of(ctx):
            return step(ctx, *args, **kwargs)

    return locked
