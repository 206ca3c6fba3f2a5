"""The fast shared kernels: every registered drift statistic of a column, from one merge or one count.

Each numeric column is sorted once per window and the two sorted runs merged once (a stable
argsort of two runs is a linear merge) into a :class:`~retrainlib.drift.measures.Merged`; each
categorical column is counted once per window. Every method of :data:`~retrainlib.drift.methods.METHODS`
then computes its own statistic from that (its ``numeric`` or ``categorical`` function); a numeric
column with at most :data:`~retrainlib.drift.methods.DISCRETE_MAX` distinct values is also counted
per value and gets every ``categorical`` statistic over its values (PSI over values instead of
bins). Beside the methods' statistics:

- categorical: the share of current rows in categories the reference never had (counted, not
  dropped); a missing value is a category of its own;
- every column: the share of missing values in each window and the significance of its change.

All agree with scipy's on the same data (``tests/test_drift.py`` checks to 1e-6).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .measures import PSI_EPS, Merged, chi2_test
from .methods import DISCRETE_MAX, METHODS

__all__ = ["numeric_statistics", "categorical_statistics", "PSI_EPS"]

MISSING_CATEGORY = "(missing)"


def _nan(kind: str) -> dict[str, float]:
    """Every statistic of this kind's methods, unmeasured (a window without values)."""
    return {k: np.nan for m in METHODS.values() if getattr(m, kind) is not None for k in m.produces}


def counts_statistics(ref_counts: np.ndarray, cur_counts: np.ndarray) -> dict[str, float]:
    """Every method's ``categorical`` statistic from aligned count vectors (one slot per category)."""
    ref_counts = np.asarray(ref_counts, dtype=np.float64)
    cur_counts = np.asarray(cur_counts, dtype=np.float64)
    if ref_counts.sum() == 0 or cur_counts.sum() == 0:
        return _nan("categorical")
    out: dict[str, float] = {}
    for method in METHODS.values():
        if method.categorical is not None:
            out.update(method.categorical(ref_counts, cur_counts))
    return out


class Scratch:
    """Work arrays reused from column to column: a fresh large array costs its page faults each time."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, n: int, dtype: type = np.float64) -> np.ndarray:
        arr = self._arrays.get(name)
        if arr is None or len(arr) < n:
            arr = self._arrays[name] = np.empty(n, dtype)
        return arr[:n]


def numeric_from_sorted(a: np.ndarray, b: np.ndarray, *, psi_bins: int,
                         scratch: Scratch | None = None) -> dict[str, float]:
    """Every method's ``numeric`` statistic from the two sorted, non-missing samples (one merge, no search)."""
    n1, n2 = len(a), len(b)
    out = {**_nan("numeric"), "distinct": np.nan}
    if n1 == 0 or n2 == 0:
        return out
    scratch = scratch or Scratch()
    n = n1 + n2
    both = scratch.get("work", n)
    both[:n1], both[n1:] = a, b
    order = np.argsort(both, kind="stable")  # two sorted runs: a linear merge
    merged = np.take(both, order, out=scratch.get("merged", n), mode="clip")
    # each merged value moves F_ref - F_cur by +1/n1 (a reference value) or -1/n2 (a current one)
    steps = both
    steps[:n1], steps[n1:] = 1.0 / n1, -1.0 / n2
    gap = np.take(steps, order, out=scratch.get("diff", n), mode="clip")
    del order
    np.cumsum(gap, out=gap)
    np.abs(gap, out=gap)
    spacing = np.subtract(merged[1:], merged[:-1], out=scratch.get("work", n)[:-1])
    last = scratch.get("last", n, bool)  # last of a run of ties: where the CDFs are evaluated
    np.not_equal(spacing, 0.0, out=last[:-1])
    last[-1] = True
    distinct = int(np.count_nonzero(last))
    out["distinct"] = float(distinct)
    sample = Merged(a, b, merged, gap, last, spacing, psi_bins)
    for method in METHODS.values():
        if method.numeric is not None:
            out.update(method.numeric(sample))
    if distinct <= DISCRETE_MAX:  # few values: also the category statistics, counts per value
        values = merged[np.flatnonzero(last)]
        ca = np.diff(np.searchsorted(a, values, side="right"), prepend=0)
        cb = np.diff(np.searchsorted(b, values, side="right"), prepend=0)
        out.update(counts_statistics(ca, cb))
    return out


def numeric_statistics(reference: Any, current: Any, *, psi_bins: int = 10) -> dict[str, float]:
    """KS statistic and p-value, PSI, and Wasserstein distance (raw and / reference std).

    Missing values are dropped. The KS p-value is scipy's: exact up to 10,000 rows per sample,
    asymptotic (Smirnov) above.

    Parameters
    ----------
    reference, current : array-like of numbers
    psi_bins : int
        PSI bins, cut at the reference's quantiles.

    Returns
    -------
    dict
        ``ks``, ``ks_p``, ``psi``, ``wasserstein`` (scale-free), ``wasserstein_raw``, ``distinct``
        (distinct values in both); with at most 5 distinct values also ``chi2``, ``chi2_p`` and
        ``jensenshannon`` over the values, and ``psi`` over the values instead of bins.

    Examples
    --------
    >>> s = numeric_statistics([1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0])
    >>> s["ks"], s["wasserstein_raw"]
    (0.5, 2.0)
    """
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(current, dtype=np.float64)
    a = np.sort(a[~np.isnan(a)])
    b = np.sort(b[~np.isnan(b)])
    return numeric_from_sorted(a, b, psi_bins=psi_bins)


def category_codes(ref: pd.Series, cur: pd.Series) -> tuple[np.ndarray, np.ndarray, list]:
    """Aligned category codes for both windows: 0 is missing, 1.. the categories (reference's first)."""
    if isinstance(ref.dtype, pd.CategoricalDtype) and isinstance(cur.dtype, pd.CategoricalDtype):
        uniq_r, codes_r = ref.cat.categories, ref.cat.codes.to_numpy()
        uniq_c, codes_c = cur.cat.categories, cur.cat.codes.to_numpy()
    else:
        codes_r, uniq_r = pd.factorize(ref, use_na_sentinel=True)
        codes_c, uniq_c = pd.factorize(cur, use_na_sentinel=True)
    uniq_r = pd.Index(uniq_r)
    where = uniq_r.get_indexer(pd.Index(uniq_c))
    new = where < 0
    where[new] = len(uniq_r) + np.arange(int(new.sum()))
    lookup = np.concatenate([[0], where + 1])  # code -1 (missing) -> 0
    categories = [MISSING_CATEGORY, *list(uniq_r), *list(pd.Index(uniq_c)[new])]
    return np.asarray(codes_r, dtype=np.int64) + 1, lookup[np.asarray(codes_c, dtype=np.int64) + 1], categories


def category_counts(ref: pd.Series, cur: pd.Series) -> tuple[np.ndarray, np.ndarray, list]:
    """Aligned counts per category (slot 0: missing; then the reference's categories, then new ones)."""
    vr = ref.value_counts(dropna=False, sort=False)
    vc = cur.value_counts(dropna=False, sort=False)
    na_r, na_c = vr.index.isna(), vc.index.isna()
    vr, vc, miss_r, miss_c = vr[~na_r], vc[~na_c], int(vr[na_r].sum()), int(vc[na_c].sum())
    categories = vr.index.append(vc.index[~vc.index.isin(vr.index)])
    ref_counts = np.concatenate([[miss_r], vr.to_numpy(dtype=np.int64), np.zeros(len(categories) - len(vr), np.int64)])
    cur_counts = np.concatenate([[miss_c], vc.reindex(categories, fill_value=0).to_numpy(dtype=np.int64)])
    return ref_counts, cur_counts, [MISSING_CATEGORY, *categories]


def categorical_from_counts(ref_counts: np.ndarray, cur_counts: np.ndarray) -> dict[str, float]:
    out = counts_statistics(ref_counts, cur_counts)
    n2 = cur_counts[1:].sum()
    unseen = (ref_counts[1:] == 0) & (cur_counts[1:] > 0)
    out["unseen_share"] = float(cur_counts[1:][unseen].sum() / n2) if n2 else 0.0
    out["unseen_categories"] = float(unseen.sum())
    out["categories"] = float(np.count_nonzero(ref_counts[1:] + cur_counts[1:]))
    return out


def categorical_statistics(reference: Any, current: Any) -> dict[str, float]:
    """Chi-square (and p-value), PSI and Jensen-Shannon distance over categories, and the unseen share.

    A missing value is a category of its own; categories the reference never had are counted.
    ``unseen_share`` is the share of current non-missing rows in such categories.

    Examples
    --------
    >>> s = categorical_statistics(["a", "a", "b", "b"], ["a", "b", "c", "c"])
    >>> round(s["unseen_share"], 2), s["unseen_categories"]
    (0.5, 1.0)
    """
    ref_counts, cur_counts, _ = category_counts(pd.Series(reference), pd.Series(current))
    return categorical_from_counts(ref_counts, cur_counts)


def missing_stats(miss_r: int, n_r: int, miss_c: int, n_c: int) -> dict[str, float]:
    """The missing share of each window, its change, and the chi-square p-value of that change."""
    mr = miss_r / n_r if n_r else 0.0
    mc = miss_c / n_c if n_c else 0.0
    p = 1.0
    if 0 < miss_r + miss_c < n_r + n_c:
        p = chi2_test(np.array([miss_r, n_r - miss_r]), np.array([miss_c, n_c - miss_c]))[1]
    return {"missing_reference": mr, "missing_current": mc, "missing_change": abs(mc - mr), "missing_p": p}
