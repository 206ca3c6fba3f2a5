"""Benchmark: `retrain tune` against one all-strategy backtest of the same stream, measured in the same run.

Issue 25's target: tuning costs at most twice one backtest of every strategy (``retrain backtest``),
because both replay the playbook's own steps and tune shares its fits and checks across candidates
(the backtest's fit cache and check cache). Each side runs in its own subprocess, in its own scratch
home with its own caches (nothing computed by one is reused by the other), one after the other. The
stream is the demo loan book written afresh (``--weeks`` weekly batches of ``--rows`` rows) with the
demo profile and a bounded LightGBM of ``--rounds`` rounds. Prints wall time, CPU time (the worker
and every process it waited for) and fits computed / reused, and the ratios tune / backtest. ::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_tune.py                       # 16 weeks x 400 rows
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_tune.py --weeks 30 --rows 1500 --rounds 200 --window 6
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def make_home(root: Path, args) -> Path:
    from retrainlib.demo import DEMO_BATCHES, write_batches

    prof = yaml.safe_load((REPO / "params" / "demo.yaml").read_text())
    prof["training"]["hyperparameters"] = {"GBM": [{"num_boost_round": args.rounds, "learning_rate": 0.1}]}
    prof["training"]["window_batches"] = args.window
    prof["training"]["min_train_rows"] = 100
    (root / "params").mkdir(parents=True, exist_ok=True)
    (root / "params" / "demo.yaml").write_text(yaml.safe_dump(prof, sort_keys=False))
    write_batches(root / DEMO_BATCHES, weeks=args.weeks, rows=args.rows)
    return root


def worker(args) -> None:
    sys.path.insert(0, str(REPO))
    from retrainlib import freshproc

    home = Path(args.home)
    if args.worker == "backtest":
        from retrainlib.backtest import run_backtest

        r = run_backtest("params/demo.yaml", home=home, work_dir=home / "work", progress=False)
        out = {"seconds": r.seconds, "fit_cache": r.fit_cache, "steps": len(r.records), "replays": len(r.strategies)}
    else:
        from retrainlib.tune import tune, write_report

        r = tune("params/demo.yaml", home=home, work_dir=home / "work", progress=False)
        write_report(r)  # tune.md, tune.png and the per-batch records in the work dir (kept with --keep)
        out = {"seconds": r.seconds, "fit_cache": r.fit_cache, "replays": len(r.table) + 1, "pick": r.pick,
               "pick_reason": r.pick_reason, "confirm_from": r.confirm_from}
    freshproc.stop_warm_server()  # its CPU time and its children's count as this run's
    Path(args.result).write_text(json.dumps(out, default=str))


def run_side(side: str, home: Path, scratch: Path) -> dict:
    out = scratch / f"{side}.json"
    cmd = [sys.executable, __file__, "--worker", side, "--home", str(home), "--result", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    cpu0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=REPO)
    return {"side": side, "wall": time.perf_counter() - t0, "cpu": _children_cpu() - cpu0,
            "result": json.loads(out.read_text()), "load": os.getloadavg()[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weeks", type=int, default=16)
    p.add_argument("--rows", type=int, default=400)
    p.add_argument("--rounds", type=int, default=40, help="LightGBM boosting rounds (default 40)")
    p.add_argument("--window", type=int, default=3, help="the profile's window_batches (default 3)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folders")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--home", default=None, help=argparse.SUPPRESS)
    p.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    sys.path.insert(0, str(REPO))
    scratch = Path(tempfile.mkdtemp(prefix="bench-tune-"))
    sides = []
    for side in ("backtest", "tune"):
        sides.append(run_side(side, make_home(scratch / side, args), scratch))
    print(f"demo stream: {args.weeks} weekly batches of {args.rows} rows, window {args.window}, GBM {args.rounds} rounds; "
          f"{os.cpu_count()} cores; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print()
    print("| run | replays | wall s | CPU s | fits computed | fits reused | load avg at end |")
    print("|---|---|---|---|---|---|---|")
    for s in sides:
        fc = s["result"]["fit_cache"]
        print(f"| {s['side']} | {s['result']['replays']} | {s['wall']:.1f} | {s['cpu']:.1f} | {fc['fits_computed']} | "
              f"{fc['fits_reused']} | {s['load']:.1f} |")
    b, t = sides
    print()
    print(f"tune / backtest: wall {t['wall'] / b['wall']:.2f}x, CPU {t['cpu'] / b['cpu']:.2f}x (target <= 2x)")
    print(f"tune's pick: {t['result']['pick_reason']} (confirm from {t['result']['confirm_from']})")
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
