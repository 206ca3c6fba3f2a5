"""Drift detectors on the champion's error stream: river's ADWIN, KSWIN and Page-Hinkley behind one adapter.

The degradation trigger (:func:`retrainlib.triggers.degradation_trigger`) can watch the champion's
*per-row* losses as they arrived — batch after batch in time order, rows in time order inside a batch
— instead of one metric per batch, so a decline inside one batch is seen. :func:`row_losses` turns
labels and scores into losses (log loss per row for classification, absolute error for regression);
:func:`scan` feeds them, divided by the mean loss of the stream's first rows (so one level means the
same on every stream), to one detector of :data:`DETECTORS` and reports the first *upward* alarm: a
detector that tests both directions (ADWIN, KSWIN) also fires when the loss falls, and such an alarm
is not a degradation.

river is imported only here, and only when a detector runs.

>>> import numpy as np
>>> calm = np.random.default_rng(0).exponential(1.0, 3000)
>>> scan(calm, detector="page-hinkley").alarm is None
True
>>> worse = np.concatenate([calm, 1.6 * np.random.default_rng(1).exponential(1.0, 2000)])
>>> scan(worse, detector="page-hinkley").alarm.row >= 3000
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .errors import ProfileError

__all__ = ["Detector", "DETECTORS", "Alarm", "Scan", "scan", "row_losses", "check_detector"]

#: rows of the stream whose mean loss is the unit the detector sees
BASELINE_ROWS = 500


@dataclass(frozen=True)
class Detector:
    """One river detector: what its ``level`` (``triggers.detector_level``) means, its default, and how it is built."""

    name: str
    river_name: str
    level_means: str
    default_level: float
    block: int  # rows averaged per update (1: every row)
    make: Callable[[float, int], Any]


def _adwin(level: float, seed: int):
    from river import drift

    return drift.ADWIN(delta=level)


def _kswin(level: float, seed: int):
    from river import drift

    return drift.KSWIN(alpha=level, window_size=150, stat_size=50, seed=seed)


def _page_hinkley(level: float, seed: int):
    from river import drift

    return drift.PageHinkley(min_instances=30, delta=0.1, threshold=level, mode="up")


#: the detectors the degradation trigger can run on per-row losses (``triggers.degradation_detector``)
DETECTORS: dict[str, Detector] = {
    d.name: d
    for d in (
        Detector("adwin", "ADWIN", "delta, the confidence of a cut (smaller: fewer alarms)", 0.002, 1, _adwin),
        Detector("kswin", "KSWIN", "alpha, the Kolmogorov-Smirnov test's level (smaller: fewer alarms); "
                 "fed means of 25 rows, as one KS test per row is slow and noisy", 1e-4, 25, _kswin),
        Detector("page-hinkley", "PageHinkley", "threshold, the cumulative excess of loss, in mean losses of the first "
                 "rows, above 0.1 per row (larger: fewer alarms)", 100.0, 1, _page_hinkley),
    )
}


def check_detector(name: str) -> Detector:
    """The detector called ``name``; an unknown name lists the known ones."""
    if name not in DETECTORS:
        raise ProfileError(f"unknown degradation detector {name!r}; expected one of "
                           + ", ".join(repr(k) for k in DETECTORS))
    return DETECTORS[name]


@dataclass(frozen=True)
class Alarm:
    """Where a detector first saw the loss rise: row of the whole stream, part (batch) and row inside it."""

    row: int
    part: int
    row_in_part: int
    before: float  # mean loss (in baseline units) of the rows before the alarm, since the last reset
    after: float  # mean loss of the newest rows at the alarm

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Scan:
    """One detector over one loss stream: its first upward alarm (None: quiet) and how many alarms it ignored."""

    detector: str
    level: float
    rows: int
    baseline: float
    alarm: Alarm | None
    ignored_down: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["alarm"] = self.alarm.to_dict() if self.alarm else None
        return d


def scan(losses: np.ndarray | Sequence[np.ndarray], *, detector: str, level: float | None = None, seed: int = 0,
         baseline_rows: int = BASELINE_ROWS) -> Scan:
    """Feed a loss stream to one detector in order; the first alarm where the loss went *up*.

    ``losses`` is one array or a sequence of arrays (one per batch, in time order); the alarm names
    both the row of the whole stream and the part it fell in. Losses are divided by the mean of the
    first ``baseline_rows`` rows. Deterministic for a given ``seed`` (KSWIN samples its window).
    """
    spec = check_detector(detector)
    level = spec.default_level if level is None else float(level)
    parts = [np.asarray(p, dtype=float).ravel() for p in ([losses] if isinstance(losses, np.ndarray) else losses)]
    stream = np.concatenate(parts) if parts else np.zeros(0)
    stream = stream[np.isfinite(stream)] if not np.isfinite(stream).all() else stream
    base = float(stream[:baseline_rows].mean()) if stream.size else 1.0
    x = stream / base if base > 0 else stream
    ends = np.cumsum([p.size for p in parts])
    k = spec.block
    values = x[: x.size // k * k].reshape(-1, k).mean(axis=1) if k > 1 else x
    det = spec.make(level, seed)
    start, ignored = 0, 0
    for i, v in enumerate(values):
        det.update(float(v))
        if not det.drift_detected:
            continue
        row = (i + 1) * k - 1
        recent = x[max(start, row + 1 - max(50, 2 * k)): row + 1]
        earlier = x[start: max(start, row + 1 - len(recent))]
        if earlier.size and recent.mean() > earlier.mean():
            part = int(np.searchsorted(ends, row, side="right"))
            first = int(ends[part - 1]) if part else 0
            return Scan(spec.name, level, int(x.size), base, Alarm(int(row), part, int(row - first),
                                                                    round(float(earlier.mean()), 4),
                                                                    round(float(recent.mean()), 4)), ignored)
        ignored += 1  # the loss fell: not a degradation
        start = row + 1
    return Scan(spec.name, level, int(x.size), base, None, ignored)


def row_losses(y_true: Sequence, scores: np.ndarray, *, problem_type: str, classes: Sequence | None = None) -> np.ndarray:
    """Per-row losses from :func:`retrainlib.automl.predict_scores`'s scores: log loss for classification
    (probabilities clipped to [1e-6, 1 - 1e-6]; a class the model never learnt gets 1e-6), absolute error for
    regression.

    >>> row_losses([1, 0], np.array([0.9, 0.2]), problem_type="binary", classes=[0, 1]).round(3).tolist()
    [0.105, 0.223]
    """
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=float)
    if problem_type == "regression":
        return np.abs(y.astype(float) - s)
    classes = list(classes) if classes is not None else sorted(np.unique(y).tolist())
    if problem_type == "binary":
        p = np.clip(s, 1e-6, 1 - 1e-6)
        return -np.log(np.where(y == classes[1], p, 1 - p))
    idx = {c: i for i, c in enumerate(classes)}
    col = np.array([idx.get(v, -1) for v in y])
    p = np.where(col >= 0, s[np.arange(len(y)), np.clip(col, 0, None)], 1e-6)
    return -np.log(np.clip(p, 1e-6, 1.0))
