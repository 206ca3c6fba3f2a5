"""Decisions that hold on real data (issue 11): the playbook's steps run in-process on the demo book,
with real tiny AutoGluon fits; the runner's own run (papermill) where the outcome is the point."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from retrainlib import steps
from retrainlib.demo import week_end
from tests.conftest import make_home
from tests.test_steps import run_steps

pytestmark = pytest.mark.slow


def batch(home, week: int):
    return home / f"data/demo/batches/{week_end(week)}.parquet"


def edit(home, week: int, change) -> None:
    path = batch(home, week)
    frame = pd.read_parquet(path)
    change(frame, np.random.default_rng(week))
    frame.to_parquet(path)


def schedule(analysis):
    return next(t for t in analysis.decision.triggers if t.name == "schedule")


# ---- cause 1: the schema gate judges the data contract ------------------------------------------


def test_a_column_constant_in_the_champions_window_and_varying_later_does_not_block_a_challenger(tmp_path):
    home = make_home(tmp_path / "home", **{"validation.minimum": {}})

    def promo(frame, rng, varies):
        frame["promo"] = (rng.random(len(frame)) < 0.3).astype(int) if varies else 0
        if varies:  # the promotion now drives defaults: only a model that uses the column sees it
            frame.loc[frame.promo == 1, "default"] = 1

    for week in range(1, 25):
        edit(home, week, lambda f, rng, w=week: promo(f, rng, varies=w >= 9))
    ctx, *_ = run_steps(home, week_end(8).isoformat(), "boot")
    champion = ctx.registry.champion()
    meta = ctx.registry.version(champion).metadata
    assert "promo" not in meta["features"]  # AutoGluon dropped the constant column

    ctx, analysis, trained, promoted = run_steps(home, week_end(11).isoformat(), "varies", policy=steps.RetrainPolicy("always", "test"))
    verdict = json.loads((ctx.run_dir / "30-validate-challenger.json").read_text())
    schema = next(g for g in verdict["gates"] if g["name"] == "schema")
    assert "promo" in ctx.registry.version(trained.challenger).metadata["features"]
    assert schema["passed"], schema["reason"]
    assert verdict["decision"] == "promote", verdict["reasons"]
    assert promoted.action == "promoted"
    assert meta["inputs"]["promo"] == "numeric"  # the contract: the champion was given the column all along


# ---- cause 3: the deployed model learns from the newest labelled batch -------------------------


def test_the_validated_challenger_is_refit_on_training_and_holdout_rows_and_the_refit_is_deployed(tmp_path):
    home = make_home(tmp_path / "home", **{"training.refit_full": True})
    ctx, analysis, trained, promoted = run_steps(home, week_end(8).isoformat(), "boot")
    validated, refit = trained.challenger, promoted.refit["version"]
    assert promoted.refit["validated"] == validated and refit != validated
    assert ctx.registry.champion() == refit  # the refit is promoted (and smoke-tested: promote_verified)
    meta = ctx.registry.version(refit).metadata
    holdout = analysis.window("holdout")[-1]["path"]
    assert meta["refit_of"] == validated
    assert holdout in [s["path"] for s in meta["slices"]]
    assert holdout not in [s["path"] for s in ctx.registry.version(validated).metadata["slices"]]
    assert meta["n_rows"] == ctx.registry.version(validated).metadata["n_rows"]  # the window slid by one batch
    promote_event = promoted.events[0]
    assert promote_event["version"] == refit and validated in promote_event["reason"]
    verdict = json.loads((ctx.run_dir / "30-validate-challenger.json").read_text())
    assert verdict["challenger"] == validated  # the verdict stays about the validated model


def test_a_sliding_window_refit_moves_over_the_holdout_and_keeps_the_windows_length(tmp_path):
    home = make_home(tmp_path / "home", **{"training.refit_full": True, "training.window_batches": 3})
    ctx, analysis, trained, promoted = run_steps(home, week_end(8).isoformat(), "boot")
    slices = lambda v: [s["path"] for s in ctx.registry.version(v).metadata["slices"]]  # noqa: E731
    validated, refit = slices(trained.challenger), slices(promoted.refit["version"])
    holdout = [b["path"] for b in analysis.window("holdout")]
    assert len(validated) == 3 and not set(holdout) & set(validated)
    assert refit == (validated + holdout)[-3:]  # the newest window of training + holdout, not 4 batches with the oldest


def test_a_challenger_on_the_champions_own_rows_is_judged_against_the_model_the_champion_was_validated_as(tmp_path):
    home = make_home(tmp_path / "home", **{"training.refit_full": True, "training.window_batches": 3})
    ctx, _, boot, _ = run_steps(home, week_end(8).isoformat(), "boot")
    champion = ctx.registry.champion()
    ctx, _, trained, _ = run_steps(home, week_end(9).isoformat(), "next", policy=steps.RetrainPolicy("always", "test"))
    slices = lambda v: [s["path"] for s in ctx.registry.version(v).metadata["slices"]]  # noqa: E731
    assert slices(trained.challenger) == slices(champion)  # the champion's refit already saw every training row
    verdict = json.loads((ctx.run_dir / "30-validate-challenger.json").read_text())
    assert verdict["champion"] == champion and verdict["compared_with"] == boot.challenger
    gain = next(g for g in verdict["gates"] if g["name"] == "improvement")["details"]
    assert gain["champion"] != gain["challenger"]  # not the champion's own fit scored twice (an improvement of exactly 0)


def test_a_challenger_on_a_week_its_champion_never_saw_is_promoted_when_not_significantly_worse(tmp_path):
    home = make_home(tmp_path / "home", **{"improvement_threshold": 0.9, "validation.minimum": {}})  # no gain reaches 0.9
    run_steps(home, week_end(8).isoformat(), "boot")
    ctx, _, trained, promoted = run_steps(home, week_end(9).isoformat(), "next", policy=steps.RetrainPolicy("always", "test"))
    verdict = json.loads((ctx.run_dir / "30-validate-challenger.json").read_text())
    gates = [g for g in verdict["gates"] if g["name"] == "improvement"]
    assert all(g["details"]["new_rows"] and g["value"] < 0.9 for g in gates)
    assert all(g["passed"] and "not significantly worse" in g["reason"] for g in gates), [g["reason"] for g in gates]
    assert promoted.action == "promoted"


def test_retention_keeps_the_model_a_refit_champion_was_validated_as_so_the_next_challenger_is_not_its_twin(tmp_path):
    home = make_home(tmp_path / "home", **{"training.refit_full": True, "training.window_batches": 3, "max_versions": 2})
    for week in (8, 9, 10):
        ctx, _, trained, promoted = run_steps(home, week_end(week).isoformat(), f"w{week}", policy=steps.RetrainPolicy("always", "test"))
    champion = ctx.registry.version(ctx.registry.champion())
    names = [v.name for v in ctx.registry.versions()]
    assert champion.metadata["validated_version"] in names  # kept though it never served and max_versions is 2
    verdict = json.loads((ctx.run_dir / "30-validate-challenger.json").read_text())
    assert verdict["compared_with"] != verdict["champion"]  # judged against a stand-in, not the champion's own fit
    gain = next(g for g in verdict["gates"] if g["name"] == "improvement")
    assert gain["value"] != 0.0


def test_with_refit_full_off_the_validated_challenger_itself_is_deployed(tmp_path):
    home = make_home(tmp_path / "home", **{"training.refit_full": False})
    ctx, analysis, trained, promoted = run_steps(home, week_end(8).isoformat(), "boot")
    assert promoted.refit is None and ctx.registry.champion() == trained.challenger


# ---- cause 4: the schedule clock ----------------------------------------------------------------


def test_a_weekly_run_with_a_seven_day_interval_retrains_every_week_without_as_of(tmp_path):
    home = make_home(tmp_path / "home", **{"triggers.policy": "periodic", "retraining_interval": 7})
    aside = tmp_path / "later"
    aside.mkdir()
    for week in range(9, 25):  # live: only eight weeks have arrived so far
        shutil.move(str(batch(home, week)), aside / batch(home, week).name)
    run_steps(home, "", "boot")
    shutil.move(str(aside / batch(home, 9).name), batch(home, 9))  # next week's batch arrives
    ctx, analysis, trained, _ = run_steps(home, "", "week9")
    assert schedule(analysis).fired, schedule(analysis).reason
    assert trained.status == "trained"
    ctx, analysis, trained, _ = run_steps(home, "", "week9-again")  # the same data again: nothing new to learn
    assert not schedule(analysis).fired and trained.status == "skipped"


def test_a_rejected_challenger_waits_one_interval_before_the_next_attempt(tmp_path):
    home = make_home(tmp_path / "home", **{"triggers.policy": "periodic", "retraining_interval": 14,
                                           "improvement_threshold": 0.9, "validation.minimum": {},
                                           "validation.fresher_challenger": "improve"})
    run_steps(home, week_end(8).isoformat(), "boot")
    ctx, analysis, trained, promoted = run_steps(home, week_end(10).isoformat(), "w10")
    assert schedule(analysis).fired and promoted.action == "rejected"
    ctx, analysis, trained, _ = run_steps(home, week_end(11).isoformat(), "w11")
    assert not schedule(analysis).fired, schedule(analysis).reason  # one week after the rejected attempt
    assert "last retraining attempt (v0002" in schedule(analysis).reason and trained.status == "skipped"
    ctx, analysis, trained, _ = run_steps(home, week_end(12).isoformat(), "w12")
    assert schedule(analysis).fired and trained.status == "trained"
    assert [a["version"] for a in ctx.registry.attempts()] == ["v0001", "v0002", "v0003"]
    assert [a["outcome"] for a in ctx.registry.attempts()] == ["promoted", "rejected", "rejected"]


# ---- cause 6: a stuck champion is its own outcome ----------------------------------------------


def test_a_champion_below_threshold_with_rejections_in_a_row_is_stuck_exit_6_and_notified(tmp_path):
    from retrainlib.pipeline import run_playbook

    home = make_home(tmp_path / "home", **{"performance_threshold": 0.99, "improvement_threshold": 0.9, "validation.fresher_challenger": "improve",
                                           "validation.minimum": {}, "validation.stuck_after": 2})
    run_steps(home, week_end(8).isoformat(), "boot")
    ctx, analysis, trained, promoted = run_steps(home, week_end(9).isoformat(), "w9")
    assert promoted.action == "rejected" and promoted.stuck is None  # one rejection is not stuck yet
    manifest, run_dir = run_playbook("params/demo.yaml", home=home, as_of=week_end(10).isoformat(), progress=False)
    assert manifest.outcome == "stuck" and manifest.exit_code == 6
    stuck = manifest.promotion.stuck
    assert stuck["rejections"] == 2 and stuck["gate"] == "improvement (roc_auc)" and stuck["versions"] == ["v0002", "v0003"]
    assert manifest.reasons[0].startswith("stuck: champion v0001 roc_auc 0.")
    assert "below performance_threshold 0.99" in manifest.reasons[0] and "improvement_threshold 0.9" in manifest.reasons[0]
    assert [n["event"] for n in manifest.notifications] == ["stuck"]


# ---- cause 7: late labels ------------------------------------------------------------------------


def test_late_labels_do_not_block_retraining_and_the_holdout_is_the_newest_labelled_batch(tmp_path):
    home = make_home(tmp_path / "home", **{"data.label_delay_batches": 2})
    run_steps(home, week_end(8).isoformat(), "boot")
    for week in (11, 12):  # the two newest weeks: no labels yet
        edit(home, week, lambda f, rng: f.__setitem__("default", np.nan))
    ctx, analysis, trained, promoted = run_steps(home, week_end(12).isoformat(), "late", policy=steps.RetrainPolicy("always", "test"))
    assert analysis.decision.status == "retrain" and analysis.detail.quality.passed
    labels = next(c for c in analysis.detail.quality.checks if c.name == "missing_labels")
    assert labels.passed and labels.value == 0.0
    assert [b.path.rsplit("/", 1)[1] for b in analysis.detail.windows.holdout] == [f"{week_end(10)}.parquet"]
    assert f"{week_end(12)}.parquet" in [b.path.rsplit("/", 1)[1] for b in analysis.detail.windows.current]  # drift sees them
    assert analysis.performance["batch"].endswith(f"{week_end(10)}.parquet") and analysis.performance["value"] is not None
    assert trained.status == "trained" and promoted.action in ("promoted", "rejected")


# ---- cause 9: rollbacks are visible --------------------------------------------------------------


def test_an_automatic_rollback_is_outcome_rolled_back_with_exit_7_and_a_notification(tmp_path):
    from retrainlib import notify
    from retrainlib.manifest import RunManifest
    from retrainlib.pipeline import fill_manifest
    from retrainlib.playbook import step

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    decision = {"retrain": True, "status": "retrain", "policy": "hybrid", "reasons": ["drift"], "triggers": []}
    (run_dir / step("analyze").json_file).write_text(json.dumps({"decision": decision, "windows": {}, "quality": {"score": 1.0}}))
    (run_dir / step("promote").json_file).write_text(json.dumps({"action": "auto-rolled-back", "events": [
        {"event": "promote", "version": "v0002", "reason": "passed every validation gate"},
        {"event": "auto-rollback", "version": "v0001", "reason": "smoke test of v0002 failed in a fresh process: boom"},
    ]}))
    manifest = RunManifest(run_id="r", profile={}, as_of=None, started="now", status="succeeded")
    fill_manifest(manifest, run_dir)
    assert (manifest.outcome, manifest.exit_code) == ("rolled-back", 7)
    assert manifest.reasons == ["smoke test of v0002 failed in a fresh process: boom"]
    assert notify.event_for(manifest.outcome) == "rolled-back"


def test_a_rollback_by_hand_is_a_run_with_its_folder_outcome_exit_7_and_a_notification(home, clone):
    import subprocess
    import sys

    from retrainlib.profiles import load_profile
    from retrainlib.registry import Registry

    prof = load_profile(home / "params/demo.yaml")
    reg = Registry(home / prof.registry, prof.model_name)
    for _ in range(2):
        reg.promote(reg.add_version(clone, {"features": ["income", "debt", "region"]}).name, run_id=None, reason="test")
    r = subprocess.run([sys.executable, "-m", "retrainlib.cli", "rollback", "--profile", "params/demo.yaml",
                        "--reason", "bad predictions reported", "--home", str(home)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 7, r.stdout + r.stderr
    assert reg.champion() == "v0001"
    (run_dir,) = (home / "runs").glob("*-rollback")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["outcome"] == "rolled-back" and manifest["exit_code"] == 7
    assert [s["name"] for s in manifest["steps"]] == ["40-promote-or-rollback"]
    assert (run_dir / "40-promote-or-rollback.ipynb").is_file()
    assert [n["event"] for n in manifest["notifications"]] == ["rolled-back"]
    last = reg.history()[-1]
    assert (last.event, last.version, last.run_id, last.reason) == ("rollback", "v0001", run_dir.name, "bad predictions reported")


# ---- data quality judges what the stream had, not what the champion's window held ---------------


def test_a_label_class_that_comes_back_is_known_and_a_new_class_is_reported_neither_blocks(tmp_path):
    # Seattle weather, 2015Q2: "drizzle" returns after the champion's window went without it
    home = make_home(tmp_path / "home", **{"training.problem_type": "multiclass", "training.eval_metric": "accuracy",
                                           "validation.metrics": ["accuracy"], "validation.minimum": {},
                                           "performance_threshold": 0.5})

    def relabel(frame, rng, week):
        frame["default"] = np.where(frame["default"] == 1, "defaulted", "paid").astype(object)
        if week == 1 or week == 10:
            frame.loc[frame.index[:20], "default"] = "restructured"  # week 1, then back in week 10
        if week == 10:
            frame.loc[frame.index[20:30], "default"] = "written-off"  # never seen before

    for week in range(1, 25):
        edit(home, week, lambda f, rng, w=week: relabel(f, rng, w))
    ctx, analysis, *_ = run_steps(home, week_end(8).isoformat(), "boot")  # trains on weeks 2-7: no "restructured"
    assert ctx.registry.champion()
    ctx, analysis, *_ = run_steps(home, week_end(10).isoformat(), "back")
    assert analysis.decision.status != "blocked-by-quality", analysis.decision.reasons
    reports = [analysis.quality, *analysis.batch_quality]
    new = [c["detail"] for r in reports for c in r["checks"] if c["name"] == "new_labels" and not c["passed"]]
    assert new and all("never seen ('written-off'; known: 'defaulted', 'paid', 'restructured')" in d for d in new), new
    assert not any(r["blocked_by"] for r in reports)
