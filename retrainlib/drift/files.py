"""Drift between two data files, reading only what is compared (``retrain drift``).

The row sample depends only on the windows' lengths (:func:`~retrainlib.drift.windows.plan_rows`),
and a Parquet file states its length in its footer. So :func:`compare_files` draws the plan
first, then reads only the compared columns and only the planned rows (the statistics' sample and
the domain classifier's), taken from the Arrow table before pandas converts anything. The report is
the one :func:`~retrainlib.drift.compare` gives on the whole files. A CSV file is read whole.
While Arrow reads and numpy sorts (both without the GIL), a thread imports what the analysis will
import anyway (scipy.stats, then scikit-learn when the classifier runs), so a second core is not
idle; an import the analysis reaches first waits for the thread's (Python's module locks).
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import Mapping, Sequence

from .. import data
from ..errors import DataContractError
from .analysis import compare_planned, plan_compare
from .results import DriftReport
from .settings import DriftSettings
from .windows import check_columns

__all__ = ["compare_files"]


def compare_files(reference: str | Path, current: str | Path, *, columns: Sequence[str] | None = None,
                  settings: DriftSettings = DriftSettings(), drift_threshold: float = 0.1,
                  importance: Mapping[str, float] | None = None, seed: int = 0, min_rows: int = 1,
                  what: tuple[str, str] = ("reference file", "current file")) -> DriftReport:
    """:func:`~retrainlib.drift.compare` of two Parquet or CSV files, reading only the compared columns and rows.

    ``columns`` defaults to the reference file's columns; a file with fewer than ``min_rows`` rows
    is a :class:`DataContractError` naming it as ``what`` says (``("--reference file", ...)``).
    """
    paths = (Path(reference), Path(current))
    cols = list(columns) if columns is not None else data.column_names(paths[0], what=what[0])
    counts = [data.count_rows(p) for p in paths]
    plan = None
    if None not in counts:
        for label, path, n in zip(what, paths, counts):
            _check_length(label, path, int(n), min_rows)
        plan = plan_compare(int(counts[0]), int(counts[1]), cols, settings=settings, seed=seed)
    kept = (None, None) if plan is None else (plan.needed(0), plan.needed(1))
    preload = _preload(plan.domain is not None) if plan is not None else None
    try:
        frames = [data.read_columns(p, cols, rows=rows, what=label) for p, rows, label in zip(paths, kept, what)]
        if plan is None:  # a CSV file: its length is known once read
            for label, path, frame in zip(what, paths, frames):
                _check_length(label, path, len(frame), min_rows)
            plan = plan_compare(len(frames[0]), len(frames[1]), cols, settings=settings, seed=seed)
        else:
            plan = plan.within(*kept)
        cols = check_columns(*frames, cols)
        return compare_planned(*frames, cols, plan, settings=settings, drift_threshold=drift_threshold,
                               importance=importance, seed=seed)
    finally:
        if preload is not None:
            preload.join()  # never leave an import running when this returns or raises


def _check_length(label: str, path: Path, n: int, min_rows: int) -> None:
    if n < min_rows:
        raise DataContractError(f"{label} {path} has {n} row(s); drift needs at least {min_rows} rows in each file")


def _preload(classifier: bool) -> threading.Thread:
    """Import scipy.stats (the KS p-value's) and, if the classifier runs, scikit-learn in a thread started now.

    Saves wall time, not CPU time. An import that fails here fails again, with its message, where it is used.
    """
    names = ["scipy.stats", *(("sklearn.ensemble", "sklearn.metrics", "sklearn.model_selection") if classifier else ())]

    def run() -> None:
        for name in names:
            try:
                importlib.import_module(name)
            except ImportError:
                return

    thread = threading.Thread(target=run, name="drift-preload", daemon=True)
    thread.start()
    return thread
