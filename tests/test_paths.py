"""All paths from one place: the project home and the folders in it, on real folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from retrainlib.paths import NOTEBOOKS, PACKAGE_ROOT, Paths, project_home


@pytest.fixture
def no_env_home(monkeypatch):
    monkeypatch.delenv("RETRAIN_HOME", raising=False)


def test_the_home_is_the_nearest_ancestor_with_a_params_folder(tmp_path, no_env_home):
    (tmp_path / "project" / "params").mkdir(parents=True)
    (tmp_path / "project" / "runs" / "deep" / "params-not").mkdir(parents=True)
    start = tmp_path / "project" / "runs" / "deep"
    assert project_home(start) == (tmp_path / "project").resolve()
    (start / "params").mkdir()
    assert project_home(start) == start.resolve(), "the nearest one wins"


def test_without_a_params_folder_anywhere_up_the_home_is_the_starting_folder(tmp_path, no_env_home):
    start = tmp_path / "a" / "b"
    start.mkdir(parents=True)
    assert not any((p / "params").is_dir() for p in (start, *start.parents))
    assert project_home(start) == start.resolve()


def test_the_home_defaults_to_the_working_directory(tmp_path, no_env_home, monkeypatch):
    (tmp_path / "params").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert project_home() == tmp_path.resolve()
    assert Paths.discover().home == tmp_path.resolve()


def test_retrain_home_wins_over_any_params_folder_and_is_expanded(tmp_path, monkeypatch):
    (tmp_path / "here" / "params").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RETRAIN_HOME", "~/elsewhere")
    assert project_home(tmp_path / "here") == (tmp_path / "elsewhere").resolve()


def test_the_folders_of_a_home(tmp_path):
    paths = Paths.discover(tmp_path / "home" / ".." / "home")
    home = (tmp_path / "home").resolve()
    assert paths.home == home
    assert (paths.params, paths.data, paths.models, paths.runs) == (home / "params", home / "data", home / "models",
                                                                      home / "runs")


def test_profile_paths_resolve_absolute_then_under_the_home_then_from_the_working_directory(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "params").mkdir(parents=True)
    (home / "params" / "demo.yaml").write_text("x: 1\n")
    cwd = tmp_path / "cwd"
    (cwd / "mine").mkdir(parents=True)
    (cwd / "mine" / "own.yaml").write_text("x: 2\n")
    monkeypatch.chdir(cwd)
    paths = Paths(home)
    assert paths.profile(home / "params" / "demo.yaml") == home / "params" / "demo.yaml"
    assert paths.profile("params/demo.yaml") == home / "params" / "demo.yaml"
    assert paths.profile("mine/own.yaml") == (cwd / "mine" / "own.yaml").resolve()
    assert paths.profile("params/new.yaml") == home / "params" / "new.yaml", "a missing file is named under the home"


def test_paths_from_a_profile_are_relative_to_the_home_unless_absolute(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    paths = Paths(tmp_path / "home")
    assert paths.resolve("models") == tmp_path / "home" / "models"
    assert paths.resolve(tmp_path / "shared" / "models") == tmp_path / "shared" / "models"
    assert paths.resolve("~/models") == tmp_path / "user" / "models"
    monkeypatch.chdir(tmp_path)
    assert paths.resolve("data/x.parquet") != Path(os.getcwd()) / "data" / "x.parquet"


def test_the_shipped_notebooks_sit_beside_the_package():
    assert PACKAGE_ROOT == Path(__file__).resolve().parent.parent / "retrainlib"
    assert NOTEBOOKS == PACKAGE_ROOT.parent / "notebooks" and sorted(NOTEBOOKS.glob("*.ipynb"))
