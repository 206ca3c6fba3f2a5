"""Issue 22 at step level, with real tiny AutoGluon fits: broken data blocks, changed data never does;
a block on one batch does not block the next clean one; blocks count toward the stuck event; a
declared constraint blocks; a run between batches says "no new batch" calmly (issue 23)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import make_home

PROFILE = "params/demo.yaml"


def change(home: Path, week: int, edit) -> str:
    from retrainlib.demo import week_end

    path = home / f"data/demo/batches/{week_end(week)}.parquet"
    frame = pd.read_parquet(path)
    frame = edit(frame)
    frame.to_parquet(path, index=False)
    return path.relative_to(home).as_posix()


def run_steps(home: Path, week: int, name: str):
    from retrainlib import steps
    from retrainlib.demo import week_end

    ctx = steps.open_step(PROFILE, str(home / "runs" / name), str(home), week_end(week).isoformat())
    analysis = steps.analyze_drift(ctx)
    trained = steps.retrain_model(ctx)
    steps.validate_challenger(ctx)
    promoted = steps.promote_or_rollback(ctx)
    return ctx, analysis, trained, promoted


def test_repeated_rows_a_constant_flag_and_a_seasonal_range_do_not_block_and_fire_the_data_quality_trigger(qhome):
    def seasonal(frame: pd.DataFrame) -> pd.DataFrame:
        frame = pd.concat([frame, frame.iloc[: len(frame) // 6]], ignore_index=True)  # 14 % repeated rows
        frame["income"] = frame["income"] * 3  # a season: far above the recent range
        frame["open_accounts"] = 2  # a flag constant this month
        return frame

    for week in (10, 11, 12):  # the whole current window (the champion trained on weeks 1-9)
        change(qhome, week, seasonal)
    ctx, analysis, trained, _ = run_steps(qhome, 12, "seasonal")
    assert analysis.decision.status == "retrain", analysis.decision.reasons
    q = analysis.detail.quality
    assert q.passed and q.blocked_by == () and q.below_threshold
    assert {"duplicate_rows", "out_of_range", "constant_columns"} <= set(q.changed)
    fired = {t.name: t for t in analysis.decision.triggers}["data_quality"]
    assert fired.fired and fired.enabled and "changed-data score" in fired.reason
    assert any("changed-data score" in r for r in analysis.decision.reasons)
    assert trained.status == "trained"


def test_changed_data_with_triggers_quality_report_is_reported_and_no_reason_to_retrain(qhome):
    from retrainlib import steps
    from retrainlib.demo import week_end

    prof = qhome / "params" / "demo.yaml"
    import yaml

    doc = yaml.safe_load(prof.read_text())
    doc["triggers"]["quality"] = "report"
    doc["triggers"]["use"] = ["schedule"]
    doc["triggers"]["policy"] = "any"
    doc["retraining_interval"] = 365
    prof.write_text(yaml.safe_dump(doc, sort_keys=False))
    for week in (10, 11):
        change(qhome, week, lambda f: f.assign(income=f["income"] * 3, open_accounts=2))
    ctx = steps.open_step(PROFILE, str(qhome / "runs" / "report"), str(qhome), week_end(11).isoformat())
    analysis = steps.analyze_drift(ctx)
    fired = {t.name: t for t in analysis.decision.triggers}["data_quality"]
    assert fired.fired and not fired.enabled and "triggers.quality: report" in fired.reason
    assert analysis.decision.status == "no-retrain"


def test_a_block_on_one_batch_does_not_block_the_next_clean_one_and_the_broken_batch_is_left_out(qhome):
    def broken(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[frame.index[:5], "debt_to_income"] = np.inf
        return frame

    path = change(qhome, 12, broken)
    ctx, first, trained, _ = run_steps(qhome, 12, "broken")
    assert first.decision.status == "blocked-by-quality" and trained.status == "skipped"
    assert path in first.decision.reasons[0] and "infinite_values" in first.decision.reasons[0]
    (block,) = [a for a in ctx.registry.attempts() if a["outcome"] == "blocked"]
    assert [b["path"] for b in block["batches"]] == [path] and block["batches"][0]["checks"] == ["infinite_values"]

    ctx, second, trained, _ = run_steps(qhome, 13, "next-clean")
    assert second.decision.status != "blocked-by-quality", second.decision.reasons
    assert any(f"left out of training: {path}" in r for r in second.decision.reasons)
    assert path not in [b["path"] for b in second.windows["train"]]
    if trained.status == "trained":  # the challenger never saw the broken batch
        slices = ctx.registry.version(trained.challenger).metadata["slices"]
        assert path not in [s["path"] for s in slices]


def test_a_broken_batch_fixed_in_place_is_judged_again_and_used(qhome):
    path = change(qhome, 12, lambda f: f.assign(debt_to_income=np.where(f.index < 5, np.inf, f["debt_to_income"])))
    ctx, first, *_ = run_steps(qhome, 12, "broken")
    assert first.decision.status == "blocked-by-quality"
    change(qhome, 12, lambda f: f.assign(debt_to_income=f["debt_to_income"].replace(np.inf, 0.3)))
    ctx, second, *_ = run_steps(qhome, 13, "fixed")
    assert second.decision.status != "blocked-by-quality"
    assert path in [b["path"] for b in second.windows["train"]]
    assert not any("left out of training" in r for r in second.decision.reasons)


def test_blocks_in_a_row_with_the_champion_under_the_threshold_raise_the_stuck_event_naming_the_blocks(qhome):
    import yaml

    prof = qhome / "params" / "demo.yaml"
    doc = yaml.safe_load(prof.read_text())
    doc["performance_threshold"] = 0.99  # the champion is under it
    doc["validation"]["minimum"] = {"roc_auc": 0.5}
    doc["validation"]["stuck_after"] = 2
    prof.write_text(yaml.safe_dump(doc, sort_keys=False))
    for week in (11, 12):
        change(qhome, week, lambda f: f.assign(credit_score=np.where(f.index < 3, np.nan, f["credit_score"]),
                                               income=np.where(f.index < 3, -np.inf, f["income"])))
    *_, first = run_steps(qhome, 11, "block-1")
    assert first.stuck is None
    ctx, analysis, trained, second = run_steps(qhome, 12, "block-2")
    assert analysis.decision.status == "blocked-by-quality" and trained.status == "skipped"
    assert second.stuck is not None and second.stuck["rejections"] == 2
    assert "rejected or blocked" in second.stuck["reason"] and "blocked by data quality" in second.stuck["reason"]
    assert second.champion_after == "v0001"


def test_a_declared_constraint_blocks_the_batch_that_breaks_it_naming_rule_and_rows(qhome):
    import yaml

    prof = qhome / "params" / "demo.yaml"
    doc = yaml.safe_load(prof.read_text())
    doc["data"]["constraints"] = ["age >= 18", "loan_amount > 0"]
    prof.write_text(yaml.safe_dump(doc, sort_keys=False))
    path = change(qhome, 11, lambda f: f.assign(age=np.where(f.index < 4, -1, f["age"])))
    ctx, analysis, trained, _ = run_steps(qhome, 11, "constraint")
    assert analysis.decision.status == "blocked-by-quality" and trained.status == "skipped"
    reason = analysis.decision.reasons[0]
    assert path in reason and "constraints: age >= 18: 4 of" in reason and "(e.g. -1)" in reason


def test_a_profile_with_a_constraint_that_is_no_rule_is_refused_naming_the_key(tmp_path):
    from retrainlib.errors import ProfileError
    from retrainlib.profiles import load_profile

    home = make_home(tmp_path / "home", **{"data.constraints": ["age is positive"]})
    with pytest.raises(ProfileError, match=r"constraints.*age is positive.*'<column> <op> <value>'"):
        load_profile(home / "params" / "demo.yaml")


def test_a_first_run_blocked_by_a_broken_holdout_does_not_block_the_next_first_run_which_leaves_it_out(tmp_path):
    home = make_home(tmp_path / "home")
    path = change(home, 10, lambda f: f.assign(income=np.where(f.index < 3, np.inf, f["income"])))
    ctx, first, trained, _ = run_steps(home, 10, "boot-1")  # week 10 is the holdout of the first run
    assert first.decision.status == "blocked-by-quality" and trained.status == "skipped"
    assert path in first.decision.reasons[0]
    ctx, second, trained, promoted = run_steps(home, 11, "boot-2")  # week 10 is now in the training window
    assert second.decision.status == "bootstrap", second.decision.reasons
    assert path not in [b["path"] for b in second.windows["train"]]
    assert any(f"left out of training: {path}" in r for r in second.decision.reasons)
    assert trained.status == "trained"
    assert path not in [s["path"] for s in ctx.registry.version(trained.challenger).metadata["slices"]]
