"""Hostile operations on real runs: a runner SIGKILLed mid-promotion, runs of two models at the same time.

Every process is real: ``retrain run`` in a child process with its papermill kernels, the kernels'
fork server and the smoke-test process; the kill is a real SIGKILL landing at a hold point (the
smoke test writes ``$RETRAIN_SMOKE_HOLD`` and waits), and what is alive afterwards is read from
the process table. Waits are for conditions, each with a deadline; nothing asserts a duration.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from retrainlib.demo import week_end
from retrainlib.freshproc import HOLD_VARIABLE
from retrainlib.registry import Registry
from tests.conftest import make_home
from tests.shared_runs import MODEL, PROFILE, child_env

pytestmark = pytest.mark.slow

#: how long after the runner's SIGKILL every process of its run must be gone (the issue's promise)
DEAD_WITHIN = 1.0


def retrain(home: Path, *args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "retrainlib.cli", *args, "--home", str(home)], cwd=home,
                          capture_output=True, text=True, env=env or child_env(), timeout=timeout)


def alive(proc: psutil.Process) -> bool:
    """Whether ``proc`` still runs (a zombie waiting for its reaper runs no code: not alive)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for_file(path: Path, proc: subprocess.Popen, limit: float = 900) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"retrain run ended (exit {proc.returncode}) before {path.name} appeared: {proc.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{path.name} did not appear within {limit:g} s")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def bootstrapped(tmp_path_factory, demo_batches: Path) -> Path:
    """A tiny home whose champion v0001 was bootstrapped at week 10 (a run at week 22 retrains and promotes)."""
    root = tmp_path_factory.mktemp("ops") / "home"
    shutil.copytree(demo_batches.parent, root / "data" / "demo")
    home = make_home(root)
    first = retrain(home, "run", "--profile", PROFILE, "--as-of", week_end(10).isoformat())
    assert first.returncode == 0, first.stderr[-3000:]
    return home


@pytest.mark.parametrize("target", ["the runner alone", "the runner's process group"])
def test_a_run_sigkilled_during_its_smoke_test_leaves_no_process_and_one_champion_in_history_and_manifest(
        bootstrapped, tmp_path, target):
    home = tmp_path / "home"
    shutil.copytree(bootstrapped, home, symlinks=True)
    reg = Registry(home / "models", MODEL)
    marker = tmp_path / "smoke-started"
    runner = subprocess.Popen([sys.executable, "-m", "retrainlib.cli", "run", "--profile", PROFILE, "--as-of",
                               week_end(22).isoformat(), "--home", str(home)], cwd=home,
                              env=child_env(**{HOLD_VARIABLE: str(marker)}), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for_file(marker, runner)
        smoke = psutil.Process(int(marker.read_text()))
        run = [psutil.Process(runner.pid), *psutil.Process(runner.pid).children(recursive=True)]
        assert smoke in run  # the smoke test is a process of the run (under its kernel)
        assert reg.champion() == "v0002" and reg.champion_record()["smoke_pending"]  # the kill lands mid-promotion
        if target == "the runner alone":
            os.kill(runner.pid, signal.SIGKILL)
        else:
            os.killpg(runner.pid, signal.SIGKILL)
        assert runner.wait() == -signal.SIGKILL
        deadline = time.monotonic() + DEAD_WITHIN
        while any(alive(p) for p in run) and time.monotonic() < deadline:
            time.sleep(0.01)
        left = [f"{p.pid} {p.name()} {p.cmdline()[:4]}" for p in run if alive(p)]
        assert not left, f"alive {DEAD_WITHIN:g} s after the runner's SIGKILL: {left}"
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()

    status = retrain(home, "status", "--profile", PROFILE, "--json")
    assert status.returncode == 0, status.stderr[-3000:]
    (killed,) = [d for d in sorted((home / "runs").iterdir()) if json.loads((d / "manifest.json").read_text())["as_of"]
                 == week_end(22).isoformat()]
    record = json.loads((killed / "manifest.json").read_text())
    assert (record["status"], record["outcome"]) == ("abandoned", "abandoned")
    assert record["error"]["step"] == "40-promote-or-rollback"
    # the unverified promotion was undone, and registry, history and the run's record all say so
    assert json.loads(status.stdout)["champion"] == reg.champion() == reg.history_champion() == "v0001"
    assert record["champion_before"] == "v0001" and record["champion_after"] == "v0001"
    last = reg.history()[-1]
    assert (last.event, last.version, last.previous, last.run_id) == ("auto-rollback", "v0001", "v0002", killed.name)
    assert "smoke_pending" not in reg.champion_record()


def test_two_models_run_at_the_same_time_and_neither_output_nor_record_holds_a_traceback(tmp_path, demo_batches):
    """Two runs' kernels start side by side: none may fail to bind (``Address already in use``) or print a traceback."""
    home = tmp_path / "home"
    shutil.copytree(demo_batches.parent, home / "data" / "demo")
    make_home(home)
    other = yaml.safe_load((home / PROFILE).read_text())
    other.update(name="demo-b", model_name="loan-default-demo-b")
    (home / "params" / "demo-b.yaml").write_text(yaml.safe_dump(other, sort_keys=False))
    as_of = week_end(10).isoformat()
    runs = {profile: subprocess.Popen([sys.executable, "-m", "retrainlib.cli", "run", "--profile", profile, "--as-of", as_of,
                                       "--home", str(home)], cwd=home, env=child_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
            for profile in (PROFILE, "params/demo-b.yaml")}
    outputs = {profile: proc.communicate(timeout=900) for profile, proc in runs.items()}
    for profile, proc in runs.items():
        out, err = outputs[profile]
        assert proc.returncode == 0, err[-3000:]
        assert "Traceback" not in out + err and "ZMQError" not in out + err, err[-3000:]
    folders = sorted(d for d in (home / "runs").iterdir() if d.is_dir())
    assert len(folders) == 2
    for folder in folders:
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["status"] == "succeeded" and manifest["outcome"] == "bootstrapped"
        for text_file in (p for p in folder.rglob("*") if p.suffix in (".log", ".txt", ".json", ".ipynb")):
            text = text_file.read_text(errors="replace")
            assert "Traceback" not in text and "ZMQError" not in text, text_file


def test_retrain_report_over_a_damaged_manifest_lists_the_run_as_damaged_and_names_the_file_in_one_line(tmp_path):
    home = tmp_path / "home"
    (home / "params").mkdir(parents=True)
    run = home / "runs" / "20260105T000000Z-demo"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text('{"run_id": "20260105T000000Z-demo", "status": "runn')  # torn by hand or by a disk
    proc = retrain(home, "report")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    warned = [ln for ln in proc.stderr.splitlines() if "WARNING" in ln]
    assert len(warned) == 1 and f"runs/{run.name}/manifest.json is not JSON" in warned[0], proc.stderr
    assert "1 runs listed" in proc.stdout
    page = (home / "runs" / "index.html").read_text()
    assert f'<tr id="{run.name}">' in page and f"runs/{run.name}/manifest.json is not JSON" in page
