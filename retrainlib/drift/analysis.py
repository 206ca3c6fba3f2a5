"""Per-feature and dataset drift: the kernels' statistics, decided by the methods of the registry.

:func:`compare` measures every feature of two frames and returns a
:class:`~retrainlib.drift.results.DriftReport`: one ``FeatureDrift`` per feature (all statistics,
the method that decided, its threshold), the dataset drift score (share of drifted features,
optionally weighted by the champion's feature importance) and, when the profile asks, the domain
classifier's ``MultivariateDrift``. :func:`target_drift` and :func:`prediction_drift` apply the
same per-feature machinery to the labels and to the champion's scores.

Which method decides is chosen per profile and per column (``drift.numeric_test``,
``drift.categorical_test``, ``per_column``); ``auto`` asks the registry
(:func:`~retrainlib.drift.methods.auto_method`). A change of a column's missing share of at least
``missing_threshold`` (and significant) is drift too; the method is then ``missing``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .kernels import Scratch, categorical_from_counts, category_counts, missing_stats, numeric_from_sorted
from .methods import MISSING, DriftMethod, auto_method, get_method, significance_of
from .results import DriftReport, FeatureDrift
from .settings import DriftSettings
from .windows import RowPlan, as_float, check_columns, kind_of, pick, plan_rows, present

__all__ = ["compare", "target_drift", "prediction_drift"]


def _severity(method: DriftMethod, statistic: float, threshold: float) -> float:
    """The statistic relative to its threshold: at or above 1 the method says drift."""
    if not np.isfinite(statistic):
        return 0.0
    if method.is_effect_size:
        return statistic / threshold
    return float(np.log(max(statistic, 1e-300)) / np.log(threshold))


def _decide(column: str, kind: str, stats_: dict[str, float], settings: DriftSettings,
            n: int, importance: float | None, n_ref: int, n_cur: int) -> FeatureDrift:
    over = settings.per_column.get(column, {})
    name = over.get("test") or (settings.numeric_test if kind == "numeric" else settings.categorical_test)
    shape = "discrete" if kind == "categorical" or "chi2" in stats_ else "continuous"
    if name == "auto":
        method = auto_method(shape, n=n, large_sample=settings.large_sample)
    else:
        method = get_method(name, kind, column)
    name = method.name
    threshold = float(over.get("threshold", getattr(settings, method.threshold_key)))
    significance = stats_.get(str(significance_of(shape).p_value), np.nan)
    if method.is_effect_size:
        statistic = stats_.get(method.statistic, np.nan)
        p_value = significance
        drifted = bool(statistic >= threshold and significance < settings.p_value)
        why = (f"{name} {statistic:.4g} {'>=' if statistic >= threshold else '<'} {threshold:g}"
               f", significance p={significance:.3g}")
    else:
        statistic = p_value = stats_.get(str(method.p_value), np.nan)
        drifted = bool(statistic < threshold)
        why = f"{name} p={statistic:.3g} {'<' if drifted else '>='} {threshold:g}"
    severity = _severity(method, statistic, threshold)
    missing_limit = float(over.get(MISSING.threshold_key, getattr(settings, MISSING.threshold_key)))
    missing_drift = stats_["missing_change"] >= missing_limit and stats_["missing_p"] < settings.p_value
    if missing_drift and not drifted:
        method, statistic, threshold, p_value, drifted = (MISSING, stats_["missing_change"], missing_limit,
                                                          stats_["missing_p"], True)
        severity = statistic / threshold
        why = (f"missing share {stats_['missing_reference']:.1%} -> {stats_['missing_current']:.1%}"
               f" (change >= {missing_limit:g})")
    elif missing_drift:
        why += f"; missing share {stats_['missing_reference']:.1%} -> {stats_['missing_current']:.1%}"
    return FeatureDrift(column, kind, method.name, float(statistic), threshold, drifted,
                        None if not np.isfinite(p_value) else float(p_value), importance, n_ref, n_cur,
                        float(severity), why, {k: float(v) for k, v in stats_.items()})


def _column_drift(column: str, ref: pd.Series, cur: pd.Series, settings: DriftSettings,
                  importance: float | None, scratch: Scratch | None = None) -> FeatureDrift:
    over = settings.per_column.get(column, {})
    kind = over.get("kind") or kind_of(ref)
    if kind == "numeric":
        a, b = present(as_float(ref)), present(as_float(cur))
        a.sort()
        b.sort()
        s = numeric_from_sorted(a, b, psi_bins=settings.psi_bins, scratch=scratch)
        s.update(missing_stats(len(ref) - len(a), len(ref), len(cur) - len(b), len(cur)))
        n = min(len(a), len(b))
    else:
        rc, cc, _ = category_counts(ref, cur)
        s = categorical_from_counts(rc, cc)
        s.update(missing_stats(int(rc[0]), int(rc.sum()), int(cc[0]), int(cc.sum())))
        n = int(min(rc.sum(), cc.sum()))
    return _decide(column, kind, s, settings, n, importance, len(ref), len(cur))


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
    cols = check_columns(reference, current, columns)
    plan = plan_compare(len(reference), len(current), cols, settings=settings, seed=seed)
    return compare_planned(reference, current, cols, plan, settings=settings, drift_threshold=drift_threshold,
                           importance=importance, seed=seed)


def plan_compare(n_reference: int, n_current: int, cols: Sequence[str], *, settings: DriftSettings,
                 seed: int) -> RowPlan:
    """The rows :func:`compare` reads from windows of these lengths (the classifier's only when the profile asks)."""
    return plan_rows(n_reference, n_current, max_rows=settings.max_rows,
                     domain_rows=settings.multivariate_rows if settings.multivariate and cols else None, seed=seed)


def compare_planned(reference: pd.DataFrame, current: pd.DataFrame, cols: Sequence[str], plan: RowPlan, *,
                    settings: DriftSettings, drift_threshold: float, importance: Mapping[str, float] | None,
                    seed: int) -> DriftReport:
    """:func:`compare` on rows already planned (the frames may hold only the planned rows: see ``RowPlan.within``)."""
    ref_rows, cur_rows = plan.features
    importance = dict(importance or {})
    scratch = Scratch()
    features = tuple(
        _column_drift(c, pick(reference[c], ref_rows), pick(current[c], cur_rows), settings,
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
    if plan.domain is not None:
        from .domain import domain_classifier  # scikit-learn only when the classifier runs

        mv = domain_classifier(reference, current, cols, plan.domain, seed=seed, threshold=settings.multivariate_auc)
    rows_compared = tuple(n if rows is None else len(rows)
                          for n, rows in ((plan.n_reference, ref_rows), (plan.n_current, cur_rows)))
    return DriftReport(features, score, float(drift_threshold), bool(score > drift_threshold), mv,
                       plan.n_reference, plan.n_current, weighted, rows_compared)


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
