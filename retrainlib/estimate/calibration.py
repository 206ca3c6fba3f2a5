"""Calibration of classification scores: isotonic maps (SciPy's PAVA), their bootstrap re-fits, calibration error
conditional on the score, label draws, and the choice between the map and the model's own probabilities.

Pure NumPy/SciPy on arrays; touches no file."""

from __future__ import annotations

import numpy as np

from .metrics import dependence


#: bootstrap re-fits of the calibration map (its uncertainty goes into the band)
N_MAPS = 10
#: folds of the held-out check that chooses between the isotonic map and the model's own probabilities
CALIBRATION_FOLDS = 5


def _isotonic(x: np.ndarray, y: np.ndarray) -> dict[str, list]:
    """Isotonic regression of ``y`` on ``x`` (SciPy's pool-adjacent-violators, ties in ``x`` pooled first),
    as the points the map interpolates between — what scikit-learn's ``IsotonicRegression`` fits,
    without its per-call overhead (it is fitted 15 times per estimator)."""
    xs, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return _isotonic_pooled(xs, np.bincount(inverse, weights=y), counts)


def _isotonic_pooled(xs: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> dict[str, list]:
    """:func:`_isotonic` from the distinct ``xs`` (rising), the sum of ``y`` and the count of rows at each."""
    from scipy.optimize import isotonic_regression

    fitted = np.clip(isotonic_regression(sums / counts, weights=counts.astype(float)).x, 0.0, 1.0)
    # keep the two ends of each constant block: the same map with far fewer points to search
    keep = np.zeros(len(xs), dtype=bool)
    keep[[0, -1]] = True
    change = fitted[1:] != fitted[:-1]
    keep[:-1] |= change
    keep[1:] |= change
    return {"x": xs[keep].tolist(), "y": fitted[keep].tolist()}


def _grids(P: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each class column's distinct scores (rising) and each row's place among them (binary: the positive class only):
    the one sort every map fitted on these rows, or on a sample of them, reads."""
    return [np.unique(P[:, j], return_inverse=True) for j in ([1] if P.shape[1] == 2 else range(P.shape[1]))]


def _grids_and_order(P: np.ndarray) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[np.ndarray]]:
    """:func:`_grids` and :func:`_score_order` of ``P`` from one sort of each class column: the distinct scores
    are the sorted column's changes, each row's place among them their running count (as ``np.unique`` finds them;
    a column with NaN is left to ``np.unique``)."""
    grids, order = [], []
    for j in ([1] if P.shape[1] == 2 else range(P.shape[1])):
        x = P[:, j]
        if len(x) == 0 or np.isnan(x).any():
            order.append(np.argsort(x, kind="stable"))
            grids.append(np.unique(x, return_inverse=True))
            continue
        # 64-bit scores without a sign bit (no negative, no -0.0) order as their bits do, and NumPy's default sort of
        # 64-bit integers is several times faster than a stable sort; it leaves equal scores in any order, so where
        # scores tie they are put back in table order by one more sort, of (place, row) packed in one integer
        bits = x.dtype == np.float64 and len(x) < 2 ** 31 and not np.signbit(x).any()
        o = np.argsort(x.view(np.int64)) if bits else np.argsort(x, kind="stable")
        xo = x[o]  # the sorted scores: the same whichever order equal scores took
        new = np.empty(len(x), dtype=bool)
        new[0] = True
        np.not_equal(xo[1:], xo[:-1], out=new[1:])
        place = np.cumsum(new) - 1
        if bits and not new.all():
            o = np.sort((place << 32) | o) & 0xFFFFFFFF
        order.append(o)
        inverse = np.empty(len(x), dtype=np.intp)
        inverse[o] = place
        grids.append((xo[new], inverse))
    return grids, order


def _maps_on(grids: list, k: int, yi: np.ndarray, take: np.ndarray | None = None, codes: list | None = None) -> list[dict]:
    """The one-vs-rest isotonic maps fitted on the rows ``take`` (positions, repeats allowed; None: every row) — the
    same maps as :func:`_fit_maps` on those rows (the same distinct scores, and the same sums and counts at each, added
    in the same row order), without sorting them again."""
    return _maps_of_counts(grids, _counts(grids, k, yi, take, codes))


def _codes(grids: list, k: int, yi: np.ndarray) -> list[np.ndarray]:
    """Per class column, each row's distinct score and hit as one whole number, ``2 s + hit``: what :func:`_counts`
    counts, worked out once for every count of these rows."""
    return [2 * inverse + (yi == j) for j, (_, inverse) in zip([1] if k == 2 else range(k), grids)]


def _counts(grids: list, k: int, yi: np.ndarray, take: np.ndarray | None = None,
            codes: list | None = None) -> list[np.ndarray]:
    """Per class column, the rows ``take`` (None: every row) counted by distinct score and hit: ``pairs[2 s + hit]``,
    whole numbers, so the counts of some rows are those of all rows less the others' (:func:`_calibration`'s folds).
    ``codes``: :func:`_codes` of these rows, if known."""
    codes = _codes(grids, k, yi) if codes is None else codes
    # one count of (score, hit) pairs: each score's rows and hits, without a float-weighted second count
    return [np.bincount(c if take is None else c[take], minlength=2 * len(xs)) for c, (xs, _) in zip(codes, grids)]


def _fold_counts(grids: list, codes: list, fold_of: np.ndarray, folds: int) -> list[np.ndarray]:
    """:func:`_counts` of each fold's rows (``fold_of``: each row's fold; ``codes``: :func:`_codes`), all folds in one
    count: per class column a (folds, 2 · distinct scores) array whose row ``b`` is the count of fold ``b``'s rows."""
    return [np.bincount(fold_of * (2 * len(xs)) + c, minlength=folds * 2 * len(xs)).reshape(folds, 2 * len(xs))
            for c, (xs, _) in zip(codes, grids)]


def _brier(Q: np.ndarray, yi: np.ndarray) -> float:
    """The Brier score of the probabilities ``Q`` (n, k) against the class indices ``yi``, summed over rows."""
    hit = np.zeros_like(Q)
    hit[np.arange(len(yi)), yi] = 1.0
    return float(((Q - hit) ** 2).sum())


def _maps_of_counts(grids: list, counts_by_column: list[np.ndarray]) -> list[dict]:
    """The isotonic maps of :func:`_counts`' pairs, one per class column."""
    maps = []
    for (xs, _), pairs in zip(grids, counts_by_column):
        counts, sums = pairs[0::2] + pairs[1::2], pairs[1::2].astype(float)
        seen = counts > 0
        maps.append(_isotonic_pooled(xs[seen], sums[seen], counts[seen]))
    return maps


def _bootstrap_maps(P: np.ndarray, yi: np.ndarray, rng: np.random.Generator, times: int,
                    grids: list | None = None, codes: list | None = None) -> list[list[dict]]:
    """The one-vs-rest isotonic maps fitted on ``times`` bootstrap samples of the rows — the same maps as
    :func:`_fit_maps` on each resample, from one sort of the scores (a resample only re-weights their distinct values)."""
    grids = _grids(P) if grids is None else grids
    codes = _codes(grids, P.shape[1], yi) if codes is None else codes
    return [_maps_on(grids, P.shape[1], yi, rng.integers(0, len(yi), len(yi)), codes) for _ in range(times)]


#: the map that keeps the model's own probabilities
IDENTITY = {"x": [0.0, 1.0], "y": [0.0, 1.0]}


def _apply(m: dict[str, list], x: np.ndarray) -> np.ndarray:
    """The map at ``x``: interpolated between its points (the identity map, kept raw probabilities, just clipped)."""
    if len(m["x"]) == 2 and list(m["x"]) == IDENTITY["x"] and list(m["y"]) == IDENTITY["y"]:
        return np.clip(x, 0.0, 1.0)
    return np.interp(x, m["x"], m["y"])


def _as_matrix(s: np.ndarray, k: int) -> np.ndarray:
    """Class-probability matrix (n, k) from binary positive-class scores or multiclass rows."""
    return np.column_stack([1 - s, s]) if s.ndim == 1 else s.reshape(len(s), k)


def _calibrate(maps: list[dict], P: np.ndarray, cols: list | None = None) -> np.ndarray:
    """One-vs-rest isotonic maps applied and renormalised (binary: the positive class only). ``cols``:
    :func:`_sorted_columns` of ``P``, if known — the same probabilities, each map walked along its scores in order
    (np.interp walks sorted queries several times faster), for several maps applied to the same rows."""
    if len(maps) == 1:
        p1 = _apply_sorted(maps[0], P[:, 1], None if cols is None else cols[0])
        return np.column_stack([1 - p1, p1])
    Q = np.column_stack([_apply_sorted(m, P[:, j], None if cols is None else cols[j]) for j, m in enumerate(maps)])
    Q = np.clip(Q, 1e-6, None)
    return Q / _row_sums(Q)


def _row_sums(Q: np.ndarray) -> np.ndarray:
    """``Q.sum(axis=1, keepdims=True)``, the same floats: below 8 columns NumPy adds a row's entries one after the other,
    as adding the columns one after the other does, ten times faster on a (rows, 3) table; from 8 on it adds in pairs."""
    if Q.shape[1] >= 8 or Q.shape[1] == 0:
        return Q.sum(axis=1, keepdims=True)
    total = Q[:, 0].copy()
    for j in range(1, Q.shape[1]):
        total += Q[:, j]
    return total[:, None]


def _sorted_columns(P: np.ndarray, idx: list[np.ndarray] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per class column :func:`_calibrate` maps (binary: the positive class only), its rows by rising score and the
    scores in that order. ``idx``: :func:`_score_order` of ``P``, if known (any order that sorts each column will do:
    a map's value at a score is the same wherever the row stands)."""
    cols = [1] if P.shape[1] == 2 else range(P.shape[1])
    idx = [np.argsort(P[:, j]) for j in cols] if idx is None else idx
    return [(o, P[o, j]) for j, o in zip(cols, idx)]


def _apply_sorted(m: dict[str, list], x: np.ndarray, col: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """:func:`_apply` of ``m`` at ``x``; ``col``: ``x``'s rows by rising value and the values in that order, if known."""
    if col is None:
        return _apply(m, x)
    order, xs = col
    values = _apply(m, xs)
    out = np.empty(len(x), dtype=values.dtype)  # the type _apply gives (the identity map keeps the scores' own)
    out[order] = values
    return out


def _fit_maps(P: np.ndarray, yi: np.ndarray) -> list[dict]:
    k = P.shape[1]
    cols = [1] if k == 2 else range(k)
    return [_isotonic(P[:, j], (yi == j).astype(float)) for j in cols]


def _bin_starts(n: int, bins: int) -> np.ndarray:
    """Where each of ``bins`` equal-frequency bins of ``n`` rows in score order starts (np.array_split's bins)."""
    sizes = [n // bins + 1] * (n % bins) + [n // bins] * (bins - n % bins)
    return np.concatenate([[0], np.cumsum(sizes)[:-1]])


def _ece(P: np.ndarray, Q: np.ndarray, Y: np.ndarray, bins: int = 10, idx: list | None = None) -> np.ndarray:
    """Calibration error conditional on the raw score, for each row of labels ``Y`` (draws, n).

    Rows are binned by the model's own probability of each class (equal-frequency bins); in each bin
    the calibrated probability is compared with the observed share, weighted by rows, averaged over
    classes (binary: the positive class only). ``idx``: each class column's rows by rising score, if known
    (:func:`_score_order`).
    """
    return _ece_of(P, [Q], Y, bins, idx)[0]


def _ece_of(P: np.ndarray, Qs: list[np.ndarray], Y: np.ndarray, bins: int = 10, idx: list | None = None) -> np.ndarray:
    """:func:`_ece` of each calibration in ``Qs`` (len(Qs), draws) against the same labels, binned once."""
    n = P.shape[0]
    cols = [1] if P.shape[1] == 2 else range(P.shape[1])
    idx = _score_order(P) if idx is None else idx
    starts = _bin_starts(n, bins)
    total = np.zeros((len(Qs), len(Y)))
    for j, order in zip(cols, idx):
        if P.shape[1] == 2:  # binary labels are already 0/1
            observed = np.add.reduceat(Y[:, order], starts, axis=1, dtype=float)
        else:  # counted as whole numbers (the same sums, several times faster than adding the hits as floats)
            hit = (Y[:, order] == j).view(np.uint8)
            observed = np.add.reduceat(hit, starts, axis=1, dtype=np.int32).astype(float)
        for i, Q in enumerate(Qs):
            expected = np.add.reduceat(Q[order, j], starts)
            total[i] += np.abs(expected[None, :] - observed).sum(axis=1) / n
    return total / len(cols)


#: a bin whose hit count varies at least this much (variance, in rows²) has its null count drawn from the normal law
#: with the bin's mean and variance (the central limit theorem; the count is rounded, as counts are whole), the
#: others row by row
CLT_MIN_VARIANCE = 30.0


def _ece_null(P: np.ndarray, Q: np.ndarray, rng: np.random.Generator, draws: int, idx: list, bins: int = 10) -> np.ndarray:
    """:func:`_ece` of ``draws`` label sets drawn from ``Q`` itself: what sampling alone gives a calibrated model.
    Binary: only each bin's hit count matters, a sum of independent Bernoulli draws. A bin with variance of at least
    :data:`CLT_MIN_VARIANCE` draws it from the normal law of that sum; a smaller one draws its rows, straight in score
    order (rows down the columns, so each bin's count is a sum over adjacent rows)."""
    if P.shape[1] != 2:
        return _ece(P, Q, _draw_labels(Q, rng, draws), bins, idx)
    n = P.shape[0]
    starts = _bin_starts(n, bins)
    ends = np.append(starts[1:], n)
    qo = Q[idx[0], 1]
    expected = np.add.reduceat(qo, starts)
    variance = np.add.reduceat(qo * (1 - qo), starts)
    observed = np.empty((len(starts), draws))
    clt = variance >= CLT_MIN_VARIANCE
    if clt.any():
        z = rng.standard_normal((int(clt.sum()), draws))
        observed[clt] = np.clip(np.rint(expected[clt, None] + np.sqrt(variance[clt, None]) * z), 0,
                                (ends - starts)[clt, None])
    small = np.flatnonzero(~clt)
    if len(small):
        rows = np.concatenate([np.arange(starts[b], ends[b]) for b in small])
        m = len(rows)
        # 16-bit uniforms, four to a raw 64-bit draw: a row hits with probability round(q * 2^16) / 2^16 (at most 1 - 2^-16)
        u = rng.bit_generator.random_raw(-(-m * draws // 4)).view(np.uint16)[: m * draws].reshape(m, draws)
        hits = u < np.minimum(np.round(qo[rows] * 65536), 65535).astype(np.uint16)[:, None]
        local = np.concatenate([[0], np.cumsum(ends[small] - starts[small])[:-1]])
        observed[small] = np.add.reduceat(hits, local, axis=0, dtype=np.int32)
    return np.abs(expected[:, None] - observed).sum(axis=0) / n


def _score_order(P: np.ndarray) -> list[np.ndarray]:
    """Rows by rising score of each class column :func:`_ece` bins (binary: the positive class only)."""
    return [np.argsort(P[:, j], kind="stable") for j in ([1] if P.shape[1] == 2 else range(P.shape[1]))]


def _sub_order(idx: list[np.ndarray], rows: np.ndarray, n: int) -> list[np.ndarray]:
    """:func:`_score_order` of the table's ``rows`` (positions within them), from the whole table's ``idx``
    (equal scores stay in table order) — no second sort."""
    at = np.full(n, -1)
    at[rows] = np.arange(len(rows))
    return [a[a >= 0] for a in (at[order] for order in idx)]


def _fold_orders(idx: list[np.ndarray], folds: list[np.ndarray], fold_of: np.ndarray) -> list[list[np.ndarray]]:
    """:func:`_sub_order` of each fold's rows (``folds``; ``fold_of``: each row's fold), all folds at once: the table's
    rows by score, grouped by fold by a stable sort of their fold numbers, keep the score order within each fold."""
    local = np.empty(len(fold_of), dtype=np.intp)  # each row's place among its fold's rows
    for rows in folds:
        local[rows] = np.arange(len(rows))
    bounds = np.cumsum([0] + [len(rows) for rows in folds])
    small = fold_of.astype(np.int8) if len(folds) < 128 else fold_of  # NumPy sorts 8-bit numbers stably by radix
    by_column = []
    for order in idx:
        grouped = local[order[np.argsort(small[order], kind="stable")]]
        by_column.append([grouped[bounds[b]:bounds[b + 1]] for b in range(len(folds))])
    return [[column[b] for column in by_column] for b in range(len(folds))]


def _draw_labels(Q: np.ndarray, rng: np.random.Generator, draws: int) -> np.ndarray:
    """(draws, n) class indices drawn row by row from the probabilities ``Q``."""
    u = rng.random((draws, len(Q)), dtype=np.float32)
    if Q.shape[1] == 2:
        return (u < Q[:, 1].astype(np.float32)).astype(np.float32)
    cum = np.cumsum(Q, axis=1).astype(np.float32)
    # a row's class is how many of its cumulative probabilities (all but the last) its uniform passes: counted one
    # class column at a time, the same whole numbers as a (draws, n, k) comparison summed over its last axis
    out = np.zeros(u.shape, dtype=np.min_scalar_type(Q.shape[1] - 1))  # the smallest whole type that holds the classes
    for j in range(Q.shape[1] - 1):
        out += u > cum[:, j]
    return out


def _calibration(P: np.ndarray, yi: np.ndarray, seed: int) -> tuple[dict, dict, float, float]:
    """Choose and fit the calibration (checks, state, error after it, the error sampling explains)."""
    k = P.shape[1]
    rng = np.random.default_rng(seed)
    grids, idx_all = _grids_and_order(P)  # one sort of the scores for every map and check below
    codes = _codes(grids, k, yi)
    every_row = _counts(grids, k, yi, codes=codes)
    maps = _maps_of_counts(grids, every_row)
    # the choice, cross-fitted: each of CALIBRATION_FOLDS folds is calibrated by the map of the other folds (80% of
    # the rows, near the all-rows map that is used), and the map is kept where it predicts the held-out labels better
    # than the model's own probabilities, by the Brier score over every row (a proper score, row by row: no bins to
    # be noisy in). The model's own probabilities are kept where they do as well (an isotonic step function fitted
    # to few rows only adds noise), as NannyML's CBPE does, and only if they also pass as calibrated on all the rows
    # (their calibration error within what sampling gives 95% of the time): on few rows the held-out comparison alone
    # can prefer a miscalibrated model to a map fitted on part of them. Each fold's calibration error, on its own
    # rows (pooled over the folds, the maps' expected counts would add up to the labels' own), says whether
    # calibration fixed the scores at all (:func:`~.cbpe._fit_cbpe` refuses an estimator where it did not)
    n = len(yi)
    folds = np.array_split(rng.permutation(n), CALIBRATION_FOLDS)
    fold_of = np.empty(n, dtype=np.intp)
    for b, rows in enumerate(folds):
        fold_of[rows] = b
    by_fold = _fold_counts(grids, codes, fold_of, len(folds))  # each fold's rows counted, all folds in one count
    fold_idx = _fold_orders(idx_all, folds, fold_of)  # and ordered by score, all folds in one sort
    held = []  # per fold: its rows' scores, their calibration by the other folds' map, their score order
    raw, cal = [], []
    brier_cal = 0.0
    for b, rows in enumerate(folds):
        # the map of the other folds' rows: every row's counts less this fold's (whole numbers: the same map)
        Pb, yb = P.take(rows, axis=0), yi.take(rows)  # take: the same rows, far faster than indexing a table's rows
        idx = fold_idx[b]
        Qb = _calibrate(_maps_of_counts(grids, [c - f[b] for c, f in zip(every_row, by_fold)]), Pb, _sorted_columns(Pb, idx))
        e_cal, e_raw = _ece_of(Pb, [Qb, Pb], yb[None, :], idx=idx)[:, 0]
        cal.append(float(e_cal))
        raw.append(float(e_raw))
        held.append((Pb, Qb, idx))
        brier_cal += _brier(Qb, yb)
    brier_raw = _brier(P, yi)  # the model's own probabilities need no fold
    ece_raw, ece_cal = float(np.mean(raw)), float(np.mean(cal))
    ece_raw_all = float(_ece(P, P, yi[None, :], idx=idx_all)[0])
    raw_passes = ece_raw_all <= float(np.quantile(_ece_null(P, P, rng, 100, idx_all), 0.95))
    keep_raw = brier_raw <= brier_cal and raw_passes
    ece_after = ece_raw if keep_raw else ece_cal
    # what sampling alone gives the probabilities kept, fold by fold (200 label sets in all): past 1.5 times its 99th
    # percentile, calibration cannot fix the scores and the estimator is refused (:func:`~.cbpe._fit_cbpe`)
    null = np.concatenate([_ece_null(Pb, Pb if keep_raw else Qb, rng, 200 // CALIBRATION_FOLDS, idx)
                           for Pb, Qb, idx in held])
    limit = float(np.quantile(null, 0.99)) * 1.5
    # isotonic maps re-fitted on bootstrap samples of the rows: how far their estimates fall from the point is the
    # calibration's share of the band — also when the model's own probabilities are kept (then the band spans
    # the isotonic alternative the rows cannot rule out)
    boot = _bootstrap_maps(P, yi, rng, N_MAPS, grids, codes)
    if keep_raw:
        maps = [dict(IDENTITY) for _ in maps]
        how = "none: the model's own probabilities predict held-out labels as well (Brier score)"
    else:
        how = "isotonic, one-vs-rest" if k > 2 else "isotonic"
    checks = {"brier_raw": round(brier_raw / n, 5), "brier_calibrated": round(brier_cal / n, 5),
              "ece_raw": round(ece_raw, 4), "ece_calibrated": round(ece_cal, 4), "raw_passes": bool(raw_passes),
              "ece_limit": round(limit, 4), "calibration": how,
              "label_dependence": _label_dependence(maps, P, yi, idx_all)}
    return checks, {"maps": maps, "bootstrap": boot}, ece_after, limit


def _label_dependence(maps: list[dict], P: np.ndarray, yi: np.ndarray, idx: list[np.ndarray]) -> float:
    """How much the labels of neighbouring rows hang together (a wet spell) beyond the calibrated probabilities: the
    label check widens its sampling error by it (:func:`~.metrics.dependence`, the largest over the classes tested).
    ``idx``: :func:`_score_order` of ``P`` (binary: the map is applied to the scores in that order, which
    ``np.interp`` walks much faster, to the same probabilities)."""
    k = P.shape[1]
    if k == 2:
        q = np.empty(len(yi))
        q[idx[0]] = _apply(maps[0], P[idx[0], 1])
        return round(dependence((yi == 1) - q, float(np.mean(q * (1 - q)))), 4)
    Q = _calibrate(maps, P, _sorted_columns(P, idx))
    hit = np.zeros_like(Q)
    hit[np.arange(len(yi)), yi] = 1.0
    return round(max(dependence((hit - Q)[:, j], float(np.mean(Q[:, j] * (1 - Q[:, j])))) for j in range(k)), 4)

