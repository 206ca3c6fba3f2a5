"""Apache Airflow DAGs for the playbook: one per profile, and a backtest fanned out over strategies.

This is the only module that imports Airflow, and it runs only in Airflow's own environment
(``.venv-airflow``, ``requirements-airflow.txt``). It imports nothing else from retrainlib and
needs only the standard library and PyYAML: ``dags/retrain.py`` loads it by file path, so the
package's ``__init__`` (pydantic, AutoGluon's world) never loads into Airflow. Every task runs the
project's own ``.venv/bin/retrain`` in a subprocess, so the run folder is exactly what
``retrain run`` writes and Airflow's pins never meet AutoGluon's.

A profile's DAG (``retrain_<profile name>``; schedule from its ``schedule`` section, one active run,
no catch-up) has six tasks::

    take_lease >> analyze_drift >> retrain_model >> validate_challenger >> promote_or_rollback >> finish

``take_lease``   ``retrain run --begin``: leases the model to this DAG run and creates the run
                 folder. Another run holds the model (its lease, or a ``retrain run`` in
                 progress: exit 75) → the sensor is rescheduled, not failed.
the four steps   ``retrain step``: one notebook each, into the same run folder. A failed step
                 fails its task with the manifest's error. When the run needs no retraining,
                 steps 20–40 still execute (their notebooks record that they did nothing, as in
                 ``retrain run``) and their tasks end *skipped*.
``finish``       ``retrain run --finish`` (runs whatever happened upstream): outcome, notifications,
                 lease released. The run failed → the task fails with the manifest's error; any
                 other outcome (promoted, rejected, blocked, stuck, …) → success, the outcome in
                 its XCom and log. Mapped by the manifest's ``status``, so new outcomes fit.

The backtest DAG (``retrain_backtest``, manual) maps ``retrain backtest --strategies S --no-summary``
over the chosen strategies (one task each, sharing the work folder and its fit cache) and merges
them with ``retrain backtest-merge``, which prints the table ``retrain backtest`` prints.

Configuration (environment of the scheduler and workers): ``RETRAIN_HOME`` the project home
(params/, data/, models/, runs/; default the checkout this file lives in), ``RETRAIN_BIN`` the
project's ``retrain`` (default ``.venv/bin/retrain`` of the checkout this file lives in, whatever
``RETRAIN_HOME`` is: the home may be on shared storage, the checkout and its ``.venv`` local),
``RETRAIN_LEASE_POKE`` seconds between lease attempts (default 60), ``RETRAIN_RETRIES`` retries of
a failed step task (default 0). A ``RETRAIN_BIN`` that is not an executable file, or a program that
does not answer as ``retrain run --begin`` does, fails ``take_lease`` at once, without retries, with
one line saying which path and how to fix it.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import logging
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml


def _stepnames():
    """:mod:`retrainlib.stepnames` (import-free): imported in the package, loaded by path in Airflow's environment."""
    if __package__:
        from . import stepnames
        return stepnames
    spec = importlib.util.spec_from_file_location("retrain_stepnames", Path(__file__).with_name("stepnames.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_names = _stepnames()
log = logging.getLogger(__name__)

EXIT_LOCKED = 75  # retrain's exit code when another run holds the model
STEPS = {_names.function(nb): _names.number(nb) for _, nb in _names.STEP_NAMES}  # task id -> `retrain step --step` number
NO_RETRAIN = "no-retrain-needed"
START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


# ---- plain helpers (no Airflow) ---------------------------------------------------------------


def dag_id(profile_name: str) -> str:
    """``retrain_<name>``, with characters Airflow does not allow in a DAG id replaced by ``_``.

    >>> dag_id("standard business")
    'retrain_standard_business'
    """
    return "retrain_" + re.sub(r"[^A-Za-z0-9_.-]", "_", profile_name)


def schedule_of(profile: dict[str, Any]) -> str | dt.timedelta | None:
    """The profile's ``schedule``: a cron string, an interval, or None (triggered only).

    >>> schedule_of({"schedule": {"every_minutes": 1440}})
    datetime.timedelta(days=1)
    >>> schedule_of({"schedule": {"cron": "0 6 * * *"}})
    '0 6 * * *'
    """
    sched = profile.get("schedule") or {}
    if sched.get("cron"):
        return str(sched["cron"])
    if sched.get("every_minutes"):
        return dt.timedelta(minutes=float(sched["every_minutes"]))
    return None


def read_profiles(params: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``*.yaml`` in ``params`` with a ``name``; a file that does not parse is logged and left out
    (``retrain`` validates the profile fully when the DAG runs)."""
    out = []
    for path in sorted(params.glob("*.yaml")):
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            log.warning("no DAG for %s: %s", path, exc)
            continue
        if isinstance(raw, dict) and raw.get("name"):
            out.append((path, raw))
    return out


def call_retrain(retrain: str, *args: str, home: Path) -> tuple[int, list[str]]:
    """Run ``retrain --home HOME ARGS`` in the project's environment; every line goes to the task log.

    Returns the exit code and stdout+stderr lines. Stopping the task stops the command (SIGTERM,
    which ``retrain`` turns into a complete failed record).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    command, *rest = args
    cmd = [retrain, command, "--home", str(home), *rest]
    log.info("$ %s", " ".join(cmd))
    lines: list[str] = []
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=home)
    except OSError as exc:  # a binary that vanished or a home that is not there: one line, not a traceback
        raise RuntimeError(retrain_problem(retrain) or f"cannot run {retrain} in {home}: {exc}") from None
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            log.info("%s", line)
        return proc.wait(), lines
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def last_json(lines: list[str]) -> dict[str, Any]:
    """The last JSON object ``retrain … --json`` printed: on one line, or indented over the lines that follow its ``{``.

    >>> last_json(["log line", "{", '  "run": "r1",', '  "error": null', "}"])
    {'run': 'r1', 'error': None}
    """
    decoder = json.JSONDecoder()
    for i in reversed(range(len(lines))):
        if lines[i].startswith("{"):
            try:
                value, _ = decoder.raw_decode("\n".join(lines[i:]))
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return {}


def run_error(summary: dict[str, Any]) -> str:
    """``run <id> failed (outcome …) at <step>: <message>`` from the summary ``retrain run --finish --json`` printed.

    >>> run_error({"run": "r1", "status": "failed", "outcome": "failed", "error": {"step": "20-retrain-model", "message": "boom"}})
    'run r1 failed (outcome failed) at 20-retrain-model: boom'
    """
    err = summary.get("error") or {}
    return (f"run {summary.get('run')} {summary.get('status')} (outcome {summary.get('outcome')}) at {err.get('step')}: "
            f"{err.get('message')}")


CHECKOUT = Path(__file__).resolve().parents[1]  # the checkout this file (and dags/retrain.py) lives in


def _settings() -> tuple[Path, str]:
    home = Path(os.environ.get("RETRAIN_HOME") or CHECKOUT).resolve()
    return home, os.environ.get("RETRAIN_BIN") or str(CHECKOUT / ".venv" / "bin" / "retrain")


def retrain_problem(retrain: str) -> str | None:
    """One line when ``retrain`` cannot be the project's command (missing, a folder, not executable); else None.

    >>> retrain_problem("/nonexistent/bin/retrain").split(": ")[:2]
    ['RETRAIN_BIN /nonexistent/bin/retrain', 'no such file']
    """
    path = Path(retrain)
    why = ("no such file" if not path.exists() else "a folder, not a program" if path.is_dir()
           else "not executable" if not os.access(path, os.X_OK) else None)
    if why is None:
        return None
    default = CHECKOUT / ".venv" / "bin" / "retrain"
    return (f"RETRAIN_BIN {retrain}: {why}: set RETRAIN_BIN to the project's retrain on this worker "
            f"(unset, it is {default}: run `make setup` in {CHECKOUT})")


# ---- the DAGs ------------------------------------------------------------------------------------


def profile_dag(profile_path: Path, profile: dict[str, Any], *, home: Path, retrain: str):
    """The DAG of one profile (see the module docstring)."""
    from airflow.sdk import DAG, Param

    poke = float(os.environ.get("RETRAIN_LEASE_POKE", 60))
    with DAG(
        dag_id=dag_id(profile["name"]),
        description=profile.get("description") or f"the retraining playbook for profile {profile['name']}",
        schedule=schedule_of(profile),
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args={"retries": int(os.environ.get("RETRAIN_RETRIES", 0)), "retry_delay": dt.timedelta(minutes=5)},
        params={"as_of": Param(None, type=["null", "string"], description="only use batches up to this date (YYYY-MM-DD)")},
        tags=["retrain", f"model:{profile.get('model_name', '?')}"],
        doc_md=f"Retraining playbook of `{profile_path}`: lease the model, the four notebooks, finish.",
    ) as dag:
        run_dir = _take_lease_task(profile_path, home=home, retrain=retrain, poke=poke)()
        previous = run_dir
        for task_id, number in STEPS.items():
            current = _step_task(task_id, number, home=home, retrain=retrain)(run_dir)
            previous >> current
            previous = current
        previous >> _finish_task(home=home, retrain=retrain)(run_dir)
    return dag


def _take_lease_task(profile_path: Path, *, home: Path, retrain: str, poke: float):
    """``take_lease``: ``retrain run --begin`` as a reschedule-mode sensor; its XCom is the run folder."""
    from airflow.sdk import PokeReturnValue, get_current_context, task
    from airflow.sdk.exceptions import AirflowFailException

    # retries: Airflow 3.2-3.3 can fail a reschedule-mode sensor when the executor's report of one poke
    # arrives after the next poke was queued (apache/airflow#71172); a retry takes the lease as the poke would
    @task.sensor(task_id="take_lease", mode="reschedule", poke_interval=poke, timeout=24 * 3600,
                 retries=3, retry_delay=dt.timedelta(seconds=poke))
    def take_lease() -> PokeReturnValue:
        problem = retrain_problem(retrain)
        if problem:  # a wrong binary never gets better: fail at once, no retries
            raise AirflowFailException(problem)
        ctx = get_current_context()
        owner = f"{ctx['dag'].dag_id}/{ctx['run_id']}"
        args = ["run", "--profile", str(profile_path), "--begin", "--owner", owner, "--json"]
        if ctx["params"].get("as_of"):
            args += ["--as-of", str(ctx["params"]["as_of"])]
        code, lines = call_retrain(retrain, *args, home=home)
        if code == EXIT_LOCKED:
            log.info("the model is held by another run: trying again in %g s", poke)
            return PokeReturnValue(is_done=False)
        if code != 0:
            raise AirflowFailException(f"retrain run --begin exited {code}: {lines[-1] if lines else ''}")
        begun = last_json(lines).get("run_dir")
        if not begun:
            raise AirflowFailException(f"RETRAIN_BIN {retrain}: `run --begin --json` printed no run folder: "
                                       "is it the project's retrain? (set RETRAIN_BIN, or unset it for "
                                       f"{CHECKOUT / '.venv' / 'bin' / 'retrain'})")
        return PokeReturnValue(is_done=True, xcom_value=begun)

    return take_lease


def _step_task(task_id: str, number: str, *, home: Path, retrain: str):
    """One step's task: ``retrain step``; skipped (after its notebook ran) when the run needs no retraining."""
    from airflow.sdk import task
    from airflow.sdk.exceptions import AirflowSkipException

    @task(task_id=task_id, trigger_rule="all_success" if number == "10" else "none_failed")
    def run_step(run_dir: str) -> str:
        code, lines = call_retrain(retrain, "step", "--run-dir", run_dir, "--step", number, home=home)
        result = last_json(lines)
        if code != 0 or result.get("status") != "succeeded":
            raise RuntimeError(f"step {number} failed (exit {code}): {result.get('error') or (lines[-1] if lines else '')}")
        if number != "10" and result.get("outcome") == NO_RETRAIN:
            raise AirflowSkipException(f"{NO_RETRAIN}: step {number}'s notebook ran and did nothing")
        return run_dir

    return run_step


def _finish_task(*, home: Path, retrain: str):
    """``finish``: ``retrain run --finish`` whatever happened upstream; fails when the run failed."""
    from airflow.sdk import task
    from airflow.sdk.exceptions import AirflowFailException

    @task(task_id="finish", trigger_rule="all_done")
    def finish(run_dir: str | None) -> dict[str, Any]:
        if not run_dir:
            raise AirflowFailException("no run was begun: take_lease did not get the model (see its log)")
        # the run's record is read by retrain itself (retrainlib.manifest.RunManifest): its summary is the last JSON printed
        code, lines = call_retrain(retrain, "run", "--finish", run_dir, "--json", home=home)
        summary = last_json(lines)
        if not summary:
            raise AirflowFailException(f"retrain run --finish exited {code} and printed no summary: {lines[-1] if lines else ''}")
        if summary["status"] != "succeeded":
            raise AirflowFailException(run_error(summary))
        log.info("run %s: outcome %s (exit code %s)", summary["run"], summary["outcome"], code)
        return {"run_id": summary["run"], "run_dir": run_dir, "outcome": summary["outcome"],
                "exit_code": code, "champion_after": summary["champion_after"]}

    return finish


def backtest_dag(*, home: Path, retrain: str):
    """``retrain_backtest``: one mapped task per strategy, then the merged table."""
    from airflow.sdk import DAG, Param, get_current_context, task

    with DAG(
        dag_id="retrain_backtest",
        description="walk-forward backtest of retraining strategies, one task per strategy",
        schedule=None,
        start_date=START,
        catchup=False,
        params={
            "profile": Param("params/demo.yaml", type="string"),
            "strategies": Param("static,periodic,drift,performance,performance-estimated,hybrid,every-batch,refit", type="string",
                                description="as retrain backtest --strategies (default: all, as the command)"),
            "max_batches": Param(None, type=["null", "integer"]),
            "work_dir": Param(None, type=["null", "string"], description="shared work folder (default runs/<dag run>-backtest)"),
        },
        tags=["retrain", "backtest"],
    ) as dag:

        @task
        def plan() -> list[dict[str, str]]:
            ctx = get_current_context()
            p = ctx["params"]
            work = p["work_dir"] or str(home / "runs" / (re.sub(r"[^A-Za-z0-9_.-]", "_", ctx["run_id"]) + "-backtest"))
            return [{"strategy": s.strip(), "work_dir": work} for s in p["strategies"].split(",") if s.strip()]

        @task
        def replay(item: dict[str, str]) -> str:
            p = get_current_context()["params"]
            args = ["backtest", "--profile", p["profile"], "--strategies", item["strategy"], "--work-dir", item["work_dir"],
                    "--no-summary", "--no-progress"]
            if p["max_batches"]:
                args += ["--max-batches", str(p["max_batches"])]
            code, lines = call_retrain(retrain, *args, home=home)
            if code != 0:
                raise RuntimeError(f"backtest of {item['strategy']} exited {code}: {lines[-1] if lines else ''}")
            return item["work_dir"]

        @task
        def merge(work_dirs: list[str]) -> str:
            code, lines = call_retrain(retrain, "backtest-merge", sorted(set(work_dirs))[0], home=home)
            if code != 0:
                raise RuntimeError(f"retrain backtest-merge exited {code}: {lines[-1] if lines else ''}")
            return "\n".join(lines)

        merge(replay.expand(item=plan()))
    return dag


def build_dags(home: Path | None = None, retrain: str | None = None) -> dict[str, Any]:
    """Every profile's DAG and the backtest DAG, by DAG id (what ``dags/retrain.py`` exposes)."""
    default_home, default_bin = _settings()
    home = Path(home or default_home)
    retrain = retrain or default_bin
    dags = {}
    for path, raw in read_profiles(home / "params"):
        d = profile_dag(path, raw, home=home, retrain=retrain)
        dags[d.dag_id] = d
    b = backtest_dag(home=home, retrain=retrain)
    dags[b.dag_id] = b
    return dags
