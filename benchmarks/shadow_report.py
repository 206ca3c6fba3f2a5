"""Issue 24's check over written backtests: gated ``every-batch`` against ``shadow``, harmful promotions and means.

    .venv/bin/python benchmarks/shadow_report.py /tmp/bt24/*/out/backtest.json > docs/backtest-shadow.md

Every figure is recomputed from each file's per-batch records (:func:`retrainlib.backtest.recorded`). The target:
``shadow`` has at most half of every-batch's harmful promotions, with its mean within 1 % of every-batch's.
"""

from __future__ import annotations

import argparse
import json
import math

import pandas as pd

from retrainlib.backtest import markdown_table, recorded


def row(path: str) -> dict:
    raw = json.load(open(path))
    summary, _ = recorded(path)
    every, shadow = summary.loc["every-batch"], summary.loc["shadow"]
    gib = raw["greater_is_better"]
    change = (shadow["mean"] - every["mean"]) / abs(every["mean"]) * (1 if gib else -1)
    harmful_ok = shadow["harmful_promotions"] <= every["harmful_promotions"] / 2
    mean_ok = change >= -0.01
    return {"stream": raw["profile"], "metric": raw["metric"], "batches": int(summary["batches"].max()),
            "every-batch mean": every["mean"], "shadow mean": shadow["mean"], "shadow vs every-batch": f"{change:+.1%}",
            "every-batch promotions": int(every["promotions"]), "shadow promotions": int(shadow["promotions"]),
            "every-batch harmful": int(every["harmful_promotions"]), "shadow harmful": int(shadow["harmful_promotions"]),
            "every-batch mean regret": every["mean_regret"], "shadow mean regret": shadow["mean_regret"],
            "target": "met" if harmful_ok and mean_ok else
            "missed: " + "; ".join(w for w, ok in (("harmful > half of every-batch's", harmful_ok),
                                                  ("mean more than 1 % lower", mean_ok)) if not ok)}


def gaps(path: str) -> str:
    """Where the wait costs: every-batch's metric minus shadow's per batch both scored, the two largest and their share."""
    raw = json.load(open(path))
    values = pd.DataFrame(raw["records"]).pivot(index="batch", columns="strategy", values="value").dropna()
    sign = 1 if raw["greater_is_better"] else -1
    gap = (sign * (values["every-batch"] - values["shadow"])).sort_values(ascending=False)
    top = ", ".join(f"{batch.split('.')[0]} {g:+.3f}" for batch, g in gap.head(2).items())
    return (f"{raw['profile']}: mean gap {gap.mean():+.4f} over {len(gap)} batches; largest {top}; "
            f"share of the gap in those two {gap.head(2).sum() / gap.sum():.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="backtest.json files written by `retrain backtest --strategies every-batch,shadow`")
    ap.add_argument("--gaps", action="store_true", help="instead, where shadow's mean falls behind, per stream")
    args = ap.parse_args()
    if args.gaps:
        print("\n".join(gaps(p) for p in args.results))
        return
    table = pd.DataFrame([row(p) for p in args.results]).set_index("stream")
    print(markdown_table(table))
    total = table[["every-batch harmful", "shadow harmful"]].sum()
    print(f"\nharmful promotions over {len(table)} streams: every-batch {int(total.iloc[0])}, shadow {int(total.iloc[1])}; "
          f"target met on {int((table['target'] == 'met').sum())} of {len(table)}")
    if any(math.isnan(v) for v in table["shadow mean regret"]):
        print("(mean regret –: no promotion with a batch after it)")


if __name__ == "__main__":
    main()
