"""The fast shared kernels: every drift statistic of a column from sorted arrays or category counts.

All agree with scipy's on the same data (``tests/test_drift.py`` checks to 1e-6):

- numeric: Kolmogorov-Smirnov statistic and p-value, PSI over reference-quantile bins, and the
  Wasserstein distance divided by the reference standard deviation (scale-free); a column with
  at most :data:`~retrainlib.drift.methods.DISCRETE_MAX` distinct values also gets the category
  statistics over its values;
- categorical: chi-square test of homogeneity (2 x k table of counts) and its p-value, PSI over
  categories, Jensen-Shannon distance (natural log, as scipy's default), and the share of current
  rows in categories the reference never had (counted, not dropped); a missing value is a
  category of its own;
- every column: the share of missing values in each window and the significance of its change.

Each numeric column is sorted once per window and the two sorted runs merged once (a stable
argsort of two runs is a linear merge); each categorical column is counted once per window. Every
method of :mod:`retrainlib.drift.methods` reads its statistic from these dicts. ``scipy.special``
is the one scipy import here; ``scipy.stats`` (a second to import) is imported only by the KS
paths that need it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import special  # scipy.stats (a second to import) only where it is needed

from .methods import DISCRETE_MAX

__all__ = ["numeric_statistics", "categorical_statistics", "PSI_EPS"]

#: share floor used by PSI for empty bins (as usual for PSI)
PSI_EPS = 1e-4
#: above this many rows per window scipy's KS p-value uses the asymptotic distribution
_KS_EXACT_MAX = 10_000
MISSING_CATEGORY = "(missing)"


def _psi(p: np.ndarray, q: np.ndarray) -> float:
    p = np.maximum(p, PSI_EPS)
    q = np.maximum(q, PSI_EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def counts_statistics(ref_counts: np.ndarray, cur_counts: np.ndarray) -> dict[str, float]:
    """chi2, chi2_p, psi, jensenshannon from aligned count vectors (one slot per category)."""
    ref_counts = np.asarray(ref_counts, dtype=np.float64)
    cur_counts = np.asarray(cur_counts, dtype=np.float64)
    n1, n2 = ref_counts.sum(), cur_counts.sum()
    if n1 == 0 or n2 == 0:
        return {"chi2": np.nan, "chi2_p": np.nan, "psi": np.nan, "jensenshannon": np.nan}
    keep = (ref_counts + cur_counts) > 0
    r, c = ref_counts[keep], cur_counts[keep]
    total = r + c
    n = n1 + n2
    if len(total) < 2:
        chi2, chi2_p = 0.0, 1.0
    else:
        e1, e2 = total * (n1 / n), total * (n2 / n)
        chi2 = float(np.sum((r - e1) ** 2 / e1) + np.sum((c - e2) ** 2 / e2))
        chi2_p = float(special.chdtrc(len(total) - 1, chi2))  # scipy.stats.chi2.sf's own function
    p, q = r / n1, c / n2
    m = (p + q) / 2
    js = float(np.sqrt(max((special.rel_entr(p, m).sum() + special.rel_entr(q, m).sum()) / 2, 0.0)))
    return {"chi2": chi2, "chi2_p": chi2_p, "psi": _psi(p, q), "jensenshannon": js}


def _smirnov(n: int, x: float) -> float:
    """One-sided Smirnov tail P(D+ >= x), the exact sum scipy.special.smirnov evaluates, vectorised.

    Only the terms within e^-80 of the largest are summed (located on a coarse grid first), so it
    costs milliseconds where the special function loops over all n terms.
    """
    jmax = int(np.floor(n * (1 - x)))

    def log_terms(j: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = (special.gammaln(n + 1.0) - special.gammaln(j + 1.0) - special.gammaln(n - j + 1.0)
                   + (n - j) * np.log(1 - x - j / n) + (j - 1) * np.log(x + j / n))
        return np.where(np.isnan(out), -np.inf, out)

    step = max(1, jmax // 2000)
    coarse = np.arange(0, jmax + 1, step, dtype=np.float64)
    lt = log_terms(coarse)
    top = lt.max()
    if not np.isfinite(top):
        return 0.0
    keep = np.flatnonzero(lt >= top - 80.0)
    lo = max(0, int(coarse[keep[0]]) - 2 * step)
    hi = min(jmax, int(coarse[keep[-1]]) + 2 * step)
    fine = log_terms(np.arange(lo, hi + 1, dtype=np.float64))
    return float(x * np.exp(fine).sum())


def _ks_p_value(d: float, n1: int, n2: int, ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> float:
    """scipy.stats.ks_2samp's two-sided p-value (method='auto'), without its slow paths."""
    if max(n1, n2) <= _KS_EXACT_MAX:  # scipy's exact distribution
        from scipy import stats  # imported only where needed (a second to import)

        return float(stats.ks_2samp(ref_sorted, cur_sorted).pvalue)
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = float(np.round(m * n / (m + n)))
    t = en * d * d
    if en > 140 and 1.0 < en * d < en - 1 and (d >= 0.5 or 2.2 <= t < 370.0):  # where kstwo.sf is 2 * smirnov
        return float(np.clip(2 * _smirnov(int(en), d), 0.0, 1.0))
    from scipy import stats

    return float(np.clip(stats.kstwo.sf(d, en), 0.0, 1.0))


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
    """All numeric statistics from the two sorted, non-missing samples (one merge, no search)."""
    n1, n2 = len(a), len(b)
    out = {"ks": np.nan, "ks_p": np.nan, "psi": np.nan, "wasserstein": np.nan, "wasserstein_raw": np.nan,
           "distinct": np.nan}
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
    diff = np.take(steps, order, out=scratch.get("diff", n), mode="clip")
    del order
    np.cumsum(diff, out=diff)
    np.abs(diff, out=diff)
    gaps = np.subtract(merged[1:], merged[:-1], out=scratch.get("work", n)[:-1])
    last = scratch.get("last", n, bool)  # last of a run of ties: where the CDFs are evaluated
    np.not_equal(gaps, 0.0, out=last[:-1])
    last[-1] = True
    d = float(np.max(diff, where=last, initial=0.0))
    w = float(np.dot(diff[:-1], gaps))
    distinct = int(np.count_nonzero(last))
    out["distinct"] = float(distinct)
    std = float(np.std(a))
    scale = std if std > 0 else float(np.std(merged))
    out.update(ks=d, ks_p=_ks_p_value(d, n1, n2, a, b), wasserstein_raw=w,
               wasserstein=(w / scale) if scale > 0 else 0.0)
    if distinct <= DISCRETE_MAX:  # few values: also the category statistics, counts per value
        values = merged[np.flatnonzero(last)]
        ca = np.diff(np.searchsorted(a, values, side="right"), prepend=0)
        cb = np.diff(np.searchsorted(b, values, side="right"), prepend=0)
        cat = counts_statistics(ca, cb)
        out.update(chi2=cat["chi2"], chi2_p=cat["chi2_p"], jensenshannon=cat["jensenshannon"], psi=cat["psi"])
        return out
    # PSI over reference-quantile bins: interior edges at the reference's deciles (ties collapse)
    qs = np.arange(1, psi_bins) / psi_bins
    edges = np.unique(a[np.minimum((qs * n1).astype(np.int64), n1 - 1)])
    ra = np.diff(np.searchsorted(a, edges, side="right"), prepend=0, append=n1) / n1
    rb = np.diff(np.searchsorted(b, edges, side="right"), prepend=0, append=n2) / n2
    out["psi"] = _psi(ra, rb)
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
        p = counts_statistics(np.array([miss_r, n_r - miss_r]), np.array([miss_c, n_c - miss_c]))["chi2_p"]
    return {"missing_reference": mr, "missing_current": mc, "missing_change": abs(mc - mr), "missing_p": p}
