"""Direct loss estimation (regression): one small one-thread LightGBM per metric learns the model's absolute or squared
error from every calibration row; a batch's MAE / RMSE / R² and its band follow from the predicted losses.

Touches no file. The estimator's state holds the fitted LightGBM booster itself; it becomes text only when the
estimator is written (:meth:`~.estimator.Estimator.to_dict`), and a read estimator parses its text once. An estimator
written before this design holds four cross-fitted boosters; it is read and estimates as it did."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import EstimationError
from .estimator import Estimator, _content_key, estimates_batches
from .metrics import dependence


_REGRESSION = {
    "mean_absolute_error": "absolute",
    "root_mean_squared_error": "squared",
    "mean_squared_error": "squared",
    "r2": "squared",
}


#: the loss model: one per metric, fitted on every calibration row. NannyML's DLE fits LightGBM's defaults (100 rounds
#: of 31 leaves at learning rate 0.1); these 40 rounds of 7 leaves at 0.25 learn as much (rounds × rate) with smaller
#: trees, at about a tenth of its time. Measured in the running mode on four regression streams (NOAA and Seattle
#: temperature, Chicago ridership and Texas housing by year, all columns; benchmarks/README.md): its point errors were
#: 0.95-1.05 of NannyML's, where the four cross-fitted models of 20 rounds it replaces erred 0.99-1.57 times as much
#: (each saw three quarters of the rows) at half its speed
_DLE_PARAMS = {"objective": "regression", "learning_rate": 0.25, "num_leaves": 7, "min_data_in_leaf": 20,
               "feature_fraction": 0.9, "bagging_fraction": 0.9, "bagging_freq": 1, "lambda_l2": 1.0,
               "num_threads": 1, "verbose": -1, "deterministic": True, "force_row_wise": True}
_DLE_ROUNDS = 40

#: a loss model fitted on at most this many cells (rows x columns) keeps its binned training rows (about a byte a
#: cell) with it; a larger one is rebuilt from its text without them (as ``lgb.train`` does by default)
KEEP_BINNED_CELLS = 1_000_000


def _dle_matrix(features: pd.DataFrame, columns: list[str], prediction: np.ndarray, categories: dict[str, list],
                dtypes: list | None = None) -> np.ndarray:
    """The loss model's input: the ``columns`` of ``features`` as floats (a category as its index in ``categories``,
    unknown or missing as NaN, as LightGBM reads a pandas categorical) and the model's prediction, row by row.
    ``dtypes``: ``features.dtypes.tolist()``, when the caller has them."""
    X = np.empty((len(features), len(columns) + 1))
    if list(features.columns) == list(columns) and not categories and all(
            isinstance(t, np.dtype) and t.kind in "fiu" for t in (dtypes or features.dtypes.tolist())):
        X[:, :-1] = features.to_numpy(dtype=float)  # NumPy numbers alone, every column: one conversion, the same floats
        X[:, -1] = np.asarray(prediction, dtype=float)
        return X
    for i, c in enumerate(columns):
        col = features[c]
        if c in categories:
            codes = pd.Categorical(col.astype("string").astype(object), categories=categories[c]).codes
            X[:, i] = np.where(codes >= 0, codes, np.nan)
        elif isinstance(col.dtype, np.dtype) and col.dtype.kind in "fiu":  # NumPy numbers: NaN is already NaN
            X[:, i] = col.to_numpy(dtype=float)  # (na_value=np.nan costs six times as much per column)
        elif pd.api.types.is_float_dtype(col.dtype) or pd.api.types.is_integer_dtype(col.dtype):
            X[:, i] = col.to_numpy(dtype=float, na_value=np.nan)
        elif pd.api.types.is_datetime64_any_dtype(col):
            X[:, i] = col.astype("int64", errors="ignore").to_numpy(dtype=float)
        else:
            X[:, i] = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    X[:, -1] = np.asarray(prediction, dtype=float)
    return X


def _categories(features: pd.DataFrame, dtypes: list | None = None) -> dict[str, list]:
    out = {}
    for c, t in zip(features.columns, dtypes or features.dtypes.tolist()):  # a column is fetched only when a category
        if t == object or isinstance(t, pd.CategoricalDtype) or pd.api.types.is_string_dtype(t) \
                or pd.api.types.is_bool_dtype(t):
            out[c] = sorted(features[c].dropna().astype("string").astype(object).unique().tolist())
    return out


def _loss(kind: str, y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return np.abs(y - pred) if kind == "absolute" else (y - pred) ** 2


#: the binned table of the newest fit (:func:`_binned_table`): the estimators of several metrics of one model on the
#: same rows (MAE and RMSE: the same features and prediction) bin them once
_BINNED: dict[tuple, object] = {}


def _binned_table(X: np.ndarray, categorical: list[int], seed: int):
    """``X`` binned as a LightGBM Dataset, exactly as ``lgb.train`` bins it (the bins are set by the features alone,
    never by the loss), once per calibration table; a loss model sets its loss as the labels (:func:`_train_lgb`)."""
    import lightgbm as lgb

    key = (seed, tuple(categorical), X.shape, str(X.dtype), _content_key(X))
    if key not in _BINNED:
        _BINNED.clear()  # the newest table only: the metrics of one model are fitted one after the other on it
        # without labels: binning reads the features alone, and each loss model sets its own (_set_label)
        _BINNED[key] = lgb.Dataset(X, categorical_feature=categorical, free_raw_data=True,
                                   params={**_DLE_PARAMS, "seed": seed}).construct()
    return _BINNED[key]


def _set_label(data, target: np.ndarray) -> None:
    """``data.set_label(target)`` as LightGBM's C side receives it (the same float32 labels through the same
    ``LGBM_DatasetSetField``), without the Python wrapper's checks of what kind of table the labels are (pandas,
    Arrow, polars) and its read-back copy: a third of a millisecond a call, as much as a loss model's set-up.
    LightGBM is pinned (requirements.txt); these names are those ``Dataset.set_field`` calls. Where a LightGBM
    lacks them, the public ``set_label`` does the same."""
    import ctypes

    from lightgbm import basic

    if not all(hasattr(basic, n) for n in ("_c_float_array", "_safe_call", "_LIB", "_c_str")):
        data.set_label(target)
        return
    y = np.ascontiguousarray(target, dtype=np.float32)
    ptr, type_data, _ = basic._c_float_array(y)
    basic._safe_call(basic._LIB.LGBM_DatasetSetField(data._handle, basic._c_str("label"), ptr, ctypes.c_int(len(y)),
                                                     ctypes.c_int(type_data)))
    data.label, data.version = y, data.version + 1


def _train_lgb(data, target: np.ndarray, seed: int, cells: int):
    """One loss model on ``data`` (the binned calibration rows, :func:`_binned_table`) with labels ``target``."""
    import lightgbm as lgb

    _set_label(data, target)
    # what lgb.train(params, data, num_boost_round=_DLE_ROUNDS, keep_training_booster=True) fits, the same trees and
    # the same model text, without its per-call set-up (parameter copies, callbacks: a third of a fit on a few hundred
    # rows). It keeps the booster's binned training rows: without them lgb.train writes the model out as text and
    # parses it back (a millisecond or two, most of a small fit). Kept only while those rows are small: on a large
    # calibration table the round trip costs little beside the fit and frees the memory.
    booster = lgb.Booster(params={**_DLE_PARAMS, "seed": seed, "num_iterations": _DLE_ROUNDS}, train_set=data)
    for _ in range(_DLE_ROUNDS):
        booster.update()
    if cells > KEEP_BINNED_CELLS:
        booster.model_from_string(booster.model_to_string()).free_dataset()
    return booster


def _fit_dle(base: dict, y: np.ndarray, pred: np.ndarray, features: pd.DataFrame, seed: int) -> Estimator:
    kind = _REGRESSION[base["metric"]]
    columns = list(features.columns)
    dtypes = features.dtypes.tolist()  # read once (a pandas Series each time it is asked for)
    cats = _categories(features, dtypes)
    X = _dle_matrix(features, columns, pred, cats, dtypes)
    categorical = [i for i, c in enumerate(columns) if c in cats]
    loss = _loss(kind, y, pred)
    booster = _train_lgb(_binned_table(X, categorical, seed), loss, seed, X.size)
    checks = {"loss": kind, "mean_loss": float(np.mean(loss)),
              # a row's loss about its mean: the batch's sampling spread and, over the calibration rows, the loss
              # model's own uncertainty (_dle_estimate)
              "loss_sd": float(np.std(loss)),
              # the champion's own residual on these rows: what a label shift is measured against (track.label_check)
              "label_bias": float(np.mean(y - pred)), "label_resid_sd": float(np.std(y - pred)),
              "label_dependence": round(dependence(y - pred - np.mean(y - pred), float(np.var(y - pred))), 4)}
    state = {"models": [booster], "categories": cats, "columns": columns, "kind": kind}
    return Estimator(usable=True, reason="", checks=checks, state=state, **base)


def _dle_losses(est: Estimator, pred: np.ndarray, features: pd.DataFrame, *, each: bool = False) -> np.ndarray:
    """The loss model's predicted loss per row of a batch (an estimator written with four fold models: their average;
    ``each``: per model)."""
    import lightgbm as lgb

    st = est.state
    missing = [c for c in st["columns"] if c not in features.columns]
    if missing:
        raise EstimationError(f"the batch lacks the estimator's feature columns {', '.join(missing[:5])}")
    X = _dle_matrix(features, st["columns"], pred, st["categories"])
    if "_boosters" not in est.__dict__:  # a read estimator's model texts are parsed once
        est.__dict__["_boosters"] = [lgb.Booster(model_str=m) if isinstance(m, str) else m for m in st["models"]]
    out = np.array([b.predict(X, num_threads=1) for b in est.__dict__["_boosters"]])  # (models, rows)
    return out if each else np.clip(out.mean(axis=0), 0, None)


@estimates_batches("dle")
def _dle_estimate(est: Estimator, pred: np.ndarray, features: pd.DataFrame | None) -> tuple[float, float, float, dict]:
    if features is None:
        raise EstimationError("a regression estimate needs the batch's features (direct loss estimation)")
    each = _dle_losses(est, pred, features, each=True)
    losses = np.clip(each.mean(axis=0), 0, None)
    n, k, c = len(losses), len(each), est.checks
    mean = float(losses.mean())
    z = 1.959963984540054
    # the band: the batch's rows (a row's loss about its predicted mean) and the loss model's own uncertainty: the
    # calibration rows' mean loss is known to within their spread over their count. (An estimator written before
    # one model per metric holds four cross-fitted ones: their out-of-fold spread and bias, and the grouped
    # jackknife over their batch means, as it was fitted to report.)
    if k > 1:
        folds = each.mean(axis=1)
        model_var, bias = (k - 1) / k * float(np.sum((folds - folds.mean()) ** 2)), abs(c["bias"]) / z
        sampling = c["resid_sd"] / math.sqrt(n)
    else:
        model_var, bias = c["loss_sd"] ** 2 / max(est.calibration_rows, 1), 0.0
        sampling = c["loss_sd"] / math.sqrt(n)
    calibration = math.sqrt(model_var) + bias
    sd = math.sqrt(sampling ** 2 + model_var) + bias
    # a mean loss is positive and its error grows with it: the band is log-normal with the same mean and sd, so
    # its lower end stays above 0 (a normal band reached 0.0000 whenever sd was half the mean)
    if mean > 0:
        s_log = math.sqrt(math.log1p((sd / mean) ** 2))
        lo, hi = mean * math.exp(-z * s_log), mean * math.exp(z * s_log)
    else:
        lo, hi = 0.0, z * sd
    samp_log = z * math.sqrt(math.log1p((sampling / mean) ** 2)) if mean > 0 else 0.0  # the sampling half, log scale
    parts = {"sampling": round(z * sampling, 6), "calibration": round(z * calibration, 6),
             "sampling_scale": samp_log / 2 if est.metric == "root_mean_squared_error" else samp_log,
             "units": "mean absolute error" if est.state["kind"] == "absolute" else "mean squared error",
             "shape": "log-normal (a loss is positive)"}
    metric = est.metric
    if metric == "mean_absolute_error" or metric == "mean_squared_error":
        return mean, lo, hi, parts
    if metric == "root_mean_squared_error":
        return math.sqrt(mean), math.sqrt(lo), math.sqrt(hi), parts
    var_pred = float(np.var(pred))  # r2: Var(y) ≈ Var(prediction) + MSE (errors uncorrelated with predictions)
    r2 = lambda mse: 1 - mse / (var_pred + mse) if var_pred + mse > 0 else float("nan")  # noqa: E731
    parts["sampling_scale"] = abs(r2(max(mean - z * sampling, 0.0)) - r2(mean + z * sampling)) / 2  # R² is not logged
    return r2(mean), r2(hi), r2(lo), parts
