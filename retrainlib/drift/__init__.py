"""Drift: how far the current window has moved from the reference window, per feature and jointly.

One module per concept:

- :mod:`~retrainlib.drift.settings`: :class:`DriftSettings`, the ``drift:`` section of a profile
  (``profiles`` embeds and re-exports it);
- :mod:`~retrainlib.drift.methods`: the method registry, the one list of drift methods (name,
  column kinds, its statistic per kind, threshold key, effect size or p-value, when ``auto`` picks
  it); the settings validate against it;
- :mod:`~retrainlib.drift.measures`: the arithmetic the statistics share (the merge of two sorted
  samples, PSI, chi-square, Jensen-Shannon, the KS p-value; scipy-exact);
- :mod:`~retrainlib.drift.kernels`: every registered statistic of a column from one merge or one
  count;
- :mod:`~retrainlib.drift.windows`: the compared columns, their kinds, and the seeded row sample;
- :mod:`~retrainlib.drift.analysis`: :func:`compare`, :func:`target_drift`, :func:`prediction_drift`;
- :mod:`~retrainlib.drift.domain`: :func:`multivariate`, the domain classifier (scikit-learn);
- :mod:`~retrainlib.drift.files`: :func:`compare_files`, two data files read only as far as compared;
- :mod:`~retrainlib.drift.results`: :class:`FeatureDrift`, :class:`MultivariateDrift`, :class:`DriftReport`;
- :mod:`~retrainlib.drift.plots`: :func:`plot_feature_drift`, :func:`plot_distributions`.

Names are loaded on first use (``from retrainlib.drift import compare`` imports numpy and the
kernels, not scikit-learn; the domain classifier imports it when it runs).

``auto`` does what Evidently users expect: up to ``large_sample`` rows a p-value test (KS for
numeric, chi-square for categorical and for numeric columns with at most 5 distinct values); above
it an effect-size test (Wasserstein for numeric, Jensen-Shannon for categorical), because at large
n a p-value flags differences too small to matter. An effect-size verdict also needs the
difference to be statistically significant (KS or chi-square p below ``p_value``), so the sampling
noise of a small window is never called drift. A window longer than ``max_rows`` (default
100,000) is sampled, the same seeded rows for every column; at that size a Wasserstein distance is
measured to about +-0.005 (its threshold is 0.05), and ``max_rows=None`` compares every row. The
domain classifier sees ``multivariate_rows`` rows.

>>> import numpy as np, pandas as pd
>>> from retrainlib.drift import compare
>>> from retrainlib.drift import DriftSettings
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

import importlib
from typing import Any

#: public name -> the module (of this package) that defines it
_WHERE = {
    "DriftSettings": "settings",
    "DriftMethod": "methods", "METHODS": "methods", "MISSING": "methods", "auto_method": "methods",
    "get_method": "methods", "method_names": "methods",
    "FeatureDrift": "results", "MultivariateDrift": "results", "DriftReport": "results",
    "compare": "analysis", "target_drift": "analysis", "prediction_drift": "analysis",
    "multivariate": "domain",
    "compare_files": "files",
    "numeric_statistics": "kernels", "categorical_statistics": "kernels",
    "plot_feature_drift": "plots", "plot_distributions": "plots",
}
#: names from before the registry, kept for callers: a test is a method
_ALIASES = {"DriftTest": ("methods", "DriftMethod"), "TESTS": ("methods", "METHODS")}

__all__ = sorted([*_WHERE, *_ALIASES])


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        module, attr = _WHERE[name], name
    elif name in _ALIASES:
        module, attr = _ALIASES[name]
    else:
        raise AttributeError(f"module 'retrainlib.drift' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
