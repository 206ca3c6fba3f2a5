"""The run manifest on real files: hashes of the run folder, an atomic record, git state, abandoned runs."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from retrainlib.manifest import (
    MANIFEST,
    OUTCOMES,
    RunManifest,
    StepRecord,
    file_hashes,
    git_commit,
    mark_abandoned,
    this_process,
)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_hashes_cover_every_file_but_the_manifest_and_hidden_ones(tmp_path):
    (tmp_path / "10-analyze-drift").mkdir()
    (tmp_path / "10-analyze-drift" / "drift.json").write_text('{"a": 1}\n')
    (tmp_path / "report.html").write_bytes(b"<html>" + bytes(range(256)) + b"</html>")
    (tmp_path / MANIFEST).write_text("{}\n")
    (tmp_path / ".lease").write_text("x")
    hashes = file_hashes(tmp_path)
    assert hashes == {
        "10-analyze-drift/drift.json": _sha(tmp_path / "10-analyze-drift" / "drift.json"),
        "report.html": _sha(tmp_path / "report.html"),
    }
    (tmp_path / "report.html").write_bytes(b"changed")
    assert file_hashes(tmp_path)["report.html"] == hashlib.sha256(b"changed").hexdigest()


def _manifest(run_id: str = "2024-01-01T000000-demo", **kw) -> RunManifest:
    return RunManifest(run_id=run_id, profile={"path": "params/demo.yaml"}, as_of="2024-03-10", started=RunManifest.now(), **kw)


def test_a_written_manifest_reads_back_with_the_hashes_of_the_files_beside_it(tmp_path):
    (tmp_path / "a.txt").write_text("a\n")
    m = _manifest(steps=[StepRecord("10-analyze-drift", status="succeeded", seconds=1.5)], champion_before="v0001")
    path = m.write(tmp_path)
    assert path == tmp_path / MANIFEST
    back = json.loads(path.read_text())
    assert back["run_id"] == m.run_id and back["champion_before"] == "v0001" and back["status"] == "running"
    assert back["steps"] == [{"name": "10-analyze-drift", "status": "succeeded", "started": None, "finished": None,
                              "seconds": 1.5, "notebook": None, "output": None, "error": None}]
    assert back["files"] == {"a.txt": _sha(tmp_path / "a.txt")}
    assert list(back)[:3] == ["run_id", "profile", "as_of"], "written in field order, not sorted"
    (tmp_path / "b.txt").write_text("b\n")
    m.status, m.outcome, m.exit_code = "succeeded", "promoted", OUTCOMES["promoted"]
    m.write(tmp_path)
    again = json.loads(path.read_text())
    assert set(again["files"]) == {"a.txt", "b.txt"} and again["outcome"] == "promoted" and again["exit_code"] == 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "no temp file left behind"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_git_commit_names_the_commit_and_says_when_tracked_files_changed(tmp_path):
    assert git_commit(tmp_path) is None, "outside a repository"
    _git(tmp_path, "init", "-q")
    (tmp_path / "f.txt").write_text("1\n")
    _git(tmp_path, "add", "f.txt")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    sha = _git(tmp_path, "rev-parse", "HEAD")
    (tmp_path / "untracked.txt").write_text("ignored\n")
    assert git_commit(tmp_path) == sha
    (tmp_path / "f.txt").write_text("2\n")
    assert git_commit(tmp_path) == sha + "+dirty"


def _dead_process() -> dict:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return {"pid": child.pid, "host": socket.gethostname(), "started": 0.0}


def _run(runs: Path, run_id: str, status: str, process: dict) -> Path:
    folder = runs / run_id
    folder.mkdir(parents=True)
    steps = [{"name": "10-analyze-drift", "status": "succeeded"}, {"name": "20-retrain-model", "status": "running"},
             {"name": "30-validate-challenger", "status": "pending"}]
    (folder / MANIFEST).write_text(json.dumps({"run_id": run_id, "status": status, "steps": steps, "process": process}))
    return folder / MANIFEST


def test_a_running_run_whose_process_is_gone_is_marked_abandoned_and_no_other(tmp_path):
    runs = tmp_path / "runs"
    dead = _run(runs, "dead", "running", _dead_process())
    alive = _run(runs, "alive", "running", this_process())
    remote = _run(runs, "remote", "running", {**_dead_process(), "host": "another-host"})
    finished = _run(runs, "finished", "succeeded", _dead_process())
    (runs / "broken").mkdir()
    (runs / "broken" / MANIFEST).write_text("{not json")
    before = {p: p.read_text() for p in (alive, remote, finished)}

    assert mark_abandoned(runs, by="retrain status") == ["dead"]

    m = json.loads(dead.read_text())
    assert (m["status"], m["outcome"], m["exit_code"]) == ("abandoned", "abandoned", OUTCOMES["abandoned"])
    assert [s["status"] for s in m["steps"]] == ["succeeded", "failed", "not-run"]
    assert m["error"]["step"] == "20-retrain-model" and "found by `retrain status`" in m["error"]["message"]
    assert {p: p.read_text() for p in before} == before
    assert mark_abandoned(runs, by="again") == [], "marked once"
    assert mark_abandoned(tmp_path / "no-runs-yet", by="x") == []


@pytest.mark.parametrize("outcome, code", [("promoted", 0), ("no-retrain-needed", 3), ("rejected", 4), ("failed", 1)])
def test_outcomes_map_to_the_documented_exit_codes(outcome, code):
    assert OUTCOMES[outcome] == code
