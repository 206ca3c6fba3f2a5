"""Tests for retrainlib.quality: hard breaks name the column and file; each check fires on its own break."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from retrainlib.errors import DataContractError, DataQualityError
from retrainlib.quality import CHECKS, LIMITS, assess, check_hard_breaks


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
    assert not report.passed and report.score == pytest.approx(7 / 9)


def test_a_rise_of_missing_values_fails_its_check_and_names_the_column():
    cur = _window(1)
    cur.loc[cur.index[:300], "income"] = np.nan
    report = _assess(cur, _window(0))
    assert _failed(report) == ["missing_values"]
    check = report.checks[1]
    assert check.value == pytest.approx(0.15) and "income" in check.detail
    assert report.passed and report.score == pytest.approx(8 / 9)


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


def test_missing_labels_fail_their_check_and_count_double():
    cur = _window(1).astype({"default": "float64"})
    cur.loc[cur.index[:500], "default"] = np.nan
    report = _assess(cur, _window(0))
    assert _failed(report) == ["missing_labels"]
    assert report.score == pytest.approx(7 / 9) and not report.passed


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


def test_the_report_is_json_and_a_table():
    cur = _window(1)
    cur.loc[cur.index[:300], "income"] = np.nan
    report = _assess(cur, _window(0))
    as_json = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert as_json["failed"] == ["missing_values"] and as_json["n_rows"] == 2000
    assert list(report.to_frame().columns) == ["name", "value", "threshold", "passed", "detail", "weight", "blocking"]
