"""A backtest's result and its files: :class:`BacktestResult` (``backtest.json``, the CSVs, ``backtest.png``), reading a
written ``backtest.json`` back (:func:`recorded`, :func:`streams_table`) and the Markdown table.

May touch: the files it is asked to write or read; nothing else."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..durable import write_atomic
from .strategies import REFERENCE, TRIGGERED, Strategy
from .summary import check_acceptance, check_target, summarize


@dataclass
class BacktestResult:
    """Per-batch records of every strategy, the summary table, and what the shared fits saved."""

    profile: str
    metric: str
    greater_is_better: bool
    strategies: list[Strategy]
    records: pd.DataFrame  # one row per strategy and replayed batch
    summary: pd.DataFrame  # one row per strategy
    drift_points: list[tuple[str, pd.Timestamp]]
    fit_cache: dict[str, Any]
    seconds: float
    work_dir: Path
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "metric": self.metric,
            "greater_is_better": self.greater_is_better,
            "strategies": [s.to_dict() for s in self.strategies],
            "summary": _records(self.summary),
            "records": _records(self.records),
            "drift_points": [{"name": n, "date": t.isoformat()} for n, t in self.drift_points],
            "fit_cache": self.fit_cache,
            "seconds": round(self.seconds, 1),
            "work_dir": str(self.work_dir),
            "settings": self.settings,
            "target": _records(check_target(self.summary)) if REFERENCE in set(self.summary.index) else [],
            "acceptance": _records(self.acceptance()),
        }

    def acceptance(self) -> pd.DataFrame:
        """:func:`check_acceptance` of this replay, with the profile's stuck limit."""
        return check_acceptance(self.summary, self.records, greater_is_better=self.greater_is_better,
                                stuck_after=self.settings.get("stuck_after", 3))

    def write(self, folder: str | Path | None = None) -> dict[str, Path]:
        """``backtest.json``, ``backtest-per-batch.csv``, ``backtest-summary.csv`` and ``backtest.png``."""
        import matplotlib.pyplot as plt

        folder = Path(folder or self.work_dir)
        folder.mkdir(parents=True, exist_ok=True)
        out = {
            "json": folder / "backtest.json",
            "per_batch": folder / "backtest-per-batch.csv",
            "summary": folder / "backtest-summary.csv",
            "plot": folder / "backtest.png",
        }
        write_atomic(out["json"], json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        write_atomic(out["per_batch"], self.records.drop(columns=["reasons"]).to_csv(index=False))
        write_atomic(out["summary"], self.summary.to_csv())
        fig, png = plot_backtest(self), io.BytesIO()
        fig.savefig(png, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        write_atomic(out["plot"], png.getvalue())
        return out


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    frame = frame.reset_index() if frame.index.name else frame
    rows = json.loads(frame.to_json(orient="records", date_format="iso", double_precision=15))
    return rows


def recorded(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Summary and acceptance of a written ``backtest.json``, recomputed from its per-batch records
    (not read from its stored tables), with the stuck limit and metric direction it recorded."""
    raw = json.loads(Path(path).read_text())
    records = pd.DataFrame(raw["records"])
    for col in ("batch_start", "batch_end"):
        records[col] = pd.to_datetime(records[col])
    points = [(p["name"], pd.Timestamp(p["date"])) for p in raw.get("drift_points", [])]
    summary = summarize(records, greater_is_better=raw["greater_is_better"], drift_points=points)
    acceptance = check_acceptance(summary, records, greater_is_better=raw["greater_is_better"],
                                  stuck_after=raw.get("settings", {}).get("stuck_after", 3))
    return summary, acceptance


def streams_table(paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per written backtest: each strategy's mean metric, every-batch's and the triggered strategies'
    retrains, and which acceptance checks it misses — all recomputed from the per-batch records."""
    rows = []
    for path in paths:
        raw = json.loads(Path(path).read_text())
        summary, acceptance = recorded(path)
        row: dict[str, Any] = {"stream": raw["profile"], "metric": raw["metric"], "batches": int(summary["batches"].max())}
        for name in summary.index:
            row[f"{name} mean"] = summary.loc[name, "mean"]
        for name in [n for n in (*TRIGGERED, REFERENCE) if n in summary.index]:
            row[f"{name} retrains"] = int(summary.loc[name, "retrains"])
        misses = acceptance.loc[~acceptance["ok"].astype(bool), "check"].map(_short).tolist() if len(acceptance) else []
        row["checks met"] = f"{len(acceptance) - len(misses)} of {len(acceptance)}"
        row["misses"] = "; ".join(misses) or "none"
        rows.append(row)
    return pd.DataFrame(rows).set_index("stream")


def _short(check: str) -> str:
    """A check's name in a few words, for one-line tables."""
    for words, short in (("closes the static", "gap"), ("reaches refit", "97% of refit"), ("few retrains", "cheap trigger"),
                         ("every-batch (gated)", "every-batch ≈ refit"), ("without a stuck event", "silent rejections"),
                         ("were replayed", "strategies missing")):
        if words in check:
            return f"{check.split(' ')[0]} {short}" if short in ("gap", "97% of refit") else short
    return check


def markdown_table(summary: pd.DataFrame, *, digits: int = 3) -> str:
    """The summary as a Markdown table (for README and reports).

    >>> print(markdown_table(pd.DataFrame({"mean": [0.81234]}, index=pd.Index(["static"], name="strategy"))))
    | strategy | mean |
    |---|---|
    | static | 0.812 |
    """
    frame = summary.reset_index()
    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return "–" if math.isnan(v) else f"{v:.1f}" if abs(v) >= 100 else f"{v:.{digits}f}"
        return str(v)
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


_COLORS = {"static": "#7f7f7f", "periodic": "#1f77b4", "drift": "#ff7f0e", "performance": "#2ca02c",
           "performance-estimated": "#17becf",
           "hybrid": "#9467bd", "every-batch": "#d62728", "shadow": "#e377c2", "refit": "#000000"}


def plot_backtest(result: BacktestResult):
    """Top: the metric per batch over time, one line per strategy, dashed lines at the known drift points.
    Bottom: one row per strategy, ○ a challenger trained at that batch, ▲ promoted (it serves from the next),
    × a harmful promotion (its regret below zero beyond sampling error)."""
    import matplotlib.pyplot as plt

    names = [s.name for s in result.strategies]
    fig, (ax, ev) = plt.subplots(2, 1, figsize=(11, 4.5 + 0.35 * len(names)), sharex=True,
                                 gridspec_kw={"height_ratios": [3, 0.25 + 0.3 * len(names)]})
    rec = result.records
    styles = ["-", "--", "-.", ":"]
    for k, name in enumerate(names):
        r = rec[rec["strategy"] == name]
        color = _COLORS.get(name)
        ax.plot(r["batch_end"], r["value"], marker=".", color=color, label=name, lw=1.6, ls=styles[k % len(styles)], alpha=0.9)
        row = len(names) - 1 - k
        retr = r[r["trained"] & ~r["bootstrap"]]
        prom = r[r["promoted"] & ~r["bootstrap"]]
        ev.scatter(retr["batch_end"], [row] * len(retr), facecolors="none", edgecolors=color, s=45)
        ev.scatter(prom["batch_end"], [row] * len(prom), marker="^", color=color, s=30)
        if "harmful" in r:  # promotions that served worse than the champion they replaced, beyond sampling error
            bad = r[r["harmful"].fillna(False).astype(bool)]
            ev.scatter(bad["batch_end"], [row] * len(bad), marker="x", color="black", s=40, zorder=3)
    for a in (ax, ev):
        for _, t in result.drift_points:
            a.axvline(t, color="black", ls="--", lw=1)
    for name, t in result.drift_points:
        ax.annotate(" " + name.replace("_", " "), (t, 0.02), xycoords=("data", "axes fraction"), fontsize=8)
    ax.set_ylabel(f"{result.metric} of the serving champion")
    ax.set_title(f"Backtest of retraining strategies — {result.profile} (prequential: each batch scored before training on it)")
    ax.legend(loc="best", fontsize=8, ncol=3)
    ax.grid(alpha=0.3)
    ev.set_yticks(range(len(names)), list(reversed(names)), fontsize=8)
    ev.set_ylim(-0.6, len(names) - 0.4)
    ev.set_xlabel("batch end   (○ challenger trained, ▲ promoted, × harmful: worse than the champion it replaced)")
    ev.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig

