"""`retrain init`: a commented, validated profile from a batch folder; a folder it cannot use is refused in one line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from retrainlib.cli import main
from retrainlib.profiles import load_profile

RETRAIN = [sys.executable, "-m", "retrainlib.cli"]


def init(home: Path, data: Path, *extra: str, label: str = "default") -> int:
    return main(["init", "--home", str(home), "--data", str(data), "--label", label, *extra])


@pytest.fixture
def folder(tmp_path: Path, demo_batches: Path) -> Path:
    """A copy of six of the session's tiny demo batches, in a project home."""
    home = tmp_path / "home"
    (home / "params").mkdir(parents=True)
    out = home / "data" / "loans" / "batches"
    out.mkdir(parents=True)
    for p in sorted(demo_batches.glob("*.parquet"))[:6]:
        shutil.copy(p, out / p.name)
    return out


def home_of(folder: Path) -> Path:
    return folder.parents[2]


def refused(capsys, home: Path, code: int) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("retrain: error: ") and "nothing was written" in err[0], err
    assert not list((home / "params").glob("*.yaml")), "a refused init wrote a profile"
    return err[0]


def test_init_writes_a_commented_profile_that_loads_and_says_what_it_inferred(folder, capsys):
    home = home_of(folder)
    assert init(home, folder) == 0
    out = capsys.readouterr().out
    path = home / "params" / "loans.yaml"
    prof = load_profile(path)
    assert prof.data.batches == "data/loans/batches" and prof.data.pattern == "*.parquet"
    assert prof.data.time_column == "application_date" and prof.data.key == "loan_id"
    assert prof.data.ignore_columns == ("loan_id",)
    assert prof.training.problem_type == "binary" and prof.training.eval_metric == "roc_auc"
    assert prof.retraining_interval == 14  # the guide's 14 days = two weekly batches
    assert prof.guide.row == "standard-business" and prof.performance_threshold == 0.85
    keys = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert all("# " in ln for ln in keys), [ln for ln in keys if "# " not in ln]
    assert "retrain backtest --profile params/loans.yaml" in out and "retrain tune" in out and "retrain run" in out
    assert "application_date (the only date column)" in out


def sales_folder(tmp_path: Path) -> Path:
    """Four monthly CSV batches in a project home: a text date, a row counter, a constant, a country, a population."""
    data = tmp_path / "home" / "data" / "sales"
    data.mkdir(parents=True)
    for i in range(4):
        n = 30
        pd.DataFrame({"day": pd.date_range(f"2024-0{i + 1}-01", periods=n, freq="D").strftime("%Y-%m-%d"),
                      "store": ["a", "b", "c"] * 10, "flag": 1, "price": [float(j) * 1.5 + i for j in range(n)],
                      "rid": range(i * n, (i + 1) * n), "country": [f"c{j}" for j in range(n)],
                      "pop": [(j + 1) * 7_919_993 + i for j in range(n)],
                      "sold": [float(j % 7) + 0.5 * j for j in range(n)]}).to_csv(data / f"2024-0{i + 1}.csv", index=False)
    return data


def test_init_finds_a_text_date_column_in_csv_batches_and_names_a_regression_metric(tmp_path, capsys):
    home, data = tmp_path / "home", sales_folder(tmp_path)
    assert init(home, data, label="sold") == 0
    prof = load_profile(home / "params" / "sales.yaml")
    assert prof.data.pattern == "*.csv" and prof.data.time_column == "day"
    assert prof.training.problem_type == "regression" and prof.training.eval_metric == "r2"
    assert prof.data.ignore_columns == ("rid", "flag")  # a row counter unique across batches, and a constant
    assert prof.data.key == "rid"  # not 'country' (unique in a batch, recurring across them) nor 'pop' (a measure)


def test_a_folder_without_batch_files_is_refused(tmp_path, capsys):
    home, data = tmp_path / "home", tmp_path / "home" / "data" / "empty"
    data.mkdir(parents=True)
    (data / "README.txt").write_text("nothing here\n")
    line = refused(capsys, home, init(home, data))
    assert "holds no batch files" in line


def test_a_folder_with_one_batch_is_refused(folder, capsys):
    for p in sorted(folder.glob("*.parquet"))[1:]:
        p.unlink()
    line = refused(capsys, home_of(folder), init(home_of(folder), folder))
    assert "holds one batch file" in line


def test_a_folder_mixing_parquet_and_csv_batches_is_refused(folder, capsys):
    first = sorted(folder.glob("*.parquet"))[0]
    pd.read_parquet(first).to_csv(folder / "extra.csv", index=False)
    line = refused(capsys, home_of(folder), init(home_of(folder), folder))
    assert "mixes batch file patterns (1 *.csv, 6 *.parquet)" in line


def test_batches_without_any_date_column_are_refused(folder, capsys):
    for p in folder.glob("*.parquet"):
        pd.read_parquet(p).drop(columns=["application_date"]).to_parquet(p, index=False)
    line = refused(capsys, home_of(folder), init(home_of(folder), folder))
    assert "has no time column" in line and "--time-column" in line


def test_a_named_time_column_missing_from_a_batch_is_refused(folder, capsys):
    line = refused(capsys, home_of(folder), init(home_of(folder), folder, "--time-column", "when"))
    assert "time column 'when' (--time-column) is missing from 6 batch(es)" in line


def test_a_label_missing_from_one_batch_is_refused_naming_that_batch(folder, capsys):
    last = sorted(folder.glob("*.parquet"))[-1]
    pd.read_parquet(last).drop(columns=["default"]).to_parquet(last, index=False)
    line = refused(capsys, home_of(folder), init(home_of(folder), folder))
    assert f"label 'default' is missing from 1 batch(es), first {last.name}" in line


def test_a_label_with_one_value_is_refused(folder, capsys):
    for p in folder.glob("*.parquet"):
        pd.read_parquet(p).assign(default=0).to_parquet(p, index=False)
    line = refused(capsys, home_of(folder), init(home_of(folder), folder))
    assert "label 'default' has one value in every batch (0)" in line


def test_an_existing_profile_is_not_replaced_without_force(folder, capsys):
    home = home_of(folder)
    (home / "params" / "loans.yaml").write_text("mine\n")
    assert init(home, folder) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert (home / "params" / "loans.yaml").read_text() == "mine\n"
    assert init(home, folder, "--force") == 0
    load_profile(home / "params" / "loans.yaml")


@pytest.mark.slow
@pytest.mark.parametrize("labels", ["numbers", "class names"])
def test_retrain_run_bootstraps_a_champion_on_an_init_written_profile_without_edits(folder, labels):
    home = home_of(folder)
    if labels == "class names":  # a first run's notebook once took the mean of a text label
        for p in folder.glob("*.parquet"):
            pd.read_parquet(p).assign(default=lambda f: f["default"].map({0: "repaid", 1: "defaulted"})).to_parquet(p)
    r = subprocess.run([*RETRAIN, "init", "--home", str(home), "--data", "data/loans/batches", "--label", "default"],
                       capture_output=True, text=True, timeout=120, cwd=home)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*RETRAIN, "run", "--home", str(home), "--profile", "params/loans.yaml", "--json"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = yaml.safe_load(r.stdout)
    assert summary["outcome"] == "bootstrapped" and summary["champion_before"] is None, summary
    assert (home / "models" / "loans" / summary["champion_after"]).is_dir()  # the refit of v0001 (refit_full)


def test_a_folder_outside_the_project_home_is_refused_with_the_link_to_make(folder, tmp_path, capsys):
    outside = tmp_path / "elsewhere"
    shutil.copytree(folder, outside)
    home = home_of(folder)
    assert init(home, outside) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lies outside the project home" in err[0] and f"ln -s {outside}" in err[0], err
    assert not list((home / "params").glob("*.yaml"))
    (home / "data" / "linked").symlink_to(outside)  # linked into the home: the profile names the link
    assert init(home, home / "data" / "linked", "--name", "linked") == 0
    assert load_profile(home / "params" / "linked.yaml").data.batches == "data/linked"


def test_the_plan_and_the_profile_text_are_still_the_ones_init_wrote_before_its_functions_were_split(folder, tmp_path):
    import hashlib

    from retrainlib.profile_init import infer_profile, render_profile

    expected = {  # printed by infer_profile / render_profile before they were split into named steps (issue 27)
        "loans": "eab476b0303568bdd68d32e6b1f18d27563322ddddc963024e71b1df8b3f2277",
        "sales": "3770965b2047831edc11608b3c4734f835d145ab83d02123eebb841ad7930494",
        "loans-critical": "ec0a888c311e796ecdc5937b5c6b2938362258fab3f1c244cc5367f574b9d276",
    }
    sales = sales_folder(tmp_path / "s")
    plans = {"loans": infer_profile(folder, label="default", home=home_of(folder)),
             "sales": infer_profile(sales, label="sold", home=sales.parents[1]),
             "loans-critical": infer_profile(folder, label="region", name="crit", time_column="application_date",
                                             system_type="critical", home=home_of(folder))}
    got = {k: hashlib.sha256((repr(plan) + render_profile(plan)).encode()).hexdigest() for k, plan in plans.items()}
    assert got == expected
