"""Issue 22: a refit champion's label-free estimator matches its inputs.

On a real stream (Gapminder, shipped inside plotly) with a flag that varies only in the oldest batch of
the training window: the validated model keeps the flag, its refit on training + holdout slides the
window past that batch and drops the flag as constant. The refit must not carry an estimator that
reads the flag (the next run's step 10 stopped with "the batch lacks the estimator's feature columns").
Real AutoGluon fits, tiny and bounded.
"""

from __future__ import annotations

import sys

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO


@pytest.fixture
def gapminder_home(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from gapminder import load_gapminder
        from stream_batches import write_periods
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    frame = load_gapminder()
    frame["flag"] = ((frame["date"].dt.year == 1952) & (frame["row"] % 2 == 0)).astype(int)  # varies in 1952 only
    home = tmp_path / "home"
    write_periods(frame, home / "data/gapminder/batches", "Y")
    prof = yaml.safe_load((REPO / "params" / "gapminder.yaml").read_text())
    prof["training"]["hyperparameters"] = {"GBM": [{"num_boost_round": 30, "learning_rate": 0.1}]}
    prof["training"]["refit_full"] = True
    prof["training"]["holdout_batches"] = 2  # 284 rows: enough to calibrate the validated model's estimator
    prof["training"]["min_train_rows"] = 100
    prof["validation"]["bootstrap_samples"] = 100
    prof["validation"]["minimum"] = {"r2": 0.3}
    (home / "params").mkdir()
    (home / "params" / "gapminder.yaml").write_text(yaml.safe_dump(prof, sort_keys=False))
    return home


def test_a_refit_that_drops_a_constant_column_carries_no_estimator_of_the_columns_it_lacks(gapminder_home):
    from retrainlib import steps

    home = gapminder_home
    ctx = steps.open_step("params/gapminder.yaml", str(home / "runs" / "boot"), str(home), "1972-12-31")
    assert steps.analyze_drift(ctx).decision.status == "bootstrap"
    trained = steps.retrain_model(ctx)  # 1952, 1957, 1962: the flag varies in 1952
    assert "flag" in ctx.registry.version(trained.challenger).metadata["features"]
    steps.validate_challenger(ctx)
    promoted = steps.promote_or_rollback(ctx)
    champion = promoted.champion_after
    assert promoted.refit and champion == promoted.refit["version"]  # 1962, 1967, 1972: the flag is constant
    assert "flag" not in ctx.registry.version(champion).metadata["features"]
    est = ctx.registry.estimator(champion)
    assert not est.usable and "the refit lacks flag" in est.reason

    ctx = steps.open_step("params/gapminder.yaml", str(home / "runs" / "next"), str(home), "1977-12-31")
    analysis = steps.analyze_drift(ctx)  # stopped with "the batch lacks the estimator's feature columns flag"
    assert analysis.decision.status in ("retrain", "no-retrain"), analysis.decision.reasons
    (newest,) = [e for e in analysis.estimates if e["batch"].endswith("1977-01-01.parquet")]
    assert newest["value"] is None and "the refit lacks flag" in newest["reason"]
    assert pd.notna(analysis.performance["value"])  # measured performance still judges the champion


def test_a_refit_borrows_the_validated_estimator_when_it_keeps_every_column_the_estimator_reads():
    # the validated model's estimator reads 8 columns; a refit with those and more (its window kept a column the
    # validated model's dropped) borrows it; one that lacks a column the estimator reads does not
    from types import SimpleNamespace

    import numpy as np

    from retrainlib import estimate
    from retrainlib.steps.retrain import _borrowed_estimator

    rng = np.random.default_rng(3)
    X = pd.DataFrame({f"c{i:02d}": rng.normal(0, 1, 600) for i in range(8)})
    y = 2 * X["c00"] + rng.normal(0, 0.3 + np.abs(X["c01"]), 600)
    est = estimate.fit_estimator(problem_type="regression", metric="mean_absolute_error", y_true=y.to_numpy(),
                                 scores=2 * X["c00"].to_numpy(), features=X)
    assert est.state["columns"] == list(X.columns)
    ctx = SimpleNamespace(registry=SimpleNamespace(estimator=lambda version: est),
                          profile=SimpleNamespace(training=SimpleNamespace(problem_type="regression",
                                                                           eval_metric="mean_absolute_error")))
    borrowed = _borrowed_estimator(ctx, "v0001", [*X.columns, "flag"])
    assert borrowed.usable and borrowed.checks["borrowed_from"] == "v0001"
    refused = _borrowed_estimator(ctx, "v0001", [c for c in X.columns if c != "c01"])
    assert not refused.usable and "the refit lacks c01" in refused.reason
