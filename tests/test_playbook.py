"""The playbook's step table and each step's output type (fast: no fit, no notebook)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from retrainlib import playbook
from retrainlib.errors import RetrainError
from retrainlib.outputs import Analysis, Promotion, Training, Validation
from retrainlib.triggers import Decision, TriggerResult
from tests.conftest import REPO


def test_importing_the_runners_step_table_loads_neither_pandas_nor_autogluon():
    code = ("import sys; from retrainlib.playbook import STEPS, read_output; from retrainlib.outputs import Analysis; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pandas', 'autogluon', 'retrainlib')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    loaded = eval(out)
    assert not [m for m in loaded if not m.startswith("retrainlib")], loaded
    assert "retrainlib.steps" not in loaded


def test_one_table_names_every_step_its_notebook_file_and_output_type():
    assert [s.name for s in playbook.STEPS] == ["analyze", "retrain", "validate", "promote"]
    assert [s.output for s in playbook.STEPS] == [Analysis, Training, Validation, Promotion]
    assert [s.json_file for s in playbook.STEPS] == [f"{n}.json" for n in playbook.NOTEBOOK_NAMES]
    for s in playbook.STEPS:
        assert (REPO / "notebooks" / f"{s.notebook}.ipynb").is_file()
        assert playbook.step(s.name) is playbook.step(s.notebook) is playbook.step_of(s.output) is s
    with pytest.raises(RetrainError, match="no playbook step 'train'; the steps are 10-analyze-drift"):
        playbook.step("train")


DECISION = {"retrain": True, "status": "retrain", "policy": "hybrid", "reasons": ["drift 0.4 > 0.25"],
            "triggers": [{"name": "drift", "value": 0.4, "threshold": 0.25, "fired": True, "reason": "drift 0.4 > 0.25",
                          "enabled": True, "source": None}]}
#: each step's JSON as the steps wrote it before the output types existed (keys in their order)
WRITTEN = {
    Analysis: {"champion": "v0001", "decision": DECISION, "quality": {"score": 1.0, "passed": True}, "drift": {"score": 0.4},
               "target_drift": None, "prediction_drift": None, "performance": {"metric": "roc_auc", "value": 0.8},
               "evaluations": [], "estimates": [], "windows": {"strategy": "full", "holdout": [], "reference": [],
                                                               "current": [], "train": [], "visible": 3},
               "batch_quality": [], "holdout_check": {"passed": True, "problems": []}},
    Training: {"status": "trained", "challenger": "v0002", "parent": "v0001", "strategy": "full", "n_rows": 10, "slices": [],
               "features": ["a"], "leaderboard": [{"model": "GBM", "score_val": 0.9}], "wall_seconds": 2.0,
               "fit_seconds": 1.0, "cpu_seconds": 1.5, "time_limit": 60, "time_limit_binding": False, "settings": {},
               "resources": {}, "warnings": [], "version_bytes": 100, "estimator": {"usable": True}, "fit_cache": "reused"},
    Validation: {"status": "validated", "challenger": "v0002", "champion": "v0001", "holdout": [], "decision": "reject",
                 "n_holdout": 400, "reasons": ["improvement too small"], "scores": {"champion": {}, "challenger": {}},
                 "gates": [{"name": "improvement", "metric": "roc_auc", "passed": False, "blocking": True}], "bootstrap": {}},
    Promotion: {"action": "rejected", "champion_before": "v0001", "champion_after": "v0001", "events": [], "refit": None,
                "stuck": None, "retention_removed": [], "versions": ["v0001", "v0002"], "registry_bytes": 200},
}


@pytest.mark.parametrize("kind", list(WRITTEN), ids=lambda k: k.__name__)
def test_each_output_reads_and_writes_the_json_a_step_wrote_byte_for_byte(kind, tmp_path):
    text = json.dumps(WRITTEN[kind])
    out = kind.from_dict(json.loads(text))
    assert json.dumps(out.to_dict()) == text
    (tmp_path / playbook.step_of(kind).json_file).write_text(text)
    assert playbook.read_output(tmp_path, kind) == out
    assert playbook.read_output(tmp_path / "nothing", kind) is None


def test_a_step_with_nothing_to_do_returns_its_type_in_an_explicit_skipped_state():
    for kind in (Training, Validation):
        out = kind.skip("no challenger was trained in this run")
        assert out.skipped and out.to_dict() == {"status": "skipped", "reason": "no challenger was trained in this run"}
        assert kind.from_dict(out.to_dict()) == out
    assert Validation.skip("x").decision is None and Validation.skip("x").reasons == [] and not Validation.skip("x").passed
    assert not Training.skip("x").trained and Training.skip("x").headline() == "skipped - x"


def test_typed_readers_answer_what_the_runner_replay_and_backtest_ask():
    a = Analysis.from_dict(WRITTEN[Analysis])
    assert isinstance(a.decision, Decision) and a.decision.triggers[0] == TriggerResult("drift", 0.4, 0.25, True, "drift 0.4 > 0.25")
    assert a.quality_score == 1.0 and a.metric_value == 0.8 and a.strategy == "full" and a.window("holdout") == []
    v = Validation.from_dict(WRITTEN[Validation])
    assert v.decision == "reject" and v.failed_gates() == ["improvement (roc_auc)"] and not v.passed
    p = Promotion.from_dict({**WRITTEN[Promotion], "action": "auto-rolled-back",
                             "events": [{"event": "auto-rollback", "reason": "smoke test failed"}]})
    assert p.rolled_back and p.rollback_reasons() == ["smoke test failed"] and not p.promoted
    moved = a.with_train_window([{"path": "b.parquet"}], "refit: newest window")
    assert moved.window("train") == [{"path": "b.parquet"}] and moved.to_dict()["backtest_refit"] == "refit: newest window"
    assert list(moved.to_dict())[-1] == "backtest_refit" and "backtest_refit" not in a.to_dict()


def test_keys_from_another_version_are_kept_when_an_output_is_written_back():
    old = {**WRITTEN[Promotion], "note": "written by a later version"}
    assert Promotion.from_dict(old).to_dict() == old
