"""A real Airflow on this machine for tests and benchmarks: LocalExecutor, SQLite, loopback only.

Runs ``.venv-airflow/bin/airflow`` (Airflow's own environment) as separate processes: ``api-server``
(on a free 127.0.0.1 port), ``scheduler`` and ``dag-processor``, with the DAGs of ``dags/`` over a
given project home. Used by tests/test_airflow.py and benchmarks/bench_airflow_backtest.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AIRFLOW = REPO / ".venv-airflow" / "bin" / "airflow"


def airflow_env(base: Path, home: Path, retrain: Path, **extra: str) -> dict[str, str]:
    """Environment for Airflow commands: AIRFLOW_HOME ``base`` (SQLite there), no examples, our DAGs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(base), AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__UNIT_TEST_MODE="False", AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        RETRAIN_HOME=str(home), RETRAIN_BIN=str(retrain), RETRAIN_LEASE_POKE="20", OMP_NUM_THREADS="1",
    )
    env.update(extra)
    return env


def airflow(env: dict[str, str], *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run one ``airflow`` command; an error says which and shows its output."""
    out = subprocess.run([str(AIRFLOW), *args], env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise AssertionError(f"airflow {' '.join(args)} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalAirflow:
    """``with LocalAirflow(base, home, retrain, parallelism=4) as af:`` — trigger DAGs, read their states."""

    def __init__(self, base: Path, home: Path, retrain: Path, *, parallelism: int = 4):
        self.base, self.home = Path(base), Path(home)
        self.logs = self.base / "logs"
        port = _free_port()
        self.env = airflow_env(
            self.base, self.home, retrain,
            AIRFLOW__CORE__EXECUTOR="LocalExecutor", AIRFLOW__CORE__PARALLELISM=str(parallelism),
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
            AIRFLOW__API__PORT=str(port), AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
            AIRFLOW__API_AUTH__JWT_SECRET="retrain-local-secret", AIRFLOW__API__SECRET_KEY="retrain-local-key",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
            AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="2", AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        )
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "LocalAirflow":
        self.base.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        airflow(self.env, "db", "migrate")
        for name in ("api-server", "scheduler", "dag-processor"):
            self.procs.append(subprocess.Popen([str(AIRFLOW), name], env=self.env, stdout=open(self.logs / f"{name}.log", "w"),
                                               stderr=subprocess.STDOUT, start_new_session=True))
        try:
            self.wait(lambda: {"retrain_backtest"} <= {r[0] for r in self.db("select dag_id from dag")}, 600,
                      "the DAG processor to register the DAGs")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    # ---- reading Airflow's own records --------------------------------------------------------------
    def db(self, sql: str, *params) -> list[tuple]:
        with sqlite3.connect(f"file:{self.base / 'airflow.db'}?mode=ro", uri=True, timeout=30) as con:
            return con.execute(sql, params).fetchall()

    def wait(self, check, timeout: float, what: str):
        """Poll ``check`` until it returns something truthy (the timeout only bounds a broken run)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = check()
            except sqlite3.OperationalError:  # being written, or not made yet
                value = None
            if value:
                return value
            time.sleep(2)
        tail = "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.logs.glob("*.log")))
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{tail}")

    def trigger(self, dag_id: str, conf: dict) -> str:
        run_id = f"test__{dag_id}__{time.time_ns()}"
        airflow(self.env, "dags", "trigger", dag_id, "--conf", json.dumps(conf), "--run-id", run_id)
        return run_id

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.db("select state from dag_run where dag_id = ? and run_id = ?", dag_id, run_id)
        return rows[0][0] if rows else None

    def ti_state(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        rows = self.db("select state from task_instance where dag_id = ? and run_id = ? and task_id = ?", dag_id, run_id, task_id)
        return rows[0][0] if rows else None

    def finished(self, dag_id: str, run_id: str, timeout: float = 3600) -> str:
        """Wait for a DAG run to end; its final state."""
        return self.wait(lambda: (s := self.run_state(dag_id, run_id)) in ("success", "failed") and s, timeout,
                         f"DAG run {dag_id} {run_id}")
