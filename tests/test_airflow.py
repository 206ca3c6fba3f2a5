"""The playbook on a real Apache Airflow (its own environment, .venv-airflow: `make airflow-env`).

These tests run in the project's environment and drive Airflow's CLI and processes in Airflow's,
so the two sets of pins never meet: `airflow dags test` of a profile's DAG against `retrain run`,
a LocalExecutor Airflow (scheduler, DAG processor, API server) running two models' DAGs at once
while the run lease keeps one run per model, and the backtest DAG's mapped strategies against
`retrain backtest`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.airflow_local import AIRFLOW, REPO, LocalAirflow, airflow, airflow_env
from tests.conftest import make_home
from retrainlib.demo import week_end
from retrainlib.manifest import RunManifest

RETRAIN = Path(sys.executable).parent / "retrain"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not AIRFLOW.exists(), reason="Airflow's environment is missing: run `make airflow-env` (make test does)"),
]

#: the fields of a manifest that must be the same whichever way the run was executed
SAME = ("status", "outcome", "exit_code", "reasons", "as_of", "champion_before", "champion_after", "challenger",
        "metrics", "data", "error")


def _home(root: Path, demo_batches: Path, *profiles: dict) -> Path:
    """A tiny project home with one profile per dict (name, model_name, overrides)."""
    shutil.copytree(demo_batches.parent, root / "data" / "demo")
    for p in profiles:
        make_home(root, name=p["name"], **{k: v for k, v in p.items() if k != "name"})
    return root


def _retrain(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(RETRAIN), args[0], "--home", str(home), *args[1:]], capture_output=True, text=True, timeout=1800)


def _manifests(home: Path) -> list[dict]:
    """Each run's manifest as JSON, with its typed record (``record``) to read the step outputs through."""
    return [{**json.loads(p.read_text()), "record": RunManifest.load(p.parent)} for p in sorted(home.glob("runs/*/manifest.json"))]


def _verdict(m: dict) -> dict | None:
    """The validation verdict without what is measured each time (timings, latency, process ids, paths)."""
    v = m["record"].validation
    if v is None or v.skipped:
        return None
    gates = [{k: g[k] for k in ("name", "metric", "value", "threshold", "passed", "blocking")} for g in v.gates]
    return {"decision": v.decision, "gates": gates}


def _promotion(m: dict) -> dict:
    """What step 40 did, without times, run ids and the registry's size on disk."""
    p = m["record"].promotion.to_dict() if m["record"].promotion else {}
    p.pop("registry_bytes", None)
    p["events"] = [{k: e.get(k) for k in ("event", "version", "previous", "reason")} for e in p.get("events", [])]
    return p


def _same_run(a: dict, b: dict) -> None:
    """Two manifests record the same run: decisions, verdicts, metrics, steps and files."""
    for key in SAME:
        assert a.get(key) == b.get(key), f"{key}: {a.get(key)!r} != {b.get(key)!r}"
    assert a["record"].analysis.decision == b["record"].analysis.decision
    assert _verdict(a) == _verdict(b)
    assert _promotion(a) == _promotion(b)
    assert [(s["name"], s["status"], s["output"]) for s in a["steps"]] == [(s["name"], s["status"], s["output"]) for s in b["steps"]]
    assert sorted(a["files"]) == sorted(b["files"])
    assert a["profile"]["sha256"] == b["profile"]["sha256"]
    assert [n["event"] for n in a["notifications"]] == [n["event"] for n in b["notifications"]]


def _task_states(db, dag_id: str) -> dict[str, list[str]]:
    """task id -> the states of its instances, in the order of the DAG runs."""
    rows = db("select ti.task_id, ti.state from task_instance ti join dag_run dr on dr.run_id = ti.run_id and "
              "dr.dag_id = ti.dag_id where ti.dag_id = ? order by dr.id", dag_id)
    out: dict[str, list[str]] = {}
    for task_id, state in rows:
        out.setdefault(task_id, []).append(state)
    return out


# ---- airflow dags test ----------------------------------------------------------------------------------


def test_the_dag_factory_loads_by_file_path_in_airflows_environment_without_retrainlibs_dependencies():
    """dags/retrain.py loads retrainlib/airflow_dags.py by path: no package, no pandas, no pydantic there."""
    code = ("import importlib.util, json, sys\n"
            "spec = importlib.util.spec_from_file_location('f', 'retrainlib/airflow_dags.py')\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "print(json.dumps([m.STEPS, sorted(k for k in sys.modules if k.split('.')[0] in ('retrainlib', 'pandas'))]))")
    out = subprocess.run([str(AIRFLOW.parent / "python"), "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    steps, loaded = json.loads(out.stdout.splitlines()[-1])
    from retrainlib.playbook import STEPS
    assert steps == {s.function: s.number for s in STEPS} and loaded == []


def test_airflow_dags_test_of_the_demo_dag_writes_the_same_run_as_retrain_run(tmp_path, demo_batches):
    """As deployed: RETRAIN_HOME outside the checkout (shared storage) and no RETRAIN_BIN, so the tasks run the
    `retrain` of the checkout the DAG file lives in (not <home>/.venv/bin/retrain, which does not exist)."""
    quiet = {"performance_threshold": 0.6}  # the tiny model stays above it: week 11 needs no retraining
    by_cli = _home(tmp_path / "cli", demo_batches, {"name": "demo", **quiet})
    by_dag = _home(tmp_path / "dag", demo_batches, {"name": "demo", **quiet})
    assert not by_dag.resolve().is_relative_to(REPO) and not (by_dag / ".venv").exists()
    env = airflow_env(tmp_path / "airflow", by_dag, RETRAIN)
    del env["RETRAIN_BIN"]
    assert RETRAIN.resolve() == (REPO / ".venv" / "bin" / "retrain").resolve(), "the default is the checkout's retrain"
    airflow(env, "db", "migrate")

    for week, outcome in ((10, "bootstrapped"), (11, "no-retrain-needed")):
        as_of = week_end(week).isoformat()
        cli = _retrain(by_cli, "run", "--as-of", as_of, "--json")
        assert json.loads(cli.stdout)["outcome"] == outcome, cli.stdout + cli.stderr
        airflow(env, "dags", "test", "retrain_demo", as_of, "--conf", json.dumps({"as_of": as_of}))
        _same_run(_manifests(by_cli)[-1], _manifests(by_dag)[-1])
        assert len(_manifests(by_dag)) == len(_manifests(by_cli))
        assert not (by_dag / "models" / "loan-default-demo" / ".run.lease").exists(), "finish releases the lease"

    states = _task_states(LocalAirflow(tmp_path / "airflow", by_dag, RETRAIN).db, "retrain_demo")
    assert states["take_lease"] == states["analyze_drift"] == states["finish"] == ["success", "success"]
    for step in ("retrain_model", "validate_challenger", "promote_or_rollback"):  # no retraining: their notebooks ran, the tasks skipped
        assert states[step] == ["success", "skipped"], (step, states[step])
    details = json.loads(airflow(env, "dags", "details", "retrain_demo", "-o", "json").stdout.strip().splitlines()[-1])[0]
    assert str(details["max_active_runs"]) == "1" and details["timetable_summary"] == "1 day, 0:00:00", details


def test_a_wrong_retrain_bin_fails_take_lease_at_once_with_one_line_and_no_retries(tmp_path, demo_batches):
    home = _home(tmp_path / "home", demo_batches, {"name": "demo"})
    wrong = tmp_path / "elsewhere" / ".venv" / "bin" / "retrain"
    env = airflow_env(tmp_path / "airflow", home, wrong)
    airflow(env, "db", "migrate")
    # Airflow 3: `dags list` reads the metadata DB, which only a DAG processor fills (README says so) ...
    assert "No data found" in airflow(env, "dags", "list").stdout
    airflow(env, "dags", "reserialize")  # ... or this one command
    listed = json.loads(airflow(env, "dags", "list", "-o", "json").stdout.strip().splitlines()[-1])
    assert {"retrain_demo", "retrain_backtest"} <= {d["dag_id"] for d in listed}

    out = subprocess.run([str(AIRFLOW), "dags", "test", "retrain_demo", week_end(10).isoformat()], env=env,
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode != 0
    line = (f"AirflowFailException: RETRAIN_BIN {wrong}: no such file: set RETRAIN_BIN to the project's retrain on this "
            f"worker (unset, it is {REPO / '.venv' / 'bin' / 'retrain'}: run `make setup` in {REPO})")
    assert any(l.endswith(line) for l in (out.stdout + out.stderr).splitlines()), (out.stdout + out.stderr)[-4000:]
    tries = LocalAirflow(tmp_path / "airflow", home, wrong).db(
        "select state, try_number from task_instance where dag_id = 'retrain_demo' and task_id = 'take_lease'")
    assert tries == [("failed", 1)], tries
    assert not list(home.glob("runs/*")), "no run was begun"


# ---- a LocalExecutor Airflow ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_airflow(tmp_path_factory, demo_batches):
    """Scheduler, DAG processor and API server with the LocalExecutor (parallelism 4) on SQLite."""
    base = tmp_path_factory.mktemp("airflow")
    home = _home(base / "home", demo_batches,
                 {"name": "demo", "schedule": {}},
                 {"name": "demo-b", "model_name": "loan-default-b", "schedule": {}})
    with LocalAirflow(base / "airflow", home, RETRAIN, parallelism=4) as af:
        yield af


def test_a_local_executor_runs_two_models_at_once_and_never_two_runs_of_one_model(live_airflow):
    live, home = live_airflow, live_airflow.home
    as_of = week_end(10).isoformat()
    # another DAG run of the demo model (another Airflow, a backfill) holds its lease: begun as take_lease begins one
    begun = _retrain(home, "run", "--profile", "params/demo.yaml", "--as-of", as_of, "--begin", "--owner", "elsewhere/run-1", "--json")
    assert begun.returncode == 0, begun.stdout + begun.stderr
    held = json.loads(begun.stdout.strip().splitlines()[-1])["run_dir"]
    run_a = live.trigger("retrain_demo", {"as_of": as_of})
    run_b = live.trigger("retrain_demo-b", {"as_of": as_of})
    live.wait(lambda: live.ti_state("retrain_demo", run_a, "take_lease") == "up_for_reschedule", 600,
              "the demo DAG run to be rescheduled while another run holds the model")
    live.wait(lambda: live.ti_state("retrain_demo-b", run_b, "take_lease") == "success", 600,
              "the other model's DAG run to take its lease meanwhile")
    assert live.run_state("retrain_demo", run_a) == "running"  # both DAG runs at once; the waiting one has not failed
    for step in ("10", "20", "30", "40"):  # the holder's steps, as its tasks would run them
        done = _retrain(home, "step", "--run-dir", held, "--step", step)
        assert done.returncode == 0, done.stdout + done.stderr
    assert _retrain(home, "run", "--finish", held).returncode == 0
    assert live.finished("retrain_demo-b", run_b) == "success"
    assert live.finished("retrain_demo", run_a) == "success"

    runs = {m["run_id"]: m for m in _manifests(home)}
    demo = sorted((m for m in runs.values() if m["profile"]["name"] == "demo"), key=lambda m: m["started"])
    assert len(demo) == 2 and all(m["status"] == "succeeded" for m in demo)
    assert demo[0]["finished"] <= demo[1]["started"], "two runs of one model overlapped"
    assert [m["outcome"] for m in demo] == ["bootstrapped", demo[1]["outcome"]] and demo[1]["champion_before"] == "v0001"
    other = [m for m in runs.values() if m["profile"]["name"] == "demo-b"]
    assert len(other) == 1 and other[0]["outcome"] == "bootstrapped"


def test_the_backtest_dag_maps_the_six_strategies_and_merges_the_table_retrain_backtest_prints(live_airflow, tmp_path):
    live, home = live_airflow, live_airflow.home
    single_dir, dag_dir = tmp_path / "single", tmp_path / "dag"
    six = "static,periodic,drift,performance,hybrid,every-batch"
    single = subprocess.Popen([str(RETRAIN), "backtest", "--home", str(home), "--profile", "params/demo.yaml", "--max-batches", "8",
                               "--strategies", six, "--work-dir", str(single_dir), "--no-progress"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = live.trigger("retrain_backtest", {"profile": "params/demo.yaml", "max_batches": 8, "work_dir": str(dag_dir),
                                              "strategies": six})
    assert live.finished("retrain_backtest", run) == "success"
    out, err = single.communicate(timeout=3600)
    assert single.returncode == 0, err

    mapped = live.db("select map_index, state, start_date, end_date from task_instance "
                               "where dag_id = 'retrain_backtest' and run_id = ? and task_id = 'replay' order by map_index", run)
    assert [r[:2] for r in mapped] == [(i, "success") for i in range(6)]
    merged = subprocess.run([str(RETRAIN), "backtest-merge", str(dag_dir)], capture_output=True, text=True, timeout=600)
    assert merged.returncode == 0, merged.stderr

    def table(text: str) -> list[list[str]]:  # the printed table without the measured columns
        lines = text.splitlines()
        start = next(i for i, l in enumerate(lines) if l.startswith("strategy"))
        rows = [l.split() for l in lines[start: start + 7]]
        keep = [i for i, c in enumerate(rows[0]) if not c.startswith("cpu_seconds")]
        return [[r[i] for i in keep] for r in rows]

    assert table(merged.stdout) == table(out)
    a = json.loads((single_dir / "backtest.json").read_text())["records"]
    b = json.loads((dag_dir / "backtest.json").read_text())["records"]
    decided = ("strategy", "step", "batch", "champion", "value", "decision", "fired", "trained", "challenger", "verdict",
               "action", "champion_after")
    assert [{k: r[k] for k in decided} for r in a] == [{k: r[k] for k in decided} for r in b]
    assert pd.DataFrame(b)["strategy"].nunique() == 6
