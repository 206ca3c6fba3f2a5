"""The AutoGluon adapter on real tiny fits: scores, labels, metrics, clones, reproducibility."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, mean_squared_error, roc_auc_score

from retrainlib import automl

TINY = {"GBM": {"num_boost_round": 30}}


def rows(n: int, seed: int, *, classes: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.choice(["x", "y", "z"], n)})
    signal = 1.5 * x.a - x.b + 0.5 * (x.c == "y") + rng.normal(0, 0.5, n)
    if classes == 0:
        return x.assign(y=signal)
    return x.assign(y=np.digitize(signal, np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1])))


def fit(train: pd.DataFrame, path, problem_type: str) -> object:
    metric = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "root_mean_squared_error"}[problem_type]
    return automl.fit_predictor(train, label="y", path=path, eval_metric=metric, problem_type=problem_type, presets="medium_quality",
                                time_limit=120, num_cpus=1, seed=0, hyperparameters=TINY)


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    return fit(rows(400, 0), tmp_path_factory.mktemp("bin") / "ag", "binary")


def test_binary_scores_are_the_positive_class_probability_and_score_agrees_with_sklearn(binary):
    test = rows(200, 1)
    scores = automl.predict_scores(binary, test)
    proba = binary.predict_proba(test)
    assert scores.shape == (200,) and np.allclose(scores, proba[binary.class_labels[1]].to_numpy())
    problem, classes, features = automl.model_facts(binary)
    assert (problem, classes, features) == ("binary", [0, 1], ["a", "b", "c"])
    assert automl.score("roc_auc", "binary", test.y, scores, classes) == pytest.approx(roc_auc_score(test.y, scores))
    assert automl.score("roc_auc", "binary", test.y, scores, classes) > 0.8  # it learnt the signal
    labels = automl.predict_labels(binary, test)
    assert set(np.unique(labels)) <= {0, 1} and labels.shape == (200,)


def test_a_loss_is_read_lower_is_better_and_an_unknown_metric_is_refused():
    assert automl.metric_info("log_loss", "binary").greater_is_better is False
    assert automl.metric_info("roc_auc", "binary").greater_is_better is True
    with pytest.raises((ValueError, KeyError)):
        automl.metric_info("kl_divergence_of_dreams", "binary")


def test_multiclass_log_loss_counts_a_label_the_model_never_learnt(tmp_path):
    train = rows(450, 2, classes=3)
    model = fit(train, tmp_path / "ag", "multiclass")
    test = rows(150, 3, classes=3)
    scores = automl.predict_scores(model, test)
    assert scores.shape == (150, 3) and np.allclose(scores.sum(axis=1), 1)
    known = automl.score("log_loss", "multiclass", test.y, scores, [0, 1, 2])
    assert known == pytest.approx(log_loss(test.y, scores, labels=[0, 1, 2]), rel=1e-6)  # in the loss's own units
    unseen = test.y.where(test.index % 10 != 0, 7)  # every tenth row a class no model has seen
    worse = automl.score("log_loss", "multiclass", unseen, scores, [0, 1, 2])
    assert np.isfinite(worse) and worse > known


def test_regression_scores_are_values_and_rmse_matches_numpy(tmp_path):
    model = fit(rows(400, 4, classes=0), tmp_path / "ag", "regression")
    test = rows(100, 5, classes=0)
    scores = automl.predict_scores(model, test)
    assert scores.dtype == float and scores.shape == (100,)
    rmse = automl.score("root_mean_squared_error", "regression", test.y, scores)
    assert abs(rmse) == pytest.approx(mean_squared_error(test.y, scores) ** 0.5, rel=1e-6)


def test_a_deployment_clone_loads_strictly_and_predicts_the_same(binary, tmp_path):
    clone = automl.deploy_clone(binary, tmp_path / "clone")
    again = automl.load_predictor(clone, strict=True)
    test = rows(50, 6)
    assert np.array_equal(automl.predict_scores(again, test), automl.predict_scores(binary, test))
    assert automl.predictor_path(again) == clone


def test_a_fit_bounded_by_configuration_is_reproducible(binary, tmp_path):
    twin = fit(rows(400, 0), tmp_path / "ag", "binary")
    test = rows(100, 7)
    assert np.array_equal(automl.predict_scores(twin, test), automl.predict_scores(binary, test))


def test_a_custom_model_key_that_imports_nothing_names_the_key():
    with pytest.raises(ValueError, match=r"training.hyperparameters key 'no_such_pkg.models:Fast' names no importable model class"):
        automl.custom_models({"no_such_pkg.models:Fast": {}})
    assert automl.custom_models({"GBM": {"num_boost_round": 5}}) == {"GBM": {"num_boost_round": 5}}


def test_feature_importance_is_clipped_and_sums_to_one(binary):
    imp = automl.feature_importance(binary, rows(200, 8), seed=0, time_limit=30)
    assert set(imp) == {"a", "b", "c"} and abs(sum(imp.values()) - 1) < 1e-9 and min(imp.values()) >= 0
    assert imp["a"] > imp["c"]  # the strongest signal ranks above the weakest


def test_pin_threads_sets_every_thread_variable(monkeypatch):
    for var in automl.THREAD_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    automl.pin_threads(1)
    assert all(os.environ[v] == "1" for v in automl.THREAD_VARIABLES)


def test_software_versions_name_what_a_strict_load_compares():
    import platform

    import autogluon.tabular as agt

    versions = automl.software_versions()
    assert versions["autogluon"] == agt.__version__ and versions["python"] == platform.python_version()


def test_the_package_listing_is_taken_once_per_process_and_equals_a_fresh_one(binary, tmp_path, monkeypatch):
    from autogluon.common.utils import utils
    from autogluon.tabular.predictor import predictor as module

    monkeypatch.delenv("RETRAIN_FRESH", raising=False)
    automl.remember_package_listing()
    first = module.get_autogluon_metadata()
    listings = []
    real = utils.get_package_versions
    monkeypatch.setattr(utils, "get_package_versions", lambda **kw: listings.append(1) or real(**kw))
    clone = automl.deploy_clone(binary, tmp_path / "clone")  # a save records the packages
    automl.load_predictor(clone)
    automl.load_predictor(clone)  # each load compares them
    assert listings == []
    assert module.get_autogluon_metadata() == first == utils.get_autogluon_metadata()
    assert listings == [1]  # only the fresh listing read the installed packages
