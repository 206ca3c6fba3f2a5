"""`retrain tune`: the pick comes from the tune segment alone; ties go to the cheaper candidate."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from retrainlib.errors import RetrainError
from retrainlib.profiles import load_profile
from retrainlib.tune import TuneSettings, choose, split_history, tune
from tests.conftest import make_home

TUNED_KEYS = {"performance_threshold", "drift_threshold", "retraining_interval", "triggers", "training"}


def test_ties_go_to_the_cheaper_candidate():
    t = pd.DataFrame({"name": ["every-batch", "performance 0.72", "static"],
                      "tune_mean": [0.75, 0.75, 0.70], "tune_retrains": [8, 3, 0]})
    assert choose(t, tolerance=0.0)[0] == "performance 0.72"  # same mean: fewer retrains
    assert choose(t, tolerance=0.05)[0] == "static"  # within 0.05 of the best: the cheapest
    assert choose(t.assign(tune_retrains=3), tolerance=0.05)[0] == "every-batch"  # same cost: the better mean


def test_a_cheap_candidate_that_fell_behind_on_the_newest_half_of_the_tune_segment_is_not_picked():
    t = pd.DataFrame({"name": ["every-batch", "periodic every 4", "detector"], "tune_mean": [0.86, 0.855, 0.852],
                      "recent_mean": [0.84, 0.835, 0.80], "tune_retrains": [26, 6, 2]})
    assert choose(t.drop(columns="recent_mean"), tolerance=0.01)[0] == "detector"  # close over the whole segment
    name, reason = choose(t, tolerance=0.01)
    assert name == "periodic every 4" and "newest half of the tune segment (0.8400)" in reason
    # none close on both: the newest half alone decides
    far = t.assign(tune_mean=[0.70, 0.86, 0.86], recent_mean=[0.84, 0.80, 0.80])
    assert choose(far, tolerance=0.01)[0] == "every-batch"
    # a loss: lower is better on both
    loss = t.assign(tune_mean=[0.14, 0.145, 0.148], recent_mean=[0.16, 0.165, 0.20])
    assert choose(loss, tolerance=0.01, greater_is_better=False)[0] == "periodic every 4"


def test_with_a_loss_metric_lower_is_better_when_choosing():
    t = pd.DataFrame({"name": ["a", "b"], "tune_mean": [0.40, 0.50], "tune_retrains": [5, 1]})
    assert choose(t, tolerance=0.05, greater_is_better=False)[0] == "a"
    assert choose(t, tolerance=0.2, greater_is_better=False)[0] == "b"


def test_the_confirm_segment_is_the_newest_share_and_at_least_three_batches():
    assert split_history(24, 7, 0.4) == 17
    assert split_history(10, 3, 0.1) == 7
    with pytest.raises(RetrainError, match="tuning needs at least 2 to choose on and 3 to confirm on"):
        split_history(7, 3, 0.4)


def _tune(home: Path, picks: list):
    from retrainlib.tune import tune, write_report

    result = tune("params/demo.yaml", home=home, work_dir=home / "tune", progress=False, families=("static", "performance"),
                  windows=("2",), on_chosen=lambda pick, table: picks.append((pick, table)))
    write_report(result)
    return result


@pytest.mark.slow
def test_poisoning_the_confirm_segments_labels_changes_nothing_that_was_chosen(tmp_path):
    clean = make_home(tmp_path / "clean", weeks=10, **{"training.window_batches": 2})
    poisoned = make_home(tmp_path / "poisoned", weeks=10, **{"training.window_batches": 2})
    chosen_clean, chosen_poisoned = [], []
    a = _tune(clean, chosen_clean)
    for p in sorted((poisoned / "data/demo/batches").glob("*.parquet")):
        if p.name >= a.confirm_from:  # flip every label of the confirm segment
            pd.read_parquet(p).assign(default=lambda f: 1 - f["default"]).to_parquet(p, index=False)
    b = _tune(poisoned, chosen_poisoned)

    assert a.confirm_from == b.confirm_from
    assert a.pick == b.pick and a.pick_reason == b.pick_reason
    cols = ["name", "tune_mean", "tune_retrains"]
    pd.testing.assert_frame_equal(chosen_clean[0][1][cols], chosen_poisoned[0][1][cols])
    pd.testing.assert_frame_equal(a.table[cols], b.table[cols])
    # the poison did reach the confirm replays: the same champions score far worse there
    assert (b.table["confirm_mean"] < a.table["confirm_mean"] - 0.2).all(), b.table
    assert b.references["refit"]["confirm_mean"] < 0.5

    # the tuned profile: only policy, threshold and window keys changed, each with its reason
    before, after = load_profile(clean / "params/demo.yaml"), load_profile(a.tuned_profile)
    changed = {k for k, v in after.model_dump().items() if v != before.model_dump()[k]}
    assert changed <= TUNED_KEYS, changed
    for section in ("training", "triggers"):
        inner = {k for k, v in getattr(after, section).model_dump().items() if v != getattr(before, section).model_dump()[k]}
        assert inner <= {"strategy", "window_batches", "policy", "use", "degradation_detector", "detector_level"}, inner
    tuned_lines = [ln for ln in a.tuned_profile.read_text().splitlines() if "# retrain tune:" in ln]
    assert tuned_lines, "no key carries the tune's reason"
    payload = a.to_dict()
    assert {"tuned_profile", "confirm_from", "policy", "candidates", "pick_reason"} <= set(payload)
    assert json.loads(json.dumps(payload, default=str))["policy"]["name"] == a.pick
    assert (a.work_dir / "tune.md").is_file() and (a.work_dir / "tune.png").is_file()


def test_tune_on_too_short_a_history_exits_2_with_one_line_and_replays_nothing(tmp_path, capsys):
    from retrainlib.cli import main

    home = make_home(tmp_path / "home", weeks=8, **{"training.window_batches": 3})
    code = main(["tune", "--home", str(home), "--profile", "params/demo.yaml", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "leave 4 scored batch(es); tuning needs at least 2 to choose on and 3 to confirm on" in err[0]
    assert not (home / "runs").exists() and not (home / "params" / "demo.tuned.yaml").exists()



def test_tune_reads_its_settings_whole_a_keyword_overrides_one_and_a_bad_share_is_refused_in_one_line(tmp_path):
    home = make_home(tmp_path / "home", weeks=12, **{"training.window_batches": 3})
    with pytest.raises(RetrainError, match=r"^3 batch\(es\) but the first champion needs 4"):
        tune("params/demo.yaml", TuneSettings(max_batches=3), home=home)
    with pytest.raises(RetrainError, match=r"^4 batch\(es\) but the first champion needs 4"):
        tune("params/demo.yaml", TuneSettings(max_batches=12), home=home, max_batches=4)
    with pytest.raises(RetrainError, match=r"^--confirm-share 1.5 is not a share"):
        tune("params/demo.yaml", TuneSettings(), home=home, confirm_share=1.5)
    assert not (home / "runs").exists()

def test_a_window_too_small_to_train_on_is_no_candidate_but_the_profiles_own_window_always_is():
    from retrainlib.profiles import load_profile
    from retrainlib.tune import _window_candidates

    prof = load_profile(Path(__file__).resolve().parents[1] / "params" / "gapminder.yaml")  # window 3, 200 rows at least
    names = [c.name for c in _window_candidates(prof, rows=[142] * 8)]  # Gapminder: 142 countries a batch
    assert "refit window 1" not in names  # 142 rows: the tune stopped with "fewer than training.min_train_rows"
    assert {"refit window 3", "refit window 6", "refit window full", "refit window incremental"} <= set(names)
    assert "refit window 1" in [c.name for c in _window_candidates(prof, rows=[400] * 8)]
