"""The backtest's tables from its per-batch records: one row per strategy (:func:`summarize`), the acceptance checks
(:func:`check_acceptance`) and the target (:func:`check_target`).

Pure pandas on the records; touches no file."""

from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd

from .coverage import estimate_coverage
from .regret import regret_summary
from .strategies import PLAIN, REFERENCE, STRATEGIES, TRIGGERED


def summarize(records: pd.DataFrame, *, greater_is_better: bool = True, drift_points: Sequence[tuple[str, Any]] = ()) -> pd.DataFrame:
    """One row per strategy: mean and worst batch metric, retrains, promotions, CPU-seconds, ratios.

    ``retrains`` and ``promotions`` leave out the first champion (every strategy bootstraps once);
    ``cpu_seconds`` counts every fit including it. ``mean_after_drift`` averages the batches that
    start on or after the first known drift point. Ratios divide by ``every-batch``'s figure.
    With ``static`` and ``refit`` replayed, ``gap_closed`` is the share of the gap between their mean
    metrics a strategy closes ((mean − static) / (refit − static)) and ``refit_ratio`` its mean as a
    share of refit's (refit's / its own when lower is better), both on the batches all three scored.
    ``blocked`` counts the runs broken data blocked (each names its finding in the records' ``reasons``).
    ``harmful_promotions`` counts the promotions whose regret (:mod:`.regret`: the successor against the
    champion it replaced on the batches that follow) lies below zero beyond sampling error, and
    ``mean_regret`` averages the measured regrets (NaN for records written before they existed).
    ``estimate_coverage`` is the share of the label-free estimates judged when their labels arrived (after the first
    three) whose band held the realized value, of ``estimates_judged`` (:mod:`.coverage`).
    """
    order = [s for s in STRATEGIES if s in set(records["strategy"])]
    first_drift = min((pd.Timestamp(t) for _, t in drift_points), default=None)
    out = []
    for name in order:
        r = records[records["strategy"] == name]
        v = r["value"].dropna()
        row = {
            "strategy": name,
            "batches": int(v.size),
            "mean": float(v.mean()) if v.size else math.nan,
            "worst": float((v.min() if greater_is_better else v.max())) if v.size else math.nan,
        }
        if first_drift is not None:
            after = r.loc[r["batch_start"] >= first_drift, "value"].dropna()
            row["mean_after_drift"] = float(after.mean()) if after.size else math.nan
        row.update(
            retrains=int((r["trained"] & ~r["bootstrap"]).sum()),
            promotions=int((r["promoted"] & ~r["bootstrap"]).sum()),
            rejected=int((r["action"] == "rejected").sum()),
            blocked=int((r["decision"] == "blocked-by-quality").sum()) if "decision" in r else 0,
            **regret_summary(r),
            **estimate_coverage(r),
            cpu_seconds=float(r["cpu_seconds"].sum()),
            fits_reused=int((r["fit_cache"] == "reused").sum()),
            step_seconds=float(r[["analyze_seconds", "retrain_seconds", "validate_seconds", "promote_seconds"]].sum().sum()),
        )
        out.append(row)
    summary = pd.DataFrame(out).set_index("strategy")
    if REFERENCE in summary.index:
        ref = summary.loc[REFERENCE]
        for col in ("mean", "worst", "mean_after_drift", "retrains", "promotions", "cpu_seconds"):
            if col in summary:
                summary[f"{col}_ratio"] = summary[col] / ref[col] if ref[col] else math.nan
    if PLAIN in summary.index and "static" in summary.index:
        summary = summary.join(_against_refit(records, summary.index, greater_is_better))
    return summary


def _against_refit(records: pd.DataFrame, names: Sequence[str], greater_is_better: bool) -> pd.DataFrame:
    """Per strategy, on the batches that it, ``static`` and ``refit`` all scored (a strategy without a
    champion scores none): ``gap`` (refit's mean lead over static), ``gap_closed`` ((mean − static) /
    (refit − static)), ``refit_ratio`` (mean / refit's, inverted when lower is better) and ``vs_refit``
    (mean − refit's, positive when better)."""
    values = records.pivot_table(index="batch_start", columns="strategy", values="value", aggfunc="first", dropna=False)
    sign = 1 if greater_is_better else -1
    out = {}
    for name in names:
        both = values[[c for c in dict.fromkeys([name, "static", PLAIN])]].dropna()
        if both.empty:
            out[name] = {"gap": math.nan, "gap_closed": math.nan, "refit_ratio": math.nan, "vs_refit": math.nan}
            continue
        mean, static, plain = both[name].mean(), both["static"].mean(), both[PLAIN].mean()
        gap = plain - static
        out[name] = {"gap": sign * gap, "gap_closed": (mean - static) / gap if gap else math.nan,
                     "refit_ratio": mean / plain if greater_is_better else plain / mean, "vs_refit": sign * (mean - plain)}
    return pd.DataFrame.from_dict(out, orient="index")


def longest_unflagged_rejections(records: pd.DataFrame, *, stuck_after: int | None = None) -> int:
    """The longest streak the stuck rule should have flagged and did not: challengers rejected or runs
    blocked by broken data in a row (a promotion ends a streak; a batch without an attempt does not),
    counted at a batch where the champion was under ``performance_threshold`` (``below_threshold``,
    the same test step 40 applies) with no stuck event there.

    Step 40's rule (:func:`retrainlib.steps.promote._stuck`) raises the event once such a streak reaches
    ``validation.stuck_after`` with the champion under the threshold; this check and that rule are one.
    Records written before ``below_threshold`` was recorded count every batch as under the threshold; a
    batch without a measured champion (``None``: a first champion not yet accepted) is not under it, as in
    step 40's rule.
    """
    recorded = "below_threshold" in records  # older records lack it: every batch counts as under the threshold
    longest = run = 0
    for rec in records.to_dict("records"):
        attempted = rec.get("trained") or rec.get("decision") == "blocked-by-quality"
        if not attempted:
            continue
        if rec.get("action") == "rejected" or rec.get("decision") == "blocked-by-quality":
            run += 1
            below = rec.get("below_threshold") in (True,) or not recorded  # None: no champion measured, no stuck
            if below and not rec.get("stuck"):
                longest = max(longest, run)
        else:
            run = 0
    return longest


def check_acceptance(summary: pd.DataFrame, records: pd.DataFrame, *, greater_is_better: bool = True,
                     policy: str = "hybrid", stuck_after: int = 3,
                     min_gap: float = 0.01, min_gap_closed: float = 0.8, min_refit_ratio: float = 0.97,
                     max_retrain_ratio: float = 1 / 3, tolerance: float = 0.005) -> pd.DataFrame:
    """Issue 11's acceptance on one stream, one row per check (``check``, ``value``, ``limit``, ``ok``):

    * the profile's own policy (``hybrid`` replays it) and ``performance`` each close ≥ ``min_gap_closed``
      of the gap between ``static`` and ``refit`` (only where that gap is ≥ ``min_gap``) and reach
      ≥ ``min_refit_ratio`` of refit's mean;
    * at least one triggered strategy does both with ≤ ``max_retrain_ratio`` of every-batch's retrains;
    * gated ``every-batch`` is within ``tolerance`` of refit's mean or better (``value``: its lead);
    * no strategy's champion stays under ``performance_threshold`` through ``stuck_after`` or more rejections
      or blocks in a row without a stuck event (the stuck rule itself, :func:`longest_unflagged_rejections`).

    A check whose strategies were not replayed is left out, and a first row names them.
    """
    rows: list[dict[str, Any]] = []
    have = set(summary.index)
    missing = [n for n in ("static", "performance", policy, REFERENCE, PLAIN) if n not in have]
    if missing:
        rows.append({"check": "strategies the checks need were replayed", "value": "missing: " + ", ".join(missing),
                     "limit": "all", "ok": False})
    streaks = {name: longest_unflagged_rejections(r) for name, r in records.groupby("strategy", sort=False)}
    worst = max(streaks, key=streaks.get)
    stuck = {"check": "rejections or blocks in a row under performance_threshold without a stuck event",
             "value": f"{streaks[worst]} ({worst})", "limit": f"< {stuck_after}", "ok": streaks[worst] < stuck_after}
    columns = ["check", "value", "limit", "ok"]
    if not {"static", PLAIN} <= have:
        return pd.DataFrame([*rows, stuck], columns=columns)
    def reaches(name: str) -> tuple[bool, bool]:
        s = summary.loc[name]
        closes = abs(s["gap"]) < min_gap or bool(s["gap_closed"] >= min_gap_closed)
        return closes, bool(s["refit_ratio"] >= min_refit_ratio)

    for name in [n for n in (policy, "performance") if n in have]:
        closes, near = reaches(name)
        label = f"{name} (the profile's policy)" if name == policy else name
        gap = summary.loc[name, "gap"]
        rows.append({"check": f"{label} closes the static→refit gap",
                     "value": summary.loc[name, "gap_closed"] if abs(gap) >= min_gap else
                     f"gap {gap:.3f} < {min_gap:g}: n/a" if abs(gap) < min_gap else "no batch scored by it, static and refit",
                     "limit": f">= {min_gap_closed:g}", "ok": closes})
        rows.append({"check": f"{label} reaches refit's mean", "value": summary.loc[name, "refit_ratio"],
                     "limit": f">= {min_refit_ratio:g}", "ok": near})
    if REFERENCE in have:
        cheap = []
        for name in [n for n in ("periodic", *TRIGGERED) if n in have]:
            ratio = summary.loc[name, "retrains_ratio"]
            if all(reaches(name)) and ratio <= max_retrain_ratio:
                cheap.append(f"{name} ({ratio:.2f})")
        rows.append({"check": "a triggered strategy does both with few retrains (retrains / every-batch's)",
                     "value": ", ".join(cheap) or "none", "limit": f"<= {max_retrain_ratio:.2f}", "ok": bool(cheap)})
        diff = summary.loc[REFERENCE, "vs_refit"]
        rows.append({"check": "every-batch (gated) vs refit's mean", "value": diff, "limit": f">= -{tolerance:g}",
                     "ok": bool(diff >= -tolerance)})
    return pd.DataFrame([*rows, stuck], columns=columns)


def check_target(summary: pd.DataFrame, *, min_ratio: float = 0.95, max_retrain_ratio: float = 1 / 3) -> pd.DataFrame:
    """Does a triggered strategy reach ``min_ratio`` of every-batch's mean metric with at most
    ``max_retrain_ratio`` of its retrains, and beat static after the drift points?"""
    rows = []
    static_after = summary.loc["static", "mean_after_drift"] if "static" in summary.index and "mean_after_drift" in summary else None
    for name in [s for s in TRIGGERED if s in summary.index]:
        s = summary.loc[name]
        row = {
            "strategy": name,
            "mean_ratio": s.get("mean_ratio"),
            "mean_ratio_ok": bool(s.get("mean_ratio", 0) >= min_ratio),
            "retrains_ratio": s.get("retrains_ratio"),
            "retrains_ratio_ok": bool(s.get("retrains_ratio", 1) <= max_retrain_ratio),
        }
        if static_after is not None:
            row["beats_static_after_drift"] = bool(s["mean_after_drift"] > static_after)
        row["meets_target"] = all(v for k, v in row.items() if k.endswith("_ok") or k.startswith("beats"))
        rows.append(row)
    return pd.DataFrame(rows).set_index("strategy") if rows else pd.DataFrame()

