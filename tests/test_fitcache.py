"""The shared-fit cache, one of the two training strategies a step is given (real tiny AutoGluon fits)."""

from __future__ import annotations

import filecmp

import pytest

from retrainlib import automl
from retrainlib.fitcache import FitCache, fit_key
from retrainlib.training import CHILD_PROCESS, ChildProcessTrainer, Trainer
from tests.test_training import FEATURES, profile, train_frame

pytestmark = pytest.mark.slow


def fit(trainer: Trainer, frame, tmp_path, name: str):
    return trainer.fit(frame, profile=profile(), work_dir=tmp_path / name, disk_path=tmp_path)


def test_both_training_strategies_are_trainers_and_only_the_cache_says_where_a_fit_came_from(tmp_path):
    cache = FitCache(tmp_path / "cache")
    assert isinstance(cache, Trainer) and isinstance(CHILD_PROCESS, ChildProcessTrainer)
    assert cache.provenance() is None and CHILD_PROCESS.provenance() is None  # nothing fitted yet / never says


def test_an_identical_fit_is_computed_once_and_the_second_gets_a_copy_with_the_first_ones_figures(tmp_path):
    cache = FitCache(tmp_path / "cache")
    frame = train_frame()
    first = fit(cache, frame, tmp_path, "a")
    assert cache.provenance() == "computed"
    second = fit(cache, frame.copy(), tmp_path, "b")
    assert cache.provenance() == "reused"
    assert cache.stats()["fits_computed"] == 1 and cache.stats()["fits_reused"] == 1
    assert cache.stats()["cpu_seconds_saved"] == pytest.approx(first.cpu_seconds, abs=1e-3)
    assert second.cpu_seconds == first.cpu_seconds and second.features == first.features
    assert second.predictor_dir != first.predictor_dir
    same = filecmp.dircmp(first.predictor_dir, second.predictor_dir)
    assert not same.left_only and not same.right_only and not same.diff_files
    rows = train_frame((5,), rows=50)[FEATURES]
    a = automl.predict_scores(automl.load_predictor(first.predictor_dir), rows)
    b = automl.predict_scores(automl.load_predictor(second.predictor_dir), rows)
    assert (a == b).all()


def test_other_rows_are_another_fit_and_a_fresh_cache_on_the_same_folder_reuses_what_it_holds(tmp_path):
    cache = FitCache(tmp_path / "cache")
    fit(cache, train_frame((1, 2)), tmp_path, "a")
    fit(cache, train_frame((2, 3)), tmp_path, "b")
    assert cache.stats()["fits_computed"] == 2 and cache.provenance() == "computed"
    again = FitCache(tmp_path / "cache")  # another worker sharing the folder
    fit(again, train_frame((1, 2)), tmp_path, "c")
    assert again.provenance() == "reused" and again.stats()["fits_computed"] == 0


def test_the_key_is_the_rows_and_the_settings_whatever_their_key_order():
    frame = train_frame((1,), rows=50)
    settings = {"time_limit": 60, "presets": "medium_quality"}
    assert fit_key(frame, settings) == fit_key(frame.copy(), dict(reversed(settings.items())))
    assert fit_key(frame, settings) != fit_key(frame, {**settings, "time_limit": 61})
    assert fit_key(frame, settings) != fit_key(frame.iloc[1:], settings)
