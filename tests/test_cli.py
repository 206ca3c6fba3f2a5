"""The `retrain` command as a user calls it: real processes, exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml


RETRAIN = [sys.executable, "-m", "retrainlib.cli"]


def retrain(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*RETRAIN, *args, "--home", str(home)], capture_output=True, text=True, timeout=900)


def test_a_missing_profile_exits_2_with_one_line_and_writes_nothing(home):
    r = retrain("run", "--profile", "params/missing.yaml", home=home)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "params/missing.yaml does not exist; profiles there: demo.yaml" in lines[0]
    assert "Traceback" not in r.stderr
    assert not (home / "models").exists() and not (home / "runs").exists()


def test_an_out_of_range_drift_threshold_exits_2_naming_the_key_and_writes_nothing(home):
    prof = yaml.safe_load((home / "params/demo.yaml").read_text())
    prof["drift_threshold"] = 1.7
    (home / "params/bad.yaml").write_text(yaml.safe_dump(prof))
    r = retrain("run", "--profile", "params/bad.yaml", home=home)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.yaml: drift_threshold = 1.7" in lines[0] and "less than or equal to 1" in lines[0]
    assert not (home / "models").exists() and not (home / "runs").exists()


def test_rollback_with_a_name_that_is_not_a_version_is_refused(home):
    r = retrain("rollback", "--to", "../x", home=home)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "'../x'" in r.stderr


def test_status_on_an_empty_registry_says_there_is_no_champion(home):
    r = retrain("status", home=home)
    assert r.returncode == 0, r.stderr
    assert "champion (none)" in r.stdout


def test_demo_data_writes_the_weekly_batches(tmp_path):
    (tmp_path / "params").mkdir()
    r = subprocess.run([*RETRAIN, "demo-data", "--weeks", "3", "--home", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "data/demo/batches").glob("*.parquet"))) == 3


def test_drift_prints_the_ranked_table_and_verdict_writes_json_and_exits_0(tmp_path):
    import json

    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(size=5000), "y": rng.normal(size=5000), "c": rng.choice(list("ab"), 5000)})
    cur = ref.assign(x=ref["x"] + 0.5)
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_csv(tmp_path / "cur.csv", index=False)
    r = subprocess.run([*RETRAIN, "drift", "--reference", str(tmp_path / "ref.parquet"), "--current", str(tmp_path / "cur.csv"),
                        "--json", str(tmp_path / "out.json")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    first_row = r.stdout.splitlines()[1]
    assert first_row.split()[0] == "x"  # the drifted column ranks first
    # one of three features drifted: share 1/3 is above the default drift_threshold 0.1
    assert "\nDRIFTED: drift score 0.333 (share of drifted features) vs drift_threshold 0.1" in r.stdout, r.stdout
    out = json.loads((tmp_path / "out.json").read_text())
    assert [f["column"] for f in out["features"] if f["drifted"]] == ["x"]


def test_drift_on_a_missing_file_exits_2_naming_it(tmp_path):
    r = subprocess.run([*RETRAIN, "drift", "--reference", str(tmp_path / "nope.parquet"), "--current", str(tmp_path / "nope.parquet")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "nope.parquet does not exist" in r.stderr


def test_drift_takes_the_two_files_as_arguments_and_says_which_one_is_missing(tmp_path):
    import json

    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"x": rng.normal(size=3000), "c": rng.choice(list("ab"), 3000)})
    ref.to_parquet(tmp_path / "ref.parquet")
    ref.assign(x=ref["x"] * 1.5).to_parquet(tmp_path / "cur.parquet")
    r = subprocess.run([*RETRAIN, "drift", str(tmp_path / "ref.parquet"), str(tmp_path / "cur.parquet"),
                        "--json", str(tmp_path / "out.json")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "out.json").read_text())["drifted_features"] == ["x"]
    r = subprocess.run([*RETRAIN, "drift", str(tmp_path / "ref.parquet")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip() == (
        "retrain: error: retrain drift needs a current file: retrain drift REFERENCE CURRENT "
        "(Parquet or CSV; or --reference/--current)")


def test_demo_data_writes_the_covariate_shift_scenario_beside_the_default_one(tmp_path):
    import json

    (tmp_path / "params").mkdir()
    r = subprocess.run([*RETRAIN, "demo-data", "--weeks", "3", "--scenario", "covariate-shift", "--home", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "(covariate-shift scenario)" in r.stdout
    assert len(list((tmp_path / "data/demo-covariate-shift/batches").glob("*.parquet"))) == 3
    assert not (tmp_path / "data/demo").exists()
    points = json.loads((tmp_path / "data/demo-covariate-shift/drift_points.json").read_text())
    assert points["scenario"] == "covariate-shift" and "concept_change" not in points


def test_a_sigterm_leaves_no_asyncio_traceback_of_the_abandoned_notebook_cell_in_the_log(tmp_path):
    """papermill's cell task, abandoned when SIGTERM unwinds the run, dies with its kernel afterwards; asyncio then
    printed 'Task exception was never retrieved' with a DeadKernelError traceback into the run's log (a loaded CI run)."""
    script = tmp_path / "stopped.py"
    script.write_text(
        "import asyncio, gc, logging, os, signal, threading\n"
        "from retrainlib import cli\n"
        "logging.basicConfig()\n"
        "cli._end_runs_on_signals()\n"
        "loop = asyncio.new_event_loop()\n"
        "reply = loop.create_future()\n"
        "async def cell():\n"
        "    await reply  # waits for the kernel's reply, as nbclient does\n"
        "task = loop.create_task(cell())\n"
        "threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()  # from outside the loop, as a stop arrives\n"
        "try:\n"
        "    loop.run_until_complete(asyncio.sleep(5))\n"
        "except cli.Terminated:\n"
        "    print('stopped')\n"
        "reply.set_exception(RuntimeError('Kernel died'))  # the kernel dies after the run was unwound\n"
        "loop.run_until_complete(asyncio.sleep(0.05))\n"
        "del task, reply\n"
        "gc.collect()\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "stopped", done.stderr
    assert "Task exception was never retrieved" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_make_refuses_a_python_that_is_not_3_11_with_one_line_before_making_a_venv(tmp_path):
    import shutil

    repo = Path(__file__).resolve().parents[1]
    for name in ("Makefile", "pyproject.toml", "requirements.txt", "requirements-mlflow.txt", "requirements-airflow.txt"):
        shutil.copy(repo / name, tmp_path / name)
    for target in ("setup", "airflow-env"):
        for python in ("/bin/false", ""):
            r = subprocess.run(["make", "-s", target, f"PYTHON={python}"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
            assert r.returncode != 0 and r.stdout == "", r.stdout
            (line,) = r.stderr.strip().splitlines()
            assert line.split(": ", 1)[1] == (
                f"*** PYTHON={python} is not a working python, but retrainlib needs Python 3.11 "
                "(pyproject.toml: >=3.11,<3.12): install python3.11, or run make PYTHON=/path/to/python3.11.  Stop."), line
    assert not (tmp_path / ".venv").exists() and not (tmp_path / ".venv-airflow").exists()
    assert subprocess.run(["make", "-s", "python-check", f"PYTHON={sys.executable}"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60).returncode == 0  # this suite's own Python 3.11 passes
