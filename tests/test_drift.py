"""Tests for retrainlib.drift: agreement with scipy, planted shifts found, no drift is not drift."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy import stats
from scipy.spatial import distance

from retrainlib import drift
from retrainlib.errors import DataContractError, ProfileError
from retrainlib.profiles import DriftSettings

QUICK = DriftSettings(multivariate=False)


def _frame(rng: np.random.Generator, n: int, *, shift: dict | None = None) -> pd.DataFrame:
    """A small mixed frame; ``shift`` plants changes by column."""
    shift = shift or {}
    return pd.DataFrame({
        "age": rng.normal(40 + shift.get("age", 0.0) * 10, 10 * shift.get("age_scale", 1.0), n),
        "income": rng.lognormal(10, 0.5, n),
        "region": rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1]),
        "children": rng.integers(0, 4, n),
    })


# --------------------------------------------------------------------------- agreement with scipy
@pytest.mark.parametrize("n1, n2, shift", [
    (40, 55, 0.3), (3000, 5000, 0.0), (3000, 5000, 0.1), (20000, 15000, 0.0), (20000, 15000, 0.03),
    (120000, 90000, 0.012), (120000, 90000, 0.05), (200000, 200000, 0.0),
])
def test_ks_and_wasserstein_agree_with_scipy_to_1e6(n1, n2, shift):
    rng = np.random.default_rng(n1 + n2)
    a, b = rng.normal(size=n1), rng.normal(shift, 1.1, size=n2)
    a[:7], b[:5] = 0.0, 0.0  # ties across and within samples
    ours = drift.numeric_statistics(a, b)
    ks = stats.ks_2samp(a, b)
    assert ours["ks"] == pytest.approx(ks.statistic, abs=1e-6)
    assert ours["ks_p"] == pytest.approx(ks.pvalue, abs=1e-6)
    assert ours["wasserstein_raw"] == pytest.approx(stats.wasserstein_distance(a, b), abs=1e-6)
    assert ours["wasserstein"] == pytest.approx(stats.wasserstein_distance(a, b) / np.std(a), abs=1e-6)


def test_ks_and_wasserstein_agree_with_scipy_on_heavily_tied_integers():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 30, 40000).astype(float), rng.integers(0, 32, 30000).astype(float)
    ours, ks = drift.numeric_statistics(a, b), stats.ks_2samp(a, b)
    assert (ours["ks"], ours["ks_p"]) == pytest.approx((ks.statistic, ks.pvalue), abs=1e-6)
    assert ours["wasserstein_raw"] == pytest.approx(stats.wasserstein_distance(a, b), abs=1e-6)


@pytest.mark.parametrize("n1, n2", [(60, 80), (5000, 7000), (100000, 80000)])
def test_chi_square_and_jensen_shannon_agree_with_scipy_to_1e6(n1, n2):
    rng = np.random.default_rng(n1)
    a = rng.choice(list("abcd"), n1, p=[0.4, 0.3, 0.2, 0.1])
    b = rng.choice(list("abcde"), n2, p=[0.35, 0.3, 0.2, 0.1, 0.05])
    ours = drift.categorical_statistics(a, b)
    table = pd.crosstab(np.r_[np.zeros(n1), np.ones(n2)], np.r_[a, b]).to_numpy()
    chi2 = stats.chi2_contingency(table, correction=False)
    assert ours["chi2"] == pytest.approx(chi2.statistic, rel=1e-9, abs=1e-6)
    assert ours["chi2_p"] == pytest.approx(chi2.pvalue, abs=1e-6)
    assert ours["jensenshannon"] == pytest.approx(distance.jensenshannon(table[0], table[1]), abs=1e-6)


def test_a_numeric_column_with_few_values_gets_category_statistics_that_agree_with_scipy():
    rng = np.random.default_rng(5)
    a, b = rng.integers(0, 3, 5000).astype(float), rng.integers(0, 3, 4000).astype(float)
    ours = drift.numeric_statistics(a, b)
    table = np.array([np.bincount(a.astype(int)), np.bincount(b.astype(int))])
    assert ours["chi2"] == pytest.approx(stats.chi2_contingency(table, correction=False).statistic, abs=1e-6)
    assert ours["jensenshannon"] == pytest.approx(distance.jensenshannon(table[0], table[1]), abs=1e-6)


# --------------------------------------------------------------------------- planted shifts
def _two(n: int, seed: int = 0) -> tuple[np.random.Generator, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    return rng, _frame(rng, n)


def test_a_mean_shift_of_a_tenth_of_a_standard_deviation_is_found_at_100k_rows():
    rng, ref = _two(100_000)
    report = drift.compare(ref, _frame(rng, 100_000, shift={"age": 0.1}), settings=QUICK)
    assert report.drifted_features == ("age",)
    age = report.features[0]
    assert age.test == "wasserstein" and age.statistic == pytest.approx(0.1, abs=0.02)


def test_a_variance_change_is_found_while_the_mean_stays():
    rng, ref = _two(50_000)
    report = drift.compare(ref, _frame(rng, 50_000, shift={"age_scale": 1.3}), settings=QUICK)
    assert report.drifted_features == ("age",)


def test_a_new_category_taking_five_percent_is_found_and_counted_as_unseen():
    rng, ref = _two(50_000)
    cur = _frame(rng, 50_000)
    cur.loc[rng.random(len(cur)) < 0.05, "region"] = "islands"
    report = drift.compare(ref, cur, settings=QUICK)
    region = next(f for f in report.features if f.column == "region")
    assert report.drifted_features == ("region",)
    assert region.test == "jensenshannon"
    assert region.stats["unseen_share"] == pytest.approx(0.05, abs=0.005)
    assert region.stats["unseen_categories"] == 1


@pytest.mark.parametrize("column", ["income", "region"])
def test_a_rise_of_missing_values_is_found(column):
    rng, ref = _two(50_000)
    cur = _frame(rng, 50_000)
    cur.loc[rng.random(len(cur)) < 0.08, column] = np.nan
    report = drift.compare(ref, cur, settings=QUICK)
    assert report.drifted_features == (column,)
    feature = next(f for f in report.features if f.column == column)
    assert feature.stats["missing_current"] == pytest.approx(0.08, abs=0.01)
    assert "missing share" in feature.detail


def test_a_joint_shift_that_keeps_every_marginal_is_found_by_multivariate_alone():
    rng = np.random.default_rng(11)
    n = 50_000
    ref = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.normal(size=n)})
    z1, z2 = rng.normal(size=n), rng.normal(size=n)
    cur = pd.DataFrame({"a": z1, "b": 0.8 * z1 + 0.6 * z2, "c": rng.normal(size=n)})  # corr 0 -> 0.8, N(0,1) margins
    report = drift.compare(ref, cur, settings=DriftSettings())
    assert report.drifted_features == ()
    assert not report.drifted
    assert report.multivariate is not None and report.multivariate.drifted
    assert report.multivariate.auc > 0.6


def test_the_domain_classifier_cannot_tell_windows_of_one_distribution_apart():
    rng = np.random.default_rng(12)
    ref, cur = _frame(rng, 20_000), _frame(rng, 20_000)
    mv = drift.multivariate(ref, cur, seed=1)
    assert not mv.drifted and abs(mv.auc - 0.5) < 0.03


@pytest.mark.slow
def test_no_drift_is_not_drift_in_more_than_5_of_100_seeded_pairs():
    n, flagged = 100_000, 0
    cats = np.array(["a", "b", "c", "d", "e", "f"], dtype=object)
    for seed in range(100):
        rng = np.random.default_rng(seed)

        def window() -> pd.DataFrame:
            cols = {f"n{j}": rng.normal(j, 1 + j % 3, n) for j in range(12)}
            cols.update({f"e{j}": rng.exponential(1 + j, n) for j in range(4)})
            cols.update({f"c{j}": cats[rng.integers(0, 6, n)] for j in range(2)})
            cols.update({f"k{j}": pd.Categorical.from_codes(rng.integers(0, 4, n), list("wxyz")) for j in range(2)})
            return pd.DataFrame(cols)

        report = drift.compare(window(), window(), settings=QUICK, drift_threshold=0.1)
        flagged += report.drifted
    assert flagged <= 5


# --------------------------------------------------------------------------- choosing and configuring tests
def test_small_windows_are_decided_by_p_value_and_large_ones_by_effect_size():
    rng = np.random.default_rng(2)
    small = drift.compare(_frame(rng, 500), _frame(rng, 500), settings=QUICK)
    large = drift.compare(_frame(rng, 5000), _frame(rng, 5000), settings=QUICK)
    assert {f.column: f.test for f in small.features} == {"age": "ks", "income": "ks", "region": "chi2",
                                                          "children": "chi2"}
    assert {f.column: f.test for f in large.features} == {"age": "wasserstein", "income": "wasserstein",
                                                          "region": "jensenshannon", "children": "jensenshannon"}


def test_an_unknown_drift_test_lists_the_tests_that_exist():
    with pytest.raises(ProfileError, match=r"unknown drift test 'kl' for column 'age'; expected one of "
                                           r"'chi2', 'jensenshannon', 'ks', 'psi', 'wasserstein'"):
        drift.get_method("kl", "numeric", "age")


def test_a_test_that_does_not_fit_the_column_lists_the_ones_that_do():
    rng = np.random.default_rng(0)
    settings = DriftSettings(multivariate=False, per_column={"region": {"test": "ks"}})
    with pytest.raises(ProfileError, match=r"'ks' does not apply to categorical column 'region'; "
                                           r"expected one of 'chi2', 'jensenshannon', 'psi'"):
        drift.compare(_frame(rng, 200), _frame(rng, 200), settings=settings)


def test_per_column_settings_choose_the_test_and_its_threshold():
    rng = np.random.default_rng(0)
    settings = DriftSettings(multivariate=False, per_column={"age": {"test": "psi", "threshold": 0.5},
                                                             "children": {"kind": "categorical"}})
    report = drift.compare(_frame(rng, 3000), _frame(rng, 3000, shift={"age": 0.5}), settings=settings)
    age = next(f for f in report.features if f.column == "age")
    children = next(f for f in report.features if f.column == "children")
    assert (age.test, age.threshold) == ("psi", 0.5)
    assert children.kind == "categorical"


def test_a_profile_rejects_an_unknown_per_column_key_and_names_the_valid_ones():
    with pytest.raises(ValidationError, match=r"per_column.age.tset is not a setting; expected one of 'test'"):
        DriftSettings(per_column={"age": {"tset": "ks"}})
    with pytest.raises(ValidationError, match=r"per_column.age.test = 'kl'; expected one of 'auto'"):
        DriftSettings(per_column={"age": {"test": "kl"}})


# --------------------------------------------------------------------------- score, results, errors
def test_importance_weights_the_dataset_score_when_asked():
    rng, ref = _two(20_000)
    cur = _frame(rng, 20_000, shift={"age": 1.0})
    imp = {"age": 0.7, "income": 0.1, "region": 0.1, "children": 0.1}
    plain = drift.compare(ref, cur, settings=QUICK, importance=imp)
    weighted = drift.compare(ref, cur, settings=DriftSettings(multivariate=False, weight_by_importance=True),
                             importance=imp)
    assert plain.score == pytest.approx(0.25) and not plain.weighted
    assert weighted.score == pytest.approx(0.7) and weighted.weighted
    assert {f.column: f.importance for f in weighted.features} == imp


def test_the_report_is_json_and_its_table_ranks_drifted_features_first():
    rng, ref = _two(5000)
    report = drift.compare(ref, _frame(rng, 5000, shift={"age": 1.0}), settings=DriftSettings(), drift_threshold=0.2)
    as_json = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert as_json["drifted"] is True and as_json["drifted_features"] == ["age"]
    assert as_json["multivariate"]["auc"] > 0.6
    table = report.to_frame()
    assert list(table.columns[:8]) == ["feature", "kind", "test", "statistic", "threshold", "drifted", "p_value",
                                       "importance"]
    assert table.iloc[0]["feature"] == "age" and table["drifted"].tolist() == [True, False, False, False]


def test_sampling_max_rows_keeps_the_verdict_and_says_how_many_rows_were_compared():
    rng, ref = _two(60_000)
    cur = _frame(rng, 60_000, shift={"age": 0.3})
    report = drift.compare(ref, cur, settings=DriftSettings(multivariate=False, max_rows=10_000))
    assert report.rows_compared == (10_000, 10_000) and (report.n_reference, report.n_current) == (60_000, 60_000)
    assert report.drifted_features == ("age",)


def test_target_drift_sees_a_change_of_class_balance_and_prediction_drift_sees_shifted_scores():
    rng = np.random.default_rng(4)
    ref_y = pd.Series(rng.random(20_000) < 0.1, name="default")
    cur_y = pd.Series(rng.random(20_000) < 0.3, name="default")
    target = drift.target_drift(ref_y, cur_y)
    assert (target.column, target.kind, target.drifted) == ("default", "categorical", True)
    pred = drift.prediction_drift(rng.beta(2, 5, 5000), rng.beta(3, 4, 5000))
    assert pred.test == "wasserstein" and pred.drifted
    proba = rng.dirichlet([1, 1, 1], 5000)
    assert not drift.prediction_drift(proba, rng.dirichlet([1, 1, 1], 5000)).drifted


def test_an_empty_window_or_a_missing_column_is_a_data_contract_error():
    rng = np.random.default_rng(0)
    ref = _frame(rng, 100)
    with pytest.raises(DataContractError, match="the current window has no rows"):
        drift.compare(ref, ref.iloc[:0])
    with pytest.raises(DataContractError, match=r"column 'salary' is missing from the reference window"):
        drift.compare(ref, ref, columns=["age", "salary"])


def test_the_plots_draw_every_feature_and_the_most_drifted_distributions():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng, ref = _two(3000)
    cur = _frame(rng, 3000, shift={"age": 1.0})
    report = drift.compare(ref, cur, settings=QUICK)
    ax = drift.plot_feature_drift(report)
    assert len(ax.patches) == 4
    fig = drift.plot_distributions(ref, cur, report, top=2)
    assert len(fig.axes) == 2 and fig.axes[0].get_title().startswith("age")
    plt.close("all")


# --------------------------------------------------------------------------- two files, read only as far as compared
def test_comparing_two_parquet_files_reads_only_the_planned_rows_and_reports_as_on_the_whole_frames(tmp_path):
    from retrainlib import data

    rng, ref = _two(30_000)
    cur = _frame(rng, 30_000, shift={"age": 0.3})
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_parquet(tmp_path / "cur.parquet")
    settings = DriftSettings(max_rows=5_000, multivariate_rows=300)
    # every row, read as `retrain drift` reads text (as categories: the domain classifier codes them in that order)
    whole = drift.compare(data.read_columns(tmp_path / "ref.parquet", list(ref)),
                          data.read_columns(tmp_path / "cur.parquet", list(ref)), settings=settings)
    from_files = drift.compare_files(tmp_path / "ref.parquet", tmp_path / "cur.parquet", settings=settings)
    assert from_files.to_dict() == whole.to_dict()
    assert from_files.rows_compared == (5_000, 5_000) and from_files.n_current == 30_000
    assert from_files.drifted_features == ("age",) and from_files.multivariate is not None
    rows = np.array([3, 17, 29_999])
    taken = data.read_columns(tmp_path / "cur.parquet", ["region", "age"], rows=rows)
    assert list(taken.columns) == ["region", "age"] and len(taken) == 3
    assert taken["age"].tolist() == cur["age"].iloc[rows].tolist()
    assert taken["region"].astype(str).tolist() == cur["region"].iloc[rows].tolist()


def test_comparing_a_csv_file_with_a_parquet_file_reads_the_csv_whole_and_agrees(tmp_path):
    rng, ref = _two(8_000)
    cur = _frame(rng, 8_000, shift={"age": 0.5})
    ref.to_csv(tmp_path / "ref.csv", index=False)
    cur.to_parquet(tmp_path / "cur.parquet")
    settings = DriftSettings(max_rows=2_000, multivariate=False)
    whole = drift.compare(pd.read_csv(tmp_path / "ref.csv"), pd.read_parquet(tmp_path / "cur.parquet"), settings=settings)
    from_files = drift.compare_files(tmp_path / "ref.csv", tmp_path / "cur.parquet", settings=settings)
    assert from_files.to_dict() == whole.to_dict()
    with pytest.raises(DataContractError, match=r"reference file .*ref\.csv has 8000 row\(s\); drift needs at least 9000"):
        drift.compare_files(tmp_path / "ref.csv", tmp_path / "cur.parquet", settings=settings, min_rows=9_000)
