"""What the notebooks show besides a step's output: tables and plots, each saved into the run folder.

Every function takes a step's output in any state (a skipped step shows nothing), so notebooks
need no guards.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .. import drift
from ..outputs import Analysis, Training, Validation
from .context import StepContext

__all__ = ["drift_tables", "drift_figures", "performance_figure", "training_tables", "training_figures",
           "validation_tables", "validation_figures", "champion_timeline"]


def drift_tables(analysis: Analysis) -> list:
    """What notebook 10 shows below the decision: drift per feature, then the joint, target and
    prediction drift; on a first run one line saying there is no reference yet, on a run that saw no new
    batch one line saying so."""
    d = analysis.detail
    if d.drift is None and analysis.champion is not None:
        return ["no new batch since the champion's data: nothing to compare"]
    if d.drift is None:
        return ["first run: no reference window yet"]
    extra = [x.to_dict() for x in (d.drift.multivariate, d.target_drift, d.prediction_drift) if x is not None]
    return [d.drift.to_frame(), *extra]


def drift_figures(ctx: StepContext, analysis: Analysis) -> list:
    """Drift per feature and the most drifted distributions; on a first run, the training window per batch;
    nothing on a run that saw no new batch."""
    import matplotlib.pyplot as plt

    figs = []
    d = analysis.detail
    if d.drift is not None:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        drift.plot_feature_drift(d.drift, ax=ax)
        ctx.save_figure(fig, "10-drift-per-feature")
        figs.append(fig)
        fig = drift.plot_distributions(d.reference, d.current, d.drift, top=4)
        ctx.save_figure(fig, "10-distributions")
        figs.append(fig)
        if analysis.performance and (analysis.performance.get("measured_history") or analysis.estimates):
            fig = performance_figure(analysis.performance, analysis.estimates)
            ctx.save_figure(fig, "10-performance-history")
            figs.append(fig)
    elif d.current is not None:  # a first run (None: a run between batches, with nothing new to draw)
        frame, src = d.current, ctx.profile.data
        label = frame[src.label]
        if not pd.api.types.is_numeric_dtype(label):  # class names: the share of the most common class
            label = (label == label.mode().iloc[0]).astype(float)
        per = label.groupby(frame[src.time_column].dt.to_period("W").dt.start_time).agg(["size", "mean"])
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.bar(per.index.astype(str), per["size"], color="#9ecae1", label="rows")
        ax2 = ax.twinx()
        ax2.plot(per.index.astype(str), per["mean"], color="#d62728", marker="o", label=f"mean {src.label}")
        ax.set_title("First run: the training window per batch")
        ax.tick_params(axis="x", rotation=60)
        ctx.save_figure(fig, "10-training-window")
        figs.append(fig)
    return figs


def performance_figure(performance: dict[str, Any], estimates: list[dict[str, Any]]):
    """The champion's metric per batch: measured where labels exist, estimated with its 95% band where
    they do not yet (and, for comparison, where they do)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    metric = performance["metric"]
    est = [e for e in estimates if e.get("value") is not None]
    if est:
        t = pd.to_datetime([e["batch_end"] for e in est])
        ax.fill_between(t, [e["low"] for e in est], [e["high"] for e in est], color="#ff7f0e", alpha=0.2, label="95% band")
        ax.plot(t, [e["value"] for e in est], color="#ff7f0e", marker="o", markerfacecolor="white", linestyle="--",
                label=f"estimated {metric} (no labels)")
    measured = performance.get("measured_history") or []
    if measured:
        ax.plot(pd.to_datetime([m["batch_end"] for m in measured]), [m["value"] for m in measured], color="#1f77b4",
                marker="o", label=f"measured {metric} (labels)")
    ax.axhline(performance["threshold"], color="red", linestyle=":", label="performance_threshold")
    unestimated = [e for e in estimates if e.get("value") is None]
    title = f"Champion {metric}: measured vs estimated (trigger source: {performance.get('source', 'measured')})"
    if unestimated:
        title += f"\nnot estimated: {unestimated[-1]['reason'][:90]}"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("batch end")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=8, loc="lower left")
    return fig


def training_tables(outcome: Training) -> list:
    """What notebook 20 shows: the fit's figures, the leaderboard and any warnings (nothing when skipped)."""
    if not outcome.trained:
        return []
    return [pd.Series(outcome.summary(), name="value").to_frame(), pd.DataFrame(outcome.leaderboard),
            f"warnings: {'; '.join(outcome.warnings) or 'none'}"]


def training_figures(ctx: StepContext, outcome: Training) -> list:
    """Resources while training (nothing when training was skipped)."""
    from ..monitoring import plot_resources
    import matplotlib.pyplot as plt

    if not outcome.trained:
        return []
    fig, ax = plt.subplots(figsize=(8, 3))
    plot_resources(outcome.resources, ax=ax)
    ctx.save_figure(fig, "20-resources")
    return [fig]


def validation_tables(outcome: Validation) -> list:
    """What notebook 30 shows: the gate table and both models' scores (nothing when skipped)."""
    if outcome.skipped:
        return []
    return [outcome.detail.to_frame(), outcome.scores]


def validation_figures(ctx: StepContext, outcome: Validation) -> list:
    """Both models' scores side by side and the bootstrap distribution of their difference (nothing when skipped)."""
    from .. import validation
    import matplotlib.pyplot as plt

    if outcome.skipped:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    validation.plot_scores(outcome.detail, ax=axes[0])
    validation.plot_bootstrap(outcome.detail, ax=axes[1])
    fig.tight_layout()
    ctx.save_figure(fig, "30-validation")
    return [fig]


def champion_timeline(ctx: StepContext) -> list:
    """Which version was champion when, with promotions and rollbacks marked."""
    import matplotlib.pyplot as plt

    events = [e.to_dict() for e in ctx.registry.history()]
    fig, ax = plt.subplots(figsize=(8, 3))
    if events:
        times = pd.to_datetime([e["time"] for e in events])
        versions = [e["version"] or "(none)" for e in events]  # an auto-rollback of a first promotion leaves none
        ax.step(times, versions, where="post", color="#555")
        for kind, marker, color in (("promote", "^", "green"), ("rollback", "v", "red"), ("auto-rollback", "x", "red")):
            pts = [(t, v) for t, v, e in zip(times, versions, events) if e["event"] == kind]
            if pts:
                ax.scatter(*zip(*pts), marker=marker, color=color, s=80, label=kind, zorder=3)
        ax.legend(loc="upper left")
    ax.set_title(f"Champion of {ctx.profile.model_name} over time")
    ax.set_xlabel("time (UTC)")
    ctx.save_figure(fig, "40-champion-timeline")
    return [fig]
