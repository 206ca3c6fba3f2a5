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
import yaml

from retrainlib import backtest
from retrainlib.errors import ProfileError, RetrainError
from retrainlib.fitcache import fit_key
from tests.conftest import make_home

REPO = Path(__file__).resolve().parents[1]


def test_unknown_strategy_lists_the_known_ones():
    with pytest.raises(ProfileError, match=r"unknown backtest strategy 'nightly'; expected one of 'static', 'periodic'"):
        backtest.parse_strategies("static,nightly")



def test_a_backtest_reads_its_settings_whole_and_a_keyword_overrides_one_field(tmp_path):
    home = make_home(tmp_path / "home", weeks=12, **{"training.window_batches": 3})
    with pytest.raises(RetrainError, match=r"^warmup=4 batches but 4 batch\(es\) to replay"):
        backtest.run_backtest("params/demo.yaml", backtest.BacktestSettings(max_batches=4), home=home)
    with pytest.raises(RetrainError, match=r"^warmup=5 batches but 4 batch\(es\) to replay"):
        backtest.run_backtest("params/demo.yaml", backtest.BacktestSettings(max_batches=12, warmup=5), home=home,
                              max_batches=4)
    with pytest.raises(TypeError, match="max_batch"):
        backtest.run_backtest("params/demo.yaml", home=home, max_batch=4)
    assert not (home / "runs").exists()

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


def _strategy(name: str, values: list[float], *, trained: list[bool] | None = None, actions: list[str] | None = None,
              stuck: list[bool] | None = None) -> pd.DataFrame:
    n = len(values)
    trained = trained or [True] + [False] * (n - 1)
    actions = actions or ["promoted"] + ["none"] * (n - 1)
    return _records(strategy=[name] * n, value=values, trained=trained, bootstrap=[True] + [False] * (n - 1),
                    promoted=[a == "promoted" for a in actions], action=actions, stuck=stuck or [False] * n)


def test_the_acceptance_check_flags_a_policy_behind_refit_a_lagging_every_batch_and_a_silent_stuck_run():
    nan = np.nan
    every = _strategy("every-batch", [nan, 0.78, 0.78, 0.78, 0.78, 0.78], trained=[True] * 6,
                      actions=["promoted", "rejected", "rejected", "rejected", "rejected", "promoted"])
    records = pd.concat([
        _strategy("static", [nan, 0.70, 0.70, 0.70, 0.70, 0.70]),
        _strategy("performance", [nan, 0.80, 0.79, 0.79, 0.79, 0.80], trained=[True, True] + [False] * 4,
                  actions=["promoted", "promoted"] + ["none"] * 4),
        _strategy("hybrid", [nan, 0.72, 0.72, 0.72, 0.72, 0.72]),
        every,
        _strategy("refit", [nan, 0.80, 0.80, 0.80, 0.80, 0.80], trained=[True] * 6, actions=["promoted"] * 6),
    ])
    summary = backtest.summarize(records)
    assert summary.loc["hybrid", "gap_closed"] == pytest.approx(0.2)
    assert summary.loc["performance", "refit_ratio"] == pytest.approx(0.794 / 0.8)
    checks = backtest.check_acceptance(summary, records).set_index("check")["ok"].to_dict()
    assert checks == {
        "hybrid (the profile's policy) closes the static→refit gap": False,
        "hybrid (the profile's policy) reaches refit's mean": False,
        "performance closes the static→refit gap": True,
        "performance reaches refit's mean": True,
        "a triggered strategy does both with few retrains (retrains / every-batch's)": True,  # 1 of 5 retrains
        "every-batch (gated) vs refit's mean": False,  # 0.02 behind, tolerance 0.005
        "rejections or blocks in a row under performance_threshold without a stuck event": False,  # 4 > 3
    }
    # the same four rejections with the stuck event the rule raises from the third one on are not silent
    flagged = every.assign(stuck=[False, False, False, True, True, False])
    records = pd.concat([records[records["strategy"] != "every-batch"], flagged])
    table = backtest.check_acceptance(backtest.summarize(records), records, stuck_after=3).set_index("check")
    assert table.loc["rejections or blocks in a row under performance_threshold without a stuck event", "ok"]
    assert table.loc["rejections or blocks in a row under performance_threshold without a stuck event", "value"] == "2 (every-batch)"


def test_the_acceptance_check_is_the_stuck_rule_rejections_above_the_threshold_and_blocks_below_it():
    nan = np.nan
    base = [_strategy("static", [nan, 0.70, 0.70, 0.70, 0.70, 0.70]),
            _strategy("refit", [nan, 0.80, 0.80, 0.80, 0.80, 0.80], trained=[True] * 6, actions=["promoted"] * 6)]
    # four rejections in a row while the champion is above performance_threshold: the rule says fine, so does the check
    above = _strategy("hybrid", [nan, 0.78] * 3, trained=[True] * 6,
                      actions=["promoted", "rejected", "rejected", "rejected", "rejected", "promoted"])
    above = above.assign(below_threshold=[None, False, False, False, False, False])
    records = pd.concat([*base, above])
    table = backtest.check_acceptance(backtest.summarize(records), records, stuck_after=3).set_index("check")
    assert table.loc["rejections or blocks in a row under performance_threshold without a stuck event", "ok"]
    # three runs blocked by broken data under the threshold, no stuck event: silent
    blocked = _strategy("hybrid", [nan, 0.6, 0.6, 0.6, 0.6, 0.6], trained=[True] + [False] * 5,
                        actions=["promoted"] + ["none"] * 5)
    blocked = blocked.assign(decision=["bootstrap", "retrain", "blocked-by-quality", "blocked-by-quality",
                                       "blocked-by-quality", "no-retrain"],
                             below_threshold=[None, True, True, True, True, True])
    records = pd.concat([*base, blocked])
    table = backtest.check_acceptance(backtest.summarize(records), records, stuck_after=3).set_index("check")
    assert not table.loc["rejections or blocks in a row under performance_threshold without a stuck event", "ok"]
    assert table.loc["rejections or blocks in a row under performance_threshold without a stuck event", "value"] == "3 (hybrid)"
    # three first champions rejected before one was accepted: no champion measured, so no stuck streak (bird strikes)
    first = _strategy("hybrid", [nan, nan, nan, 0.7, 0.7, 0.7], trained=[True] * 4 + [False] * 2,
                      actions=["rejected", "rejected", "rejected", "promoted", "none", "none"])
    first = first.assign(below_threshold=[None, None, None, None, False, False])
    records = pd.concat([*base, first])
    table = backtest.check_acceptance(backtest.summarize(records), records, stuck_after=3).set_index("check")
    assert table.loc["rejections or blocks in a row under performance_threshold without a stuck event", "ok"]


def test_the_acceptance_check_measures_lower_is_better_metrics_the_other_way():
    nan = np.nan
    records = pd.concat([
        _strategy("static", [nan, 3.0, 3.0]),
        _strategy("performance", [nan, 2.1, 2.1]),
        _strategy("every-batch", [nan, 2.003, 2.003], trained=[True] * 3, actions=["promoted"] * 3),
        _strategy("refit", [nan, 2.0, 2.0], trained=[True] * 3, actions=["promoted"] * 3),
    ])
    summary = backtest.summarize(records, greater_is_better=False)
    assert summary.loc["performance", "gap_closed"] == pytest.approx(0.9)
    assert summary.loc["performance", "refit_ratio"] == pytest.approx(2.0 / 2.1)
    table = backtest.check_acceptance(summary, records, greater_is_better=False).set_index("check")
    assert table.loc["every-batch (gated) vs refit's mean", "value"] == pytest.approx(-0.003)
    assert table.loc["every-batch (gated) vs refit's mean", "ok"]
    assert not table.loc["performance reaches refit's mean", "ok"]  # 0.952 < 0.97
    assert table.loc["strategies the checks need were replayed", "value"] == "missing: hybrid"  # named, not skipped


@pytest.mark.slow
def test_the_gapminder_loader_feeds_a_refit_replay_that_trains_on_the_newest_batch_and_deploys_without_gates(tmp_path):
    home = tmp_path / "home"
    folder = home / "data" / "gapminder" / "batches"
    r = subprocess.run([sys.executable, "benchmarks/gapminder.py", "--folder", str(folder)], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"wrote 12 batches to {folder} (1952-01-01..2007-01-01)"
    first = pd.read_parquet(folder / "1952-01-01.parquet")
    assert list(first.columns) == ["row", "date", "country", "continent", "gdpPercap", "pop", "lifeExp"]
    assert len(first) == 142 and first["date"].nunique() == 1
    prof = yaml.safe_load((REPO / "params" / "gapminder.yaml").read_text())
    prof["training"]["hyperparameters"] = {"GBM": [{"num_boost_round": 20, "learning_rate": 0.1}]}
    (home / "params").mkdir(parents=True)
    (home / "params" / "gapminder.yaml").write_text(yaml.safe_dump(prof, sort_keys=False))

    result = backtest.run_backtest(home / "params" / "gapminder.yaml", home=home, strategies="refit", max_batches=6,
                                   work_dir=tmp_path / "work", progress=False)
    rec = result.records
    assert list(rec["batch"]) == ["1967-01-01.parquet", "1972-01-01.parquet", "1977-01-01.parquet"]
    assert rec["trained"].all() and rec["promoted"].all() and rec["verdict"].isna().all()
    # each step's fit serves the next batch, which scores it
    assert list(rec["champion"].iloc[1:]) == list(rec["challenger"].iloc[:-1])
    assert rec["value"].iloc[1:].notna().all()
    for row in rec.to_dict("records"):
        run = Path(row["run_dir"])
        slices = [Path(s["path"]).name for s in json.loads((run / "20-retrain-model.json").read_text())["slices"]]
        step = int(row["batch"][:4])
        assert slices == [f"{step - 10}-01-01.parquet", f"{step - 5}-01-01.parquet", row["batch"]]  # newest included
        assert json.loads((run / "30-validate-challenger.json").read_text())["status"] == "skipped"
        assert json.loads((run / "40-promote-or-rollback.json").read_text())["champion_after"] == row["challenger"]
    assert result.summary.loc["refit", "retrains"] == 2


def test_refit_figures_compare_only_the_batches_a_strategy_static_and_refit_all_scored():
    nan = np.nan
    records = pd.concat([
        _strategy("static", [nan, nan, 0.70, 0.70]),  # its first champion was rejected once
        _strategy("hybrid", [nan, nan, 0.80, 0.80]),
        _strategy("refit", [nan, 0.50, 0.80, 0.80], trained=[True] * 4, actions=["promoted"] * 4),
    ])
    summary = backtest.summarize(records)
    assert summary.loc["refit", "mean"] == pytest.approx(0.7)  # over its own three batches
    assert summary.loc["hybrid", "refit_ratio"] == pytest.approx(1.0)  # over the two all three scored
    assert summary.loc["hybrid", "gap_closed"] == pytest.approx(1.0) and summary.loc["hybrid", "gap"] == pytest.approx(0.1)


def _flip_labels(home: Path, batch_numbers: list[int]) -> list[str]:
    """Invert the label of the given (0-based) demo batches: a concept that holds there and nowhere else."""
    folder = home / "data" / "demo" / "batches"
    files = sorted(folder.glob("*.parquet"))
    for k in batch_numbers:
        frame = pd.read_parquet(files[k])
        frame["default"] = 1 - frame["default"]
        frame.to_parquet(files[k], index=False)
    return [files[k].name for k in batch_numbers]


@pytest.mark.slow
def test_a_promotion_that_serves_worse_than_the_champion_it_replaced_is_counted_as_harmful(tmp_path):
    # batches 3 and 4 carry an inverted concept; every-batch trains on one batch and validates on the next, so at
    # batch 4 a challenger fitted on batch 3 wins its holdout and is promoted, then serves batch 5, where the old
    # concept is back and the champion it replaced would have scored far better
    home = make_home(tmp_path / "home", weeks=7, **{"training.window_batches": 1, "validation.minimum": {"roc_auc": 0.5}})
    flipped = _flip_labels(home, [3, 4])
    result = backtest.run_backtest(home / "params" / "demo.yaml", home=home, strategies="every-batch",
                                   work_dir=tmp_path / "work", progress=False)
    rec = result.records.reset_index(drop=True)
    at = rec.index[rec["batch"] == flipped[1]][0]
    row = rec.loc[at]
    assert row["promoted"] and row["replaced"] == row["champion"] and row["champion_after"] != row["replaced"]
    assert row["regret"] < 0 and row["regret_high"] < 0 and row["harmful"], row.to_dict()
    # the regret is the successor's score on the next batch (what it served) minus the replaced champion's there
    after = rec.loc[at + 1]
    assert after["champion"] == row["champion_after"]
    from retrainlib import automl
    from retrainlib.registry import Registry
    reg = Registry(tmp_path / "work" / "every-batch" / "models", "loan-default-demo")
    frame = pd.read_parquet(home / "data" / "demo" / "batches" / after["batch"])
    old = reg.load(row["replaced"])
    replaced_score = automl.score("roc_auc", "binary", frame["default"],
                                  automl.predict_scores(old, frame[reg.version(row["replaced"]).metadata["features"]]),
                                  list(old.class_labels))
    assert row["regret"] == pytest.approx(after["value"] - replaced_score)
    # batches that promoted nothing carry no regret; the summary counts exactly the harmful records
    assert rec.loc[~rec["promoted"] | rec["bootstrap"], "regret"].isna().all()
    summary = result.summary.loc["every-batch"]
    assert summary["harmful_promotions"] == int(rec["harmful"].sum()) >= 1
    assert summary["mean_regret"] == pytest.approx(rec["regret"].dropna().mean())
    # and a written backtest.json reads back to the same figures
    result.write(tmp_path / "out")
    again, _ = backtest.recorded(tmp_path / "out" / "backtest.json")
    assert again.loc["every-batch", "harmful_promotions"] == summary["harmful_promotions"]
