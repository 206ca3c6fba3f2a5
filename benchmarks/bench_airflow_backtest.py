"""Wall time of the backtest DAG on a LocalExecutor Airflow vs the single-process `retrain backtest`,
and the CPU-seconds of one playbook run that size an Airflow fleet.

    .venv/bin/python benchmarks/bench_airflow_backtest.py [--max-batches 10] [--parallelism 2] [--part all|backtest|sizing]

What it runs, in a temporary project home (nothing of the repo's runs/ or models/ is touched):

* the demo loan book (``retrain demo-data``: 30 weekly batches) and the real ``params/demo.yaml``;
* backtest: ``retrain backtest --max-batches N`` (all six strategies, one process) and the
  ``retrain_backtest`` DAG (one mapped task per strategy, LocalExecutor with ``--parallelism``
  worker slots, fit cache shared in the work folder), each from a cold fit cache; it prints both
  wall times and whether the two tables agree (every column but the measured CPU-seconds);
* sizing: three ``retrain run`` of the demo profile (bootstrap at week 10, a week with no
  retraining, week 22 after the drift) with the CPU-seconds of each process tree
  (``getrusage(RUSAGE_CHILDREN)``), then workers needed for fleets of models run daily.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.airflow_local import AIRFLOW, LocalAirflow  # noqa: E402

RETRAIN = REPO / ".venv" / "bin" / "retrain"


def retrain(home: Path, *args: str) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run retrain; (result, wall seconds, CPU-seconds of its whole process tree)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    out = subprocess.run([str(RETRAIN), args[0], "--home", str(home), *args[1:]], capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode not in (0, 3, 4):
        sys.exit(f"retrain {' '.join(args)} exited {out.returncode}:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return out, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def table_rows(text: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("strategy"))
    rows = [line.split() for line in lines[start:] if line.strip()][:7]
    keep = [i for i, c in enumerate(rows[0]) if not c.startswith("cpu_seconds")]
    return [[r[i] for i in keep] for r in rows]


def bench_backtest(home: Path, work: Path, max_batches: int, parallelism: int) -> None:
    single, wall_single, cpu_single = retrain(home, "backtest", "--profile", "params/demo.yaml", "--max-batches", str(max_batches),
                                              "--work-dir", str(work / "single"), "--no-progress")
    print(single.stdout)
    with LocalAirflow(work / "airflow", home, RETRAIN, parallelism=parallelism) as af:
        t0 = time.monotonic()
        run = af.trigger("retrain_backtest", {"profile": "params/demo.yaml", "max_batches": max_batches,
                                              "work_dir": str(work / "dag")})
        state = af.finished("retrain_backtest", run, timeout=7200)
        wall_dag = time.monotonic() - t0
        tasks = af.db("select task_id, map_index, state, start_date, end_date from task_instance where run_id = ? "
                      "order by start_date", run)
    if state != "success":
        sys.exit(f"the backtest DAG run ended {state}; logs in {work / 'airflow' / 'logs'}")
    merged, _, _ = retrain(home, "backtest-merge", str(work / "dag"))
    print(merged.stdout)
    same = table_rows(merged.stdout) == table_rows(single.stdout)
    print(f"backtest of params/demo.yaml, 6 strategies, oldest {max_batches} batches of the demo loan book:")
    print(f"  retrain backtest (one process):         {wall_single:7.1f} s wall, {cpu_single:7.1f} CPU-s")
    print(f"  retrain_backtest DAG (LocalExecutor, parallelism {parallelism}): {wall_dag:7.1f} s wall from trigger to "
          f"success, ratio {wall_dag / wall_single:.2f}")
    print(f"  tables identical (all but cpu_seconds): {same}")
    for task_id, idx, st, start, end in tasks:
        print(f"    {task_id}[{idx}] {st} {start} -> {end}")
    print(f"  machine: {os.cpu_count()} cores")


def bench_sizing(home: Path) -> None:
    from retrainlib.demo import week_end

    runs = []
    for label, week in (("bootstrap (first champion)", 10), ("no retraining needed", 11), ("retrain after drift", 22)):
        out, wall, cpu = retrain(home, "run", "--profile", "params/demo.yaml", "--as-of", week_end(week).isoformat(), "--json")
        outcome = json.loads(out.stdout)["outcome"]
        runs.append((label, outcome, wall, cpu))
    print("one `retrain run` of params/demo.yaml (4 notebooks, fresh kernel each; training num_cpus=1):")
    print(f"  {'run':30s} {'outcome':20s} {'wall s':>8s} {'CPU-s':>8s}")
    for label, outcome, wall, cpu in runs:
        print(f"  {label:30s} {outcome:20s} {wall:8.1f} {cpu:8.1f}")
    retrain_cpu = max(cpu for *_, cpu in runs)
    quiet_cpu = runs[1][3]
    print("\nworkers for a fleet run daily (worker = 4 cores, 70% busy over 24 h = 241,920 CPU-s/day):")
    print(f"  {'models':>7s} {'all retrain':>12s} {'10% retrain':>12s}")
    per_worker = 4 * 0.7 * 86400
    for models in (50, 1000, 5000):
        worst = models * retrain_cpu
        mixed = models * (0.1 * retrain_cpu + 0.9 * quiet_cpu)
        print(f"  {models:7d} {math.ceil(worst / per_worker):12d} {math.ceil(mixed / per_worker):12d}"
              f"   ({worst:,.0f} / {mixed:,.0f} CPU-s per day)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-batches", type=int, default=10, help="replay the oldest N demo batches (default 10: 4 steps)")
    ap.add_argument("--parallelism", type=int, default=2, help="LocalExecutor slots (default 2: this machine's cores)")
    ap.add_argument("--part", choices=("all", "backtest", "sizing"), default="all")
    args = ap.parse_args()
    if not AIRFLOW.exists() and args.part != "sizing":
        sys.exit("Airflow's environment is missing: run `make airflow-env` first")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="bench-airflow-") as tmp:
        home = Path(tmp) / "home"
        (home / "params").mkdir(parents=True)
        profile = yaml.safe_load((REPO / "params" / "demo.yaml").read_text())
        profile["schedule"] = {}  # triggered by the benchmark only: no scheduled run of retrain_demo meanwhile
        (home / "params" / "demo.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
        retrain(home, "demo-data")
        if args.part in ("all", "backtest"):
            bench_backtest(home, Path(tmp), args.max_batches, args.parallelism)
        if args.part in ("all", "sizing"):
            bench_sizing(home)


if __name__ == "__main__":
    main()
