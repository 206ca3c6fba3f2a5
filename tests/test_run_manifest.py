"""The run record typed: RunManifest.load is the one reader, step outputs are referred to by file and sha256.

The fixture ``tests/fixtures/run-before-issue-27/`` is a real run folder written by the code before
the record was typed (commit 28cff0c: the demo's second run, which retrained and promoted): its
manifest copies the step outputs inline (``outputs.decision``, ``outputs.verdict`` …) and the windows
into ``data``. Only its manifest, step JSON files and profile are kept (not the notebooks or plots).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from retrainlib import cli
from retrainlib.durable import sha256_file
from retrainlib.manifest import MANIFEST, ManifestError, RunManifest, StepRecord
from retrainlib.outputs import Analysis
from retrainlib.replay import compare_runs
from retrainlib.report import run_row
from retrainlib.triggers import Decision
from tests.conftest import make_home

OLD_RUN = Path(__file__).parent / "fixtures" / "run-before-issue-27" / "20261206T114626Z-demo"
STEP_FILES = ("10-analyze-drift.json", "20-retrain-model.json", "30-validate-challenger.json", "40-promote-or-rollback.json")


@pytest.fixture
def old_run(tmp_path) -> Path:
    """A copy of the old run folder (the tests may change it)."""
    return Path(shutil.copytree(OLD_RUN, tmp_path / "runs" / OLD_RUN.name))


def test_a_run_folder_written_before_the_record_was_typed_loads_and_reads_its_step_outputs(old_run):
    raw = json.loads((old_run / MANIFEST).read_text())
    assert "verdict" in raw["outputs"] and "windows" in raw["data"], "the fixture is in the old format"
    m = RunManifest.load(old_run)
    assert (m.run_id, m.status, m.outcome, m.exit_code) == (old_run.name, "succeeded", "promoted", 0)
    assert (m.champion_before, m.champion_after, m.challenger) == ("v0002", "v0004", "v0003")
    assert m.profile.name == "demo" and m.profile.model_name == "loan-default-demo" and m.profile.eval_metric == "roc_auc"
    assert m.error is None and [s.status for s in m.steps] == ["succeeded"] * 4
    # the inline copies became references to the step files the old record's file list hashed
    assert {k: r.file for k, r in m.outputs.items()} == {f[:-5]: f for f in STEP_FILES}
    assert all(r.sha256 == raw["files"][r.file] for r in m.outputs.values())
    # read through the step outputs' types: the same values the old record copied
    assert m.analysis.decision.to_dict() == raw["outputs"]["decision"]
    assert m.analysis.windows == raw["data"]["windows"]
    assert m.validation.decision == raw["outputs"]["verdict"]["decision"] == "promote"
    assert m.validation.gates == raw["outputs"]["verdict"]["gates"]
    assert m.promotion.to_dict() == raw["outputs"]["promotion"]
    assert m.training.challenger == raw["outputs"]["training"]["challenger"]
    # what this version does not know is kept and written back
    assert m.extra["data"] == raw["data"] and m.to_dict()["data"] == raw["data"]


def test_the_report_row_of_an_old_run_shows_its_decision_verdict_and_metrics(old_run):
    raw = json.loads((old_run / MANIFEST).read_text())
    row = run_row(old_run)
    assert row["status"] == "succeeded" and row["outcome"] == "promoted" and "damaged" not in row
    assert row["decision"] == raw["outputs"]["decision"]["status"] == "retrain"
    assert row["verdict"] == raw["outputs"]["verdict"]["reasons"]
    assert row["reasons"] == raw["reasons"] and row["model"] == "loan-default-demo"
    assert row["challenger_scores"]["roc_auc"] == raw["metrics"]["challenger"]["roc_auc"]
    assert row["champion_metric"] == raw["outputs"]["performance"]["value"]


def test_replay_compares_an_old_run_with_itself_item_by_item_and_finds_no_difference(old_run):
    checks = compare_runs(old_run, RunManifest.load(old_run))
    names = {c.name for c in checks}
    assert {"decision status", "verdict", "improvement passed", "promotion", "train window", "champion after"} <= names
    assert len(checks) > 50 and not [c for c in checks if c.matched is False]


def test_retrain_status_lists_an_old_run(tmp_path, capsys):
    home = make_home(tmp_path / "home", weeks=2)
    shutil.copytree(OLD_RUN, home / "runs" / OLD_RUN.name)
    assert cli.main(["status", "--home", str(home), "--json"]) == 0
    (run,) = json.loads(capsys.readouterr().out)["runs"]
    assert run == {"run": OLD_RUN.name, "status": "succeeded", "outcome": "promoted", "champion_after": "v0004",
                   "seconds": json.loads((OLD_RUN / MANIFEST).read_text())["seconds"]}


def test_a_step_output_changed_after_the_run_wrote_it_is_refused_naming_the_file(old_run):
    path = old_run / "40-promote-or-rollback.json"
    out = json.loads(path.read_text())
    out["action"] = "rejected"
    path.write_text(json.dumps(out))
    m = RunManifest.load(old_run)
    assert m.analysis.decision.status == "retrain"  # the other outputs still read
    with pytest.raises(ManifestError, match=r"records another sha256 for 40-promote-or-rollback.json") as info:
        m.promotion
    assert str(old_run / MANIFEST) in str(info.value)


@pytest.mark.parametrize("content, problem", [
    ('{"run_id": "x", "status": "succ', "is not JSON"),
    ("[1, 2]", "holds an array instead of a JSON object"),
    ('{"run_id": "x", "steps": "all of them"}', "has a field of an unexpected type: 'steps' is a string, expected an array"),
    ('{"run_id": "x", "steps": ["one"]}', "has a field of an unexpected type"),
    ('{"run_id": "x", "profile": {"resolved": []}}', "has a field of an unexpected type"),
])
def test_a_damaged_record_raises_one_error_naming_the_file_and_what_is_wrong(tmp_path, content, problem):
    (tmp_path / MANIFEST).write_text(content)
    with pytest.raises(ManifestError) as info:
        RunManifest.load(tmp_path)
    assert info.value.problem.startswith(problem) and str(info.value).startswith(f"{tmp_path / MANIFEST} {problem}")
    assert "restore the file" in str(info.value) and "\n" not in str(info.value)


def test_missing_keys_take_their_defaults_and_unknown_ones_are_kept(tmp_path):
    run = tmp_path / "20240101T000000Z-demo"
    run.mkdir()
    (run / MANIFEST).write_text(json.dumps({"steps": [{"name": "10-analyze-drift", "status": "succeeded", "later": 1}],
                                            "from_a_later_version": {"a": 1}}))
    m = RunManifest.load(run)
    assert (m.run_id, m.status, m.outcome, m.profile.model_name, m.error, m.mlflow) == (run.name, "running", None, None, None, None)
    assert m.steps == [StepRecord("10-analyze-drift", "succeeded")] and m.outputs == {} and m.analysis is None
    assert m.to_dict()["from_a_later_version"] == {"a": 1}


def test_a_new_record_refers_to_each_step_output_by_file_and_sha256_instead_of_copying_it(tmp_path):
    analysis = Analysis(None, Decision(True, "retrain", "any", ("drift score 0.4 > drift_threshold 0.25",)), {"score": 1.0},
                        windows={"strategy": "sliding_window", "train": [{"path": "b1.parquet", "sha256": "00"}]})
    (tmp_path / "10-analyze-drift.json").write_text(json.dumps(analysis.to_dict()))
    m = RunManifest(run_id="r1", profile={"name": "demo"}, as_of=None, started=RunManifest.now())
    m.write(tmp_path)
    raw = json.loads((tmp_path / MANIFEST).read_text())
    assert raw["outputs"] == {"10-analyze-drift": {"file": "10-analyze-drift.json",
                                                   "sha256": sha256_file(tmp_path / "10-analyze-drift.json")}}
    assert "data" not in raw and "sliding_window" not in (tmp_path / MANIFEST).read_text()
    back = RunManifest.load(tmp_path)
    assert back.analysis == analysis and back.analysis.window("train") == [{"path": "b1.parquet", "sha256": "00"}]
    assert RunManifest.from_dict(raw).to_dict() == raw
