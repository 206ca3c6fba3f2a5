
import pandas as pd
import pytest

from retrainlib import data
from retrainlib.demo import week_end
from retrainlib.errors import DataContractError
from retrainlib.paths import Paths
from retrainlib.profiles import DataSource, TrainingSettings

SRC = DataSource(batches="data/demo/batches", label="default", time_column="application_date", key="loan_id", ignore_columns=("loan_id",))


def test_batches_are_listed_oldest_first_with_rows_times_and_fingerprints(fast_home):
    batches = data.list_batches(SRC, Paths(fast_home))
    assert len(batches) == 24
    assert [b.name for b in batches] == sorted(b.name for b in batches)
    assert all(b.rows == 400 and len(b.sha256) == 64 for b in batches)
    assert batches[0].path == "data/demo/batches/2024-01-07.parquet"


def test_as_of_hides_batches_newer_than_that_day(fast_home):
    batches = data.list_batches(SRC, Paths(fast_home), as_of=week_end(10).isoformat())
    assert len(batches) == 10 and batches[-1].end <= f"{week_end(10)}T23:59:59.999999"


def test_a_missing_batches_folder_says_how_to_fix_it(tmp_path):
    with pytest.raises(DataContractError, match=r"batches folder .* does not exist; .*retrain demo-data"):
        data.list_batches(SRC, Paths(tmp_path))


def test_a_batch_without_the_time_column_is_named(fast_home):
    p = fast_home / "data/demo/batches/2024-01-14.parquet"
    pd.read_parquet(p).drop(columns=["application_date"]).to_parquet(p)
    with pytest.raises(DataContractError, match=r"time column 'application_date' is missing from batch data/demo/batches/2024-01-14\.parquet"):
        data.list_batches(SRC, Paths(fast_home))


def test_a_batch_without_the_label_is_named_when_it_is_loaded_for_training(fast_home):
    paths = Paths(fast_home)
    batches = data.list_batches(SRC, paths)
    p = fast_home / batches[3].path
    pd.read_parquet(p).drop(columns=["default"]).to_parquet(p)
    with pytest.raises(DataContractError, match=r"label column 'default' is missing from batch data/demo/batches/2024-01-28\.parquet"):
        data.load_batches(batches[:5], paths, SRC)


def test_a_recorded_batch_that_changed_is_refused_by_name(fast_home):
    paths = Paths(fast_home)
    b = data.list_batches(SRC, paths)[2]
    raw = bytearray((fast_home / b.path).read_bytes())
    raw[100] ^= 0xFF
    (fast_home / b.path).write_bytes(bytes(raw))
    with pytest.raises(DataContractError, match=r"batch data/demo/batches/2024-01-21\.parquet changed since it was recorded"):
        data.batches_from_records([b.to_dict()], paths)


def test_loading_deduplicates_on_the_key_and_caps_rows_keeping_the_newest(fast_home):
    paths = Paths(fast_home)
    batches = data.list_batches(SRC, paths)[:3]
    frame = data.load_batches([batches[0], batches[0], batches[1], batches[2]], paths, SRC, max_rows=500)
    assert len(frame) == 500 and frame["loan_id"].is_unique
    assert frame["application_date"].max() == pd.Timestamp(batches[2].end)


def _windows(strategy, champion=None, n=12, **kw):
    fake = [data.Batch(f"b/{i:02d}.parquet", 10, f"2024-01-{i + 1:02d}T00:00:00", f"2024-01-{i + 1:02d}T23:00:00", "x") for i in range(n)]
    settings = TrainingSettings(strategy=strategy, window_batches=3, **kw)
    return fake, data.plan_windows(fake, training=settings, champion_slices=[fake[i] for i in champion] if champion else None)


def test_the_holdout_is_the_newest_batch_and_nobody_trains_on_it():
    fake, w = _windows("full")
    assert w.holdout == (fake[-1],) and fake[-1] not in w.train and len(w.train) == 11


def test_sliding_window_trains_on_the_newest_batches_before_the_holdout():
    fake, w = _windows("sliding_window")
    assert w.train == tuple(fake[8:11])


def test_incremental_rebuilds_the_champions_slices_plus_the_new_batches():
    fake, w = _windows("incremental", champion=[2, 3, 4])
    assert w.train == tuple(fake[2:11]) and w.reference == tuple(fake[2:5]) and w.current == tuple(fake[5:])


def test_a_first_incremental_run_trains_like_full():
    fake, w = _windows("incremental")
    assert w.train == tuple(fake[:11])


def test_too_few_batches_for_a_holdout_and_training_is_explained():
    with pytest.raises(DataContractError, match=r"1 batch\(es\) visible but a run needs at least 3"):
        _windows("full", n=1, holdout_batches=2)


def test_a_sliding_window_in_days_keeps_the_batches_that_end_within_them():
    fake, w = _windows("sliding_window", window_days=2.5)
    assert w.train == tuple(fake[8:11])  # batches ending on days 9, 10 and 11 before the holdout


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_reading_for_a_comparison_reads_only_the_asked_columns_with_the_same_values(tmp_path, suffix):
    frame = pd.DataFrame({"a": [1.5, None, 3.0], "t": ["x", None, "y"], "label": [0, 1, 0], "b": ["u", "u", "v"]})
    path = tmp_path / f"f{suffix}"
    frame.to_parquet(path) if suffix == ".parquet" else frame.to_csv(path, index=False)
    assert data.column_names(path) == ["a", "t", "label", "b"]
    got = data.read_columns(path, ["b", "a", "t", "not-in-the-file"])
    assert list(got.columns) == ["b", "a", "t"]  # the asked order; the label was never read
    if suffix == ".parquet":  # text comes as categories, decoded once per distinct value
        assert isinstance(got["t"].dtype, pd.CategoricalDtype)
    assert got["t"].astype(object).where(got["t"].notna(), None).tolist() == ["x", None, "y"]
    assert got["a"].isna().tolist() == [False, True, False] and got["b"].astype(str).tolist() == ["u", "u", "v"]


def test_a_batch_rewritten_between_two_listings_is_read_again(fast_home):
    first = data.list_batches(SRC, Paths(fast_home))
    newest = fast_home / first[-1].path
    frame = pd.read_parquet(newest)
    frame.iloc[: len(frame) // 2].to_parquet(newest, index=False)  # the same file, half its rows
    again = data.list_batches(SRC, Paths(fast_home))
    assert again[:-1] == first[:-1]
    assert again[-1].rows == len(frame) // 2 and again[-1].sha256 != first[-1].sha256


def test_a_batch_rewritten_between_two_loads_is_read_again(fast_home):
    paths = Paths(fast_home)
    batches = data.list_batches(SRC, paths)[:2]
    before = data.load_batches(batches, paths, SRC)
    p = fast_home / batches[1].path
    frame = pd.read_parquet(p)
    frame.iloc[:100].to_parquet(p, index=False)  # the same file, fewer rows
    after = data.load_batches(batches, paths, SRC)
    assert len(before) == 800 and len(after) == 500


def test_a_loaded_frame_changed_by_its_reader_does_not_reach_the_next_reader(fast_home):
    paths = Paths(fast_home)
    batches = data.list_batches(SRC, paths)[:1]
    first = data.load_batches(batches, paths, SRC)
    expected = first.copy()
    first["income"] = -1.0
    first["added"] = 1
    again = data.load_batches(batches, paths, SRC)
    pd.testing.assert_frame_equal(again, expected)
    assert "added" not in again and again["application_date"].dtype.kind == "M"


@pytest.mark.parametrize("name", ["batch.txt", "batch.xlsx", "batch.PARQUET"])
def test_the_one_column_reader_names_an_unsupported_suffix_in_one_line(tmp_path, name):
    path = tmp_path / name
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataContractError) as err:
        data.column_names(path, what="batch file")
    assert str(err.value) == f"batch file {path} is neither .parquet nor .csv; convert it or change data.pattern"


def test_the_one_column_reader_gives_the_columns_a_reader_gets_so_files_with_a_stored_index_compare(tmp_path):
    from retrainlib import drift

    frame = pd.DataFrame({"id": range(40), "x": [i % 7 / 7 for i in range(40)], "c": ["u", "v"] * 20}).set_index("id")
    frame.to_parquet(tmp_path / "named.parquet")  # the index is stored in the file as a column "id"
    frame.reset_index(drop=True).iloc[::-1].to_parquet(tmp_path / "range.parquet")  # a range index, stored as metadata
    frame.to_csv(tmp_path / "f.csv")  # a CSV's index is a column like any other
    for name in ("named.parquet", "range.parquet", "f.csv"):
        assert data.column_names(tmp_path / name) == list(data.read_frame(tmp_path / name).columns), name
    # the reference file's columns are what `retrain drift` compares: the stored index is not among them
    report = drift.compare_files(tmp_path / "named.parquet", tmp_path / "named.parquet")
    assert sorted(report.to_frame()["feature"]) == ["c", "x"]
