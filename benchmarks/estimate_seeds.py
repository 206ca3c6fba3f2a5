"""How much the running mode's point error and coverage move with our estimators' seed alone.

Reads the per-batch files of several ``bench_estimate.py --mode running --seed S --out DIR`` runs (same streams, same
label delay) and prints, per stream and metric, our point error over NannyML's (after the warm-up, as the bench's
running table counts it) and our coverage for each seed, with their range. NannyML's side has no seed to set: its
figures are the same in every run, so the ratios move by our side alone.

    python benchmarks/estimate_seeds.py 0=/tmp/bench-seed0 1=/tmp/bench-seed1 …
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_estimate import markdown, summarize_running  # noqa: E402

CSV = "bench_estimate_running_per_batch.csv"


def seed_table(runs: dict[int, Path]) -> pd.DataFrame:
    """One row per stream and metric: our point error / NannyML's and our coverage for each seed, and their ranges."""
    rows = {}
    for seed, folder in sorted(runs.items()):
        frame = pd.read_csv(folder / CSV, keep_default_na=False, na_values=[""])
        frame["unreliable"] = frame["unreliable"].fillna("")
        nan = float("nan")
        table = summarize_running([{"frame": frame, "label_delay": nan, "ours_seconds": nan, "ours_cpu": nan,
                                    "nannyml_seconds": nan, "nannyml_cpu": nan}])
        for t in table.to_dict("records"):
            key = (t["stream"], t["metric"])
            row = rows.setdefault(key, {"stream": key[0], "metric": key[1]})
            row[f"seed {seed}: error / NannyML's"] = t["ours MAE"] / t["NannyML MAE"]
            row[f"seed {seed}: coverage"] = t["ours coverage"]
    out = pd.DataFrame(list(rows.values()))
    ratios = out[[c for c in out.columns if c.endswith("NannyML's")]]
    covers = out[[c for c in out.columns if c.endswith("coverage")]]
    out["error / NannyML's, range"] = [f"{lo:.3f}–{hi:.3f}" for lo, hi in zip(ratios.min(axis=1), ratios.max(axis=1))]
    out["seeds no worse than NannyML"] = [f"{int(w)} of {int(n)}" for w, n in zip((ratios <= 1.0).sum(axis=1),
                                                                                ratios.notna().sum(axis=1))]
    out["coverage, range"] = [f"{lo:.3f}–{hi:.3f}" for lo, hi in zip(covers.min(axis=1), covers.max(axis=1))]
    return out.round(3)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="SEED=DIR", help="a seed and the --out folder of its running-mode run")
    args = parser.parse_args(argv)
    runs = {}
    for item in args.runs:
        seed, _, folder = item.partition("=")
        if not folder or not seed.isdigit() or not (Path(folder) / CSV).exists():
            raise SystemExit(f"{item}: expected SEED=DIR, DIR holding {CSV} (bench_estimate.py --mode running "
                             f"--seed SEED --out DIR)")
        runs[int(seed)] = Path(folder)
    print(markdown(seed_table(runs)))


if __name__ == "__main__":
    main()
