import json

import pandas as pd

from retrainlib import demo


def test_the_same_seed_writes_byte_identical_batches(tmp_path):
    a = demo.write_batches(tmp_path / "a" / "batches", weeks=3, rows=50, seed=5)
    b = demo.write_batches(tmp_path / "b" / "batches", weeks=3, rows=50, seed=5)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_another_seed_writes_other_data(tmp_path):
    assert not demo.generate_week(2, seed=1, rows=50).equals(demo.generate_week(2, seed=2, rows=50))


def test_the_covariate_shift_moves_incomes_and_regions_after_its_week():
    before = pd.concat([demo.generate_week(w, rows=3000) for w in (1, 2, 3)])
    after = pd.concat([demo.generate_week(w, rows=3000) for w in (demo.COVARIATE_SHIFT_WEEK + 3, demo.COVARIATE_SHIFT_WEEK + 4)])
    assert after["income"].median() < 0.85 * before["income"].median()
    assert (after["region"] == "south").mean() > (before["region"] == "south").mean() + 0.15


def test_the_concept_change_flips_the_small_business_risk():
    def rate(weeks):
        f = pd.concat([demo.generate_week(w, rows=4000) for w in weeks])
        return f.loc[f["purpose"] == "small_business", "default"].mean() - f.loc[f["purpose"] != "small_business", "default"].mean()

    assert rate([demo.CONCEPT_CHANGE_WEEK - 3, demo.CONCEPT_CHANGE_WEEK - 2]) > 0.05
    assert rate([demo.CONCEPT_CHANGE_WEEK + 1, demo.CONCEPT_CHANGE_WEEK + 2]) < -0.02


def test_the_drift_points_are_written_beside_the_batches(tmp_path):
    demo.write_batches(tmp_path / "batches", weeks=2, rows=10)
    points = json.loads((tmp_path / "drift_points.json").read_text())
    assert points["covariate_shift"]["week"] == demo.COVARIATE_SHIFT_WEEK
    assert points["concept_change"]["week"] == demo.CONCEPT_CHANGE_WEEK
