"""What changed between two runs of the same backtest: per strategy, its decisions and mean, and its label-free
estimates (how often their band held after the first three judged, the mean absolute error of all), before → after.

    .venv/bin/python benchmarks/compare_backtests.py docs/backtest-noaa.json /tmp/new/result.json

Both files are ``retrain backtest --json`` results of one profile over the same batches (say, a committed record and
a rerun on newer code). Every figure is recomputed from each file's per-batch records.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from retrainlib.backtest import markdown_table, recorded


def per_strategy(path: Path) -> pd.DataFrame:
    """Per strategy: the summary's retrains, promotions, mean metric, judged estimates and their band's coverage (after
    the first three, :func:`retrainlib.backtest.recorded`), and the mean absolute error of every estimate it made."""
    summary, _ = recorded(path)
    frame = pd.DataFrame(json.loads(path.read_text())["records"])
    out = summary.reindex(columns=list(COLUMNS[:-1])).copy()
    for name, g in frame.groupby("strategy", sort=False):
        e = g[g["estimated"].notna()] if "estimated" in g else g.iloc[:0]
        out.loc[name, COLUMNS[-1]] = float((e["estimated"] - e["value"]).abs().mean()) if len(e) else float("nan")
    return out


#: the compared columns and how each is printed
COLUMNS = ("retrains", "promotions", "mean", "estimates_judged", "estimate_coverage", "estimate abs error, all")
_FORMATS = (lambda v: f"{v:.0f}", lambda v: f"{v:.0f}", lambda v: f"{v:.4f}", lambda v: f"{v:.0f}",
            lambda v: f"{v:.3f}", lambda v: f"{v:.4f}")


def compare(before: Path, after: Path) -> pd.DataFrame:
    """One row per strategy: each column ``before → after`` where the two differ, else the one value."""
    if json.loads(before.read_text())["profile"] != json.loads(after.read_text())["profile"]:
        raise SystemExit(f"{before} and {after} are backtests of different profiles")
    a, b = per_strategy(before), per_strategy(after)
    if list(a.index) != list(b.index):
        raise SystemExit(f"{before} and {after} ran different strategies: {list(a.index)} and {list(b.index)}")
    show = lambda f, v: "" if pd.isna(v) else f(v)  # noqa: E731
    rows = {s: {c: show(f, a.loc[s, c]) if show(f, a.loc[s, c]) == show(f, b.loc[s, c])
                else f"{show(f, a.loc[s, c])} → {show(f, b.loc[s, c])}" for c, f in zip(COLUMNS, _FORMATS)}
            for s in a.index}
    return pd.DataFrame(rows).T.rename_axis("strategy")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    print(markdown_table(compare(args.before, args.after)))


if __name__ == "__main__":
    main()
