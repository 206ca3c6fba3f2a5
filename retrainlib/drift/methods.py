"""The drift-method registry: the one list of drift methods a profile may name.

Each :class:`DriftMethod` says what it applies to (``kinds``), which statistic of the shared
kernels it reads (:mod:`retrainlib.drift.kernels` computes every statistic of a column in one
pass), which ``drift:`` setting holds its threshold (``threshold_key``, a field of
:class:`~retrainlib.profiles.DriftSettings`), whether it is an effect size or a p-value, and in
which situations ``auto`` picks it. :mod:`retrainlib.profiles` validates a profile's method names
against :data:`METHODS`, and :mod:`retrainlib.drift.analysis` decides with them; nothing else lists
method names.

``auto`` sorts a column into a *shape* and a *size*: ``continuous`` (a numeric column with more
than :data:`DISCRETE_MAX` distinct values) or ``discrete`` (a categorical column, or a numeric one
with few values), and ``small`` (at most ``large_sample`` rows) or ``large``. Each situation has
exactly one method: a p-value test while small, an effect size when large (at large n a p-value
flags differences too small to matter). An effect size is only drift when the difference is also
significant: the p-value test ``auto`` uses for that shape while small (:func:`significance_of`).

This module imports nothing heavy (no numpy): profiles import it to validate.

>>> auto_method("continuous", n=500, large_sample=1000).name, auto_method("discrete", n=5000, large_sample=1000).name
('ks', 'jensenshannon')
>>> method_names("categorical")
('chi2', 'jensenshannon', 'psi')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ProfileError

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
    """

    name: str
    kinds: tuple[str, ...]
    statistic: str
    threshold_key: str
    measures: Literal["effect size", "p-value"]
    p_value: str | None = None
    auto: tuple[tuple[str, str], ...] = ()
    description: str = ""

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


#: every drift method a profile may name (``drift.numeric_test``, ``drift.categorical_test``, ``per_column.<c>.test``)
METHODS: dict[str, DriftMethod] = {m.name: m for m in (
    DriftMethod("ks", ("numeric",), "ks", "p_value", "p-value", p_value="ks_p", auto=(("continuous", "small"),),
                description="two-sample Kolmogorov-Smirnov"),
    DriftMethod("wasserstein", ("numeric",), "wasserstein", "wasserstein_threshold", "effect size",
                auto=(("continuous", "large"),), description="Wasserstein distance / reference std"),
    DriftMethod("psi", ("numeric", "categorical"), "psi", "psi_threshold", "effect size",
                description="population stability index"),
    DriftMethod("chi2", ("categorical",), "chi2", "p_value", "p-value", p_value="chi2_p", auto=(("discrete", "small"),),
                description="chi-square test of homogeneity"),
    DriftMethod("jensenshannon", ("categorical",), "jensenshannon", "jensenshannon_threshold", "effect size",
                auto=(("discrete", "large"),), description="Jensen-Shannon distance (natural log)"),
)}

#: not selectable: every column is also checked for a change of its missing share (``missing_threshold``)
MISSING = DriftMethod("missing", KINDS, "missing_change", "missing_threshold", "effect size",
                      description="change of the missing-value share")


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
