"""The drift step's champion scores: loaded only when needed, cached only for byte-identical models and rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrainlib import automl, freshproc
from retrainlib.errors import RegistryError
from retrainlib.registry import Registry
from retrainlib.scorecache import ChampionScores


@pytest.fixture
def two_registries(tmp_path, clone):
    """Two strategies' registries holding the same fit (as the shared-fit cache makes them)."""
    regs = [Registry(tmp_path / name, "loan-default") for name in ("drift", "every-batch")]
    for reg in regs:
        reg.add_version(clone, {"note": "same fit"}, run_id="r1")
    return regs


def test_without_the_cache_the_scores_are_the_loaded_champions(two_registries, sample, clone):
    reg = two_registries[0]
    with freshproc.settings(cache_dir=None):
        champion = ChampionScores(reg, "v0001")
        assert champion._predictor is None  # nothing loaded yet
        got = champion.scores(sample)
    assert np.array_equal(got, automl.predict_scores(automl.load_predictor(clone), sample))
    assert champion.problem_type == "binary" and champion.class_labels == [0, 1]


def test_a_byte_identical_version_in_another_registry_is_answered_without_loading(two_registries, sample, tmp_path):
    first, second = two_registries
    with freshproc.settings(cache_dir=tmp_path / "cache"):
        a = ChampionScores(first, "v0001")
        expected = a.scores(sample)
        assert a._predictor is not None and a.problem_type == "binary"
        b = ChampionScores(second, "v0001")
        assert np.array_equal(b.scores(sample), expected)
        assert (b.problem_type, b.class_labels) == ("binary", [0, 1])
        assert b._predictor is None  # served from the cache: the model was never loaded
        other_rows = sample.iloc[::-1]
        assert np.array_equal(b.scores(other_rows), expected[::-1])  # other rows: computed, so it loaded
        assert b._predictor is not None


def test_a_changed_model_file_is_refused_before_any_cached_answer(two_registries, sample, tmp_path):
    first, second = two_registries
    with freshproc.settings(cache_dir=tmp_path / "cache"):
        ChampionScores(first, "v0001").scores(sample)
        model = next((second.path / "v0001" / "predictor").rglob("model.pkl"))
        model.write_bytes(model.read_bytes() + b"\0")
        with pytest.raises(RegistryError, match="does not match its checksums"):
            ChampionScores(second, "v0001").scores(sample)


def test_a_repeated_window_comparison_is_answered_from_memory_only_while_the_check_cache_is_on(tmp_path, monkeypatch):
    from retrainlib import drift, scorecache
    from retrainlib.profiles import DriftSettings

    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(size=500), "y": rng.normal(size=500)})
    cur = pd.DataFrame({"x": rng.normal(0.5, size=500), "y": rng.normal(size=500)})
    calls = []
    real = drift.compare
    monkeypatch.setattr(drift, "compare", lambda *a, **k: calls.append(1) or real(*a, **k))
    args = dict(settings=DriftSettings(), drift_threshold=0.3, importance={"x": 0.2}, seed=1)
    with freshproc.settings(cache_dir=None):
        scorecache.compare_once(ref, cur, **args)
        scorecache.compare_once(ref, cur, **args)
    assert len(calls) == 2  # off: computed each time
    with freshproc.settings(cache_dir=tmp_path / "cache"):
        first = scorecache.compare_once(ref, cur, **args)
        again = scorecache.compare_once(ref.copy(), cur.copy(), **args)  # the same rows in other frames
        other = scorecache.compare_once(ref, cur, **{**args, "seed": 2})  # another setting: computed
        moved = cur.copy()
        moved.loc[0, "x"] += 1.0
        changed = scorecache.compare_once(ref, moved, **args)  # other rows: computed
    assert len(calls) == 5
    assert again is first and again.to_dict() == real(ref, cur, **args).to_dict()
    assert other is not first and changed is not first


def test_batches_judged_before_against_the_same_reference_are_answered_from_memory_only_while_the_check_cache_is_on(tmp_path):
    from retrainlib import scorecache

    calls = []

    def judge():
        calls.append(1)
        return (len(calls),)

    parts = ["quality.assess_batches", "reference-rows", "b1:rows"]
    with freshproc.settings(cache_dir=None):
        assert scorecache.answered_once(parts, judge) != scorecache.answered_once(parts, judge)
    with freshproc.settings(cache_dir=tmp_path / "cache"):
        first = scorecache.answered_once(parts, judge)
        assert scorecache.answered_once(list(parts), judge) is first
        assert scorecache.answered_once([*parts[:2], "b1:other rows"], judge) is not first
