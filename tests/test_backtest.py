"""Backtest: a tiny walk-forward replay through the CLI, checked against its per-batch records and step JSON."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrainlib import backtest
from retrainlib.errors import ProfileError
from retrainlib.fitcache import fit_key
from tests.conftest import make_home

REPO = Path(__file__).resolve().parents[1]


def test_unknown_strategy_lists_the_known_ones():
    with pytest.raises(ProfileError, match=r"unknown backtest strategy 'nightly'; expected one of 'static', 'periodic'"):
        backtest.parse_strategies("static,nightly")


def test_fit_key_changes_with_rows_and_settings_but_not_with_settings_order():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    a = fit_key(frame, {"seed": 0, "presets": "medium_quality"})
    assert a == fit_key(frame.copy(), {"presets": "medium_quality", "seed": 0})
    assert a != fit_key(frame, {"seed": 1, "presets": "medium_quality"})
    assert a != fit_key(frame.assign(y=[1, 1, 0]), {"seed": 0, "presets": "medium_quality"})


def _records(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"batch_start": pd.date_range("2024-01-01", periods=n, freq="7D"), "bootstrap": [False] * n,
            "trained": [False] * n, "promoted": [False] * n, "action": ["none"] * n, "cpu_seconds": [0.0] * n,
            "fit_cache": [None] * n, "analyze_seconds": [0.0] * n, "retrain_seconds": [0.0] * n,
            "validate_seconds": [0.0] * n, "promote_seconds": [0.0] * n}
    return pd.DataFrame({**base, **columns})


def test_summary_ratios_and_target_read_the_per_batch_records():
    every = _records(strategy=["every-batch"] * 4, value=[np.nan, 0.8, 0.8, 0.8], trained=[True] * 4,
                     bootstrap=[True, False, False, False], promoted=[True, True, False, True], cpu_seconds=[2.0] * 4)
    drift = _records(strategy=["drift"] * 4, value=[np.nan, 0.8, 0.7, 0.79], trained=[True, False, True, False],
                     bootstrap=[True, False, False, False], promoted=[True, False, True, False], cpu_seconds=[2.0, 0, 2.0, 0])
    static = _records(strategy=["static"] * 4, value=[np.nan, 0.8, 0.6, 0.6], trained=[True, False, False, False],
                      bootstrap=[True, False, False, False], promoted=[True, False, False, False], cpu_seconds=[2.0, 0, 0, 0])
    summary = backtest.summarize(pd.concat([static, drift, every]), drift_points=[("shift", pd.Timestamp("2024-01-10"))])
    assert list(summary.index) == ["static", "drift", "every-batch"]  # the table's fixed order
    assert summary.loc["drift", "mean"] == pytest.approx(0.76333, abs=1e-4)
    assert summary.loc["drift", "worst"] == pytest.approx(0.7)
    assert summary.loc["drift", "retrains"] == 1 and summary.loc["every-batch", "retrains"] == 3
    assert summary.loc["drift", "retrains_ratio"] == pytest.approx(1 / 3)
    assert summary.loc["drift", "cpu_seconds_ratio"] == pytest.approx(0.5)
    assert summary.loc["static", "mean_after_drift"] == pytest.approx(0.6)  # batches from 2024-01-15 on
    target = backtest.check_target(summary)
    assert target.loc["drift", "mean_ratio_ok"] and target.loc["drift", "retrains_ratio_ok"]
    assert target.loc["drift", "beats_static_after_drift"] and target.loc["drift", "meets_target"]


def _run_cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "retrainlib.cli", *args, "--home", str(home)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_tiny_backtest_through_the_cli_matches_its_records_and_the_fit_cache_changes_no_result(tmp_path):
    home = make_home(tmp_path / "home", weeks=4, **{"training.window_batches": 2, "validation.minimum": {"roc_auc": 0.5}})
    out = tmp_path / "bt.json"
    # periodic (the schedule trigger, every day) and drift (the drift trigger) decide through the real trigger policy
    r = _run_cli("backtest", "--profile", "params/demo.yaml", "--strategies", "every-batch,static,periodic,drift",
                 "--period-days", "1", "--json", str(out), "--work-dir", str(tmp_path / "work"), "--no-progress", home=home)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "every-batch" in r.stdout and "shared fits:" in r.stdout
    result = json.loads(out.read_text())
    records = pd.DataFrame(result["records"])
    summary = pd.DataFrame(result["summary"]).set_index("strategy")

    # two replayed batches per strategy; the first trains the first champion, the second is scored
    assert records.groupby("strategy").size().to_dict() == {"every-batch": 2, "static": 2, "periodic": 2, "drift": 2}
    for name, rows in records.groupby("strategy"):
        s = summary.loc[name]
        values = rows["value"].dropna()
        assert s["batches"] == len(values) == 1
        assert s["mean"] == pytest.approx(values.mean()) and s["worst"] == pytest.approx(values.min())
        assert s["retrains"] == (rows["trained"] & ~rows["bootstrap"]).sum()
        assert s["promotions"] == (rows["promoted"] & ~rows["bootstrap"]).sum()
        assert s["cpu_seconds"] == pytest.approx(rows["cpu_seconds"].sum())
        for col in ("mean", "retrains", "cpu_seconds"):
            ref = summary.loc["every-batch", col]
            assert s[f"{col}_ratio"] == pytest.approx(s[col] / ref) if ref else math.isnan(s[f"{col}_ratio"])
        # each record is what that playbook step wrote to its run folder
        for rec in rows.to_dict("records"):
            analysis = json.loads((Path(rec["run_dir"]) / "10-analyze-drift.json").read_text())
            assert analysis["decision"]["status"] == rec["decision"]
            scored = [e["value"] for e in analysis["evaluations"] if Path(e["batch"]).name == rec["batch"]]
            assert scored == ([] if rec["champion"] is None else [pytest.approx(rec["value"])])
            trained = json.loads((Path(rec["run_dir"]) / "20-retrain-model.json").read_text())
            assert (trained["status"] == "trained") == rec["trained"]
            promoted = json.loads((Path(rec["run_dir"]) / "40-promote-or-rollback.json").read_text())
            assert promoted["action"] == rec["action"]
    assert summary.loc["static", "retrains"] == 0
    assert summary.loc["every-batch", "retrains"] == 1
    # the triggered strategies: periodic's schedule trigger fires a week after a 1-day interval; drift retrains
    # exactly when its drift trigger fired
    periodic = records[records["strategy"] == "periodic"].iloc[1]
    analysis = json.loads((Path(periodic["run_dir"]) / "10-analyze-drift.json").read_text())
    assert periodic["trained"] and analysis["decision"]["retrain"]
    assert any(t["name"] == "schedule" and t["fired"] for t in analysis["decision"]["triggers"]), analysis["decision"]
    assert summary.loc["periodic", "retrains"] == 1
    drift = records[records["strategy"] == "drift"].iloc[1]
    analysis = json.loads((Path(drift["run_dir"]) / "10-analyze-drift.json").read_text())
    (trigger,) = [t for t in analysis["decision"]["triggers"] if t["name"] == "drift"]
    assert trigger["fired"] == (trigger["value"] > trigger["threshold"] or "joint" in trigger["reason"])
    assert bool(drift["trained"]) == trigger["fired"] == analysis["decision"]["retrain"], analysis["decision"]
    assert result["fit_cache"]["fits_reused"] >= 1  # static's first champion is every-batch's first fit
    assert records.loc[records["strategy"] == "static", "fit_cache"].iloc[0] == "reused"

    # the same replay of static computing its own fit gives the same per-batch results
    alone = backtest.run_backtest(home / "params" / "demo.yaml", home=home, strategies="static", fit_cache=False,
                                  work_dir=tmp_path / "alone", progress=False)
    assert alone.fit_cache == {"enabled": False}
    cols = ["batch", "champion", "value", "decision", "trained", "verdict", "action", "champion_after"]
    shared = records[records["strategy"] == "static"][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone.records[cols].reset_index(drop=True), shared, check_dtype=False)
    assert alone.records["cpu_seconds"].sum() > 0
