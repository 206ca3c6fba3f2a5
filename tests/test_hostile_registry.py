"""Hostile inputs and faults against the registry, the run lock, data quality and resources.

Each case asserts the exit code (or the error class), one line naming the file, key or column,
no traceback, nothing written (or a complete failed record where a run had started), and the
champion unchanged. Faults are real: a process really SIGKILLed at a known point (a marker file
the smoke test writes), a lock really held by another process, a fit really stopped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from retrainlib.cli import EXIT_LOCKED
from retrainlib.errors import ExitCode
from retrainlib.freshproc import HOLD_VARIABLE as HOLD_ENV
from retrainlib.manifest import OUTCOMES
from retrainlib.registry import Registry
from tests.conftest import REPO

EXIT_INTEGRITY = ExitCode.INTEGRITY

MODEL = "loan-default-demo"
PROFILE = "params/demo.yaml"


# ---- helpers ---------------------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONPATH=str(REPO))
    env.pop("RETRAIN_HOME", None)
    env.pop("RETRAIN_RUN_LOCK_HELD", None)
    env.pop(HOLD_ENV, None)
    env.update(extra)
    return env


def retrain(home: Path, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``retrain <args> --home <home>`` in a child process."""
    return subprocess.run([sys.executable, "-m", "retrainlib.cli", *args, "--home", str(home)], cwd=home,
                          capture_output=True, text=True, env=env or child_env(), timeout=timeout)


def message_lines(stderr: str) -> list[str]:
    """What the command said on stderr, less log lines (``<date> <logger> LEVEL ...``)."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln[:4].isdigit()]


def one_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The command said exactly one line on stderr, without a traceback, holding every needle."""
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-3000:]
    lines = message_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr[-3000:]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def snapshot(reg: Registry) -> dict[str, bytes]:
    """The registry's record files, to prove a refusal changed nothing."""
    return {f: (reg.path / f).read_bytes() for f in ("CHAMPION", "history.jsonl") if (reg.path / f).exists()}


def seeded(home: Path, clone: Path, n: int = 3) -> Registry:
    """The home's registry with ``n`` real versions; v0001 then v0002 promoted (v0002 champion)."""
    reg = Registry(home / "models", MODEL)
    for i in range(n):
        reg.add_version(clone, {"note": f"seed {i}"}, run_id="20260101T000000Z-demo")
    reg.promote("v0001", run_id="20260101T000000Z-demo", reason="bootstrap")
    reg.promote("v0002", run_id="20260102T000000Z-demo", reason="second")
    return reg


def kill_tree(proc: subprocess.Popen) -> int:
    """SIGKILL a child process and every descendant (collected first, so none escapes as an orphan).

    Returns the child's return code (``-9`` when the kill ended it).
    """
    root = psutil.Process(proc.pid)
    descendants = root.children(recursive=True)
    for p in (root, *descendants):
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    code = proc.wait()  # reaped by Popen itself, so its return code is the signal
    psutil.wait_procs(descendants, timeout=30)
    return code


def wait_for(path: Path, proc: subprocess.Popen, what: str, limit: float = 600) -> None:
    """Wait until ``path`` exists; fail (not flake) if ``proc`` ends first or it never comes."""
    deadline = time.monotonic() + limit
    while not path.exists():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"{what}: the process ended (exit {proc.returncode}) before {path.name} appeared: {out[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: {path.name} did not appear within {limit:g} s")
        time.sleep(0.05)


@pytest.fixture
def reg_home(fast_home: Path, clone: Path) -> tuple[Path, Registry]:
    return fast_home, seeded(fast_home, clone)


# ---- item 4: a damaged CHAMPION pointer ------------------------------------------------------

DAMAGED_POINTERS = {
    "not-json": b'{"version": "v0002", ',
    "empty-file": b"",
    "not-utf8": b"\xff\xfe\x00garbage",
    "a-list": b'["v0002"]',
    "no-version-key": b'{"since": "2026-01-02T00:00:00+00:00"}',
    "path-as-version": b'{"version": "../../etc/passwd", "since": "2026-01-03T00:00:00+00:00"}',
}


@pytest.mark.parametrize("damage", sorted(DAMAGED_POINTERS))
def test_a_damaged_pointer_makes_status_warn_in_one_line_run_refuse_and_rollback_to_repair_it(reg_home, damage):
    home, reg = reg_home
    (reg.path / "CHAMPION").write_bytes(DAMAGED_POINTERS[damage])
    before = snapshot(reg)

    status = retrain(home, "status", "--profile", PROFILE)
    assert status.returncode == 0, status.stderr
    one_line(status, "warning", "CHAMPION", "retrain rollback --to v0002")
    assert "damaged CHAMPION pointer" in status.stdout and "v0003" in status.stdout  # versions still listed
    assert retrain(home, "history", "--profile", PROFILE).returncode == 0
    assert snapshot(reg) == before  # reading commands neither repair nor record anything

    run = retrain(home, "run", "--profile", PROFILE)
    assert run.returncode == EXIT_INTEGRITY
    one_line(run, "CHAMPION", "retrain rollback --to v0002")
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())  # nothing written
    assert snapshot(reg) == before

    guess = retrain(home, "rollback", "--profile", PROFILE)  # "the previous champion" of a damaged pointer
    assert guess.returncode == EXIT_INTEGRITY
    one_line(guess, "CHAMPION", "--to v0002")
    assert snapshot(reg) == before

    repair = retrain(home, "rollback", "--profile", PROFILE, "--to", "v0002")
    assert repair.returncode == OUTCOMES["rolled-back"], repair.stderr
    assert reg.champion() == "v0002" and reg.pointer_problem() is None
    last = reg.history()[-1]
    assert (last.event, last.version, last.previous, last.run_id) == ("rollback", "v0002", "v0002", None)
    assert "repaired the damaged CHAMPION pointer" in last.reason
    assert [e.version for e in reg.history()] == ["v0001", "v0002", "v0002"]  # nothing invented
    assert "warning" not in retrain(home, "status", "--profile", PROFILE).stderr
    reg.load()


def test_a_pointer_to_a_missing_version_credited_to_a_real_run_never_becomes_a_history_line(reg_home):
    home, reg = reg_home
    forged = {**reg.champion_record(), "version": "v0099", "replaced": "v0002", "since": "2099-01-01T00:00:00+00:00",
              "event": "promote", "run_id": "20260102T000000Z-demo"}
    (reg.path / "CHAMPION").write_text(json.dumps(forged))
    before = snapshot(reg)

    status = retrain(home, "status", "--profile", PROFILE, "--json")
    assert status.returncode == 0
    one_line(status, "points to version 'v0099'", "not in models/loan-default-demo", "--to v0002")
    shown = json.loads(status.stdout)
    assert shown["champion"] is None and "v0099" in shown["pointer_problem"]
    for args in (["history"], ["rollback"], ["status"]):
        retrain(home, *args, "--profile", PROFILE)
    assert snapshot(reg) == before  # no "promote v0099" line credited to the real run
    assert all(e.version != "v0099" for e in reg.history())
    with pytest.raises(Exception, match="v0099"):
        reg.load()


def test_a_pointer_edited_to_another_stored_version_is_reported_not_written_into_history(reg_home):
    home, reg = reg_home
    edited = {**reg.champion_record(), "version": "v0003", "since": "2099-01-01T00:00:00+00:00"}
    (reg.path / "CHAMPION").write_text(json.dumps(edited))
    before = snapshot(reg)

    status = retrain(home, "status", "--profile", PROFILE)
    one_line(status, "says the champion is v0003", "history.jsonl says v0002", "--to v0002")
    run = retrain(home, "run", "--profile", PROFILE)
    assert run.returncode == EXIT_INTEGRITY
    one_line(run, "history.jsonl says v0002")
    assert snapshot(reg) == before and [e.version for e in reg.history()] == ["v0001", "v0002"]

    assert retrain(home, "rollback", "--profile", PROFILE, "--to", "v0002").returncode == OUTCOMES["rolled-back"]
    assert reg.champion() == "v0002" and reg.pointer_problem() is None


def test_a_kill_between_pointer_and_history_line_is_still_completed_from_the_pointer(reg_home):
    """The one case where recovery writes a line: the pointer continues the history by one swap."""
    home, reg = reg_home
    rec = {**reg.champion_record(), "version": "v0003", "previous": "v0002", "replaced": "v0002",
           "since": "2099-01-01T00:00:00+00:00", "event": "promote", "reason": "killed before its line"}
    (reg.path / "CHAMPION").write_text(json.dumps(rec))
    assert reg.pointer_problem() is None
    status = retrain(home, "status", "--profile", PROFILE)
    assert status.returncode == 0 and "warning" not in status.stderr
    assert [(e.event, e.version, e.previous) for e in reg.history()][-1] == ("promote", "v0003", "v0002")


# ---- item 2: a crash while the new champion awaits its smoke test ----------------------------

PROMOTE_VERIFIED = """
import sys
from pathlib import Path
import pandas as pd
from retrainlib.registry import Registry
reg = Registry(Path(sys.argv[1]), sys.argv[2])
reg.promote_verified(sys.argv[3], pd.read_parquet(sys.argv[4]), run_id="20260103T000000Z-demo", reason="fault test")
"""


def test_sigkill_while_the_pointer_awaits_its_smoke_test_shows_the_old_champion_in_status(reg_home, sample, tmp_path):
    home, reg = reg_home
    sample_path = tmp_path / "sample.parquet"
    sample.to_parquet(sample_path, index=False)
    marker = tmp_path / "smoke-started"
    proc = subprocess.Popen([sys.executable, "-c", PROMOTE_VERIFIED, str(reg.root), MODEL, "v0003", str(sample_path)],
                            cwd=REPO, env=child_env(**{HOLD_ENV: str(marker)}), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    wait_for(marker, proc, "promote_verified")
    assert reg.champion_record()["smoke_pending"] and reg.champion() == "v0003"  # the window the kill lands in
    assert kill_tree(proc) == -signal.SIGKILL

    status = retrain(home, "status", "--profile", PROFILE, "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["champion"] == "v0002"  # recovered before it read
    rec = reg.champion_record()
    assert rec["version"] == "v0002" and "smoke_pending" not in rec
    last = reg.history()[-1]
    assert (last.event, last.version, last.previous) == ("auto-rollback", "v0002", "v0003")
    assert "never answered" in last.reason
    reg.load()


def test_a_run_killed_during_promotion_is_marked_abandoned_and_the_next_run_judges_the_recovered_champion(fast_home, tmp_path):
    home = fast_home
    reg = Registry(home / "models", MODEL)
    marker = tmp_path / "smoke-started"
    proc = subprocess.Popen([sys.executable, "-m", "retrainlib.cli", "run", "--profile", PROFILE, "--home", str(home)],
                            cwd=home, env=child_env(**{HOLD_ENV: str(marker)}), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    wait_for(marker, proc, "retrain run (bootstrap)")
    assert reg.champion() == "v0001" and reg.champion_record()["smoke_pending"]
    assert kill_tree(proc) == -signal.SIGKILL
    (killed,) = sorted((home / "runs").iterdir())
    record = json.loads((killed / "manifest.json").read_text())
    assert record["status"] == "running"  # what SIGKILL leaves: nobody wrote the end
    assert record["process"]["pid"] == proc.pid and record["process"]["host"] == socket.gethostname()

    status = retrain(home, "status", "--profile", PROFILE, "--json")
    shown = json.loads(status.stdout)
    assert shown["champion"] is None  # the unverified bootstrap was rolled back before status read
    assert shown["runs"][0]["status"] == "abandoned"
    record = json.loads((killed / "manifest.json").read_text())
    assert record["outcome"] == "abandoned" and record["exit_code"] == 1
    assert record["error"]["step"] == "40-promote-or-rollback" and f"pid {proc.pid}" in record["error"]["message"]
    assert [s["status"] for s in record["steps"]] == ["succeeded", "succeeded", "succeeded", "failed"]

    nxt = retrain(home, "run", "--profile", PROFILE, "--json")
    assert nxt.returncode == 0, nxt.stderr[-3000:]
    summary = json.loads(nxt.stdout)
    assert summary["champion_before"] is None and summary["outcome"] == "bootstrapped"
    assert summary["champion_after"] == "v0002" == reg.champion()
    assert [(e.event, e.version) for e in reg.history()] == [("promote", "v0001"), ("auto-rollback", None),
                                                           ("promote", "v0002")]


def test_a_run_on_another_host_or_still_alive_is_not_marked_abandoned(tmp_path):
    from retrainlib.manifest import mark_abandoned, this_process

    runs = tmp_path / "runs"
    alive = {"run_id": "alive", "status": "running", "steps": [], "process": this_process()}
    remote = {"run_id": "remote", "status": "running", "steps": [],
              "process": {"pid": 1, "host": "another-host.invalid", "started": 0}}
    legacy = {"run_id": "legacy", "status": "running", "steps": []}  # written before runs recorded their process
    for m in (alive, remote, legacy):
        (runs / m["run_id"]).mkdir(parents=True)
        (runs / m["run_id"] / "manifest.json").write_text(json.dumps(m))
    (runs / "torn").mkdir()
    (runs / "torn" / "manifest.json").write_text('{"status": "runn')
    assert mark_abandoned(runs, by="test") == []
    reused = {**this_process(), "started": this_process()["started"] - 3600}  # the pid now belongs to another process
    (runs / "alive" / "manifest.json").write_text(json.dumps({**alive, "process": reused}))
    assert mark_abandoned(runs, by="test") == ["alive"]


# ---- item 10: hand-run steps take the run lock -----------------------------------------------

HOLD_RUN_LOCK = """
import sys, time
from pathlib import Path
from retrainlib.registry import Registry
with Registry(Path(sys.argv[1]), sys.argv[2]).run_lock():
    Path(sys.argv[3]).write_text("held")
    time.sleep(3600)
"""


def test_a_hand_run_papermill_step_refuses_in_one_line_while_another_process_holds_the_run_lock(reg_home, tmp_path):
    import papermill as pm

    home, reg = reg_home
    held = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_RUN_LOCK, str(reg.root), MODEL, str(held)], cwd=REPO,
                              env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    before = snapshot(reg)
    try:
        wait_for(held, holder, "run-lock holder")
        with pytest.raises(pm.PapermillExecutionError) as info:
            pm.execute_notebook(str(REPO / "notebooks" / "10-analyze-drift.ipynb"), str(tmp_path / "out.ipynb"),
                                parameters={"profile": PROFILE, "run_dir": "", "home": str(home), "as_of": ""},
                                cwd=str(home), kernel_name="python3", progress_bar=False)
    finally:
        holder.kill()
        holder.wait()
    assert info.value.ename == "RunLocked"
    assert "another run of model 'loan-default-demo' holds" in info.value.evalue and "\n" not in info.value.evalue
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())  # no interactive folder opened
    assert snapshot(reg) == before


HAND_STEP = """
import sys, time
from pathlib import Path
from retrainlib import steps
ctx = steps.open_step("params/demo.yaml", "", sys.argv[1], "", new_run=True)
with steps.run_lock_of(ctx):
    Path(sys.argv[2]).write_text("in step")
    time.sleep(3600)
"""


def test_retrain_run_is_refused_with_exit_75_while_a_hand_run_step_is_working(reg_home, tmp_path):
    home, reg = reg_home
    inside = tmp_path / "inside"
    step = subprocess.Popen([sys.executable, "-c", HAND_STEP, str(home), str(inside)], cwd=home, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(inside, step, "hand-run step")
        run = retrain(home, "run", "--profile", PROFILE)
    finally:
        step.kill()
        step.wait()
    assert run.returncode == EXIT_LOCKED
    one_line(run, "skipped", "loan-default-demo", ".run.lock")
    assert [p.name.endswith("-interactive") for p in (home / "runs").iterdir()] == [True]  # only the hand-run's folder
    assert reg.champion() == "v0002"


def test_every_step_function_runs_under_the_run_lock(reg_home):
    from retrainlib import steps
    from retrainlib.errors import RunLocked

    home, reg = reg_home
    ctx = steps.open_step(PROFILE, str(home / "runs" / "by-hand"), str(home), "")
    with reg.run_lock(timeout=0):  # another holder (a separate lock object: a separate open file)
        for step in (steps.analyze_drift, steps.retrain_model, steps.validate_challenger, steps.promote_or_rollback):
            with pytest.raises(RunLocked, match="holds .*run.lock"):
                step(ctx)
    assert reg.champion() == "v0002" and not list((home / "runs" / "by-hand").iterdir())


# ---- item 11: resource thresholds act, and are seen ------------------------------------------


def memory_threshold_of(limit_bytes: int) -> float:
    """``memory_threshold`` that puts the limit at ``limit_bytes`` on this machine (a fit needs far more)."""
    return limit_bytes / psutil.virtual_memory().total


def test_a_fit_above_memory_threshold_is_stopped_with_its_workers_in_one_line(tmp_path):
    from retrainlib.errors import ResourceLimitExceeded
    from retrainlib.training import train_challenger
    from tests.test_training import profile, train_frame

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(ResourceLimitExceeded) as info:  # 20 MiB: less than a Python with pandas imported
        train_challenger(train_frame(), profile=profile(memory_threshold=memory_threshold_of(20 * 2**20)),
                         work_dir=tmp_path / "fit", disk_path=tmp_path, sample_interval=0.1)
    msg = str(info.value)
    assert "\n" not in msg and "memory_threshold" in msg and "the champion is untouched" in msg
    assert "training used" in msg and "MiB" in msg
    assert not (tmp_path / "fit" / "predictor").exists()
    from retrainlib.freshproc import warm_server_pids

    left = {p.pid for p in psutil.Process().children(recursive=True)} - before - warm_server_pids()
    assert not left  # no fit left running (the warm fork server stays, by design)


def test_a_run_whose_fit_passes_memory_threshold_leaves_a_complete_failed_record_and_exits_9(fast_home):
    import yaml

    home = fast_home
    prof = yaml.safe_load((home / PROFILE).read_text())
    prof["memory_threshold"] = memory_threshold_of(20 * 2**20)
    (home / PROFILE).write_text(yaml.safe_dump(prof, sort_keys=False))

    run = retrain(home, "run", "--profile", PROFILE, "--json")
    assert run.returncode == 9, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    (run_dir,) = sorted((home / "runs").iterdir())
    m = json.loads((run_dir / "manifest.json").read_text())
    assert (m["status"], m["outcome"], m["exit_code"]) == ("failed", "failed", 9)
    assert [s["status"] for s in m["steps"]] == ["succeeded", "failed", "not-run", "not-run"]
    assert m["error"]["step"] == "20-retrain-model"
    assert m["error"]["message"].startswith("ResourceLimitExceeded: training stopped to protect the host")
    assert m["finished"] and m["champion_after"] is None
    assert not list((home / "models" / MODEL).glob("v*"))  # no version written


def test_resource_thresholds_crossed_while_training_reach_the_manifest_report_and_notification(fast_home):
    import yaml

    home = fast_home
    prof = yaml.safe_load((home / PROFILE).read_text())
    prof["cpu_threshold"] = 0.0001  # any fit uses more than 0.01% of the machine's CPU
    (home / PROFILE).write_text(yaml.safe_dump(prof, sort_keys=False))

    run = retrain(home, "run", "--profile", PROFILE, "--json")
    assert run.returncode == 0, run.stderr[-3000:]
    (run_dir,) = sorted((home / "runs").iterdir())
    m = json.loads((run_dir / "manifest.json").read_text())
    assert any(w.startswith("cpu use reached") and "cpu_threshold 0%" in w for w in m["warnings"]), m["warnings"]
    notice = [ln for ln in run.stderr.splitlines() if "bootstrapped (run" in ln]
    assert notice and "resource warnings: cpu use reached" in notice[0]
    report = retrain(home, "report")
    assert report.returncode == 0, report.stderr
    assert "resource warning: cpu use reached" in (home / "runs" / "index.html").read_text()


def test_the_disk_check_estimates_from_the_rows_and_champion_and_names_every_folder_written(tmp_path):
    from retrainlib.errors import TrainingError
    from retrainlib.monitoring import check_disk, disk_needs

    work, registry = tmp_path / "fit", tmp_path / "models" / MODEL
    first = disk_needs(30 * 2**20, work_dir=work, registry=registry)
    later = disk_needs(30 * 2**20, work_dir=work, registry=registry, version_bytes=200 * 2**20)
    assert first == {work: 30 * 2**20 + 2 * 120 * 2**20, registry: 120 * 2**20}  # 4x the rows without a champion
    assert later == {work: 430 * 2**20, registry: 200 * 2**20}  # a champion's size when there is one
    with pytest.raises(TrainingError) as info:
        check_disk(later, disk_threshold=0.01)
    msg = str(info.value)
    assert f"{work} (430 MiB) and {registry} (200 MiB)" in msg and "disk_threshold 1%" in msg and "\n" not in msg
    assert not work.exists() and not registry.exists()
    check_disk(later, disk_threshold=1.0)  # folders that do not exist yet are checked on their parent's disk


# ---- item 3: a corrupt batch never gets a challenger trained ---------------------------------


def batch_file(home: Path, week: int) -> Path:
    from retrainlib.demo import week_end

    return home / f"data/demo/batches/{week_end(week)}.parquet"


def corrupt(home: Path, week: int, change) -> str:
    import pandas as pd

    path = batch_file(home, week)
    frame = pd.read_parquet(path)
    change(frame)
    frame.to_parquet(path, index=False)
    return path.relative_to(home).as_posix()


def analyze(home: Path, week: int, name: str):
    from retrainlib import steps
    from retrainlib.demo import week_end

    ctx = steps.open_step(PROFILE, str(home / "runs" / name), str(home), week_end(week).isoformat())
    return ctx, steps.analyze_drift(ctx)


def assert_blocked_before_training(ctx, analysis, *needles: str) -> str:
    from retrainlib import steps

    assert analysis.decision.status == "blocked-by-quality" and not analysis.decision.retrain
    reason = analysis.decision.reasons[0]
    assert "\n" not in reason
    for n in needles:
        assert n in reason, (n, reason)
    trained = steps.retrain_model(ctx)
    assert trained.status == "skipped" and "blocked-by-quality" in trained.reason
    assert ctx.registry.champion() == "v0001" and [v.name for v in ctx.registry.versions()] == ["v0001"]
    return reason


def test_the_clean_demo_window_is_not_blocked_by_the_per_batch_and_holdout_checks(qhome):
    _, analysis = analyze(qhome, 18, "clean")
    assert analysis.decision.status != "blocked-by-quality", analysis.decision.reasons
    assert len(analysis.batch_quality) == 9 and all(b["passed"] for b in analysis.batch_quality)
    assert analysis.holdout_check["passed"] and analysis.holdout_check["classes"] == 2


def test_a_feature_empty_in_one_batch_of_nine_blocks_although_the_window_dilutes_it_to_11_percent(qhome):
    import numpy as np

    path = corrupt(qhome, 15, lambda f: f.__setitem__("income", np.nan))
    ctx, analysis = analyze(qhome, 18, "empty-feature")  # current window: weeks 10-18, nine batches
    window_missing = next(c for c in analysis.detail.quality.checks if c.name == "missing_values")
    assert 0.10 < window_missing.value < 0.12  # what the window alone saw
    assert_blocked_before_training(ctx, analysis, f"batch {path}", "empty_columns", "income")


@pytest.mark.parametrize("value", [float("inf"), float("-inf")], ids=["plus-inf", "minus-inf"])
def test_infinite_values_in_one_feature_of_one_batch_block(qhome, value):
    def change(f):
        f.loc[f.index[:3], "debt_to_income"] = value

    path = corrupt(qhome, 13, change)
    ctx, analysis = analyze(qhome, 14, "inf")
    assert_blocked_before_training(ctx, analysis, path, "infinite_values", "debt_to_income", "3 of")


def test_a_label_class_never_seen_blocks_and_names_the_value(qhome):
    def change(f):
        f.loc[f.index[:5], "default"] = 2

    path = corrupt(qhome, 12, change)
    ctx, analysis = analyze(qhome, 14, "new-class")
    assert_blocked_before_training(ctx, analysis, path, "unseen_labels", "never seen (2", "known: 0, 1")


def test_an_infinite_label_blocks(qhome):
    def change(f):
        f["default"] = f["default"].astype(float)
        f.loc[f.index[:2], "default"] = float("inf")

    path = corrupt(qhome, 12, change)
    ctx, analysis = analyze(qhome, 14, "inf-label")
    assert_blocked_before_training(ctx, analysis, path, "infinite_values", "default")


def test_a_holdout_without_labels_is_refused_at_step_10_before_a_challenger_is_trained(qhome):
    import numpy as np

    path = corrupt(qhome, 14, lambda f: f.__setitem__("default", np.nan))
    ctx, analysis = analyze(qhome, 14, "unlabelled-holdout")
    assert analysis.holdout_check["labelled_rows"] == 0
    assert_blocked_before_training(ctx, analysis, f"the holdout {path} has no labelled row")


def test_a_one_class_holdout_is_refused_before_it_can_raise_a_library_error_at_validation(qhome):
    path = corrupt(qhome, 14, lambda f: f.__setitem__("default", 0))
    ctx, analysis = analyze(qhome, 14, "one-class")
    assert analysis.holdout_check["classes"] == 1
    assert_blocked_before_training(ctx, analysis, f"the holdout {path} holds one 'default' class only")


def test_a_holdout_failing_its_own_quality_checks_is_refused(qhome):
    def change(f):
        f.loc[f.index[:4], "income"] = float("inf")

    path = corrupt(qhome, 14, change)
    ctx, analysis = analyze(qhome, 14, "bad-holdout")
    assert not analysis.holdout_check["passed"]
    assert any(path in p and "infinite_values" in p for p in analysis.holdout_check["problems"])
    assert_blocked_before_training(ctx, analysis, path, "infinite_values")


def test_a_first_run_whose_training_batch_has_an_empty_feature_exits_5_without_training(fast_home):
    import numpy as np

    from retrainlib.demo import week_end

    home = fast_home
    path = corrupt(home, 7, lambda f: f.__setitem__("credit_score", np.nan))
    run = retrain(home, "run", "--profile", PROFILE, "--as-of", week_end(10).isoformat(), "--json")
    assert run.returncode == 5, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    summary = json.loads(run.stdout)
    assert summary["outcome"] == "blocked-by-quality" and summary["challenger"] is None
    (reason,) = summary["reasons"]
    assert path in reason and "empty_columns" in reason and "credit_score" in reason
    (run_dir,) = sorted((home / "runs").iterdir())
    assert json.loads((run_dir / "20-retrain-model.json").read_text())["status"] == "skipped"
    assert not (home / "models" / MODEL).exists() or not list((home / "models" / MODEL).glob("v*"))
