"""Multivariate drift: a domain classifier's cross-validated AUC at telling current rows from reference rows.

A joint shift that keeps every marginal distribution (a changed correlation, say) escapes every
per-feature method of :mod:`retrainlib.drift.methods` and still lifts this AUC. scikit-learn (and
the scipy.stats it imports) is imported when the classifier runs, not before.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import special

from .kernels import category_codes
from .results import MultivariateDrift
from .windows import as_float, check_columns, kind_of, pick, sample_rows

__all__ = ["multivariate"]


def _design(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str],
            ref_rows: np.ndarray | None, cur_rows: np.ndarray | None) -> np.ndarray:
    """One float matrix of the sampled rows: numbers as they are, categories as shared codes, missing as NaN."""
    n1 = len(reference) if ref_rows is None else len(ref_rows)
    n2 = len(current) if cur_rows is None else len(cur_rows)
    X = np.empty((n1 + n2, len(columns)), dtype=np.float32)
    for j, c in enumerate(columns):
        r, k = pick(reference[c], ref_rows), pick(current[c], cur_rows)
        if kind_of(reference[c]) == "numeric":
            X[:n1, j], X[n1:, j] = as_float(r), as_float(k)
        else:
            codes_r, codes_c, _ = category_codes(r, k)  # 0 is missing
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
    cols = check_columns(reference, current, columns)
    rng = np.random.default_rng(seed)
    rows = sample_rows(len(reference), max_rows, rng), sample_rows(len(current), max_rows, rng)
    return domain_classifier(reference, current, cols, rows, seed=seed, threshold=threshold, folds=folds)


def domain_classifier(reference: pd.DataFrame, current: pd.DataFrame, cols: Sequence[str],
                      rows: tuple[np.ndarray | None, np.ndarray | None], *, seed: int, threshold: float,
                      folds: int = 3) -> MultivariateDrift:
    """:func:`multivariate` on rows already drawn (positions into the frames; None: every row)."""
    from sklearn.ensemble import HistGradientBoostingClassifier  # scikit-learn only when the classifier runs
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    ref_rows, cur_rows = rows
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
