"""The two windows: which columns are compared, how each is read, and which rows are sampled.

A window longer than ``max_rows`` is sampled, the same seeded rows for every column
(:func:`plan_rows`); the domain classifier draws its own, smaller sample from a second generator
seeded alike. The plan depends only on the windows' lengths, so ``retrain drift`` draws it from
the files' row counts and reads only the rows it names (:mod:`retrainlib.drift.files`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import DataContractError

__all__ = ["RowPlan", "plan_rows", "check_columns", "kind_of", "as_float"]


def kind_of(series: pd.Series) -> str:
    """``numeric`` (numbers, datetimes) or ``categorical`` (text, categories, booleans)."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or not (pd.api.types.is_numeric_dtype(dtype)
                                                 or pd.api.types.is_datetime64_any_dtype(dtype)):
        return "categorical"
    return "numeric"


def as_float(series: pd.Series) -> np.ndarray:
    """A column as float64 with NaN for missing (datetimes as nanoseconds)."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        values = series.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
        values[series.isna().to_numpy()] = np.nan
        return values
    if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        series = pd.to_numeric(series, errors="coerce")
    if isinstance(series.dtype, np.dtype):  # plain numpy: a view when already float64
        return series.to_numpy(dtype=np.float64)
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def present(values: np.ndarray) -> np.ndarray:
    """The non-missing values, as an array of our own (safe to sort in place)."""
    missing = np.isnan(values)
    return values[~missing] if missing.any() else values.copy()


def check_columns(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str] | None) -> list[str]:
    """The columns to compare (default: every shared one); an empty window or a missing column is a DataContractError."""
    if len(reference) == 0:
        raise DataContractError("the reference window has no rows; expected the champion's training rows; "
                                "check the champion's recorded slices and data.batches")
    if len(current) == 0:
        raise DataContractError("the current window has no rows; expected rows newer than the champion's training "
                                "data; wait for a new batch or move as_of")
    if columns is None:
        return [c for c in reference.columns if c in current.columns]
    for where, frame in (("reference", reference), ("current", current)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataContractError(f"column {missing[0]!r} is missing from the {where} window (asked to compare "
                                    f"{len(columns)} columns); restore it or leave it out of columns")
    return list(columns)


def sample_rows(n: int, max_rows: int | None, rng: np.random.Generator) -> np.ndarray | None:
    """Sorted row positions of a sample of at most ``max_rows`` rows (None: every row)."""
    if max_rows is None or n <= max_rows:
        return None
    return np.sort(rng.choice(n, size=max_rows, replace=False))


def pick(series: pd.Series, rows: np.ndarray | None) -> pd.Series:
    """The sampled rows of a column (positions already checked: drawn below len(series))."""
    if rows is None:
        return series
    values = series.array
    taken = series.to_numpy()[rows] if isinstance(series.dtype, np.dtype) else values.take(rows)
    return pd.Series(taken, name=series.name, copy=False)


@dataclass(frozen=True)
class RowPlan:
    """Row positions each part reads, per window: ``features`` for the statistics, ``domain`` for the classifier.

    ``None`` means every row. ``n_reference``/``n_current`` are the windows' lengths the report states.
    """

    n_reference: int
    n_current: int
    features: tuple[np.ndarray | None, np.ndarray | None]
    domain: tuple[np.ndarray | None, np.ndarray | None] | None

    def needed(self, window: int) -> np.ndarray | None:
        """The sorted union of the rows of one window (0 reference, 1 current) any part reads; None: all."""
        parts = [self.features[window], *(() if self.domain is None else (self.domain[window],))]
        if any(p is None for p in parts):
            return None
        return np.unique(np.concatenate(parts))

    def within(self, reference_rows: np.ndarray | None, current_rows: np.ndarray | None) -> RowPlan:
        """The same plan for frames holding only those rows (positions renumbered into them)."""
        def local(rows: np.ndarray | None, kept: np.ndarray | None) -> np.ndarray | None:
            return rows if kept is None or rows is None else np.searchsorted(kept, rows)

        kept = (reference_rows, current_rows)
        features = tuple(local(self.features[w], kept[w]) for w in (0, 1))
        domain = None if self.domain is None else tuple(local(self.domain[w], kept[w]) for w in (0, 1))
        return RowPlan(self.n_reference, self.n_current, features, domain)


def plan_rows(n_reference: int, n_current: int, *, max_rows: int | None, domain_rows: int | None,
              seed: int) -> RowPlan:
    """The rows compared: ``max_rows`` per window for the statistics; ``domain_rows`` for the classifier (None: no classifier)."""
    rng = np.random.default_rng(seed)
    features = (sample_rows(n_reference, max_rows, rng), sample_rows(n_current, max_rows, rng))
    domain = None
    if domain_rows is not None:
        rng = np.random.default_rng(seed)  # the classifier's own draw, as multivariate() alone makes it
        domain = (sample_rows(n_reference, domain_rows, rng), sample_rows(n_current, domain_rows, rng))
    return RowPlan(n_reference, n_current, features, domain)
