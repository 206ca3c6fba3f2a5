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


def test_the_default_scenario_still_writes_the_same_loan_book():
    import hashlib

    digest = hashlib.sha256()
    for w in range(1, demo.WEEKS + 1):
        digest.update(demo.generate_week(w).to_csv().encode())
    # the committed docs/backtest-demo.json was computed on exactly these weeks
    assert digest.hexdigest() == "2fde445efbbb0df623b5fea3b11cc73bb4b068c52ccd97e220b3064206509429"


def test_the_covariate_shift_scenario_grows_a_segment_whose_risk_rule_never_changes():
    def weeks(ws):
        return pd.concat([demo.generate_week(w, rows=4000, scenario="covariate-shift") for w in ws])

    before = weeks([1, 2, demo.SEGMENT_SHIFT_WEEK - 1])
    after = weeks([demo.SEGMENT_SHIFT_WEEK + demo.SEGMENT_SHIFT_SPAN + i for i in range(3)])
    edu_before, edu_after = before["purpose"] == "education", after["purpose"] == "education"
    assert 0.12 < edu_before.mean() < 0.18 and 0.8 < edu_after.mean() < 0.9
    # the rule inside the segment is the same before and after (a pure covariate shift): age bands of high and low risk
    for frame, edu in ((before, edu_before), (after, edu_after)):
        band = ((frame["age"] - 18) // demo.SEGMENT_BAND_YEARS) % 2
        assert frame.loc[edu & (band == 1), "default"].mean() > 0.85
        assert frame.loc[edu & (band == 0), "default"].mean() < 0.15
    # and nothing else moves: no downturn in incomes, no concept change outside the segment
    assert abs(after["income"].median() / before["income"].median() - 1) < 0.05
    rest = lambda f, e: f.loc[~e, "default"].mean()  # noqa: E731
    assert abs(rest(after, edu_after) - rest(before, edu_before)) < 0.04


def test_an_unknown_scenario_is_named_with_the_known_ones():
    import pytest

    with pytest.raises(ValueError, match="demo scenario 'crash' is unknown; expected one of default, covariate-shift"):
        demo.generate_week(1, scenario="crash")


def test_both_scenarios_still_write_the_same_weeks_with_the_same_column_types_for_another_seed():
    import hashlib

    expected = {  # printed by the code before generate_week was split into named steps (issue 27)
        "default": "d69014c5894f24d1f33cb8b5c98201804b67980e3f11d3a88da80763e6ce91ef",
        "covariate-shift": "8899f668bc3744a57c6210b48233c86e6bc09ed2df257317eb0b953012dff900",
    }
    for scenario, want in expected.items():
        digest = hashlib.sha256()
        for w in range(1, demo.WEEKS + 1):
            frame = demo.generate_week(w, seed=7, rows=300, scenario=scenario)
            digest.update(frame.to_csv().encode())
            digest.update(str(frame.dtypes.to_dict()).encode())
        assert digest.hexdigest() == want, scenario
