"""Tests for retrainlib.quality: hard breaks name the column and file; each check fires on its own break;
broken data blocks, changed data (a season, repeated rows, a constant flag) is scored and never blocks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from retrainlib.errors import DataContractError, DataQualityError
from retrainlib import quality
from retrainlib.quality import CHECKS, LIMITS, QualitySettings, assess, check_hard_breaks


def _window(seed: int = 0, n: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "id": np.arange(n) + seed * n,
        "age": rng.normal(40, 10, n),
        "income": rng.lognormal(10, 0.5, n),
        "region": rng.choice(["north", "south", "east"], n),
        "default": rng.integers(0, 2, n),
    })


def _assess(current: pd.DataFrame, reference: pd.DataFrame | None = None, **kw):
    kw.setdefault("label", "default")
    return assess(current, reference=reference, threshold=0.8, ignore_columns=("id",), **kw)


def _failed(report) -> list[str]:
    return [c.name for c in report.checks if not c.passed]


def test_clean_data_passes_every_check_with_a_full_score():
    report = _assess(_window(1), _window(0))
    assert _failed(report) == [] and report.score == 1.0 and report.passed
    assert [c.name for c in report.checks] == list(CHECKS)


def test_an_empty_window_is_a_hard_break_naming_the_file():
    with pytest.raises(DataQualityError, match=r"data/batches/2024-06.parquet has no rows; expected at least one row"):
        check_hard_breaks(_window().iloc[:0], label="default", required=(), source="data/batches/2024-06.parquet")


def test_a_missing_label_column_is_a_hard_break_naming_column_and_file_and_the_fix():
    with pytest.raises(DataQualityError, match=r"label column 'default' is missing from data/b/w3.parquet "
                                               r"\(it has 'id', 'age'.*set data.label"):
        check_hard_breaks(_window().drop(columns="default"), label="default", required=(), source="data/b/w3.parquet")


def test_a_missing_required_column_is_a_hard_break_and_a_data_contract_error():
    with pytest.raises(DataContractError, match=r"required column 'income' is missing from w4.csv"):
        check_hard_breaks(_window().drop(columns="income"), label=None, required=("age", "income"), source="w4.csv")


def test_assess_raises_the_hard_breaks_too():
    with pytest.raises(DataQualityError, match="label column 'default'"):
        _assess(_window().drop(columns="default"), _window())


def test_a_dropped_column_and_a_changed_kind_fail_the_schema_and_block():
    ref, cur = _window(0), _window(1).drop(columns="region")
    cur["age"] = cur["age"].astype(str)
    report = _assess(cur, ref)
    schema = report.checks[0]
    assert schema.name == "schema" and not schema.passed and schema.value == 2
    assert "missing: region" in schema.detail and "age float64 -> object" in schema.detail
    assert not report.passed and report.blocked_by == ("schema",) and schema.kind == "broken"


def test_a_rise_of_missing_values_fails_its_check_and_names_the_column():
    cur = _window(1)
    cur.loc[cur.index[:300], "income"] = np.nan
    report = _assess(cur, _window(0))
    assert _failed(report) == ["missing_values"]
    check = report.check("missing_values")
    assert check.value == pytest.approx(0.15) and "income" in check.detail and check.kind == "changed"
    assert report.passed and report.score == pytest.approx(5 / 6) and not report.below_threshold


def test_values_outside_the_reference_range_fail_their_check():
    cur = _window(1)
    cur.loc[cur.index[:200], "age"] = 500.0
    assert _failed(_assess(cur, _window(0))) == ["out_of_range"]


def test_unseen_categories_are_counted_and_shown():
    cur = _window(1)
    cur.loc[cur.index[:400], "region"] = "islands"
    report = _assess(cur, _window(0))
    check = next(c for c in report.checks if c.name == "unseen_categories")
    assert _failed(report) == ["unseen_categories"]
    assert check.value == pytest.approx(0.2) and "'islands'" in check.detail


def test_duplicate_rows_fail_their_check():
    cur = _window(1)
    cur = pd.concat([cur, cur.iloc[:300]], ignore_index=True)
    assert _failed(_assess(cur, _window(0))) == ["duplicate_rows"]


def test_a_column_that_became_constant_fails_its_check():
    cur = _window(1)
    cur["region"] = "north"
    report = _assess(cur, _window(0))
    assert "constant_columns" in _failed(report)
    assert "constant: region" in next(c for c in report.checks if c.name == "constant_columns").detail


def test_missing_labels_are_broken_data_and_block_whatever_the_score():
    cur = _window(1).astype({"default": "float64"})
    cur.loc[cur.index[:500], "default"] = np.nan
    report = _assess(cur, _window(0))
    assert _failed(report) == ["missing_labels"]
    assert report.score == 1.0 and not report.passed and report.blocked_by == ("missing_labels",)


def test_without_a_reference_the_comparisons_do_not_count():
    report = _assess(_window(1))
    weights = {c.name: c.weight for c in report.checks}
    assert weights["schema"] == weights["out_of_range"] == weights["unseen_categories"] == 0
    assert report.score == 1.0
    no_label = _assess(_window(1), label=None)
    assert next(c for c in no_label.checks if c.name == "missing_labels").weight == 0


def test_limits_can_be_loosened_and_an_unknown_check_lists_the_ones_that_exist():
    cur = _window(1)
    cur.loc[cur.index[:200], "age"] = 500.0
    assert _failed(_assess(cur, _window(0), limits={"out_of_range": 0.2})) == []
    with pytest.raises(ValueError, match=r"unknown quality check 'nulls' in limits; expected one of 'schema'"):
        _assess(cur, _window(0), limits={"nulls": 0.1})
    assert set(LIMITS) == set(CHECKS)



def test_the_rules_passed_whole_as_one_settings_object_judge_as_the_same_keywords_do_and_a_keyword_overrides_one():
    cur = _window(1)
    cur.loc[cur.index[:200], "age"] = 500.0
    rules = QualitySettings(label="default", threshold=0.8, ignore_columns=("id",), limits={"out_of_range": 0.2})
    whole = assess(cur, rules, reference=_window(0))
    assert whole.to_dict() == _assess(cur, _window(0), limits={"out_of_range": 0.2}).to_dict()
    assert _failed(whole) == [] and _failed(assess(cur, rules, reference=_window(0), limits=None)) == ["out_of_range"]
    with pytest.raises(TypeError, match="nulls"):
        assess(cur, rules, reference=_window(0), nulls=0.1)

def test_the_report_is_json_and_a_table():
    cur = _window(1)
    cur.loc[cur.index[:300], "income"] = np.nan
    report = _assess(cur, _window(0))
    as_json = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert as_json["failed"] == ["missing_values"] and as_json["n_rows"] == 2000
    assert list(report.to_frame().columns) == ["name", "kind", "value", "threshold", "passed", "detail", "weight"]
    assert as_json["changed"] == ["missing_values"] and as_json["blocked_by"] == [] and not as_json["below_threshold"]


# --------------------------------------------------------------------------- what the stream had before (issue 11)
def _weather(classes: list[str], n: int = 90, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"precipitation": rng.gamma(1.0, 3.0, n), "temp_max": rng.normal(15, 6, n),
                         "weather": rng.choice(classes, n)})


def test_a_class_the_champions_window_lacked_is_reported_as_a_new_class_not_a_block():
    # Seattle weather: "drizzle" comes back in 2015Q2, absent from the champion's three quarters
    reference, current = _weather(["rain", "sun", "fog"]), _weather(["rain", "sun", "drizzle"], seed=1)
    report = assess(current, reference=reference, label="weather", threshold=0.8,
                    label_classes=["rain", "sun", "fog"], label_problem="multiclass")
    assert report.passed and report.blocked_by == ()
    (new,) = [c for c in report.checks if c.name == "new_labels"]
    assert not new.passed and not new.blocking and new.weight == 0
    assert "'drizzle'" in new.detail and "a new class" in new.detail


def test_a_class_an_earlier_batch_held_is_a_known_class_in_the_next_batch():
    frames = {"q1.parquet": _weather(["rain", "sun", "drizzle"]), "q2.parquet": _weather(["rain", "drizzle"], seed=2)}
    first, second = quality.assess_batches(frames, reference=None, label="weather", threshold=0.8,
                                   label_classes=["rain", "sun"], label_problem="multiclass")
    assert first.passed and "new_labels" in first.failed
    assert second.passed and second.failed == ()


@pytest.mark.parametrize("value, problem, why", [
    (2, "binary", "a binary label holds two classes"),
    ("n/a", None, "a text value among integral classes"),
    (0.5, "multiclass", "a number value among integral classes"),
], ids=["third-class-of-a-binary-label", "text-among-numbers", "fraction-among-integers"])
def test_a_label_value_that_breaks_the_label_contract_still_blocks(value, problem, why):
    cur = _window(1)
    cur["default"] = cur["default"].astype(object)
    cur.loc[cur.index[:5], "default"] = value
    report = _assess(cur, _window(0), label_classes=[0, 1], label_problem=problem)
    assert report.blocked_by == ("unseen_labels",) and not report.passed
    check = next(c for c in report.checks if c.name == "unseen_labels")
    assert f"never seen ({value!r}; known: 0, 1): {why}" in check.detail


def test_a_column_that_never_had_a_value_is_no_broken_column():
    # baseball, 1900: `sf` (sacrifice flies) is not recorded before 1954
    cur = _window(1).assign(sf=np.nan)
    for reference in (None, _window(0).assign(sf=np.nan)):
        report = _assess(cur, reference)
        assert report.passed and "empty_columns" not in report.failed, report.reason()
    assert "never had a value yet, not judged: sf" in next(c.detail for c in report.checks if c.name == "empty_columns")


def test_a_column_that_had_values_in_an_earlier_batch_and_goes_empty_blocks_that_batch():
    frames = {"1890.parquet": _window(0).assign(sf=np.nan), "1900.parquet": _window(1).assign(sf=1.0),
              "1910.parquet": _window(2).assign(sf=np.nan)}
    reports = quality.assess_batches(frames, reference=None, label="default", threshold=0.8, ignore_columns=("id",))
    assert [r.blocked_by for r in reports] == [(), (), ("empty_columns",)]
    assert "had values before: sf" in reports[2].reason()


@pytest.mark.parametrize("reference_sf", [0.0, "nearly-empty"], ids=["constant", "nearly-empty"])
def test_a_reference_column_that_is_constant_or_nearly_empty_sets_no_range(reference_sf):
    # baseball from 1980: the champion's decades hold sf == 0 only; 52 % of the new decade is "outside [0, 0]"
    reference = _window(0)
    if reference_sf == "nearly-empty":
        reference["sf"] = np.nan
        reference.loc[reference.index[:40], "sf"] = np.arange(40.0)  # 2 % of its rows
    else:
        reference["sf"] = reference_sf
    cur = _window(1).assign(sf=np.random.default_rng(3).integers(0, 9, 2000).astype(float))
    report = _assess(cur, reference)
    assert report.passed and "out_of_range" not in report.failed, report.reason()
    assert "no range in the reference, not judged: sf" in next(c.detail for c in report.checks if c.name == "out_of_range")
    cur.loc[cur.index[:200], "age"] = 500.0  # a column with a range is still judged
    assert "out_of_range" in _assess(cur, reference).failed


# --------------------------------------------------------------------------- broken against changed (issue 22)
def test_repeated_rows_a_constant_flag_and_a_seasonal_range_do_not_block_and_count_only_in_the_score():
    ref, cur = _window(0), _window(1)
    cur = pd.concat([cur, cur.iloc[:400]], ignore_index=True)  # 17 % of rows repeat an earlier row
    cur["age"] = cur["age"] + 60  # a season: every value above the reference's range
    cur["region"] = "north"  # a flag constant this month
    report = _assess(cur, ref)
    assert set(_failed(report)) == {"duplicate_rows", "out_of_range", "constant_columns"}
    assert report.passed and report.blocked_by == () and report.below_threshold
    assert report.score == pytest.approx(3 / 6)  # six changed-data checks apply; new_labels needs label classes
    assert "changed-data score 0.50" in report.reason()


def test_repeated_rows_are_measured_as_a_rise_over_the_recent_batches_own_share():
    ref, cur = _window(0), _window(1)
    ref = pd.concat([ref, ref.iloc[:300]], ignore_index=True)  # the neighbours repeat 13 % of their rows
    cur = pd.concat([cur, cur.iloc[:300]], ignore_index=True)  # and so does this batch: nothing changed
    check = _assess(cur, ref).check("duplicate_rows")
    assert check.passed and abs(check.value) < 0.01 and "in the reference" in check.detail


def test_a_flag_constant_in_the_recent_batches_too_did_not_become_constant():
    ref, cur = _window(0), _window(1)
    ref["near_christmas"] = 0
    cur["near_christmas"] = 0
    assert "constant_columns" not in _failed(_assess(cur, ref))


def test_a_new_column_is_changed_data_not_a_schema_break():
    cur = _window(1)
    cur["promo"] = 1.0
    report = _assess(cur, _window(0))
    assert report.passed and report.check("new_columns").detail == "new: promo" and report.check("schema").passed


def test_an_all_empty_column_read_as_float_is_no_kind_change_but_an_empty_column():
    ref, cur = _window(0), _window(1)
    cur["region"] = np.nan  # an empty CSV column reads as float64 where the reference held text
    report = _assess(cur, ref)
    assert report.check("schema").passed and report.blocked_by == ("empty_columns",)


@pytest.mark.parametrize("rule, bad, shown", [("age >= 0", -3.0, "-3"), ("income < 1e9", 2e9, "2e+09"),
                                                ("region != 'void'", "void", "'void'")])
def test_a_declared_constraint_blocks_naming_the_rule_the_rows_and_a_value(rule, bad, shown):
    cur = _window(1)
    cur.loc[cur.index[:7], rule.split()[0]] = bad
    report = _assess(cur, _window(0), constraints=[rule])
    assert report.blocked_by == ("constraints",)
    assert report.check("constraints").detail == f"{rule}: 7 of 2,000 rows break it (e.g. {shown})"


def test_a_constraint_that_is_no_rule_is_refused_with_the_form_expected():
    with pytest.raises(ValueError, match=r"constraint 'age is positive' is not '<column> <op> <value>'"):
        quality.parse_constraint("age is positive")
    with pytest.raises(ValueError, match=r"neither a number nor quoted text"):
        quality.parse_constraint("age >= zero")


def test_each_batch_is_judged_against_its_recent_neighbours_not_an_old_window():
    winter = _window(0)
    spring = [_window(s) for s in (1, 2, 3)]
    for i, frame in enumerate(spring):
        frame["age"] = frame["age"] + 30 * (i + 1)  # a season moving on, month after month
    frames = {f"b{i}": f for i, f in enumerate(spring)}
    old = quality.assess_batches(frames, reference=winter, label="default", threshold=0.8, ignore_columns=("id",))
    near = quality.assess_batches(frames, reference=winter, label="default", threshold=0.8, ignore_columns=("id",),
                                  history={"b-1": winter}, neighbours=1)
    outside_old = [r.check("out_of_range").value for r in old]
    outside_near = [r.check("out_of_range").value for r in near]
    assert outside_old[-1] > 0.99  # against the winter, the third spring month is all out of range
    assert outside_near[-1] < outside_old[-1] / 2  # against the month before it, much less is
    assert all(r.passed for r in old + near)  # and neither ever blocks
