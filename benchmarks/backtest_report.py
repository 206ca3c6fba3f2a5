"""Render a ``retrain backtest --json`` result as a Markdown report (table, target, shared fits, where time went).

    .venv/bin/python benchmarks/backtest_report.py RESULT.json --plot docs/backtest-demo.png > docs/backtest-demo.md
"""

from __future__ import annotations

import argparse
import json

import pandas as pd

from retrainlib.backtest import markdown_table, recorded

COLUMNS = ["strategy", "batches", "mean", "worst", "mean_after_drift", "retrains", "promotions", "rejected", "blocked",
           "harmful_promotions", "mean_regret", "cpu_seconds",
           "mean_ratio", "worst_ratio", "mean_after_drift_ratio", "retrains_ratio", "promotions_ratio", "cpu_seconds_ratio",
           "gap_closed", "refit_ratio"]


def blocks_section(records: pd.DataFrame) -> list[str]:
    """Every run broken data blocked, with the finding it names (issue 22: changed data never blocks)."""
    if "decision" not in records:
        return []
    blocked = records[records["decision"] == "blocked-by-quality"]
    if blocked.empty:
        return ["Data quality: **no run of any strategy was blocked** (broken data blocks; changed data — ranges, "
                "missing shares, repeated rows, constant columns — is scored and never blocks).", ""]
    rows = blocked.assign(finding=blocked["reasons"].str.split(" \\| ").str[0].str.slice(0, 240))
    return [f"Data quality: {len(blocked)} run(s) blocked by broken data, each naming its finding:", "",
            markdown_table(rows.set_index("strategy")[["batch", "finding"]]), ""]


def report(path: str, plot: str | None, command: str | None, code: str | None = None) -> str:
    result = json.load(open(path))
    summary, acceptance = recorded(path)  # both recomputed from the per-batch records
    summary = summary[[c for c in COLUMNS[1:] if c in summary]]
    records = pd.DataFrame(result["records"])
    s = result["settings"]
    lines = [f"# Backtest: {result['profile']}", ""]
    if code:
        lines += [f"Code: {code}.", ""]
    if command:
        lines += ["```bash", command, "```", ""]
    lines += [f"{s['n_batches']} batches, first champion trained when {s['warmup']} were visible; metric "
              f"`{result['metric']}` of the serving champion on each new batch (prequential). "
              f"Drift points: " + (", ".join(f"{p['name']} {p['date'][:10]}" for p in result["drift_points"]) or "none known")
              + f". Wall time {result['seconds'] / 60:.1f} min.", ""]
    lines += [markdown_table(summary), ""]
    lines += ["`retrains`/`promotions` exclude the first champion; `cpu_seconds` is the training CPU of every fit a "
              "strategy used (the first included), as if it had trained alone; `*_ratio` divides by `every-batch`; "
              "`gap_closed` is the share of the gap between `static` and `refit` a strategy closes, `refit_ratio` its "
              "mean as a share of `refit`'s, both on the batches it, `static` and `refit` all scored "
              "(`refit`: retrain before every batch on the newest window, no gates).", ""]
    if plot:
        lines += [f"![metric per batch]({plot})", ""]
    lines += blocks_section(records)
    if result.get("target"):
        lines += ["Target (≥ 95 % of every-batch's mean with ≤ 1/3 of its retrains, beating static after the drift):", ""]
        lines += [markdown_table(pd.DataFrame(result["target"]).set_index("strategy")), ""]
    if len(acceptance):
        misses = acceptance[~acceptance["ok"]]
        lines += ["Acceptance (issue 11): " + ("**met on this stream**." if misses.empty else
                  f"**missed: {len(misses)} of {len(acceptance)} checks** (`ok` False below)."), "",
                  markdown_table(acceptance.set_index("check")), ""]
    fc = result["fit_cache"]
    if fc.get("enabled", True):
        lines += [f"Shared fits: {fc['fits_computed']} computed, {fc['fits_reused']} reused, saving "
                  f"{fc['cpu_seconds_saved']:.0f} of {fc['cpu_seconds_saved'] + fc['cpu_seconds_computed']:.0f} training CPU-seconds.", ""]
    cols = ["analyze_seconds", "retrain_seconds", "validate_seconds", "promote_seconds"]
    t = records.groupby("strategy", sort=False)[cols].sum()
    t["trained"] = records.groupby("strategy", sort=False)["trained"].sum()
    trained = records[records["trained"]]
    computed = trained[trained["fit_cache"] != "reused"]
    reused = trained[trained["fit_cache"] == "reused"]
    promoted = records[records["promoted"]]
    lines += ["Wall-clock seconds per step kind (sum over the replay):", "", markdown_table(t.round(1), digits=1), "",
              f"Per trained challenger, on average: the retrain step took {computed['retrain_seconds'].mean():.1f} s wall for a "
              f"computed fit (fit CPU {computed['cpu_seconds'].mean():.1f} s, AutoGluon's own fit {computed['fit_seconds'].mean():.1f} s; "
              f"the rest is starting Python+AutoGluon in the child, the deployment clone and feature importance) and "
              f"{reused['retrain_seconds'].mean() if len(reused) else float('nan'):.2f} s for a reused one; validation took "
              f"{trained['validate_seconds'].mean():.1f} s (it reloads the challenger in a fresh Python process); "
              f"a promotion took {promoted['promote_seconds'].mean():.1f} s (fresh-process smoke test).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("result")
    p.add_argument("--plot", default=None)
    p.add_argument("--command", default=None, help="the command that produced the result, shown in the report")
    p.add_argument("--code", default=None, help="which code produced it (branch and commit), shown in the report")
    a = p.parse_args()
    print(report(a.result, a.plot, a.command, a.code))
