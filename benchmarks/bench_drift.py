"""Benchmark: retrainlib.drift.compare against Evidently's DataDriftPreset on the same frames.

Generates seeded reference/current frames (numeric and categorical columns, planted shifts), writes
them once as Parquet, then runs each tool in its own fresh subprocess so that wall time and peak
memory (``ru_maxrss``) belong to that tool alone. Prints two tables: the analysis call alone, and
the whole process (start, imports, reading both Parquet files, analysis) of ``retrain drift``
against a process that imports Evidently, reads the same files with pandas and runs the preset.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_drift.py            # both sizes, all tools
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_drift.py --whole    # whole processes only, 1M x 20

``--whole`` times ``retrain drift REFERENCE CURRENT`` as a user runs it (a subprocess: start,
imports, reading both Parquet files, analysis, output) against a subprocess that imports
Evidently, reads the same two files and runs the preset, in the same run, and prints one table:
wall s, CPU s, peak RSS, drifted columns, same verdict on every planted column, speed-up.

Evidently is a benchmark-only extra that retrainlib never imports. It needs plotly<6 (retrainlib
pins plotly 7), so give it its own venv, which the benchmark uses when it exists::

    python3.11 -m venv .venv-bench && .venv-bench/bin/pip install -r requirements-bench.txt
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
#: Evidently 0.7.23 needs plotly<6 while retrainlib pins plotly 7, so it may live in its own venv
EVIDENTLY_PYTHON = sys.executable
CATEGORIES = np.array(["north", "south", "east", "west", "centre", "coast", "hills", "plains"])


def planted_columns(p: int) -> dict[str, str]:
    """The columns whose current distribution is shifted, and how."""
    return {"x0": "mean +0.5 sd", "x1": "sd x1.5", "x2": "mean +0.2 sd and sd x1.2",
            "c4": "new category at 10%", "c9": "category shares moved"}


def make_frames(n: int, p: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current frames, n rows x p columns; every fifth column is categorical (strings)."""
    rng = np.random.default_rng(seed)
    weights = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.07, 0.05, 0.03])

    def build(current: bool) -> pd.DataFrame:
        cols = {}
        for j in range(p):
            if j % 5 == 4:
                name = f"c{j}"
                w = weights
                if current and name == "c9":
                    w = weights[::-1]
                values = CATEGORIES[rng.choice(len(CATEGORIES), size=n, p=w)].astype(object)
                if current and name == "c4":
                    values[rng.random(n) < 0.10] = "brand-new"
                cols[name] = values
            else:
                name = f"x{j}"
                loc, scale = float(j % 7), 1.0 + (j % 3)
                if current and name == "x0":
                    loc += 0.5 * scale
                if current and name == "x1":
                    scale *= 1.5
                if current and name == "x2":
                    loc, scale = loc + 0.2 * scale, scale * 1.2
                cols[name] = rng.normal(loc, scale, size=n)
        return pd.DataFrame(cols)

    return build(False), build(True)


# --------------------------------------------------------------------------- workers (one per subprocess)
def _import(tool: str) -> None:
    """Import a tool's modules before the clock starts (reported apart as import time)."""
    if tool == "ours":
        sys.path.insert(0, str(HERE.parent))
        import retrainlib.drift  # noqa: F401
        import sklearn.ensemble, sklearn.metrics, sklearn.model_selection  # noqa: F401,E401  (multivariate's)
    else:
        import evidently  # noqa: F401
        from evidently import Report  # noqa: F401
        from evidently.presets import DataDriftPreset  # noqa: F401


def _run_ours(ref: pd.DataFrame, cur: pd.DataFrame, mode: str) -> tuple[list[str], dict]:
    from retrainlib import drift
    from retrainlib.profiles import DriftSettings

    settings = {"default": DriftSettings(), "all-rows": DriftSettings(max_rows=None, multivariate=False),
                "per-feature": DriftSettings(multivariate=False)}[mode]
    report = drift.compare(ref, cur, settings=settings)
    extra = {"score": report.score, "dataset_drifted": report.drifted}
    if report.multivariate is not None:
        extra["multivariate_auc"] = round(report.multivariate.auc, 3)
    return list(report.drifted_features), extra


def _run_evidently(ref: pd.DataFrame, cur: pd.DataFrame, mode: str) -> tuple[list[str], dict]:
    import evidently
    from evidently import Report
    from evidently.presets import DataDriftPreset

    snapshot = Report([DataDriftPreset()]).run(cur, ref)
    drifted, share = [], None
    for m in snapshot.dict()["metrics"]:
        cfg = m["config"]
        if cfg["type"].endswith("ValueDrift"):
            value, threshold = m["value"], cfg["threshold"]
            is_p = "p_value" in cfg["method"].lower()
            if (value < threshold) if is_p else (value >= threshold):
                drifted.append(cfg["column"])
        elif cfg["type"].endswith("DriftedColumnsCount"):
            share = m["value"]["share"]
    return drifted, {"share": share, "dataset_drifted": share is not None and share >= 0.5,
                     "version": evidently.__version__}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _status_kb(field: str) -> float:
    """A VmRSS/VmHWM figure of this process from /proc (Linux), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float("nan")


def worker(tool: str, data: Path, mode: str) -> None:
    start = time.perf_counter()
    _import(tool)
    imported = time.perf_counter() - start
    ref = pd.read_parquet(data / "reference.parquet")
    cur = pd.read_parquet(data / "current.parquet")
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the RSS high-water mark: VmHWM is now the analysis's
    start, cpu = time.perf_counter(), _cpu()
    drifted, extra = (_run_ours if tool == "ours" else _run_evidently)(ref, cur, mode)
    wall, cpu = time.perf_counter() - start, _cpu() - cpu
    during = _status_kb("VmHWM")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux: the whole process
    print(json.dumps({"wall": wall, "cpu": cpu, "import": imported, "peak_mb": peak / 1024,
                      "before_mb": before / 1024, "during_mb": during / 1024, "drifted": sorted(drifted), **extra}))


# --------------------------------------------------------------------------- driver
def _retrain() -> list[str]:
    """The `retrain` command of this Python's environment (its console script; else ``python -m retrainlib.cli``)."""
    script = Path(sys.executable).parent / "retrain"
    return [str(script)] if script.exists() else [sys.executable, "-m", "retrainlib.cli"]


#: runs one command and writes its wall time, CPU time and peak RSS (its own ``wait4``) as JSON to argv[1]. A small
#: launcher of its own, because Linux starts a forked child's peak RSS at its parent's RSS: forked from this driver
#: (which held the generated frames) every child would report at least the driver's memory.
_LAUNCHER = """
import json, os, sys, time
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, use = os.wait4(pid, 0)
wall = time.perf_counter() - t
with open(sys.argv[1], "w") as f:
    json.dump({"process_wall": wall, "process_cpu": use.ru_utime + use.ru_stime, "process_peak_mb": use.ru_maxrss / 1024}, f)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _run_process(cmd: list[str], env: dict[str, str]) -> tuple[int, str, str, dict]:
    """Run one process to its end through the launcher; its exit code, output, and its wall, CPU and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="bench-drift-run-") as tmp:
        usage = Path(tmp) / "usage.json"
        out = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, str(usage), *cmd], capture_output=True,
                             text=True, env=env, check=False, cwd=HERE.parent)
        whole = json.loads(usage.read_text()) if usage.exists() else {}
        return out.returncode, out.stdout, out.stderr, whole


def _spawn(tool: str, data: Path, mode: str) -> dict:
    """Run one tool in its own process; its own figures plus the whole process's wall time, CPU time and peak RSS."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if tool == "cli":  # `retrain drift REFERENCE CURRENT` as a user runs it: start, imports, reading, analysis, output
        out_json = data / "cli.json"
        cmd = [*_retrain(), "drift", str(data / "reference.parquet"), str(data / "current.parquet"),
               "--json", str(out_json)]
    else:
        python = EVIDENTLY_PYTHON if tool == "evidently" else sys.executable
        cmd = [python, __file__, "--worker", tool, "--data", str(data), "--mode", mode]
    code, stdout, stderr, whole = _run_process(cmd, env)
    if code != 0:
        raise SystemExit(f"{tool} ({mode}) failed:\n{stderr[-3000:]}")
    if tool == "cli":
        report = json.loads(out_json.read_text())
        return {"drifted": sorted(report["drifted_features"]), **whole}
    return {**json.loads(stdout.strip().splitlines()[-1]), **whole}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=None, help="comma-separated ROWSxCOLUMNS (default 1000000x20,200000x100; "
                                                  "with --whole 1000000x20)")
    ap.add_argument("--tools", default="ours,cli,evidently",
                    help="comma-separated: ours (the analysis call alone), cli (`retrain drift`, whole process), evidently")
    ap.add_argument("--whole", action="store_true",
                    help="whole processes only: `retrain drift REFERENCE CURRENT` against Evidently "
                         "(default size 1000000x20; same as --tools cli,evidently)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--evidently-python", default=None,
                    help="the Python whose environment has Evidently (default: .venv-bench/bin/python if it exists, else this one)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="default", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, Path(args.data), args.mode)
        return
    global EVIDENTLY_PYTHON
    bench_venv = HERE.parent / ".venv-bench" / "bin" / "python"
    EVIDENTLY_PYTHON = args.evidently_python or (str(bench_venv) if bench_venv.exists() else sys.executable)

    if args.whole:
        args.tools = "cli,evidently"
    args.sizes = args.sizes or ("1000000x20" if args.whole else "1000000x20,200000x100")
    runs = []
    for tool in args.tools.split(","):
        runs += [("ours", m) for m in ("default", "per-feature", "all-rows")] if tool == "ours" else [(tool, "default")]
    whole = ["| frame | tool, whole process (start, imports, reading both files, analysis, output) | wall s | CPU s "
             "| peak RSS MB | drifted columns found | planted verdicts same as Evidently "
             "| faster than Evidently (wall / CPU) |",
             "|" + "---|" * 8]
    header = ("| frame | tool | wall s | CPU s | import s | peak RSS MB, whole process | peak RSS MB during the analysis "
              "(rise over loaded frames) | drifted columns found | planted verdicts same as Evidently "
              "| faster than Evidently (wall / CPU) |")
    lines = [header, "|" + "---|" * 10]
    for size in args.sizes.split(","):
        n, p = (int(v) for v in size.lower().split("x"))
        planted = planted_columns(p)
        with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
            ref, cur = make_frames(n, p, args.seed)
            ref.to_parquet(Path(tmp) / "reference.parquet")
            cur.to_parquet(Path(tmp) / "current.parquet")
            del ref, cur
            results = {}
            for tool, mode in runs:
                results[(tool, mode)] = _spawn(tool, Path(tmp), mode)
                print(f"# {size} {tool} {mode}: {json.dumps(results[(tool, mode)])}", file=sys.stderr)
        ev = results.get(("evidently", "default"))
        for (tool, mode) in [k for k in (("cli", "default"), ("evidently", "default")) if k in results]:
            r = results[(tool, mode)]
            label = ("`retrain drift REFERENCE CURRENT` (default settings)" if tool == "cli"
                     else f"Evidently {r.get('version', '')} DataDriftPreset (read with pandas)")
            same = speed = "-"
            if ev is not None and tool != "evidently":
                same = f"{sum((c in r['drifted']) == (c in ev['drifted']) for c in planted)}/{len(planted)}"
                speed = f"{ev['process_wall'] / r['process_wall']:.0f}x / {ev['process_cpu'] / r['process_cpu']:.0f}x"
            whole.append(f"| {n:,} x {p} | {label} | {r['process_wall']:.2f} | {r['process_cpu']:.2f} "
                         f"| {r['process_peak_mb']:.0f} | {', '.join(r['drifted']) or 'none'} | {same} | {speed} |")
        for (tool, mode), r in results.items():
            if tool == "cli":
                continue
            label = f"Evidently {r.get('version', '')} DataDriftPreset" if tool == "evidently" else f"retrainlib ({mode})"
            found = ", ".join(r["drifted"]) or "none"
            if ev is None or tool == "evidently":
                same, speed = "-", "-"
            else:
                agree = [(c in r["drifted"]) == (c in ev["drifted"]) for c in planted]
                same = f"{sum(agree)}/{len(agree)}"
                speed = f"{ev['wall'] / r['wall']:.0f}x / {ev['cpu'] / r['cpu']:.0f}x"
            lines.append(f"| {n:,} x {p} | {label} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['import']:.1f} "
                         f"| {r['peak_mb']:.0f} | {r['during_mb']:.0f} (+{r['during_mb'] - r['before_mb']:.0f}) "
                         f"| {found} | {same} | {speed} |")
    print(f"planted shifts: {planted_columns(0)}")
    if not args.whole:
        print("\n".join(lines))
    if len(whole) > 2:
        print()
        print("\n".join(whole))


if __name__ == "__main__":
    main()
