"""The results of a drift analysis: frozen records with ``to_dict()`` for the step files and manifests.

:class:`FeatureDrift` is one column (every statistic the kernels computed and the verdict of the
method that decided), :class:`MultivariateDrift` the domain classifier's, and
:class:`DriftReport` the whole comparison: per-feature results, the dataset drift score and verdict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..records import plain
from .methods import statistic_columns

__all__ = ["FeatureDrift", "MultivariateDrift", "DriftReport"]


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
        """One row per feature, most drifted first: each registered method's statistic, then unseen and missing shares."""
        keys = (*statistic_columns(), "unseen_share", "missing_reference", "missing_current")
        rows = [{"feature": f.column, "kind": f.kind, "test": f.test, "statistic": f.statistic,
                 "threshold": f.threshold, "drifted": f.drifted, "p_value": f.p_value, "importance": f.importance,
                 "severity": f.severity, **{k: f.stats.get(k, np.nan) for k in keys}, "detail": f.detail}
                for f in self.features]
        cols = ["feature", "kind", "test", "statistic", "threshold", "drifted", "p_value", "importance",
                "severity", *keys, "detail"]
        frame = pd.DataFrame(rows, columns=cols)
        frame = frame.sort_values(["drifted", "severity"], ascending=[False, False], kind="stable")
        return frame.reset_index(drop=True)
