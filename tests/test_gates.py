"""Contract of the gate table: every gate in ``GATES`` on a passing and a failing set of figures.

As river runs the same checks over every detector, each rule here gets the same contract (a
:class:`Gate` with the rule's name, a real bool, float-or-None figures, a one-line reason that names
the figures it decided on) on two :class:`GateInputs`: one it must pass, one it must fail. A gate
added to the table without cases here fails :func:`test_every_gate_in_the_table_has_a_passing_and_a_failing_case`.
The figures are plain arrays and numbers: gates are pure functions of what validate() measured.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from retrainlib.freshproc import CheckResult
from retrainlib.gates import GATES, Gate, GateInputs, apply_gates
from retrainlib.metrics import summarise_bootstrap
from retrainlib.profiles import Profile

RUNNING = {"autogluon": "1.6.3", "python": "3.11.9"}
CONTRACT = {"income": "numeric", "debt": "numeric", "region": "categorical"}
EXPECTED = np.linspace(0.1, 0.9, 50)


def profile(improvement_threshold: float = 0.01, **validation) -> Profile:
    return Profile.model_validate({
        "name": "gates", "model_name": "loans", "improvement_threshold": improvement_threshold,
        "data": {"batches": "data/batches", "label": "default", "time_column": "week"},
        "validation": {"metrics": ["roc_auc"], "bootstrap_samples": 200, **validation},
    })


def inputs(**over) -> GateInputs:
    """A challenger clearly better than its champion on every figure; ``over`` replaces fields."""
    diffs = np.random.default_rng(0).normal(0.05, 0.01, 200)
    base = dict(
        profile=profile(), greater_is_better={"roc_auc": True},
        scores={"champion": {"roc_auc": 0.80}, "challenger": {"roc_auc": 0.86}},
        bootstrap=summarise_bootstrap(diffs, "roc_auc", "difference", 0.06, 0.95),
        challenger_flips=np.zeros(400, dtype=bool), champion_flips=np.zeros(400, dtype=bool), noisy_features=["income", "debt"],
        churn=np.r_[np.ones(20, dtype=bool), np.zeros(380, dtype=bool)],
        recorded_software=dict(RUNNING), running_software=dict(RUNNING),
        challenger_contract=dict(CONTRACT), champion_contract=dict(CONTRACT),
        challenger_p95=0.011, champion_p95=0.010,
        reload=CheckResult(True, "{}", EXPECTED.copy(), 1.5, "warm", {"pid": 4321}),
        reload_expected=EXPECTED, reload_folder=Path("/models/v0002/predictor"), reload_timeout=600.0,
    )
    return GateInputs(**{**base, **over})


def _gate(name: str, figures: GateInputs) -> list[Gate]:
    (rule,) = [r for r in GATES if r.name == name]
    return [rule.check(figures, metric) for metric in rule.over(figures)]


worse = inputs(scores={"champion": {"roc_auc": 0.80}, "challenger": {"roc_auc": 0.805}})
flips = np.zeros(400, dtype=bool)
flips[:60] = True

#: gate -> (figures it passes, figures it fails, words the failing reason must name)
CASES = {
    "improvement": (inputs(), worse, ["roc_auc 0.805", "0.8", "+0.005", "below improvement_threshold 0.01"]),
    "minimum": (inputs(profile=profile(minimum={"roc_auc": 0.85})),
                inputs(profile=profile(minimum={"roc_auc": 0.9}), scores={"champion": {"roc_auc": 0.91}, "challenger": {"roc_auc": 0.86}}),
                ["roc_auc 0.86", "is not at or above the minimum 0.9"]),
    "significance": (
        inputs(),
        inputs(profile=profile(require_significance=True),
               bootstrap=summarise_bootstrap(np.random.default_rng(1).normal(0.0, 0.02, 200), "roc_auc", "difference", 0.0, 0.95)),
        ["95% paired bootstrap interval", "200 resamples", "does not clear zero"]),
    "stability_reload": (inputs(), inputs(reload=CheckResult(True, "{}", EXPECTED + 0.25, 1.5, "warm", {})),
                         ["differently on 50 rows", "largest difference 0.25"]),
    "stability_noise": (inputs(), inputs(challenger_flips=flips),
                        ["15.00% of the challenger's predictions flip", "2 numeric features", "above 5.00% (1 - stability_threshold)"]),
    "schema": (inputs(), inputs(challenger_contract={"income": "numeric", "region": "numeric"}),
               ["removed debt", "changed kind of region categorical→numeric", "allow_schema_change"]),
    "versions": (inputs(), inputs(recorded_software={"autogluon": "0.8.2", "python": "3.11.2"}),
                 ["AutoGluon 0.8.2 recorded, 1.6.3 running"]),
    "churn": (inputs(profile=profile(max_churn=0.1)), inputs(profile=profile(max_churn=0.01)),
              ["5.00% of predictions differ", "above validation.max_churn 1.00%"]),
    "latency": (inputs(profile=profile(max_latency_ratio=1.5)), inputs(profile=profile(max_latency_ratio=1.05)),
                ["11.0 ms", "10.0 ms", "x1.10", "above validation.max_latency_ratio x1.05"]),
}


def test_every_gate_in_the_table_has_a_passing_and_a_failing_case():
    assert [r.name for r in GATES] == list(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_each_gate_keeps_the_contract_and_passes_and_fails_on_its_figures(name):
    good, bad, named = CASES[name]
    (passed,), (failed,) = _gate(name, good), _gate(name, bad)
    for gate in (passed, failed):
        assert isinstance(gate, Gate) and gate.name == name
        assert type(gate.passed) is bool and type(gate.blocking) is bool
        assert gate.value is None or isinstance(gate.value, float)
        assert gate.threshold is None or isinstance(gate.threshold, float)
        assert isinstance(gate.reason, str) and gate.reason and "\n" not in gate.reason
        assert json.loads(json.dumps(gate.to_dict()))["name"] == name  # the verdict's record
    assert passed.passed and not failed.passed and failed.blocking
    assert passed.reason != failed.reason
    missing = [w for w in named if w not in failed.reason]
    assert not missing, f"the {name} reason does not name {missing}: {failed.reason}"


def test_without_a_champion_only_minimum_stability_versions_and_latency_apply():
    alone = inputs(scores={"champion": {}, "challenger": {"roc_auc": 0.86}}, champion_flips=None, churn=None,
                   champion_contract=None, champion_p95=None, profile=profile(minimum={"roc_auc": 0.7}))
    assert [g.name for g in apply_gates(alone)] == ["minimum", "stability_reload", "stability_noise", "versions", "latency"]
    assert not any(g.blocking for g in apply_gates(alone) if g.name in ("stability_noise", "latency"))


def test_a_gate_runs_once_per_metric_it_names_in_table_order():
    two = inputs(profile=profile(metrics=["roc_auc", "accuracy"], minimum={"accuracy": 0.5}),
                 greater_is_better={"roc_auc": True, "accuracy": True},
                 scores={"champion": {"roc_auc": 0.80, "accuracy": 0.70}, "challenger": {"roc_auc": 0.86, "accuracy": 0.74}})
    assert [(g.name, g.metric) for g in apply_gates(two)] == [
        ("improvement", "roc_auc"), ("improvement", "accuracy"), ("minimum", "accuracy"), ("significance", "roc_auc"),
        ("stability_reload", None), ("stability_noise", None), ("schema", None), ("versions", None), ("churn", None),
        ("latency", None),
    ]


@pytest.mark.parametrize("answer, words", [
    (None, "does not exist"),
    (CheckResult(False, "no answer within 600 s", mode="warm"), "took over 600 s"),
    (CheckResult(False, "UnpicklingError: bad pickle", mode="warm"), "failed to load or predict in a fresh process: UnpicklingError"),
])
def test_a_reload_without_an_answer_fails_saying_why(answer, words):
    (gate,) = _gate("stability_reload", inputs(reload=answer))
    assert not gate.passed and gate.blocking and words in gate.reason


def test_gate_inputs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        inputs().scores = {}


# ------------------------------------------------------------------ a challenger on newer rows
small_gain = {"champion": {"roc_auc": 0.80}, "challenger": {"roc_auc": 0.805}}


@pytest.mark.parametrize("interval, passes, words", [
    ((-0.012, 0.021), True, ["[-0.012, 0.021] reaches zero", "not significantly worse", "fresher_challenger: not_worse"]),
    ((-0.030, -0.002), False, ["[-0.03, -0.002] lies below zero", "significantly worse"]),
])
def test_a_challenger_on_rows_its_champion_never_saw_passes_when_it_is_not_significantly_worse(interval, passes, words):
    gate, = _gate("improvement", inputs(scores=small_gain, challenger_new_rows=True, gain_intervals={"roc_auc": interval}))
    assert gate.passed is passes and gate.blocking
    assert "below improvement_threshold 0.01" in gate.reason  # the guide's figure is still stated
    assert all(w in gate.reason for w in words), gate.reason
    assert gate.details["rule"] == "not_worse" and gate.details["gain_interval"] == list(interval)


def test_a_challenger_on_the_champions_own_rows_still_needs_the_improvement_threshold():
    gate, = _gate("improvement", inputs(scores=small_gain, challenger_new_rows=False, gain_intervals={"roc_auc": (-0.01, 0.02)}))
    assert not gate.passed and "never saw" not in gate.reason


def test_fresher_challenger_improve_asks_a_challenger_on_newer_rows_for_the_threshold_too():
    gate, = _gate("improvement", inputs(profile=profile(fresher_challenger="improve"), scores=small_gain,
                                        challenger_new_rows=True, gain_intervals={"roc_auc": (-0.01, 0.02)}))
    assert not gate.passed


def test_without_a_defined_resample_a_challenger_on_newer_rows_is_judged_on_its_point_gain():
    nan = (float("nan"), float("nan"))
    up, = _gate("improvement", inputs(scores=small_gain, challenger_new_rows=True, gain_intervals={"roc_auc": nan}))
    down, = _gate("improvement", inputs(scores={"champion": {"roc_auc": 0.80}, "challenger": {"roc_auc": 0.79}},
                                        challenger_new_rows=True, gain_intervals={"roc_auc": nan}))
    assert up.passed and not down.passed and "no bootstrap resample defined the metric" in down.reason


# ------------------------------------------------------------------ the floor when the champion is under it
def test_a_challenger_under_the_floor_passes_the_minimum_when_the_champion_is_further_under_it():
    floor = profile(minimum={"roc_auc": 0.70})
    gate, = _gate("minimum", inputs(profile=floor, scores={"champion": {"roc_auc": 0.60}, "challenger": {"roc_auc": 0.66}}))
    assert gate.passed and gate.blocking
    assert "is not at or above the minimum 0.7" in gate.reason and "champion's 0.6" in gate.reason
    assert "worse of two models under the floor" in gate.reason


@pytest.mark.parametrize("champion, challenger", [(0.66, 0.60), (0.75, 0.66), (0.66, 0.66)])
def test_a_challenger_under_the_floor_fails_the_minimum_unless_it_beats_a_champion_also_under_it(champion, challenger):
    floor = profile(minimum={"roc_auc": 0.70})
    gate, = _gate("minimum", inputs(profile=floor, scores={"champion": {"roc_auc": champion}, "challenger": {"roc_auc": challenger}}))
    assert not gate.passed and "champion's" not in gate.reason


def test_a_first_challenger_under_the_floor_fails_the_minimum():
    alone = inputs(profile=profile(minimum={"roc_auc": 0.70}), scores={"champion": {}, "challenger": {"roc_auc": 0.66}})
    gate, = _gate("minimum", alone)
    assert not gate.passed
