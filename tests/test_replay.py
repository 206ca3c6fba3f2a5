"""Replay: re-execute a run folder from its record and get the same decisions, or be told why not.

One module fixture runs the demo twice in a tiny home (bootstrap at week 10, retrain and promote at
week 22) and replays the second run with ``retrain replay``; the other tests reuse those folders
(copies where they change something), so the module costs three real runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import pytest

from retrainlib.cli import main
from retrainlib.demo import week_end
from retrainlib.errors import ReplayError
from retrainlib.manifest import RunManifest
from retrainlib.pipeline import run_playbook
from retrainlib.registry import Registry
from retrainlib.replay import ReplayReport, check_inputs, compare_predictions, compare_runs, rebuild_registry, replay
from tests.conftest import make_home

pytestmark = pytest.mark.slow

MODEL = "loan-default-demo"


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """The two demo runs, then ``retrain replay <second run> --json OUT`` (its exit code, stdout and JSON)."""
    root = tmp_path_factory.mktemp("replay")
    # an hour's time limit: 40 boosting rounds on the tiny batches never come near it, so the fit is never cut short by a
    # busy machine's clock (time_limit_binding false) and its predictions can be compared on any machine
    home = make_home(root / "home", max_retraining_time=3600)
    first = run_playbook("params/demo.yaml", home=home, as_of=week_end(10).isoformat(), progress=False)
    second = run_playbook("params/demo.yaml", home=home, as_of=week_end(22).isoformat(), progress=False)
    registry_before = _registry_state(home)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["replay", str(second[1]), "--json", str(root / "replay.json")])
    return {"home": home, "first": first, "second": second, "code": code, "stdout": out.getvalue(),
            "report": json.loads((root / "replay.json").read_text()), "registry_before": registry_before}


def _registry_state(home: Path) -> dict:
    reg = Registry(home / "models", MODEL)
    return {"champion": reg.champion(), "versions": [v.name for v in reg.versions()],
            "history": (reg.path / "history.jsonl").read_text(), "evaluations": (reg.path / "evaluations.jsonl").read_text()}


def _checks(report: dict, kind: str) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"] if c["kind"] == kind}


def _rewrite(step_file: Path, out: dict) -> None:
    """Change a step's output and record the change in its run's manifest (as a run that wrote it would)."""
    step_file.write_text(json.dumps(out))
    RunManifest.load(step_file.parent).write(step_file.parent)


def _copy_home(replayed, tmp_path: Path) -> tuple[Path, Path]:
    home = tmp_path / "home"
    shutil.copytree(replayed["home"], home, symlinks=True)
    return home, home / "runs" / replayed["second"][1].name


def test_replaying_the_retraining_run_gives_identical_decisions_gate_verdicts_and_challenger_predictions(replayed):
    manifest, run_dir = replayed["second"]
    assert manifest.outcome == "promoted", manifest.outputs
    report = replayed["report"]
    assert replayed["code"] == 0, replayed["stdout"]
    assert report["matched"] is True, report["reason"]
    decisions = _checks(report, "decision")
    for name in ("decision status", "decision reasons", "trigger drift fired", "trigger performance fired",
                 "verdict", "promotion", "champion after", "outcome"):
        assert decisions[name]["matched"] is True, decisions[name]
    assert decisions["decision status"]["original"] == "retrain" and decisions["verdict"]["original"] == "promote"
    gates = _checks(report, "gate")
    assert {"improvement passed", "minimum passed", "stability_reload passed"} <= set(gates)
    assert all(g["matched"] for g in gates.values())
    (predictions,) = _checks(report, "predictions").values()
    assert predictions["matched"] is True and predictions["note"] == "identical"
    assert predictions["original"] == predictions["replay"] and predictions["original"].startswith("400 rows")
    assert report["predictions_compared"] is True and report["time_limit_binding"] is False
    metrics = _checks(report, "metric")
    assert len(metrics) > 20 and all(m["matched"] for m in metrics.values())
    assert metrics["challenger roc_auc"]["original"] == metrics["challenger roc_auc"]["replay"]
    assert "MATCHED" in replayed["stdout"] and "verdict" in replayed["stdout"]


def test_the_replay_is_a_new_run_folder_beside_the_original_marked_replay_of(replayed):
    _, run_dir = replayed["second"]
    replay_dir = Path(replayed["report"]["replay_dir"])
    assert replay_dir.parent == run_dir.parent and replay_dir.name.endswith("-replay")
    m = RunManifest.load(replay_dir)
    assert m.replay_of == run_dir.name and m.as_of == RunManifest.load(run_dir).as_of
    assert m.champion_before == "v0001" and m.champion_after == "v0002"
    assert json.loads((replay_dir / "replay.json").read_text())["matched"] is True
    assert "replay.json" in m.files
    assert not list(run_dir.parent.glob(".replay-*")), "the scratch registry is removed"


def test_the_replay_leaves_the_live_registry_untouched(replayed):
    assert _registry_state(replayed["home"]) == replayed["registry_before"]


def test_the_registry_is_rebuilt_as_it_stood_before_the_run(replayed, tmp_path):
    _, run_dir = replayed["second"]
    rebuilt = rebuild_registry(run_dir, tmp_path / "models")
    assert rebuilt["versions"] == ["v0001"] and rebuilt["champion"] == "v0001"
    assert rebuilt["history_rows"] == 1 and rebuilt["evaluation_rows"] == 0
    reg = Registry(tmp_path / "models", MODEL)
    assert reg.champion() == "v0001" and [v.name for v in reg.versions()] == ["v0001"]
    reg.verify("v0001")  # hard links of an immutable version, checksums intact
    assert reg.evaluations() == [] and [e.event for e in reg.history()] == ["promote"]
    first_dir = replayed["first"][1]
    empty = rebuild_registry(first_dir, tmp_path / "before-first")
    assert empty["versions"] == [] and empty["champion"] is None


def test_replay_refuses_naming_the_batch_when_one_byte_of_an_input_changed(replayed, tmp_path):
    home, run_dir = _copy_home(replayed, tmp_path)
    train = RunManifest.load(run_dir).analysis.window("train")
    target = train[len(train) // 2]["path"]
    raw = bytearray((home / target).read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (home / target).write_bytes(bytes(raw))
    runs_before = sorted(p.name for p in (home / "runs").iterdir())

    with pytest.raises(ReplayError, match=rf"batch {target} changed since it was recorded"):
        replay(run_dir)
    assert sorted(p.name for p in (home / "runs").iterdir()) == runs_before, "nothing ran, no scratch left"


def test_replay_refuses_naming_a_missing_batch_and_every_changed_one(replayed, tmp_path):
    home, run_dir = _copy_home(replayed, tmp_path)
    analysis = RunManifest.load(run_dir).analysis
    missing, changed = analysis.window("reference")[0]["path"], analysis.window("holdout")[0]["path"]
    (home / missing).unlink()
    with open(home / changed, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ReplayError, match="2 recorded input") as info:
        check_inputs(run_dir)
    assert f"batch {missing} recorded by an earlier run is missing" in str(info.value)
    assert f"batch {changed} changed" in str(info.value)


def test_retrain_replay_exits_non_zero_with_one_line_naming_the_changed_batch(replayed, tmp_path, capsys):
    home, run_dir = _copy_home(replayed, tmp_path)
    target = RunManifest.load(run_dir).analysis.window("holdout")[0]["path"]
    raw = bytearray((home / target).read_bytes())
    raw[-100] ^= 0xFF
    (home / target).write_bytes(bytes(raw))
    assert main(["replay", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("retrain: error: cannot replay") and target in err


def test_a_different_verdict_or_metric_is_a_mismatch_and_a_tiny_float_difference_is_not(replayed, tmp_path):
    original = replayed["second"][1]
    edited = tmp_path / "edited"
    shutil.copytree(replayed["report"]["replay_dir"], edited)
    path = edited / "30-validate-challenger.json"
    out = json.loads(path.read_text())
    out["scores"]["champion"]["roc_auc"] += 1e-9  # within the default tolerance
    out["scores"]["challenger"]["roc_auc"] -= 0.02
    out["decision"] = "reject"
    for gate in out["gates"]:
        if gate["name"] == "improvement":
            gate["passed"] = False
    _rewrite(path, out)

    checks = compare_runs(original, edited)
    bad = {c.name for c in checks if c.matched is False}
    assert bad == {"verdict", "improvement passed", "challenger roc_auc"}
    report = ReplayReport(original.name, edited.name, str(edited), 1e-6, False, False, tuple(checks))
    assert report.matched is False
    assert report.reason().startswith(f"replay {edited.name} of {original.name} differs in 3 item(s): ")
    assert "verdict: promote -> reject" in report.reason()
    with pytest.raises(FrozenInstanceError):
        report.tolerance = 1.0  # type: ignore[misc]
    assert replace(report, checks=tuple(c for c in checks if c.matched is not False)).matched is True


def test_when_the_original_fit_hit_its_time_limit_replay_says_so_and_compares_decisions_and_metrics_only(replayed, tmp_path):
    home, run_dir = _copy_home(replayed, tmp_path)
    path = run_dir / "20-retrain-model.json"
    out = json.loads(path.read_text())
    out["time_limit_binding"] = True
    _rewrite(path, out)
    replay_dir = home / "runs" / Path(replayed["report"]["replay_dir"]).name

    check = compare_predictions(run_dir, replay_dir, scratch_registry=tmp_path / "no-registry-needed")
    assert check.matched is None and "time limit was binding" in check.note
    checks = [*compare_runs(run_dir, replay_dir), check]
    report = ReplayReport(run_dir.name, replay_dir.name, str(replay_dir), 1e-6, True, False, tuple(checks))
    assert report.matched is True
    assert "predictions" not in report.reason() and "decisions, gate verdicts and metrics" in report.reason()
    assert "DIFF" not in report.to_text() and "not compared: the original fit's time limit was binding" in report.to_text()


def test_a_replay_folder_is_not_replayed_again_and_points_at_the_original(replayed):
    _, run_dir = replayed["second"]
    with pytest.raises(ReplayError, match=rf"is itself a replay of {run_dir.name}.*replay the original: runs/{run_dir.name}"):
        replay(replayed["report"]["replay_dir"])
