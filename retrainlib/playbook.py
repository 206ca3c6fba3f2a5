"""The playbook's steps: one table naming each step, its notebook, its JSON file and its output type.

Everything that names a step (the runner, replay, report, the backtest, the CLI) reads it from
:data:`STEPS`. Like :mod:`retrainlib.outputs`, this module imports neither pandas nor AutoGluon, so
the runner can use it without loading the fitting stack.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .errors import RetrainError
from .outputs import Analysis, Promotion, Training, Validation
from .stepnames import STEP_NAMES, function, number

__all__ = ["Step", "STEPS", "step", "step_of", "read_output", "NOTEBOOK_NAMES", "new_run_id"]

O = TypeVar("O", Analysis, Training, Validation, Promotion)


@dataclass(frozen=True)
class Step:
    """One playbook step."""

    name: str  # short name: analyze, retrain, validate, promote
    notebook: str  # notebook stem, e.g. 10-analyze-drift (notebooks/<notebook>.ipynb)
    output: type  # its output type (retrainlib.outputs)

    @property
    def number(self) -> str:
        """``10``, ``20``, …: what ``retrain step --step`` accepts besides the notebook stem."""
        return number(self.notebook)

    @property
    def function(self) -> str:
        """The :mod:`retrainlib.steps` function the notebook calls, e.g. ``analyze_drift`` (Airflow's task id)."""
        return function(self.notebook)

    @property
    def json_file(self) -> str:
        """The step's output in the run folder."""
        return f"{self.notebook}.json"


#: the playbook's steps, in the order a run executes them
STEPS: tuple[Step, ...] = tuple(Step(name, notebook, output) for (name, notebook), output
                                 in zip(STEP_NAMES, (Analysis, Training, Validation, Promotion), strict=True))

#: the notebook stems, in order
NOTEBOOK_NAMES: tuple[str, ...] = tuple(s.notebook for s in STEPS)


def step(key: str) -> Step:
    """The step called ``key`` (its short name or its notebook stem)."""
    for s in STEPS:
        if key in (s.name, s.notebook):
            return s
    raise RetrainError(f"no playbook step {key!r}; the steps are {', '.join(s.notebook for s in STEPS)}")


def step_of(output: type | object) -> Step:
    """The step whose output type ``output`` is (a type or an instance)."""
    kind = output if isinstance(output, type) else type(output)
    for s in STEPS:
        if s.output is kind:
            return s
    raise TypeError(f"{kind.__name__} is not a step output type")


def read_output(run_dir: Path, kind: type[O]) -> O | None:
    """The output of the step whose type is ``kind`` in ``run_dir``; ``None`` when that step wrote none."""
    path = Path(run_dir) / step_of(kind).json_file
    if not path.is_file():
        return None
    return kind.from_dict(json.loads(path.read_text()))


def new_run_id(profile_name: str, now: dt.datetime | None = None) -> str:
    """A run's id: ``<UTC timestamp>-<profile>``, e.g. ``20240310T120000Z-demo``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{profile_name}"
