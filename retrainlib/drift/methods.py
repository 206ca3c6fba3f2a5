"""The drift-method registry: the one list of drift methods a profile may name, each with its statistic.

Each :class:`DriftMethod` says what it applies to (``kinds``), how its statistic is computed (a
function per kind: ``numeric`` reads two sorted samples merged once, ``categorical`` two aligned
count vectors), which keys that function returns (``statistic``, ``p_value``, ``also``), which
``drift:`` setting holds its threshold (``threshold_key``, a field of
:class:`~retrainlib.drift.settings.DriftSettings`), whether it is an effect size or a p-value, and
in which situations ``auto`` picks it. :mod:`~retrainlib.drift.kernels` runs every registered
statistic on every column, :mod:`~retrainlib.drift.analysis` decides with the chosen method,
:class:`~retrainlib.drift.results.DriftReport` shows each method's statistic, and
:class:`~retrainlib.drift.settings.DriftSettings` validates a profile's method names against
:data:`METHODS`: adding a method is one entry here (and a threshold field there if it needs its
own) plus its tests; nothing else lists method names.

``auto`` sorts a column into a *shape* and a *size*: ``continuous`` (a numeric column with more
than :data:`DISCRETE_MAX` distinct values) or ``discrete`` (a categorical column, or a numeric one
with few values, whose values are then counted and every ``categorical`` statistic computed over
them), and ``small`` (at most ``large_sample`` rows) or ``large``. Each situation has exactly one
method: a p-value test while small, an effect size when large (at large n a p-value flags
differences too small to matter). An effect size is only drift when the difference is also
significant: the p-value test ``auto`` uses for that shape while small (:func:`significance_of`).

>>> auto_method("continuous", n=500, large_sample=1000).name, auto_method("discrete", n=5000, large_sample=1000).name
('ks', 'jensenshannon')
>>> method_names("categorical")
('chi2', 'jensenshannon', 'psi')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from ..errors import ProfileError
from .measures import Merged, chi2_test, jensen_shannon, ks_p_value, psi, shares

__all__ = [
    "DriftMethod",
    "METHODS",
    "MISSING",
    "KINDS",
    "SHAPES",
    "SIZES",
    "DISCRETE_MAX",
    "method_names",
    "get_method",
    "auto_method",
    "significance_of",
    "check_method_name",
    "statistic_columns",
]

#: the column kinds a method may apply to
KINDS = ("numeric", "categorical")
#: how ``auto`` sees a column: continuous numbers, or discrete values (categories, or numbers with few values)
SHAPES = ("continuous", "discrete")
#: how ``auto`` sees a window: at most ``large_sample`` rows (small) or more (large)
SIZES = ("small", "large")
#: numeric columns with at most this many distinct values are ``discrete`` (tested like categories by ``auto``)
DISCRETE_MAX = 5


@dataclass(frozen=True)
class DriftMethod:
    """One drift method: what it applies to, what it reads, where its threshold lives, when ``auto`` picks it.

    A ``p-value`` method calls drift when ``stats[p_value] < threshold``; an ``effect size`` method
    when ``stats[statistic] >= threshold`` and the significance test of the column's shape
    (:func:`significance_of`) gives a p-value below the profile's ``p_value``.

    ``numeric(merged)`` and ``categorical(ref_counts, cur_counts)`` compute the statistic on a
    numeric column (:class:`~retrainlib.drift.measures.Merged`) and on counts per category (a
    categorical column, or a numeric one with at most :data:`DISCRETE_MAX` values); each returns
    exactly the keys :attr:`produces` names. Each kind in ``kinds`` needs its function. Every
    ``numeric`` function runs on every numeric column, every ``categorical`` one on every
    categorical column and on the values of a discrete numeric one (so ``chi2`` is there for
    ``auto`` to decide a numeric column with few values, though a profile names it only for
    categories).
    """

    name: str
    kinds: tuple[str, ...]
    statistic: str
    threshold_key: str
    measures: Literal["effect size", "p-value"]
    p_value: str | None = None
    auto: tuple[tuple[str, str], ...] = ()
    description: str = ""
    numeric: Callable[[Merged], dict[str, float]] | None = None
    categorical: Callable[[np.ndarray, np.ndarray], dict[str, float]] | None = None
    also: tuple[str, ...] = ()

    @property
    def produces(self) -> tuple[str, ...]:
        """The statistics keys its functions return: the statistic, its p-value if it has one, and ``also``."""
        return (self.statistic, *((self.p_value,) if self.p_value else ()), *self.also)

    @property
    def is_effect_size(self) -> bool:
        return self.measures == "effect size"

    @property
    def threshold_setting(self) -> str:  # the name before the registry (kept for callers)
        return self.threshold_key

    @property
    def decides_on(self) -> str:
        """The statistics key whose value is compared with the threshold."""
        return self.statistic if self.is_effect_size else str(self.p_value)


def _ks(m: Merged) -> dict[str, float]:
    d = float(np.max(m.gap, where=m.last, initial=0.0))
    return {"ks": d, "ks_p": ks_p_value(d, len(m.a), len(m.b), m.a, m.b)}


def _wasserstein(m: Merged) -> dict[str, float]:
    w = float(np.dot(m.gap[:-1], m.steps))  # the area between the two CDFs
    std = float(np.std(m.a))
    scale = std if std > 0 else float(np.std(m.merged))
    return {"wasserstein": (w / scale) if scale > 0 else 0.0, "wasserstein_raw": w}


def _psi_binned(m: Merged) -> dict[str, float]:
    """PSI over reference-quantile bins: interior edges at the reference's quantiles (ties collapse)."""
    a, b, n1, n2 = m.a, m.b, len(m.a), len(m.b)
    qs = np.arange(1, m.psi_bins) / m.psi_bins
    edges = np.unique(a[np.minimum((qs * n1).astype(np.int64), n1 - 1)])
    ra = np.diff(np.searchsorted(a, edges, side="right"), prepend=0, append=n1) / n1
    rb = np.diff(np.searchsorted(b, edges, side="right"), prepend=0, append=n2) / n2
    return {"psi": psi(ra, rb)}


def _psi_counts(ref_counts: np.ndarray, cur_counts: np.ndarray) -> dict[str, float]:
    return {"psi": psi(*shares(ref_counts, cur_counts))}


def _chi2(ref_counts: np.ndarray, cur_counts: np.ndarray) -> dict[str, float]:
    chi2, p = chi2_test(ref_counts, cur_counts)
    return {"chi2": chi2, "chi2_p": p}


def _jensenshannon(ref_counts: np.ndarray, cur_counts: np.ndarray) -> dict[str, float]:
    return {"jensenshannon": jensen_shannon(*shares(ref_counts, cur_counts))}


#: every drift method a profile may name (``drift.numeric_test``, ``drift.categorical_test``,
#: ``per_column.<c>.test``), in the order of the ``retrain drift`` table's statistic columns
METHODS: dict[str, DriftMethod] = {m.name: m for m in (
    DriftMethod("ks", ("numeric",), "ks", "p_value", "p-value", p_value="ks_p", auto=(("continuous", "small"),),
                description="two-sample Kolmogorov-Smirnov", numeric=_ks),
    DriftMethod("psi", ("numeric", "categorical"), "psi", "psi_threshold", "effect size",
                description="population stability index", numeric=_psi_binned, categorical=_psi_counts),
    DriftMethod("wasserstein", ("numeric",), "wasserstein", "wasserstein_threshold", "effect size",
                auto=(("continuous", "large"),), description="Wasserstein distance / reference std",
                numeric=_wasserstein, also=("wasserstein_raw",)),
    DriftMethod("chi2", ("categorical",), "chi2", "p_value", "p-value", p_value="chi2_p", auto=(("discrete", "small"),),
                description="chi-square test of homogeneity", categorical=_chi2),
    DriftMethod("jensenshannon", ("categorical",), "jensenshannon", "jensenshannon_threshold", "effect size",
                auto=(("discrete", "large"),), description="Jensen-Shannon distance (natural log)",
                categorical=_jensenshannon),
)}

#: not selectable: every column is also checked for a change of its missing share (``missing_threshold``)
MISSING = DriftMethod("missing", KINDS, "missing_change", "missing_threshold", "effect size",
                      description="change of the missing-value share")


def statistic_columns() -> tuple[str, ...]:
    """Each registered method's statistic, in registry order (the columns of ``DriftReport.to_frame``)."""
    return tuple(m.statistic for m in METHODS.values())


def method_names(kind: str | None = None) -> tuple[str, ...]:
    """The registered method names (those applying to ``kind`` when given), sorted."""
    return tuple(sorted(n for n, m in METHODS.items() if kind is None or kind in m.kinds))


def _listed(names: tuple[str, ...]) -> str:
    return ", ".join(repr(n) for n in names)


def check_method_name(name: object, kind: str | None = None) -> str:
    """``name`` if it is ``auto`` or a method for ``kind``; else ValueError saying what is allowed (profiles' validators)."""
    choices = ("auto", *method_names(kind))
    if name not in choices:
        what = f"a drift method for {kind} columns" if kind else "a drift method"
        raise ValueError(f"{name!r} is not {what}; expected one of {_listed(choices)}")
    return str(name)


def get_method(name: str, kind: str, column: str) -> DriftMethod:
    """A method by name for one column; a miss lists what exists (for this kind of column)."""
    if name not in METHODS:
        raise ProfileError(f"unknown drift test {name!r} for column {column!r}; expected one of "
                           f"{_listed(method_names())} or 'auto'")
    method = METHODS[name]
    if kind not in method.kinds:
        raise ProfileError(f"drift test {name!r} does not apply to {kind} column {column!r}; expected one of "
                           f"{_listed(method_names(kind))} or 'auto' (set it under drift.per_column)")
    return method


def auto_method(shape: str, *, n: int, large_sample: int) -> DriftMethod:
    """The method ``auto`` picks for a column of this shape compared on ``n`` rows."""
    situation = (shape, "small" if n <= large_sample else "large")
    for method in METHODS.values():
        if situation in method.auto:
            return method
    raise LookupError(f"no drift method is registered for {situation}")  # the registry's contract test forbids it


def significance_of(shape: str) -> DriftMethod:
    """The p-value test that must agree before an effect size of this shape is drift (auto's small-sample test)."""
    return auto_method(shape, n=0, large_sample=1)
