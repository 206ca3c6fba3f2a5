"""Pictures of a drift report: each feature against its threshold, and the most drifted distributions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .kernels import category_counts
from .results import DriftReport
from .windows import as_float

__all__ = ["plot_feature_drift", "plot_distributions"]


def plot_feature_drift(report: DriftReport, ax=None):
    """Bar chart of each feature's drift relative to its threshold (1 = threshold); returns the Axes."""
    import matplotlib.pyplot as plt

    frame = report.to_frame().iloc[::-1]
    if ax is None:
        _, ax = plt.subplots(figsize=(8, max(2.5, 0.3 * len(frame) + 1)))
    colors = ["tab:red" if d else "tab:blue" for d in frame["drifted"]]
    labels = [f"{f} ({t})" for f, t in zip(frame["feature"], frame["test"])]
    ax.barh(labels, frame["severity"].clip(upper=10), color=colors)
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1, label="threshold")
    ax.set_xlabel("statistic / threshold (p-value tests: log p / log threshold); capped at 10")
    verdict = "drifted" if report.drifted else "not drifted"
    ax.set_title(f"Drift per feature: score {report.score:.2f} vs {report.threshold:g} ({verdict})")
    ax.legend(loc="lower right")
    return ax


def plot_distributions(reference: pd.DataFrame, current: pd.DataFrame, report: DriftReport, *, top: int = 4):
    """Overlaid reference and current distributions of the ``top`` most drifted features; returns the Figure."""
    import matplotlib.pyplot as plt

    names = [n for n in report.to_frame()["feature"] if n in reference.columns and n in current.columns][:top]
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(4 * max(len(names), 1), 3), squeeze=False)
    by_name = {f.column: f for f in report.features}
    for ax, name in zip(axes[0], names):
        f = by_name[name]
        if f.kind == "numeric":
            a, b = as_float(reference[name]), as_float(current[name])
            a, b = a[~np.isnan(a)], b[~np.isnan(b)]
            both = np.concatenate([a, b])
            bins = np.histogram_bin_edges(both, bins=40) if len(both) else 10
            ax.hist(a, bins=bins, density=True, alpha=0.5, label="reference")
            ax.hist(b, bins=bins, density=True, alpha=0.5, label="current")
        else:
            rc, cc, cats = category_counts(reference[name], current[name])
            share_r, share_c = rc / max(rc.sum(), 1), cc / max(cc.sum(), 1)
            idx = np.argsort(-(share_r + share_c))[:12]
            x = np.arange(len(idx))
            ax.bar(x - 0.2, share_r[idx], width=0.4, label="reference")
            ax.bar(x + 0.2, share_c[idx], width=0.4, label="current")
            ax.set_xticks(x, [str(cats[i])[:12] for i in idx], rotation=45, ha="right")
        ax.set_title(f"{name}: {f.test} {f.statistic:.3g}" + (" (drifted)" if f.drifted else ""))
        ax.legend()
    if not names:
        axes[0][0].set_axis_off()
    fig.tight_layout()
    return fig
