"""Run the playbook on the profile's schedule (a cron expression or an interval) with APScheduler.

``retrain schedule`` builds a :class:`Scheduler` and calls :meth:`Scheduler.serve`, which blocks in
the foreground. APScheduler keeps the time: a ``CronTrigger`` or ``IntervalTrigger`` in UTC, one job
with ``max_instances=1``, ``coalesce=True`` and no misfire limit. Each run is a child process
(``retrain run``), so a months-long scheduler never accumulates a fit's memory and a crash in
native code ends one run, not the scheduler.

Missed runs coalesce into one: scheduled times that pass while a run is in progress (APScheduler
reports them as "maximum number of running instances reached") or while the machine slept
(APScheduler's ``coalesce``) lead to exactly one catch-up run, started as soon as the run in
progress ends.

One run at a time per model, across processes: the run itself takes the registry's run lock
(:meth:`retrainlib.registry.Registry.run_lock`). Before starting a child the scheduler probes that
lock; when another scheduler or a ``retrain run`` by hand holds it, the turn is skipped with a log
line (``lock_wait`` seconds of waiting first, when given), and the next scheduled time tries again.

SIGTERM or Ctrl-C stops scheduling; a run in progress receives SIGTERM, ends as a complete failed
record (see :func:`retrainlib.pipeline.run_playbook`), and then the scheduler exits 0.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from typing import Any, Callable

from .errors import ProfileError, RunLocked
from .paths import Paths
from .profiles import ScheduleSettings, load_profile
from .registry import Registry

__all__ = ["Scheduler", "ScheduledRun", "make_trigger", "describe_schedule"]

log = logging.getLogger("retrainlib.scheduler")

JOB_ID = "retrain-run"
EXIT_LOCKED = 75


def make_trigger(schedule: ScheduleSettings, *, source: str = "the profile"):
    """The APScheduler trigger for a profile's ``schedule`` section (UTC).

    >>> make_trigger(ScheduleSettings(cron="0 6 * * 1-5"))
    <CronTrigger (month='*', day='*', day_of_week='1-5', hour='6', minute='0', timezone='UTC')>
    >>> make_trigger(ScheduleSettings(every_minutes=0.05)).interval
    datetime.timedelta(seconds=3)
    """
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if schedule.cron:
        try:
            return CronTrigger.from_crontab(schedule.cron, timezone=dt.timezone.utc)
        except ValueError as exc:
            raise ProfileError(
                f"schedule.cron '{schedule.cron}' in {source} is not a crontab expression ({exc}); "
                "expected five fields: minute hour day-of-month month day-of-week, e.g. '0 6 * * *'"
            ) from exc
    if schedule.every_minutes:
        return IntervalTrigger(seconds=schedule.every_minutes * 60, timezone=dt.timezone.utc)
    raise ProfileError(f"{source} has no schedule; set schedule.cron (e.g. '0 6 * * *') or schedule.every_minutes")


def describe_schedule(schedule: ScheduleSettings) -> str:
    """``cron '0 6 * * *'`` or ``every 1440 min``."""
    return f"cron '{schedule.cron}' (UTC)" if schedule.cron else f"every {schedule.every_minutes:g} min"


@dataclass(frozen=True)
class ScheduledRun:
    """One scheduled turn: a run that happened, or a skip with its reason."""

    started: str
    finished: str
    exit_code: int | None
    run_id: str | None = None
    outcome: str | None = None
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Scheduler:
    """Runs ``retrain run`` for one profile on its schedule; state (the child, the stop flag) is the point.

    Parameters
    ----------
    profile : path
        the profile YAML; its ``schedule`` section is used unless ``schedule`` is given.
    home : path, optional
        the project home (default: discovered, see :mod:`retrainlib.paths`).
    schedule : ScheduleSettings, optional
        overrides the profile's schedule.
    lock_wait : float
        seconds to wait for another run of the model before skipping a turn (default 0).
    max_runs : int, optional
        stop after this many runs (skipped turns do not count); default: run until stopped.
    report : bool
        refresh ``runs/index.html`` (:func:`retrainlib.report.build_report`) after each run.
    run : callable, optional
        what one turn does, returning an exit code; default: a ``retrain run`` child process.
    trigger : APScheduler trigger, optional
        when turns are due, instead of :func:`make_trigger` of the schedule; tests pass one that fires only
        when they say so, so the scheduled times passing during a run do not depend on the machine's speed.
    """

    def __init__(
        self,
        profile: str | os.PathLike,
        *,
        home: str | os.PathLike | None = None,
        schedule: ScheduleSettings | None = None,
        lock_wait: float = 0.0,
        max_runs: int | None = None,
        report: bool = True,
        run: Callable[[], int] | None = None,
        trigger: Any = None,
    ):
        self.paths = Paths.discover(home)
        self.profile_path = self.paths.profile(profile)
        self.profile = load_profile(self.profile_path)  # fails before anything starts
        self.schedule = schedule or self.profile.schedule
        self.trigger = trigger if trigger is not None else make_trigger(self.schedule, source=str(self.profile_path))
        self.registry = Registry(self.paths.resolve(self.profile.registry), self.profile.model_name)
        self.lock_wait = lock_wait
        self.max_runs = max_runs
        self.report = report
        self._run = run or self._run_child
        self.history: list[ScheduledRun] = []
        self._child: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._missed = threading.Event()
        self._scheduler = None
        self._last_summary: dict | None = None

    # ---- one turn ---------------------------------------------------------------------------
    def command(self) -> list[str]:
        """The child process of one run: ``retrain run --json`` for this profile and home."""
        return [sys.executable, "-m", "retrainlib.cli", "run", "--profile", str(self.profile_path),
                "--home", str(self.paths.home), "--wait", f"{self.lock_wait:g}", "--json"]

    def _run_child(self) -> int:
        self._child = subprocess.Popen(self.command(), stdout=subprocess.PIPE, text=True)
        if self._stop.is_set():  # a signal came between the lock probe and the start: end the run at once
            self._child.send_signal(signal.SIGTERM)
        try:
            out, _ = self._child.communicate()
        finally:
            code, self._child = self._child.returncode, None
        try:
            self._last_summary = json.loads(out) if out.strip() else None
        except json.JSONDecodeError:
            log.warning("the run printed something that is not its JSON summary: %.200s", out)
        return code

    def _probe_lock(self) -> str | None:
        """None when no other run holds the model's run lock (after ``lock_wait``), else why we skip."""
        try:
            with self.registry.run_lock(timeout=self.lock_wait):
                return None
        except RunLocked as exc:
            return str(exc)

    def turn(self) -> ScheduledRun:
        """Run the playbook once now (unless another run holds the lock); what APScheduler calls."""
        started = _now().isoformat(timespec="seconds")
        if self._stop.is_set():
            return self._record(ScheduledRun(started, started, None, skipped="the scheduler is stopping"))
        busy = self._probe_lock()
        if busy:
            log.info("skipped a scheduled run: %s; the next scheduled time tries again", busy)
            return self._record(ScheduledRun(started, _now().isoformat(timespec="seconds"), EXIT_LOCKED, skipped=busy))
        log.info("scheduled run of %s: starting", self.profile.name)
        self._last_summary = None
        code = self._run()
        summary = self._last_summary or {}
        if code == EXIT_LOCKED:
            run = ScheduledRun(started, _now().isoformat(timespec="seconds"), code,
                               skipped="another run took the model's run lock first")
            log.info("skipped a scheduled run: %s", run.skipped)
            return self._record(run)
        run = ScheduledRun(started, _now().isoformat(timespec="seconds"), code,
                           run_id=summary.get("run"), outcome=summary.get("outcome"))
        log.log(logging.INFO if code in (0, 3, 4, 5) else logging.ERROR,
                "scheduled run of %s: exit %s, %s, record %s", self.profile.name, code, run.outcome or "no outcome",
                summary.get("path") or "(none)")
        self._record(run)
        if self.report and not self._stop.is_set():
            from .report import build_report

            build_report(self.paths.runs)
        if self.max_runs is not None and sum(r.skipped is None for r in self.history) >= self.max_runs:
            log.info("ran %d time(s) (--max-runs): stopping", self.max_runs)
            self._stop.set()
        return run

    def _record(self, run: ScheduledRun) -> ScheduledRun:
        self.history.append(run)
        return run

    def _job(self) -> None:
        self.turn()

    # ---- APScheduler events -----------------------------------------------------------------
    def _on_event(self, event) -> None:
        from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES

        if event.code == EVENT_JOB_MAX_INSTANCES:
            if not self._missed.is_set():
                log.info("the run scheduled at %s is due while a run is in progress: one catch-up run follows it "
                         "(further missed times coalesce into that one)", event.scheduled_run_times[-1].isoformat(timespec="seconds"))
            self._missed.set()
        elif event.code in (EVENT_JOB_EXECUTED, EVENT_JOB_ERROR):
            if self._missed.is_set() and not self._stop.is_set() and self._scheduler is not None:
                self._missed.clear()
                self._scheduler.modify_job(JOB_ID, next_run_time=_now())

    # ---- serving ----------------------------------------------------------------------------
    def stop(self, signum: int | None = None, frame: Any = None) -> None:
        """Stop scheduling; a run in progress gets SIGTERM and ends as a complete failed record."""
        if signum is not None:
            log.warning("received %s: no more runs; a run in progress ends as a failed record", signal.Signals(signum).name)
        self._stop.set()
        child = self._child
        if child is not None and child.poll() is None:
            try:
                child.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def serve(self, *, install_signal_handlers: bool = True) -> int:
        """Run until stopped (SIGTERM, Ctrl-C, :meth:`stop` or ``max_runs``); return the exit code 0."""
        from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        if install_signal_handlers:
            previous = {s: signal.signal(s, self.stop) for s in (signal.SIGTERM, signal.SIGINT)}
        sched = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=dt.timezone.utc,
        )
        sched.add_listener(self._on_event, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        sched.add_job(self._job, self.trigger, id=JOB_ID, name=f"retrain run {self.profile.name}")
        self._scheduler = sched
        try:
            sched.start()
            nxt = sched.get_job(JOB_ID).next_run_time
            log.info("scheduling %s (model %s): %s; first run at %s", self.profile_path.name, self.profile.model_name,
                     describe_schedule(self.schedule), nxt.isoformat(timespec="seconds") if nxt else "never")
            while not self._stop.wait(1.0):
                pass
        finally:
            sched.shutdown(wait=True)  # lets the turn in progress write its record
            self._scheduler = None
            if install_signal_handlers:
                for s, h in previous.items():
                    signal.signal(s, h)
        log.info("scheduler stopped after %d run(s), %d skipped turn(s)",
                 sum(r.skipped is None for r in self.history), sum(r.skipped is not None for r in self.history))
        return 0
