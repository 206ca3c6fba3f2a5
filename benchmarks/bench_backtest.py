"""Benchmark: the demo backtest with warm fresh-process checks and the check cache, then cold (as before).

Runs ``retrainlib.backtest.run_backtest`` twice in one run, each in its own subprocess and its own
scratch folder (so fits are computed afresh both times and the CPU time is that run's alone):

* **warm**: fresh-process checks and training fits forked from the pre-imported fork server, which
  also took AutoGluon's listing of installed packages once; a check of byte-identical model files on
  identical rows answered from the check cache, and the champion's drift-step scores from the same
  folder (:mod:`retrainlib.freshproc`, :mod:`retrainlib.scorecache`), the default;
* **cold**: ``--cold``, a new Python interpreter per check and per fit, AutoGluon's package listing at
  every save and load, no check cache (the behaviour before).

It prints wall time, CPU time (user + system of the run's process and every process it waited for:
fits, checks, the fork server and its children) and whether every decision matched — between the two
runs and against the committed ``docs/backtest-demo.json`` at every step both have. ::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_backtest.py                                # full (slow)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_backtest.py --strategies drift,every-batch --max-batches 13
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
#: what each replayed step decided; a run matches when all of these are equal at every step
DECISION = ["champion", "decision", "fired", "trained", "challenger", "verdict", "action", "champion_after"]


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def worker(args) -> None:
    sys.path.insert(0, str(REPO))
    from retrainlib import freshproc
    from retrainlib.backtest import run_backtest
    from retrainlib.outputs import Validation
    from retrainlib.playbook import read_output

    result = run_backtest(args.profile, home=REPO, strategies=args.strategies, max_batches=args.max_batches,
                          work_dir=args.work_dir, cold=args.worker == "cold", progress=False)
    freshproc.stop_warm_server()  # wait for it, so its CPU time and its children's count as this run's
    reloads: dict[str, int] = {}
    for run_dir in result.records["run_dir"]:
        v = read_output(Path(run_dir), Validation)
        for details in (v.gate_details("stability_reload") if v else []):
            mode = details.get("fresh", "cold")
            reloads[mode] = reloads.get(mode, 0) + 1
    payload = result.to_dict()
    payload["reloads"] = reloads
    Path(args.result).write_text(json.dumps(payload, default=str))


def run_mode(mode: str, args, scratch: Path) -> dict:
    out = scratch / f"{mode}.json"
    cmd = [sys.executable, __file__, "--worker", mode, "--result", str(out), "--work-dir", str(scratch / mode),
           "--profile", args.profile]
    if args.strategies:
        cmd += ["--strategies", args.strategies]
    if args.max_batches:
        cmd += ["--max-batches", str(args.max_batches)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    cpu0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=REPO)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    result = json.loads(out.read_text())
    return {"mode": mode, "wall": wall, "cpu": cpu, "result": result, "load": os.getloadavg()[0]}


def decisions(result: dict) -> dict[tuple[str, int], dict]:
    return {(r["strategy"], int(r["step"])): {k: r.get(k) for k in DECISION} | {"value": r.get("value")}
            for r in result["records"]}


def differences(a: dict, b: dict) -> list[str]:
    """Steps both have where a decision (or the champion's metric, to 1e-9) differs; one line each."""
    out = []
    for key in sorted(set(a) & set(b)):
        x, y = a[key], b[key]
        for k in DECISION:
            if x[k] != y[k] and not (x[k] in (None, "") and y[k] in (None, "")):
                out.append(f"{key[0]} step {key[1]}: {k} {x[k]!r} vs {y[k]!r}")
        vx, vy = x["value"], y["value"]
        both_nan = vx is None and vy is None or (isinstance(vx, float) and isinstance(vy, float) and math.isnan(vx) and math.isnan(vy))
        if not both_nan and (vx is None or vy is None or abs(vx - vy) > 1e-9):
            out.append(f"{key[0]} step {key[1]}: value {vx!r} vs {vy!r}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="params/demo.yaml")
    p.add_argument("--strategies", default=None, help="comma-separated (default all six)")
    p.add_argument("--max-batches", type=int, default=None, help="replay only the oldest N batches (default all 30)")
    p.add_argument("--expected", default=str(REPO / "docs" / "backtest-demo.json"), help="decisions to match")
    p.add_argument("--modes", default="warm,cold", help="which runs, in order (default warm,cold)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folders")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--result", default=None, help=argparse.SUPPRESS)
    p.add_argument("--work-dir", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    if not (REPO / "data" / "demo" / "batches").is_dir():
        subprocess.run([sys.executable, "-m", "retrainlib.cli", "demo-data"], check=True, cwd=REPO)
    expected = decisions(json.loads(Path(args.expected).read_text()))
    scratch = Path(tempfile.mkdtemp(prefix="bench-backtest-", dir=REPO / "runs"))
    runs = [run_mode(m.strip(), args, scratch) for m in args.modes.split(",") if m.strip()]
    got = [decisions(r["result"]) for r in runs]
    print(f"demo backtest: strategies {args.strategies or 'all'}, max_batches {args.max_batches or 'all'}; "
          f"{len(got[0])} steps per run; {os.cpu_count()} cores; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print()
    print("| run | wall s | CPU s | reload checks | decisions = docs/backtest-demo.json | decisions = other run | faster (wall / CPU) | load avg at end |")
    print("|---|---|---|---|---|---|---|---|")
    base = runs[-1]
    for r, g in zip(runs, got):
        vs_docs = differences(g, expected)
        vs_other = [differences(g, h) for h in got if h is not g]
        steps_in_docs = len(set(g) & set(expected))
        reloads = ", ".join(f"{n} {k}" for k, n in sorted(r["result"]["reloads"].items())) or "0"
        print(f"| {r['mode']} | {r['wall']:.1f} | {r['cpu']:.1f} | {reloads} | "
              f"{'yes' if not vs_docs else 'NO'} ({steps_in_docs - len({d.split(':')[0] for d in vs_docs})}/{steps_in_docs} steps) | "
              f"{'yes' if not any(vs_other) else 'NO'} | "
              f"{base['wall'] / r['wall']:.2f}x / {base['cpu'] / r['cpu']:.2f}x | {r['load']:.1f} |")
        for line in vs_docs[:10]:
            print(f"    differs from docs: {line}")
    print()
    for r in runs:
        fc = r["result"]["fit_cache"]
        print(f"{r['mode']}: backtest's own clock {r['result']['seconds']:.1f} s; fits {fc.get('fits_computed')} computed, "
              f"{fc.get('fits_reused')} reused")
    if not args.keep:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
