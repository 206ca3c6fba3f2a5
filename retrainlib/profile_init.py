"""``retrain init``: a first profile written from a folder of batch files, every key commented.

:func:`infer_profile` reads the folder (column names of every file, the label and time columns of
every file, two whole batches) and returns an :class:`InitPlan`: the file pattern, the time column
(named, or found), batch spacing and rows, problem type and metric from the label, id-like and
constant columns to ignore, the guide's thresholds for the system type, ``retraining_interval`` from
the spacing, window and holdout in batches. :func:`write_profile` renders it as commented YAML,
checks it with :func:`retrainlib.profiles.load_profile` and only then moves it into place.

A folder that cannot make a profile is refused with one :class:`DataContractError` line and nothing
is written: no batch files, one batch, mixed patterns, no time column, the label missing from a
batch, a label with one value.

>>> GUIDE["standard-business"].performance
0.85
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import data
from .durable import write_atomic
from .errors import DataContractError, ProfileError
from .paths import Paths
from .preflight import check_inside_home
from .profiles import load_profile

__all__ = ["GUIDE", "GuideRow", "InitPlan", "infer_profile", "render_profile", "write_profile"]


@dataclass(frozen=True)
class GuideRow:
    """One row of the guide's threshold table: a value inside each of its ranges."""

    performance: float
    drift: float
    interval_days: float
    max_time: float
    improvement: float


#: the guide's table by system type (each value inside that row's range; tests/test_profiles.py holds the ranges)
GUIDE: dict[str, GuideRow] = {
    "critical": GuideRow(0.95, 0.05, 1, 3600, 0.01),
    "high-load": GuideRow(0.90, 0.10, 3, 3600, 0.02),
    "standard-business": GuideRow(0.85, 0.20, 14, 7200, 0.02),
    "experimental": GuideRow(0.75, 0.25, 14, 14400, 0.05),
    "research": GuideRow(0.65, 0.30, 30, 28800, 0.10),
}

#: per problem type: (eval_metric, validation metrics)
METRICS = {"binary": ("roc_auc", ("roc_auc", "log_loss")),
           "multiclass": ("accuracy", ("accuracy", "log_loss")),
           "regression": ("r2", ("r2", "root_mean_squared_error"))}
_TIME_NAME = re.compile(r"(date|time|timestamp|day|period|month|week|year)", re.I)
_MIN_TRAIN_ROWS = 200  # the profile's default min_train_rows


@dataclass(frozen=True)
class InitPlan:
    """What :func:`infer_profile` found in a batch folder, and the profile values it chose from it."""

    name: str
    batches: str  # as the profile gives it: relative to the home when inside it
    pattern: str
    files: int
    label: str
    time_column: str
    time_found: str  # how the time column was chosen
    spacing_days: float
    rows_per_batch: int
    problem_type: str
    classes: int
    key: str | None
    ignore: tuple[str, ...]
    constant: tuple[str, ...]
    system_type: str
    interval_days: float
    window_batches: int
    holdout_batches: int = 1
    notes: tuple[str, ...] = field(default=())

    @property
    def metric(self) -> str:
        return METRICS[self.problem_type][0]

    def summary(self) -> list[tuple[str, str]]:
        """(what, found) pairs that ``retrain init`` prints."""
        return [
            ("batch files", f"{self.files} × {self.pattern} in {self.batches}"),
            ("time column", f"{self.time_column} ({self.time_found})"),
            ("batch spacing", f"{self.spacing_days:g} days (median)"),
            ("rows per batch", f"{self.rows_per_batch} (median)"),
            ("label", f"{self.label}: {self.problem_type}" + (f", {self.classes} classes" if self.classes else "")
             + f" -> eval_metric {self.metric}"),
            ("ignored columns", ", ".join(self.ignore) or "none"),
            ("system type", f"{self.system_type} (the guide's thresholds)"),
            ("retraining_interval", f"{self.interval_days:g} days"),
            ("window", f"newest {self.window_batches} batches, holdout {self.holdout_batches}"),
        ]


def _refuse(folder: Path, what: str) -> DataContractError:
    return DataContractError(f"{folder}: {what}; nothing was written")


def _batch_files(folder: Path) -> tuple[list[Path], str]:
    if not folder.is_dir():
        raise _refuse(folder, "is not a folder; give --data the folder holding one Parquet or CSV file per period")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    kinds = {p.suffix for p in files if p.suffix in (".parquet", ".csv")}
    if not kinds:
        raise _refuse(folder, "holds no batch files (*.parquet or *.csv); put one file per period there")
    if len(kinds) > 1:
        counts = ", ".join(f"{sum(p.suffix == k for p in files)} *{k}" for k in sorted(kinds))
        raise _refuse(folder, f"mixes batch file patterns ({counts}); keep one format in the folder")
    suffix = kinds.pop()
    batches = [p for p in files if p.suffix == suffix]
    if len(batches) < 2:
        raise _refuse(folder, f"holds one batch file ({batches[0].name}); a profile needs at least two periods "
                              "(one to train on, one to validate on)")
    return batches, f"*{suffix}"


@dataclass(frozen=True)
class _Batches:
    """The batch folder: its batch files (sorted by name) and each file's column names."""

    folder: Path
    files: list[Path]
    pattern: str
    names: dict[Path, list[str]]

    def require(self, column: str, what: str, fix: str) -> None:
        """Refuse the folder when a batch lacks ``column`` (``what`` names it, ``fix`` says what to do)."""
        missing = [p.name for p in self.files if column not in self.names[p]]
        if missing:
            raise _refuse(self.folder, f"{what} is missing from {len(missing)} batch(es), first {missing[0]}{fix}")


def _time_column(b: _Batches, first: pd.DataFrame, label: str, named: str | None) -> tuple[str, str]:
    """The time column (``named``, or found among the ``first`` batch's date columns) and how it was chosen."""
    folder, files, columns = b.folder, b.files, list(first.columns)
    if named is not None:
        b.require(named, f"time column {named!r} (--time-column)", "; name a column every batch has")
        if _as_times(first[named]) is None:
            raise _refuse(folder, f"time column {named!r} (--time-column) holds values that are not timestamps in "
                                  f"{files[0].name}; name a date or timestamp column")
        return named, "named by --time-column"
    found = [c for c in columns if c != label and _as_times(first[c]) is not None]
    if not found:
        raise _refuse(folder, f"has no time column in {files[0].name} (no column of dates or timestamps among "
                              f"{', '.join(columns[:12])}); add one or name it with --time-column")
    typed = [c for c in found if pd.api.types.is_datetime64_any_dtype(first[c])]
    pick = sorted(typed or found, key=lambda c: (not _TIME_NAME.search(c), columns.index(c)))[0]
    how = "the only date column" if len(found) == 1 else f"found among {', '.join(found)}; name another with --time-column"
    return pick, how


def _as_times(values: pd.Series) -> pd.Series | None:
    """The column as timestamps when every value is one (text included), else None; numbers are not times."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
        return None
    sample = values.dropna().astype(str).head(200)
    if sample.empty or not sample.str.contains(r"\d{4}|\d{1,2}[/.-]\d{1,2}", regex=True).all():
        return None
    try:
        return pd.to_datetime(sample, format="mixed")
    except (ValueError, TypeError):
        return None


def _problem_type(labels: pd.Series) -> tuple[str, int]:
    values = labels.dropna()
    n = int(values.nunique())
    if n == 2:
        return "binary", 2
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    whole = numeric and bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
    if not numeric or (whole and n <= 20):
        return "multiclass", n
    return "regression", 0


_ID_NAME = re.compile(r"(^|_)(id|key|row|index|idx|uuid)$|^id_|^row", re.I)


def _unique_in_batch(frame: pd.DataFrame, column: str) -> bool:
    s = frame[column]
    kind_ok = pd.api.types.is_integer_dtype(s) or pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s)
    return bool(kind_ok and len(s) >= 20 and s.notna().all() and s.nunique() == len(s))


def _id_like(values: pd.Series, column: str) -> bool:
    """An id: no value twice across every batch (a country or a day of the year recurs: a feature), and text, a
    dense run of whole numbers (a row counter), or named like an id (a population is unique but a measure)."""
    if values.duplicated().any():
        return False
    if not pd.api.types.is_integer_dtype(values):
        return True
    span = int(values.max()) - int(values.min()) + 1
    return span <= 10 * len(values) or bool(_ID_NAME.search(column))


def infer_profile(folder: str | Path, *, label: str, name: str | None = None, time_column: str | None = None,
                  system_type: str = "standard-business", home: str | Path | None = None) -> InitPlan:
    """Read the batch folder and choose every profile value from it; refuse (one line) what cannot make a profile."""
    paths = Paths.discover(home)
    folder = Path(os.path.normpath(paths.profile(folder).absolute()))  # links kept: a run reads the path as written
    check_inside_home(paths, str(folder), "--data", Path("retrain init"))  # where `retrain run` will look for it
    if system_type not in GUIDE:
        raise ProfileError(f"--system-type {system_type!r} is not a row of the guide; expected one of "
                           + ", ".join(repr(k) for k in GUIDE))
    files, pattern = _batch_files(folder)
    names = {p: data.column_names(p) for p in files}
    b = _Batches(folder, files, pattern, names)
    b.require(label, f"label {label!r}", f" (columns there: {', '.join(names[files[0]][:12])}); "
                                         "name the target column with --label")
    first = data.read_frame(files[0], what="batch file")
    time_col, time_found = _time_column(b, first, label, time_column)
    b.require(time_col, f"time column {time_col!r}", "; every batch needs it (or name another with --time-column)")
    every_label, spacing, per_batch = _labels_and_spacing(b, label, time_col)
    problem, classes = _problem_type(every_label)
    ids, constant = _ignorable(b, first, label, time_col)
    guide = GUIDE[system_type]
    try:
        shown = str(folder.relative_to(paths.home))
    except ValueError:
        shown = str(folder)
    default_name = folder.parent.name if folder.name in ("batches", "data") else folder.name
    chosen = name or re.sub(r"[^A-Za-z0-9_.-]+", "-", default_name).strip("-.") or "profile"
    return InitPlan(
        name=chosen, batches=shown, pattern=pattern, files=len(files), label=label, time_column=time_col,
        time_found=time_found, spacing_days=spacing, rows_per_batch=per_batch, problem_type=problem, classes=classes,
        key=ids[0] if ids else None, ignore=tuple(dict.fromkeys(ids + constant)), constant=tuple(constant),
        system_type=system_type, interval_days=_interval(guide.interval_days, spacing),
        window_batches=_window(len(files), spacing, per_batch),
    )


def _labels_and_spacing(b: _Batches, label: str, time_col: str) -> tuple[pd.Series, float, int]:
    """Every batch's labels, the median days between the batches' newest rows and the median rows per batch.

    Refuses a label with one value, and batches whose names do not sort them in time.
    """
    labels, ends, rows = [], [], []
    for p in b.files:
        part = data.read_frame(p, [label, time_col], what="batch file")
        labels.append(part[label])
        times = pd.to_datetime(part[time_col], format="mixed") if not pd.api.types.is_datetime64_any_dtype(part[time_col]) \
            else part[time_col]
        ends.append(times.max())
        rows.append(len(part))
    every_label = pd.concat(labels, ignore_index=True)
    values = every_label.dropna().unique()
    if len(values) < 2:
        shown = repr(values[0].item() if hasattr(values[0], "item") else values[0]) if len(values) else "none (all missing)"
        raise _refuse(b.folder, f"label {label!r} has one value in every batch ({shown}); nothing can be learned from it — "
                                "name the target column with --label")
    gaps = np.diff(pd.to_datetime(pd.Series(ends)).to_numpy()).astype("timedelta64[s]").astype(float) / 86400
    spacing = round(float(np.median(gaps)), 2) if len(gaps) else 0.0
    if spacing <= 0:
        raise _refuse(b.folder, f"batches sorted by name do not follow each other in time on {time_col!r} "
                                "(their newest rows are not later one after another); name files so they sort by period")
    return every_label, spacing, int(np.median(rows))


def _ignorable(b: _Batches, first: pd.DataFrame, label: str, time_col: str) -> tuple[list[str], list[str]]:
    """The id-like columns (no value twice across every batch) and the constant ones (in the first and last batch)."""
    columns = list(first.columns)
    last = data.read_frame(b.files[-1], what="batch file")
    maybe = [c for c in columns if c not in (label, time_col) and _unique_in_batch(first, c)]
    if maybe:  # read only those columns of every batch
        every = pd.concat([data.read_frame(p, [c for c in maybe if c in b.names[p]], what="batch file") for p in b.files],
                          ignore_index=True)
        ids = [c for c in maybe if every[c].notna().all() and _id_like(every[c], c)]
    else:
        ids = []
    constant = [c for c in columns if c not in (label, time_col) and first[c].nunique(dropna=False) <= 1
                and (c not in last or last[c].nunique(dropna=False) <= 1)]
    return ids, constant


def _interval(guide_days: float, spacing: float) -> float:
    """The guide's interval rounded up to whole batches, and at least two batches (at one, ``hybrid`` would retrain on
    every batch through its schedule); at most 366 days, a profile's limit."""
    batches = max(2, math.ceil(guide_days / spacing - 1e-9))
    return float(min(366.0, round(batches * spacing, 2)))


def _window(n_files: int, spacing: float, rows: int) -> int:
    """Batches in the sliding window: a year of batches (a season held), at least three and enough for
    min_train_rows, but at most a third of the history so a backtest has batches to replay after it."""
    year = math.ceil(365 / spacing) if spacing else 1
    enough = math.ceil(_MIN_TRAIN_ROWS / max(rows, 1))
    cap = max(1, (n_files - 1) // 3)
    return int(max(1, min(max(year, enough, 3), cap)))


def _q(value: Any) -> str:
    """A YAML scalar: plain when safe, else quoted."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def render_profile(plan: InitPlan) -> str:
    """The profile as YAML text, every key with a one-line comment saying where its value came from."""
    blank = ("", "")
    lines = [*_top_keys(plan), blank, *_data_keys(plan), blank, *_training_keys(plan), blank, *_gate_keys(plan)]
    width = max(len(t) for t, _ in lines) + 2
    body = [f"{t.ljust(width)}# {w}" if t else "" for t, w in lines]
    head = [f"# Written by `retrain init --data {plan.batches} --label {plan.label}`: every value below was inferred from",
            "# the batch folder or taken from the practitioner's guide; the comment says which. Edit freely;",
            f"# `retrain backtest --profile params/{plan.name}.yaml` replays it, `retrain tune` chooses the policy.", ""]
    return "\n".join(head + body) + "\n"


def _top_keys(plan: InitPlan) -> list[tuple[str, str]]:
    """(key line, comment) pairs of the profile's top-level keys: its name and the guide's thresholds."""
    g = GUIDE[plan.system_type]
    metric = METRICS[plan.problem_type][0]
    return [
        (f"name: {_q(plan.name)}", "the profile's name (params/<name>.yaml)"),
        (f"description: {_q(f'written by retrain init from {plan.batches}')}", "free text"),
        (f"model_name: {_q(plan.name)}", "the registry folder under models/"),
        ("", ""),
        (f"performance_threshold: {g.performance:g}", f"the guide's {plan.system_type} row, in {metric}'s units; "
            "`retrain tune` picks one from your history"),
        (f"drift_threshold: {g.drift:g}", f"the guide's {plan.system_type} row: share of features allowed to drift"),
        ("data_quality_threshold: 0.8", "the guide: below this quality score retraining is blocked"),
        (f"retraining_interval: {plan.interval_days:g}", f"days: the guide's {g.interval_days:g} rounded up to whole "
            f"batches of {plan.spacing_days:g} days, at least two (else hybrid retrains every batch)"),
        (f"max_retraining_time: {g.max_time:g}", f"seconds: the guide's {plan.system_type} row"),
        (f"improvement_threshold: {g.improvement:g}", f"the guide's {plan.system_type} row: a challenger's gain to be promoted"),
        ("stability_threshold: 0.95", "the guide: at most 5 points more predictions flip under 1% noise"),
        ("cpu_threshold: 0.9", "the guide: share of CPU a fit may hold"),
        ("memory_threshold: 0.9", "the guide: share of memory a fit may hold"),
        ("disk_threshold: 0.9", "the guide: share of the disk that may be full"),
        ("max_versions: 10", "the guide: versions kept in the registry"),
        ("backup_retention_days: 30", "the guide: days a former champion is kept"),
        ("guide:", "the guide row this profile follows"),
        (f"  row: {plan.system_type}", "--system-type"),
    ]


def _data_keys(plan: InitPlan) -> list[tuple[str, str]]:
    """The ``data:`` section: the batch folder and what was found in it."""
    ignored = ", ".join(_q(c) for c in plan.ignore)
    return [
        ("data:", "the batch folder retrain init read"),
        (f"  batches: {_q(plan.batches)}", f"{plan.files} batch files, one per period ({plan.spacing_days:g} days apart)"),
        (f"  pattern: {_q(plan.pattern)}", "the one file format found there"),
        (f"  label: {_q(plan.label)}", "--label"),
        (f"  time_column: {_q(plan.time_column)}", plan.time_found),
        (f"  key: {_q(plan.key)}" if plan.key else "  key: null", "a column unique on every row (an id)" if plan.key
            else "no column is unique on every row"),
        (f"  ignore_columns: [{ignored}]", "id-like columns (unique per row) and constant ones; never features"
            if plan.ignore else "no id-like or constant column found"),
    ]


def _training_keys(plan: InitPlan) -> list[tuple[str, str]]:
    """The ``training:`` section: the window, the metric from the label, a bounded AutoGluon configuration."""
    metric = METRICS[plan.problem_type][0]
    return [
        ("training:", f"{plan.rows_per_batch} rows per batch (median)"),
        ("  strategy: sliding_window", "train on the newest batches; `retrain tune` also tries full and incremental"),
        (f"  window_batches: {plan.window_batches}", "a year of batches (at least 3), at most a third of the history"),
        (f"  holdout_batches: {plan.holdout_batches}", "the newest labelled batch: validation only, nobody trains on it"),
        (f"  eval_metric: {metric}", f"{plan.problem_type} label" + (f" with {plan.classes} classes" if plan.classes else "")),
        (f"  problem_type: {plan.problem_type}", f"from the label's values ({plan.label})"),
        ("  presets: medium_quality", "AutoGluon's presets"),
        ("  hyperparameters:", "bounded by configuration: reproducible, so a backtest shares identical fits"),
        ("    GBM:", "LightGBM only"),
        ("      - {num_boost_round: 200, learning_rate: 0.05}", "a fit of seconds on most batches"),
        ("  num_cpus: 1", "threads for AutoGluon and OMP"),
    ]


def _gate_keys(plan: InitPlan) -> list[tuple[str, str]]:
    """The ``validation:``, ``triggers:`` and ``schedule:`` sections."""
    metric, metrics = METRICS[plan.problem_type]
    return [
        ("validation:", "the gates a challenger passes"),
        (f"  metrics: [{', '.join(metrics)}]", f"{metric} first: the improvement gate's metric"),
        ("  require_significance: false", "no bootstrap significance test on the gain"),
        ("  bootstrap_samples: 300", "paired bootstrap draws for the gain's interval"),
        ("", ""),
        ("triggers:", "when to retrain"),
        ("  policy: hybrid", "schedule, drift, performance and degradation, any of them; `retrain tune` picks one"),
        ("  min_history: 5", "evaluations the degradation detector needs before it may fire"),
        ("", ""),
        ("schedule:", "how often `retrain schedule` runs the playbook"),
        (f"  every_minutes: {max(60, round(plan.spacing_days * 1440))}", "once per batch period"),
    ]


def write_profile(plan: InitPlan, *, home: str | Path | None = None, force: bool = False) -> Path:
    """Write ``params/<name>.yaml`` after :func:`load_profile` accepted it; an existing file needs ``force``."""
    paths = Paths.discover(home)
    target = paths.params / f"{plan.name}.yaml"
    if target.exists() and not force:
        raise ProfileError(f"{target} exists; pass --force to replace it or --name to write another")
    text = render_profile(plan)
    with tempfile.TemporaryDirectory() as tmp:
        check = Path(tmp) / f"{plan.name}.yaml"
        check.write_text(text)
        load_profile(check)  # what it wrote validates, or nothing is written
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, text)
    return target
