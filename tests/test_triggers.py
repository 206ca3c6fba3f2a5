import numpy as np

from retrainlib import triggers as t


def test_schedule_fires_at_the_interval_and_not_a_moment_before():
    assert t.schedule_trigger(7.0, interval_days=7).fired
    assert not t.schedule_trigger(6.999, interval_days=7).fired


def test_drift_fires_just_past_its_threshold_and_not_at_it():
    assert t.drift_trigger(0.2501, threshold=0.25).fired
    assert not t.drift_trigger(0.25, threshold=0.25).fired


def test_performance_fires_just_below_the_threshold_and_not_at_it():
    assert t.performance_trigger(0.7999, threshold=0.8, metric="roc_auc").fired
    assert not t.performance_trigger(0.8, threshold=0.8, metric="roc_auc").fired


def test_performance_on_a_loss_metric_fires_above_the_threshold():
    assert t.performance_trigger(0.41, threshold=0.4, metric="log_loss", greater_is_better=False).fired
    assert not t.performance_trigger(0.39, threshold=0.4, metric="log_loss", greater_is_better=False).fired


def test_performance_without_new_labels_says_so_instead_of_guessing():
    r = t.performance_trigger(None, threshold=0.8, metric="roc_auc")
    assert not r.fired and "no new labelled batch" in r.reason


def test_degradation_fires_on_a_planted_slow_decline():
    rng = np.random.default_rng(0)
    values = 0.85 - 0.006 * np.arange(20) + rng.normal(0, 0.005, 20)
    r = t.degradation_trigger(list(values), delta=0.005, threshold=0.05, min_history=5)
    assert r.fired, r.reason


def test_degradation_does_not_fire_on_noise_around_a_stable_level():
    false_alarms = 0
    for seed in range(50):
        values = 0.85 + np.random.default_rng(seed).normal(0, 0.01, 20)
        false_alarms += t.degradation_trigger(list(values), delta=0.005, threshold=0.05, min_history=5).fired
    assert false_alarms <= 2


def test_degradation_needs_enough_history():
    r = t.degradation_trigger([0.8, 0.7], delta=0.005, threshold=0.05, min_history=5)
    assert not r.fired and "need 5" in r.reason


def test_degradation_is_not_fooled_by_a_single_bad_point():
    values = [0.85] * 12 + [0.80] + [0.85] * 3
    assert not t.degradation_trigger(values, delta=0.005, threshold=0.05, min_history=5).fired


def test_bad_data_quality_blocks_retraining_even_when_triggers_fire():
    fired = [t.drift_trigger(0.9, threshold=0.1), t.performance_trigger(0.5, threshold=0.8, metric="roc_auc")]
    d = t.decide(fired, combine="any", use=("drift", "performance"), policy="hybrid", quality_passed=False, quality_reason="score 0.4")
    assert not d.retrain and d.status == "blocked-by-quality"


def test_any_policy_retrains_when_one_listed_trigger_fires_and_names_it():
    fired = [t.drift_trigger(0.9, threshold=0.1), t.schedule_trigger(1, interval_days=7)]
    d = t.decide(fired, combine="any", use=("drift", "schedule"), policy="any", quality_passed=True)
    assert d.retrain and d.reasons == (fired[0].reason,)


def test_all_policy_waits_for_every_listed_trigger():
    fired = [t.drift_trigger(0.9, threshold=0.1), t.schedule_trigger(1, interval_days=7)]
    d = t.decide(fired, combine="all", use=("drift", "schedule"), policy="all", quality_passed=True)
    assert not d.retrain


def test_a_trigger_outside_the_policy_does_not_count():
    fired = [t.drift_trigger(0.9, threshold=0.1)]
    d = t.decide(fired, combine="any", use=("schedule",), policy="periodic", quality_passed=True)
    assert not d.retrain and not d.triggers[0].enabled


def test_an_empty_registry_bootstraps():
    d = t.decide([], combine="any", use=("drift",), policy="hybrid", quality_passed=True, bootstrap=True)
    assert d.retrain and d.status == "bootstrap"


def test_a_joint_shift_found_only_by_the_domain_classifier_fires_the_drift_trigger():
    r = t.drift_trigger(0.0, threshold=0.25, joint_auc=0.7, joint_drifted=True)
    assert r.fired and "joint shift" in r.reason
    assert not t.drift_trigger(0.0, threshold=0.25, joint_auc=0.51, joint_drifted=False).fired
