"""The arithmetic the methods' statistics share: two sorted samples merged once, counts to shares,
PSI, the chi-square test of a table of counts, the Jensen-Shannon distance, and scipy's KS p-value.

All agree with scipy's on the same data (``tests/test_drift.py`` checks to 1e-6). ``scipy.special``
is the one scipy import here; ``scipy.stats`` (a second to import) is imported only by the KS
paths that need it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special  # scipy.stats (a second to import) only where it is needed

__all__ = ["Merged", "PSI_EPS", "psi", "shares", "chi2_test", "jensen_shannon", "ks_p_value"]

#: share floor used by PSI for empty bins (as usual for PSI)
PSI_EPS = 1e-4
#: above this many rows per window scipy's KS p-value uses the asymptotic distribution
_KS_EXACT_MAX = 10_000


@dataclass(frozen=True, eq=False)
class Merged:
    """Two sorted, non-missing, non-empty samples merged once: what every numeric statistic reads.

    ``gap`` is ``|F_ref - F_cur|`` after each merged value, ``last`` marks the last of a run of
    ties (where the two CDFs are evaluated), ``steps`` the distances between neighbouring merged
    values (one fewer). The arrays may be reused for the next column: read them, do not keep them.
    """

    a: np.ndarray
    b: np.ndarray
    merged: np.ndarray
    gap: np.ndarray
    last: np.ndarray
    steps: np.ndarray
    psi_bins: int


def psi(p: np.ndarray, q: np.ndarray) -> float:
    """Population stability index of two share vectors (each share floored at :data:`PSI_EPS`)."""
    p = np.maximum(p, PSI_EPS)
    q = np.maximum(q, PSI_EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def shares(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each window's shares over the categories either window has (both counts non-empty)."""
    keep = (ref_counts + cur_counts) > 0
    return ref_counts[keep] / ref_counts.sum(), cur_counts[keep] / cur_counts.sum()


def chi2_test(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    """Chi-square test of homogeneity of the 2 x k table of counts: (statistic, p-value); NaN for an empty window."""
    ref_counts = np.asarray(ref_counts, dtype=np.float64)
    cur_counts = np.asarray(cur_counts, dtype=np.float64)
    n1, n2 = ref_counts.sum(), cur_counts.sum()
    if n1 == 0 or n2 == 0:
        return np.nan, np.nan
    keep = (ref_counts + cur_counts) > 0
    r, c = ref_counts[keep], cur_counts[keep]
    total = r + c
    if len(total) < 2:
        return 0.0, 1.0
    n = n1 + n2
    e1, e2 = total * (n1 / n), total * (n2 / n)
    chi2 = float(np.sum((r - e1) ** 2 / e1) + np.sum((c - e2) ** 2 / e2))
    return chi2, float(special.chdtrc(len(total) - 1, chi2))  # scipy.stats.chi2.sf's own function


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance of two share vectors (natural log, as scipy's default)."""
    m = (p + q) / 2
    return float(np.sqrt(max((special.rel_entr(p, m).sum() + special.rel_entr(q, m).sum()) / 2, 0.0)))


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


def ks_p_value(d: float, n1: int, n2: int, ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> float:
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
