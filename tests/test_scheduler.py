"""The scheduler: two real `retrain schedule` processes on one registry, SIGTERM, coalesced missed runs."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from apscheduler.triggers.base import BaseTrigger

from retrainlib.errors import ProfileError
from retrainlib.profiles import ScheduleSettings
from retrainlib.registry import Registry
from retrainlib.scheduler import Scheduler, make_trigger
from tests.conftest import make_home
from tests.hold_points import KernelHold, wait_until
from tests.shared_runs import MODEL, PROFILE, bootstrapped_home, child_env, manifests, set_notify

SKIPPED = "skipped a scheduled run: another run of model 'loan-default-demo' holds"
STEPS = ("10-analyze-drift", "20-retrain-model", "30-validate-challenger", "40-promote-or-rollback")


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _running_step(home: Path, known: set[str]) -> tuple[str, str] | None:
    """(run folder, step) of a run that is not one of ``known`` and whose running step's notebook exists."""
    for d in sorted((home / "runs").glob("2*")):
        if d.name in known:
            continue
        try:
            m = json.loads((d / "manifest.json").read_text())
        except (OSError, ValueError):
            continue
        step = next((s for s in m["steps"] if s["status"] == "running"), None)
        if m["status"] == "running" and step and (d / f"{step['name']}.ipynb").exists():  # papermill has begun
            return d.name, step["name"]
    return None


@pytest.fixture(scope="module")
def two_schedulers(tmp_path_factory):
    """Two `retrain schedule` processes every 3 s on one home until two runs finished and the kernel of a later
    one is held before a cell (:class:`tests.hold_points.KernelHold`, armed once two runs finished) while the other
    scheduler skips a turn; then SIGTERM to both."""
    boot = bootstrapped_home(tmp_path_factory, "two-schedulers")
    home = boot.home
    set_notify(home)  # no webhook here: test_notify covers it
    before = {d.name for d in (home / "runs").iterdir()}
    hold = KernelHold(home.parent / "kernel-hold")
    logs, procs = [], []
    for i in range(2):
        log = home.parent / f"scheduler-{i}.log"
        logs.append(log)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "retrainlib.cli", "schedule", "--profile", PROFILE, "--home", str(home),
             "--every-minutes", "0.05", "--no-report"],
            cwd=home, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=child_env(**hold.env())))
    interrupted = None
    try:
        wait_until(lambda: len([m for m in manifests(home, settled=False)
                                if m["run_id"] not in before and m["status"] != "running"]) >= 2,
                   "two scheduled runs did not finish", limit=900, procs=procs)
        hold.arm()  # the next kernel to start a cell stops there: a run inside a step, its kernel busy
        wait_until(hold.held_pid, "no later run's kernel reached the hold", limit=900, procs=procs)
        seen = {m["run_id"] for m in manifests(home, settled=False) if m["status"] != "running"}
        interrupted = _running_step(home, seen)[0]
        # while it is held, the other scheduler's turns come and find the model's run lock held
        wait_until(lambda: any(SKIPPED in log.read_text() for log in logs), "no turn was skipped for the held run",
                   limit=300, procs=procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=600) for p in procs]
    return {"home": home, "before": before, "logs": [log.read_text() for log in logs], "codes": codes,
            "interrupted": interrupted}


def test_two_schedulers_on_one_registry_never_run_at_the_same_time(two_schedulers):
    runs = manifests(two_schedulers["home"])
    new = [m for m in runs if m["run_id"] not in two_schedulers["before"]]
    assert two_schedulers["interrupted"], "no run was held in a step:\n" + "\n".join(two_schedulers["logs"])
    assert len(new) >= 2
    spans = sorted((_when(m["started"]), _when(m["finished"]), m["run_id"]) for m in runs)
    for (s1, f1, a), (s2, f2, b) in zip(spans, spans[1:]):
        assert f1 <= s2, f"{a} ({s1}..{f1}) overlaps {b} ({s2}..{f2})"
    # the scheduler that did not hold the lock said why it skipped its turns
    all_logs = "\n".join(two_schedulers["logs"])
    assert SKIPPED in all_logs


def test_no_run_record_is_corrupt_and_the_champion_loads_after_the_schedulers_stop(two_schedulers):
    home = two_schedulers["home"]
    for m in manifests(home):  # each parses (manifests() reads them all)
        assert m["status"] in ("succeeded", "failed"), m["run_id"]
        assert m["finished"] and m["outcome"] and m["exit_code"] is not None
        assert all(s["status"] in ("succeeded", "failed", "not-run") for s in m["steps"]), m["steps"]
        assert m["champion_after"] == "v0001"
    reg = Registry(home / "models", MODEL)
    assert reg.champion() == "v0001"
    reg.verify("v0001")
    predictor = reg.load()
    assert predictor.predict_proba is not None


def test_sigterm_during_a_scheduled_run_leaves_a_complete_failed_record_and_both_schedulers_exit_cleanly(two_schedulers):
    home, run_id = two_schedulers["home"], two_schedulers["interrupted"]
    assert two_schedulers["codes"] == [0, 0], two_schedulers["logs"]
    m = json.loads((home / "runs" / run_id / "manifest.json").read_text())
    assert m["status"] == "failed" and m["outcome"] == "failed" and m["exit_code"] == 1
    step = m["error"]["step"]
    assert m["error"] == {"step": step, "message": "interrupted (Terminated)"}
    statuses = {s["name"]: s["status"] for s in m["steps"]}
    assert statuses[step] == "failed"
    assert all(statuses[s] == "succeeded" for s in STEPS[: STEPS.index(step)])
    assert all(statuses[s] == "not-run" for s in STEPS[STEPS.index(step) + 1:])
    assert m["notifications"][0] == {**m["notifications"][0], "channel": "log", "event": "failed"}
    assert (home / "runs" / run_id / f"{step}.ipynb").exists()  # papermill's partial notebook is kept
    assert "received SIGTERM: no more runs" in "\n".join(two_schedulers["logs"])
    # the run's kernel died with it: no process still works in that home
    import psutil

    left = []
    for p in psutil.process_iter(["cwd", "cmdline"]):
        if p.info["cwd"] == str(home):
            left.append(p.info["cmdline"])
    assert left == []


def test_unattended_runs_log_one_line_per_step_and_no_progress_bar(two_schedulers):
    log = "\n".join(two_schedulers["logs"])
    run_id = next(m["run_id"] for m in manifests(two_schedulers["home"])
                  if m["run_id"] not in two_schedulers["before"] and m["status"] == "succeeded")
    for step in STEPS:
        assert log.count(f"{run_id}: running {step}") == 1, step
    assert "Executing:" not in log and "cell/s" not in log  # papermill's tqdm bar is off without a terminal


# ---- the scheduler in-process, with a cheap stand-in for the playbook run ------------------------
@pytest.fixture
def profile_home(tmp_path: Path, demo_batches: Path) -> Path:
    import shutil

    root = tmp_path / "home"
    shutil.copytree(demo_batches.parent, root / "data" / "demo")
    return make_home(root)


class WhenTicked(BaseTrigger):
    """An APScheduler trigger on the test's clock: due once when the scheduler starts, then only when the test
    ticks (:meth:`tick` makes a scheduled time come now); by itself the next time is ten years away."""

    def __init__(self):
        self.sched: Scheduler | None = None
        self.ticks = 0

    def get_next_fire_time(self, previous_fire_time, now):
        return now if previous_fire_time is None else now + dt.timedelta(days=3650)

    def tick(self) -> None:
        from retrainlib.scheduler import JOB_ID

        self.ticks += 1
        self.sched._scheduler.modify_job(JOB_ID, next_run_time=dt.datetime.now(dt.timezone.utc))


def test_scheduled_times_missed_during_a_long_run_coalesce_into_one_catch_up_run(profile_home):
    """Two scheduled times come while the first run is in progress (the test's clock ticks twice: each is
    'due while a run is in progress'); one catch-up run follows as soon as the first ends, with no scheduled
    time due, and once it ended nothing more is due: the next run waits for the next scheduled time."""
    from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES

    from retrainlib.scheduler import JOB_ID

    clock = WhenTicked()
    events: list[tuple[int, dt.datetime]] = []  # (event code, the job's next time once the scheduler handled it)
    runs: list[int] = []  # the ticks so far when each run started

    def record(event) -> None:  # added after the scheduler's own listener, so it sees what that one decided
        events.append((event.code, sched._scheduler.get_job(JOB_ID).next_run_time))

    def runs_then_ticks() -> int:
        runs.append(clock.ticks)
        if len(runs) == 1:
            sched._scheduler.add_listener(record, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_EXECUTED)
            for n in (1, 2):  # two scheduled times pass while this run goes on
                clock.tick()
                wait_until(lambda: sum(code == EVENT_JOB_MAX_INSTANCES for code, _ in events) == n,
                           f"scheduled time {n} was not reported as due while a run is in progress", limit=120)
        return 3

    sched = Scheduler(PROFILE, home=profile_home, max_runs=3, report=False, run=runs_then_ticks, trigger=clock)
    clock.sched = sched
    done = threading.Thread(target=sched.serve, kwargs={"install_signal_handlers": False}, daemon=True)
    done.start()
    wait_until(lambda: len(runs) >= 2 or not done.is_alive(), "no catch-up run followed the first run", limit=120)
    wait_until(lambda: sum(code == EVENT_JOB_EXECUTED for code, _ in events) >= 2 or not done.is_alive(),
               "the catch-up run did not end", limit=120)
    assert runs[:2] == [0, 2], "the catch-up run did not start at once after the first (or waited for a tick)"
    (_, after_catch_up), = [e for e in events if e[0] == EVENT_JOB_EXECUTED][1:2]
    assert after_catch_up > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=365), \
        "a second catch-up run is due after the first: the missed times did not coalesce"
    clock.tick()  # the next scheduled time
    done.join(timeout=300)
    assert not done.is_alive()
    assert runs == [0, 2, 3] and len(sched.history) == 3


def test_a_turn_is_skipped_with_its_reason_while_another_run_holds_the_lock(profile_home):
    calls = []
    sched = Scheduler(PROFILE, home=profile_home, report=False, run=lambda: calls.append(1) or 0)
    with Registry(profile_home / "models", MODEL).run_lock(timeout=0):
        turn = sched.turn()
    assert calls == [] and turn.exit_code == 75
    assert "another run of model 'loan-default-demo' holds" in turn.skipped
    assert sched.turn().skipped is None and calls == [1]


def test_sigterm_to_an_idle_scheduler_stops_it_with_exit_code_0(profile_home):
    proc = subprocess.Popen([sys.executable, "-m", "retrainlib.cli", "schedule", "--profile", PROFILE, "--home",
                             str(profile_home), "--cron", "0 6 * * *"],
                            cwd=profile_home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env(), text=True)
    out = ""
    deadline = time.monotonic() + 300
    while "first run at" not in out and time.monotonic() < deadline:
        out += proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    out += proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    assert "cron '0 6 * * *' (UTC); first run at" in out and "scheduler stopped after 0 run(s)" in out


def test_a_schedule_that_is_not_a_crontab_expression_is_a_profile_error_naming_it():
    with pytest.raises(ProfileError, match=r"schedule.cron 'every day' in the profile is not a crontab expression"):
        make_trigger(ScheduleSettings(cron="every day"))
    with pytest.raises(ProfileError, match="has no schedule; set schedule.cron"):
        make_trigger(ScheduleSettings())
