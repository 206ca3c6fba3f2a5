"""The river detectors on a loss stream: one harness over every detector (river's own test style)."""

from __future__ import annotations

import numpy as np
import pytest

from retrainlib.detectors import DETECTORS, row_losses, scan
from retrainlib.errors import ProfileError

STEP = 4000  # the row where the loss steps up
#: rows after the step within which each detector, at its default level, must fire (seeds 0-2)
WITHIN = {"adwin": 300, "kswin": 1000, "page-hinkley": 500}


def log_losses(seed: int, *, n: int = 12_000, step: int | None = None, share: float = 0.3) -> np.ndarray:
    """Per-row log losses of a calibrated binary model (scores ~ Beta(2, 5)); from ``step`` on, a ``share`` of rows
    follow the opposite concept (their label is drawn with 1 - score), which raises the mean loss by about 40%."""
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 5, n)
    truth = p
    if step is not None:
        truth = np.where((np.arange(n) >= step) & (rng.random(n) < share), 1 - p, p)
    y = rng.random(n) < truth
    return row_losses(y.astype(int), p, problem_type="binary", classes=[0, 1])


def test_the_harness_covers_every_detector():
    assert set(WITHIN) == set(DETECTORS)


@pytest.mark.parametrize("name", sorted(DETECTORS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_detector_fires_soon_after_the_loss_steps_up_and_stays_quiet_on_a_stationary_stream(name, seed):
    steady = scan(log_losses(seed), detector=name, seed=seed)
    assert steady.alarm is None, f"{name} fired on a stationary stream at row {steady.alarm.row}"
    stepped = scan(log_losses(seed, step=STEP), detector=name, seed=seed)
    assert stepped.alarm is not None, f"{name} never saw the step at row {STEP}"
    assert STEP <= stepped.alarm.row <= STEP + WITHIN[name], (name, stepped.alarm)
    assert stepped.alarm.after > stepped.alarm.before


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_a_loss_that_falls_is_not_a_degradation(name):
    better = np.concatenate([log_losses(0, n=STEP) * 1.6, log_losses(1, n=8000)])
    assert scan(better, detector=name, seed=0).alarm is None


def test_an_alarm_names_the_batch_and_the_row_inside_it():
    parts = np.array_split(log_losses(0, step=STEP), 6)  # 2,000 rows a batch: the step is in batch 2
    alarm = scan(list(parts), detector="adwin").alarm
    assert alarm.part == 2 and alarm.row == 2 * 2000 + alarm.row_in_part


def test_an_unknown_detector_lists_the_known_ones():
    with pytest.raises(ProfileError, match="unknown degradation detector 'ddm'; expected one of 'adwin', 'kswin', 'page-hinkley'"):
        scan(np.ones(10), detector="ddm")


def test_row_losses_are_log_loss_for_classes_and_absolute_error_for_values():
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    got = row_losses(["a", "c"], proba, problem_type="multiclass", classes=["a", "b", "c"])
    assert np.allclose(got, -np.log([0.7, 0.8]))
    assert row_losses(["z"], proba[:1], problem_type="multiclass", classes=["a", "b", "c"])[0] == pytest.approx(-np.log(1e-6))
    assert np.allclose(row_losses([1.0, 3.0], np.array([2.0, 2.5]), problem_type="regression"), [1.0, 0.5])


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_the_degradation_trigger_runs_the_profiles_detector_on_per_row_losses_and_names_the_batch(name):
    from retrainlib.triggers import degradation_trigger

    parts = np.array_split(log_losses(0, step=STEP), 6)
    losses = [(f"data/b{i}.parquet", p) for i, p in enumerate(parts)]
    fired = degradation_trigger([], delta=0.005, threshold=0.05, min_history=5, detector=name, losses=losses)
    assert fired.fired and "of batch data/b2.parquet (3 of 6)" in fired.reason and fired.source == "measured"
    quiet = degradation_trigger([], delta=0.005, threshold=0.05, min_history=5, detector=name,
                                losses=[(f"b{i}", p) for i, p in enumerate(np.array_split(log_losses(0), 6))])
    assert not quiet.fired and "quiet over 12,000 per-row losses of 6 batch(es)" in quiet.reason


def test_a_profile_names_a_known_detector_or_is_refused():
    from retrainlib.profiles import TriggerSettings

    assert TriggerSettings(degradation_detector="kswin", detector_level=1e-3).degradation_detector == "kswin"
    with pytest.raises(ValueError, match="unknown degradation detector 'ddm'"):
        TriggerSettings(degradation_detector="ddm")
