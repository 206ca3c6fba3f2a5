"""Drift: how far the current window has moved from the reference window, per feature and jointly.

:func:`compare` measures every feature of two frames and returns a :class:`DriftReport`: one
:class:`FeatureDrift` per feature (all statistics, the test that decided, its threshold), the
dataset drift score (share of drifted features, optionally weighted by the champion's feature
importance) and, when the profile asks, a :class:`MultivariateDrift` from a domain classifier.
:func:`target_drift` and :func:`prediction_drift` apply the same per-feature machinery to the
labels and to the champion's scores.

Statistics (all agree with scipy's on the same data):

- numeric: Kolmogorov-Smirnov statistic and p-value, PSI over reference-quantile bins, and the
  Wasserstein distance divided by the reference standard deviation (scale-free);
- categorical: chi-square test of homogeneity (2 x k table of counts) and its p-value, PSI over
  categories, Jensen-Shannon distance (natural log, as scipy's default), and the share of current
  rows in categories the reference never had (counted, not dropped); a missing value is a
  category of its own;
- every column: the share of missing values in each window.

Which test decides (the registry :data:`TESTS`) is chosen per profile and per column. ``auto``
does what Evidently users expect: up to ``large_sample`` rows a p-value test (KS for numeric,
chi-square for categorical and for numeric columns with at most 5 distinct values); above it an
effect-size test (Wasserstein for numeric, Jensen-Shannon for categorical), because at large n a
p-value flags differences too small to matter. An effect-size verdict also needs the difference
to be statistically significant (KS or chi-square p below ``p_value``), so the sampling noise
of a small window is never called drift. A change of a column's missing share of at least
``missing_threshold`` (and significant) is drift too; the test is then ``missing``.

Everything is computed on sorted arrays and category counts with numpy: each numeric column is
sorted once per window and merged once, each categorical column is counted once per window.
A window longer than ``max_rows`` (default 100,000) is sampled, the same seeded rows for every
column; at that size a Wasserstein distance is measured to about +-0.005 (its threshold is 0.05),
and ``max_rows=None`` compares every row. The domain classifier sees ``multivariate_rows`` rows.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> ref = pd.DataFrame({"x": rng.normal(size=5000), "c": rng.choice(list("ab"), 5000)})
>>> cur = pd.DataFrame({"x": rng.normal(0.5, 1, size=5000), "c": rng.choice(list("ab"), 5000)})
>>> report = compare(ref, cur, settings=DriftSettings(multivariate=False))
>>> [(f.column, f.test, f.drifted) for f in report.features]
[('x', 'wasserstein', True), ('c', 'jensenshannon', False)]
>>> report.score, report.drifted
(0.5, True)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import special  # scipy.stats (a second to import) only where it is needed

from .errors import DataContractError, ProfileError
from .profiles import DriftSettings
from .records import plain

__all__ = [
    "DriftTest",
    "TESTS",
    "FeatureDrift",
    "MultivariateDrift",
    "DriftReport",
    "compare",
    "multivariate",
    "target_drift",
    "prediction_drift",
    "numeric_statistics",
    "categorical_statistics",
    "plot_feature_drift",
    "plot_distributions",
]

#: numeric columns with at most this many distinct values are tested like categories under ``auto``
DISCRETE_MAX = 5
#: share floor used by PSI for empty bins (as usual for PSI)
PSI_EPS = 1e-4
#: above this many rows per window scipy's KS p-value uses the asymptotic distribution
_KS_EXACT_MAX = 10_000
_MISSING = "(missing)"


# --------------------------------------------------------------------------- the test registry
@dataclass(frozen=True)
class DriftTest:
    """One swappable drift test: which statistic decides and against which settings threshold.

    A *p-value* test (``p_value`` set) calls drift when ``stats[p_value] < threshold``; an
    *effect-size* test when ``stats[statistic] >= threshold`` and the column's significance test
    (``ks_p`` or ``chi2_p``) is below the profile's ``p_value``.
    """

    name: str
    kinds: tuple[str, ...]
    statistic: str
    threshold_setting: str
    p_value: str | None = None
    description: str = ""

    @property
    def is_effect_size(self) -> bool:
        return self.p_value is None


#: every drift test a profile may name, by name
TESTS: dict[str, DriftTest] = {
    "ks": DriftTest("ks", ("numeric",), "ks", "p_value", "ks_p", "two-sample Kolmogorov-Smirnov"),
    "wasserstein": DriftTest("wasserstein", ("numeric",), "wasserstein", "wasserstein_threshold",
                             description="Wasserstein distance / reference std"),
    "psi": DriftTest("psi", ("numeric", "categorical"), "psi", "psi_threshold",
                     description="population stability index"),
    "chi2": DriftTest("chi2", ("categorical",), "chi2", "p_value", "chi2_p", "chi-square test of homogeneity"),
    "jensenshannon": DriftTest("jensenshannon", ("categorical",), "jensenshannon", "jensenshannon_threshold",
                               description="Jensen-Shannon distance (natural log)"),
}
_MISSING_TEST = DriftTest("missing", ("numeric", "categorical"), "missing_change", "missing_threshold",
                          description="change of the missing-value share")


def _get_test(name: str, kind: str, column: str) -> DriftTest:
    """Look a test up in :data:`TESTS`; a miss lists what exists (for this kind of column)."""
    if name not in TESTS:
        raise ProfileError(f"unknown drift test {name!r} for column {column!r}; expected one of "
                           + ", ".join(repr(n) for n in sorted(TESTS)) + " or 'auto'")
    test = TESTS[name]
    if kind not in test.kinds:
        fits = sorted(n for n, t in TESTS.items() if kind in t.kinds)
        raise ProfileError(f"drift test {name!r} does not apply to {kind} column {column!r}; expected one of "
                           + ", ".join(repr(n) for n in fits) + " or 'auto' (set it under drift.per_column)")
    return test


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one column: every statistic computed and the verdict of the test that decided.

    ``severity`` is the statistic relative to its threshold (``statistic / threshold`` for an
    effect size, ``log(p) / log(threshold)`` for a p-value): at or above 1 the test says drift.
    ``p_value`` is the deciding test's, or for an effect-size test the significance test's (KS
    for numbers, chi-square for categories). ``stats`` holds every statistic computed, plus
    ``missing_reference``, ``missing_current``, ``missing_change`` and ``missing_p``.
    """

    column: str
    kind: str
    test: str
    statistic: float
    threshold: float
    drifted: bool
    p_value: float | None
    importance: float | None = None
    n_reference: int = 0
    n_current: int = 0
    severity: float = 0.0
    detail: str = ""
    stats: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return plain(asdict(self))


@dataclass(frozen=True)
class MultivariateDrift:
    """A domain classifier's cross-validated AUC at telling current rows from reference rows."""

    auc: float
    threshold: float
    drifted: bool
    p_value: float
    n_reference: int
    n_current: int
    folds: int
    columns: tuple[str, ...]
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return plain(asdict(self))


@dataclass(frozen=True)
class DriftReport:
    """Per-feature drift, the dataset drift score and verdict, and the multivariate check."""

    features: tuple[FeatureDrift, ...]
    score: float
    threshold: float
    drifted: bool
    multivariate: MultivariateDrift | None
    n_reference: int
    n_current: int
    weighted: bool = False
    rows_compared: tuple[int, int] = (0, 0)

    @property
    def drifted_features(self) -> tuple[str, ...]:
        return tuple(f.column for f in self.features if f.drifted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": plain(self.score),
            "threshold": self.threshold,
            "drifted": self.drifted,
            "weighted": self.weighted,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "rows_compared": list(self.rows_compared),
            "drifted_features": list(self.drifted_features),
            "features": [f.to_dict() for f in self.features],
            "multivariate": self.multivariate.to_dict() if self.multivariate else None,
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per feature, most drifted first."""
        keys = ("ks", "psi", "wasserstein", "chi2", "jensenshannon", "unseen_share", "missing_reference", "missing_current")
        rows = [{"feature": f.column, "kind": f.kind, "test": f.test, "statistic": f.statistic,
                 "threshold": f.threshold, "drifted": f.drifted, "p_value": f.p_value, "importance": f.importance,
                 "severity": f.severity, **{k: f.stats.get(k, np.nan) for k in keys}, "detail": f.detail}
                for f in self.features]
        cols = ["feature", "kind", "test", "statistic", "threshold", "drifted", "p_value", "importance",
                "severity", *keys, "detail"]
        frame = pd.DataFrame(rows, columns=cols)
        frame = frame.sort_values(["drifted", "severity"], ascending=[False, False], kind="stable")
        return frame.reset_index(drop=True)


# --------------------------------------------------------------------------- statistics
def _psi(p: np.ndarray, q: np.ndarray) -> float:
    p = np.maximum(p, PSI_EPS)
    q = np.maximum(q, PSI_EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def _counts_statistics(ref_counts: np.ndarray, cur_counts: np.ndarray) -> dict[str, float]:
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


class _Scratch:
    """Work arrays reused from column to column: a fresh large array costs its page faults each time."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, n: int, dtype: type = np.float64) -> np.ndarray:
        arr = self._arrays.get(name)
        if arr is None or len(arr) < n:
            arr = self._arrays[name] = np.empty(n, dtype)
        return arr[:n]


def _numeric_from_sorted(a: np.ndarray, b: np.ndarray, *, psi_bins: int,
                         scratch: _Scratch | None = None) -> dict[str, float]:
    """All numeric statistics from the two sorted, non-missing samples (one merge, no search)."""
    n1, n2 = len(a), len(b)
    out = {"ks": np.nan, "ks_p": np.nan, "psi": np.nan, "wasserstein": np.nan, "wasserstein_raw": np.nan,
           "distinct": np.nan}
    if n1 == 0 or n2 == 0:
        return out
    scratch = scratch or _Scratch()
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
        cat = _counts_statistics(ca, cb)
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
    return _numeric_from_sorted(a, b, psi_bins=psi_bins)


def _codes(ref: pd.Series, cur: pd.Series) -> tuple[np.ndarray, np.ndarray, list]:
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
    categories = [_MISSING, *list(uniq_r), *list(pd.Index(uniq_c)[new])]
    return np.asarray(codes_r, dtype=np.int64) + 1, lookup[np.asarray(codes_c, dtype=np.int64) + 1], categories


def _category_counts(ref: pd.Series, cur: pd.Series) -> tuple[np.ndarray, np.ndarray, list]:
    """Aligned counts per category (slot 0: missing; then the reference's categories, then new ones)."""
    vr = ref.value_counts(dropna=False, sort=False)
    vc = cur.value_counts(dropna=False, sort=False)
    na_r, na_c = vr.index.isna(), vc.index.isna()
    vr, vc, miss_r, miss_c = vr[~na_r], vc[~na_c], int(vr[na_r].sum()), int(vc[na_c].sum())
    categories = vr.index.append(vc.index[~vc.index.isin(vr.index)])
    ref_counts = np.concatenate([[miss_r], vr.to_numpy(dtype=np.int64), np.zeros(len(categories) - len(vr), np.int64)])
    cur_counts = np.concatenate([[miss_c], vc.reindex(categories, fill_value=0).to_numpy(dtype=np.int64)])
    return ref_counts, cur_counts, [_MISSING, *categories]


def _categorical_from_counts(ref_counts: np.ndarray, cur_counts: np.ndarray) -> dict[str, float]:
    out = _counts_statistics(ref_counts, cur_counts)
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
    ref_counts, cur_counts, _ = _category_counts(pd.Series(reference), pd.Series(current))
    return _categorical_from_counts(ref_counts, cur_counts)


# --------------------------------------------------------------------------- deciding
def _kind(series: pd.Series) -> str:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or not (pd.api.types.is_numeric_dtype(dtype)
                                                 or pd.api.types.is_datetime64_any_dtype(dtype)):
        return "categorical"
    return "numeric"


def _as_float(series: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        values = series.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
        values[series.isna().to_numpy()] = np.nan
        return values
    if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        series = pd.to_numeric(series, errors="coerce")
    if isinstance(series.dtype, np.dtype):  # plain numpy: a view when already float64
        return series.to_numpy(dtype=np.float64)
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def _present(values: np.ndarray) -> np.ndarray:
    """The non-missing values, as an array of our own (safe to sort in place)."""
    missing = np.isnan(values)
    return values[~missing] if missing.any() else values.copy()


def _missing_stats(miss_r: int, n_r: int, miss_c: int, n_c: int) -> dict[str, float]:
    mr = miss_r / n_r if n_r else 0.0
    mc = miss_c / n_c if n_c else 0.0
    p = 1.0
    if 0 < miss_r + miss_c < n_r + n_c:
        p = _counts_statistics(np.array([miss_r, n_r - miss_r]), np.array([miss_c, n_c - miss_c]))["chi2_p"]
    return {"missing_reference": mr, "missing_current": mc, "missing_change": abs(mc - mr), "missing_p": p}


def _severity(test: DriftTest, statistic: float, threshold: float) -> float:
    if not np.isfinite(statistic):
        return 0.0
    if test.is_effect_size:
        return statistic / threshold
    return float(np.log(max(statistic, 1e-300)) / np.log(threshold))


def _decide(column: str, kind: str, stats_: dict[str, float], settings: DriftSettings,
            n: int, importance: float | None, n_ref: int, n_cur: int) -> FeatureDrift:
    over = settings.per_column.get(column, {})
    name = over.get("test") or (settings.numeric_test if kind == "numeric" else settings.categorical_test)
    discrete = kind == "numeric" and "chi2" in stats_
    if name == "auto":
        if kind == "categorical" or discrete:
            name = "chi2" if n <= settings.large_sample else "jensenshannon"
        else:
            name = "ks" if n <= settings.large_sample else "wasserstein"
        test = TESTS[name]
    else:
        test = _get_test(name, kind, column)
    threshold = float(over.get("threshold", getattr(settings, test.threshold_setting)))
    significance = stats_.get("chi2_p" if (kind == "categorical" or discrete) else "ks_p", np.nan)
    if test.is_effect_size:
        statistic = stats_.get(test.statistic, np.nan)
        p_value = significance
        drifted = bool(statistic >= threshold and significance < settings.p_value)
        why = (f"{name} {statistic:.4g} {'>=' if statistic >= threshold else '<'} {threshold:g}"
               f", significance p={significance:.3g}")
    else:
        statistic = p_value = stats_.get(test.p_value, np.nan)
        drifted = bool(statistic < threshold)
        why = f"{name} p={statistic:.3g} {'<' if drifted else '>='} {threshold:g}"
    severity = _severity(test, statistic, threshold)
    missing_limit = float(over.get("missing_threshold", settings.missing_threshold))
    missing_drift = stats_["missing_change"] >= missing_limit and stats_["missing_p"] < settings.p_value
    if missing_drift and not drifted:
        test, statistic, threshold, p_value, drifted = (_MISSING_TEST, stats_["missing_change"], missing_limit,
                                                        stats_["missing_p"], True)
        severity = statistic / threshold
        why = (f"missing share {stats_['missing_reference']:.1%} -> {stats_['missing_current']:.1%}"
               f" (change >= {missing_limit:g})")
    elif missing_drift:
        why += f"; missing share {stats_['missing_reference']:.1%} -> {stats_['missing_current']:.1%}"
    return FeatureDrift(column, kind, test.name, float(statistic), threshold, drifted,
                        None if not np.isfinite(p_value) else float(p_value), importance, n_ref, n_cur,
                        float(severity), why, {k: float(v) for k, v in stats_.items()})


def _column_drift(column: str, ref: pd.Series, cur: pd.Series, settings: DriftSettings,
                  importance: float | None, scratch: _Scratch | None = None) -> FeatureDrift:
    over = settings.per_column.get(column, {})
    kind = over.get("kind") or _kind(ref)
    if kind == "numeric":
        a, b = _present(_as_float(ref)), _present(_as_float(cur))
        a.sort()
        b.sort()
        s = _numeric_from_sorted(a, b, psi_bins=settings.psi_bins, scratch=scratch)
        s.update(_missing_stats(len(ref) - len(a), len(ref), len(cur) - len(b), len(cur)))
        n = min(len(a), len(b))
    else:
        rc, cc, _ = _category_counts(ref, cur)
        s = _categorical_from_counts(rc, cc)
        s.update(_missing_stats(int(rc[0]), int(rc.sum()), int(cc[0]), int(cc.sum())))
        n = int(min(rc.sum(), cc.sum()))
    return _decide(column, kind, s, settings, n, importance, len(ref), len(cur))


def _check_columns(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str] | None) -> list[str]:
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


def compare(reference: pd.DataFrame, current: pd.DataFrame, *, columns: Sequence[str] | None = None,
            settings: DriftSettings = DriftSettings(), drift_threshold: float = 0.1,
            importance: Mapping[str, float] | None = None, seed: int = 0) -> DriftReport:
    """Measure the drift of every feature, the dataset drift score and (optionally) multivariate drift.

    Parameters
    ----------
    reference, current : DataFrame
        The champion's training window and the window to check.
    columns : sequence of str, optional
        Features to compare; default every column the two frames share.
    settings : DriftSettings
        Tests, thresholds, per-column overrides and row sampling (``max_rows`` per window).
    drift_threshold : float
        The dataset drifts when its score exceeds this.
    importance : mapping, optional
        Feature importance of the champion; shown per feature and, when
        ``settings.weight_by_importance``, used to weight the score (negative importance counts 0,
        a feature without importance counts 0; all zero falls back to the unweighted share).
    seed : int
        Seeds the row sampling and the domain classifier.

    Returns
    -------
    DriftReport

    Raises
    ------
    DataContractError
        A window is empty or a requested column is missing.
    ProfileError
        A per-column test does not exist or does not fit the column's kind.
    """
    cols = _check_columns(reference, current, columns)
    rng = np.random.default_rng(seed)
    ref_rows, cur_rows = _rows(len(reference), settings.max_rows, rng), _rows(len(current), settings.max_rows, rng)
    importance = dict(importance or {})
    scratch = _Scratch()
    features = tuple(
        _column_drift(c, _pick(reference[c], ref_rows), _pick(current[c], cur_rows), settings,
                      None if c not in importance else float(importance[c]), scratch)
        for c in cols
    )
    del scratch
    weighted = False
    flags = np.array([f.drifted for f in features], dtype=float)
    score = float(flags.mean()) if len(flags) else 0.0
    if settings.weight_by_importance and importance and features:
        w = np.array([max(f.importance or 0.0, 0.0) for f in features])
        if w.sum() > 0:
            score, weighted = float((w * flags).sum() / w.sum()), True
    mv = None
    if settings.multivariate and cols:
        mv = multivariate(reference, current, columns=cols, seed=seed, max_rows=settings.multivariate_rows,
                          threshold=settings.multivariate_auc)
    rows_compared = tuple(len(frame) if rows is None else len(rows)
                          for frame, rows in ((reference, ref_rows), (current, cur_rows)))
    return DriftReport(features, score, float(drift_threshold), bool(score > drift_threshold), mv,
                       len(reference), len(current), weighted, rows_compared)


# --------------------------------------------------------------------------- multivariate
def _rows(n: int, max_rows: int | None, rng: np.random.Generator) -> np.ndarray | None:
    """Sorted row positions of a sample of at most ``max_rows`` rows (None: every row)."""
    if max_rows is None or n <= max_rows:
        return None
    return np.sort(rng.choice(n, size=max_rows, replace=False))


def _pick(series: pd.Series, rows: np.ndarray | None) -> pd.Series:
    """The sampled rows of a column (positions already checked: drawn below len(series))."""
    if rows is None:
        return series
    values = series.array
    taken = series.to_numpy()[rows] if isinstance(series.dtype, np.dtype) else values.take(rows)
    return pd.Series(taken, name=series.name, copy=False)


def _design(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str],
            ref_rows: np.ndarray | None, cur_rows: np.ndarray | None) -> np.ndarray:
    """One float matrix of the sampled rows: numbers as they are, categories as shared codes, missing as NaN."""
    n1 = len(reference) if ref_rows is None else len(ref_rows)
    n2 = len(current) if cur_rows is None else len(cur_rows)
    X = np.empty((n1 + n2, len(columns)), dtype=np.float32)
    for j, c in enumerate(columns):
        r, k = _pick(reference[c], ref_rows), _pick(current[c], cur_rows)
        if _kind(reference[c]) == "numeric":
            X[:n1, j], X[n1:, j] = _as_float(r), _as_float(k)
        else:
            codes_r, codes_c, _ = _codes(r, k)  # 0 is missing
            X[:n1, j], X[n1:, j] = codes_r, codes_c
            X[:, j][X[:, j] == 0] = np.nan
    return X


def multivariate(reference: pd.DataFrame, current: pd.DataFrame, *, columns: Sequence[str] | None = None,
                 seed: int = 0, max_rows: int = 2_000, threshold: float = 0.55, folds: int = 3) -> MultivariateDrift:
    """Train a classifier to tell current rows from reference rows; its cross-validated AUC is the drift.

    An AUC near 0.5 means the windows cannot be told apart; a joint shift that keeps every
    marginal distribution (a changed correlation, say) still lifts it. A gradient-boosted tree
    model (scikit-learn's HistGradientBoostingClassifier, small and single-threaded) is fitted on
    at most ``max_rows`` sampled rows per window.

    Parameters
    ----------
    reference, current : DataFrame
    columns : sequence of str, optional
        Default every shared column.
    seed : int
    max_rows : int
        Rows sampled per window.
    threshold : float
        AUC at or above which the windows have drifted.
    folds : int
        Cross-validation folds.

    Returns
    -------
    MultivariateDrift
        ``p_value`` tests AUC = 0.5 with the Mann-Whitney normal approximation.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    cols = _check_columns(reference, current, columns)
    rng = np.random.default_rng(seed)
    ref_rows, cur_rows = _rows(len(reference), max_rows, rng), _rows(len(current), max_rows, rng)
    X = _design(reference, current, cols, ref_rows, cur_rows)
    n1 = len(reference) if ref_rows is None else len(ref_rows)
    n2 = len(current) if cur_rows is None else len(cur_rows)
    y = np.r_[np.zeros(n1), np.ones(n2)]
    k = max(2, min(folds, n1, n2))
    model = HistGradientBoostingClassifier(max_iter=20, learning_rate=0.2, max_leaf_nodes=15, max_bins=63,
                                           early_stopping=False, random_state=seed)
    proba = cross_val_predict(model, X, y, cv=StratifiedKFold(k, shuffle=True, random_state=seed),
                              method="predict_proba")[:, 1]
    auc = float(roc_auc_score(y, proba))
    se = math.sqrt((n1 + n2 + 1) / (12.0 * n1 * n2))
    p = float(special.ndtr(-(auc - 0.5) / se))  # scipy.stats.norm.sf's own function
    drifted = auc >= threshold
    detail = (f"domain classifier AUC {auc:.3f} {'>=' if drifted else '<'} {threshold:g} "
              f"({k}-fold, {n1} reference and {n2} current rows, {len(cols)} columns)")
    return MultivariateDrift(auc, float(threshold), bool(drifted), p, n1, n2, k, tuple(cols), detail)


# --------------------------------------------------------------------------- target and predictions
def target_drift(reference_labels: pd.Series, current_labels: pd.Series, *,
                 settings: DriftSettings = DriftSettings()) -> FeatureDrift:
    """Drift of the label: class balance for a classifier's labels, the distribution for a regressor's.

    Examples
    --------
    >>> ref = pd.Series([0] * 900 + [1] * 100, name="default")
    >>> cur = pd.Series([0] * 700 + [1] * 300, name="default")
    >>> t = target_drift(ref, cur)
    >>> t.column, t.test, t.drifted
    ('default', 'chi2', True)
    """
    ref, cur = pd.Series(reference_labels), pd.Series(current_labels)
    name = str(ref.name) if ref.name is not None else "target"
    return _column_drift(name, ref.reset_index(drop=True), cur.reset_index(drop=True), settings, None)


def prediction_drift(reference_scores: Any, current_scores: Any, *,
                     settings: DriftSettings = DriftSettings()) -> FeatureDrift:
    """Drift of the champion's predictions: scores (1-D) as numbers, class probabilities (2-D) as the predicted class."""
    def as_series(scores: Any) -> pd.Series:
        arr = np.asarray(scores)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim == 2:
            return pd.Series(np.argmax(arr, axis=1).astype(str), name="prediction")
        return pd.Series(arr, name="prediction")

    return _column_drift("prediction", as_series(reference_scores), as_series(current_scores), settings, None)


# --------------------------------------------------------------------------- pictures
def plot_feature_drift(report: DriftReport, ax=None):
    """Bar chart of each feature's drift relative to its threshold (1 = threshold); returns the Axes."""
    import matplotlib.pyplot as plt

    frame = report.to_frame().iloc[::-1]
    if ax is None:
        _, ax = plt.subplots(figsize=(8, max(2.5, 0.3 * len(frame) + 1)))
    colors = ["tab:red" if d else "tab:blue" for d in frame["drifted"]]
    labels = [f"{f} ({t})" for f, t in zip(frame["feature"], frame["test"])]
    ax.barh(labels, frame["severity"].clip(upper=10), color=colors)
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1, label="threshold")
    ax.set_xlabel("statistic / threshold (p-value tests: log p / log threshold); capped at 10")
    verdict = "drifted" if report.drifted else "not drifted"
    ax.set_title(f"Drift per feature: score {report.score:.2f} vs {report.threshold:g} ({verdict})")
    ax.legend(loc="lower right")
    return ax


def plot_distributions(reference: pd.DataFrame, current: pd.DataFrame, report: DriftReport, *, top: int = 4):
    """Overlaid reference and current distributions of the ``top`` most drifted features; returns the Figure."""
    import matplotlib.pyplot as plt

    names = [n for n in report.to_frame()["feature"] if n in reference.columns and n in current.columns][:top]
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(4 * max(len(names), 1), 3), squeeze=False)
    by_name = {f.column: f for f in report.features}
    for ax, name in zip(axes[0], names):
        f = by_name[name]
        if f.kind == "numeric":
            a, b = _as_float(reference[name]), _as_float(current[name])
            a, b = a[~np.isnan(a)], b[~np.isnan(b)]
            both = np.concatenate([a, b])
            bins = np.histogram_bin_edges(both, bins=40) if len(both) else 10
            ax.hist(a, bins=bins, density=True, alpha=0.5, label="reference")
            ax.hist(b, bins=bins, density=True, alpha=0.5, label="current")
        else:
            rc, cc, cats = _category_counts(reference[name], current[name])
            share_r, share_c = rc / max(rc.sum(), 1), cc / max(cc.sum(), 1)
            idx = np.argsort(-(share_r + share_c))[:12]
            x = np.arange(len(idx))
            ax.bar(x - 0.2, share_r[idx], width=0.4, label="reference")
            ax.bar(x + 0.2, share_c[idx], width=0.4, label="current")
            ax.set_xticks(x, [str(cats[i])[:12] for i in idx], rotation=45, ha="right")
        ax.set_title(f"{name}: {f.test} {f.statistic:.3g}" + (" (drifted)" if f.drifted else ""))
        ax.legend()
    if not names:
        axes[0][0].set_axis_off()
    fig.tight_layout()
    return fig
