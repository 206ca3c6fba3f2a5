"""The step functions the notebooks call, run in-process (the notebooks' own run is in test_pipeline)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrainlib import steps
from retrainlib.demo import week_end
from tests.conftest import make_home

pytestmark = pytest.mark.slow


def run_steps(home, as_of, name: str, **analyze_kw):
    ctx = steps.open_step("params/demo.yaml", str(home / "runs" / name), str(home), as_of)
    analysis = steps.analyze_drift(ctx, **analyze_kw)
    trained = steps.retrain_model(ctx)
    steps.validate_challenger(ctx)
    promoted = steps.promote_or_rollback(ctx)
    return ctx, analysis, trained, promoted


def test_bad_data_quality_blocks_retraining_and_keeps_the_champion(tmp_path):
    home = make_home(tmp_path / "home")
    run_steps(home, week_end(8).isoformat(), "boot")
    rng = np.random.default_rng(0)
    for week in range(9, 13):  # broken feeds: incomes missing, labels missing
        path = home / f"data/demo/batches/{week_end(week)}.parquet"
        frame = pd.read_parquet(path)
        frame.loc[rng.random(len(frame)) < 0.3, "income"] = np.nan
        frame.loc[rng.random(len(frame)) < 0.2, "default"] = np.nan
        frame.to_parquet(path)

    ctx, analysis, trained, promoted = run_steps(home, week_end(12).isoformat(), "blocked", policy=steps.RetrainPolicy("always"))
    assert analysis.decision.status == "blocked-by-quality"
    assert not analysis.decision.retrain
    # the labels missing where they are due are broken data (the missing incomes are changed data, reported)
    assert "data quality" in analysis.decision.reasons[0] and "missing_labels" in analysis.decision.reasons[0]
    assert "missing_values" in analysis.detail.quality.changed
    assert trained.status == "skipped" and "blocked-by-quality" in trained.reason
    assert promoted.action == "none" and promoted.champion_after == "v0001"
    assert [v.name for v in ctx.registry.versions()] == ["v0001"]


def test_incremental_training_rebuilds_the_champions_slices_plus_the_new_batches(tmp_path):
    home = make_home(tmp_path / "home", **{"training.strategy": "incremental"})
    ctx, *_ = run_steps(home, week_end(6).isoformat(), "boot")
    first = ctx.registry.version("v0001").metadata
    assert [s["path"].rsplit("/", 1)[1] for s in first["slices"]] == [f"{week_end(w)}.parquet" for w in range(1, 6)]

    ctx, analysis, trained, _ = run_steps(home, week_end(9).isoformat(), "second", policy=steps.RetrainPolicy("always", "test"))
    assert trained.status == "trained"
    meta = ctx.registry.version(trained.challenger).metadata
    assert meta["slices"][:5] == first["slices"]  # the champion's data, exactly as recorded
    assert [s["path"].rsplit("/", 1)[1] for s in meta["slices"][5:]] == [f"{week_end(w)}.parquet" for w in (6, 7, 8)]
    assert meta["n_rows"] == 8 * 400


def test_a_run_without_new_labels_says_so_instead_of_guessing(tmp_path):
    home = make_home(tmp_path / "home")
    run_steps(home, week_end(8).isoformat(), "boot")
    for week in (9, 10):
        path = home / f"data/demo/batches/{week_end(week)}.parquet"
        frame = pd.read_parquet(path)
        frame["default"] = np.nan
        frame.to_parquet(path)
    ctx = steps.open_step("params/demo.yaml", str(home / "runs" / "nolabels"), str(home), week_end(10).isoformat())
    analysis = steps.analyze_drift(ctx)
    perf = next(t for t in analysis.decision.triggers if t.name == "performance")
    assert perf.value is None and not perf.fired and "no new labelled batch" in perf.reason
    # the decision itself: batches without labels cannot be trained on, so retraining is blocked, not guessed
    assert analysis.decision.status == "blocked-by-quality" and not analysis.decision.retrain, analysis.decision
    assert any("missing_labels" in r for r in analysis.decision.reasons), analysis.decision.reasons
