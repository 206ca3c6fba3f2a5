"""The cost of a promotion: the champion it replaced scored next to its successor on the batches that follow.

Both versions already exist in the strategy's registry, so this costs no fit. A promotion's *regret* is
the successor's metric minus the replaced champion's on the labelled rows of the next ``k`` batches (the
metric's way round: positive means the promotion paid); it is *harmful* when the paired bootstrap
interval of that difference (:func:`retrainlib.shadow.paired_gain`, at ``validation.confidence``) lies
below zero. Measured right after the promotion's step, while the replaced champion is still the
protected previous champion; the batches that follow are read from disk (the backtest has them all), and
nothing of this reaches any decision.

May touch: nothing; reads the strategy's registry and the batches.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .. import automl, data
from ..paths import Paths
from ..profiles import load_profile
from ..registry import Registry
from ..scorecache import ChampionScores
from ..shadow import paired_gain

__all__ = ["REGRET_COLUMNS", "no_regret", "promotion_regret"]

#: the per-batch record's regret columns (NaN / None where the batch promoted nothing measurable)
REGRET_COLUMNS = ("replaced", "regret", "regret_low", "regret_high", "regret_rows", "harmful")


def no_regret(replaced: str | None = None) -> dict[str, Any]:
    return {"replaced": replaced, "regret": math.nan, "regret_low": math.nan, "regret_high": math.nan,
            "regret_rows": 0, "harmful": False}


def promotion_regret(profile_path: Path, home: Path, replaced: str, successor: str, following: Sequence[data.Batch],
                     paths: Paths) -> dict[str, Any]:
    """Regret of the promotion of ``successor`` over ``replaced``, on the labelled rows of ``following``.

    ``profile_path`` and ``home``: the strategy's scratch profile and home (its registry); ``paths``: the
    project home the batches are named relative to."""
    prof = load_profile(profile_path)
    reg = Registry(Paths.discover(home).resolve(prof.registry), prof.model_name)
    src, metric, settings = prof.data, prof.training.eval_metric, prof.validation
    if not following:
        return no_regret(replaced)
    frame = data.load_batches(list(following), paths, src)
    frame = frame[frame[src.label].notna()]
    if frame.empty:
        return no_regret(replaced)
    sides = []
    for version in (successor, replaced):
        model = ChampionScores(reg, version)
        features = reg.version(version).metadata["features"]
        classes = model.class_labels if model.problem_type != "regression" else None
        sides.append((np.asarray(model.scores(frame[features])), classes))
    problem_type = ChampionScores(reg, successor).problem_type
    info = automl.metric_info(metric, problem_type)
    g = paired_gain(metric, problem_type, frame[src.label].to_numpy(), sides[0], sides[1],
                    greater_is_better=info.greater_is_better, samples=settings.bootstrap_samples,
                    confidence=settings.confidence, seed=prof.training.seed)
    return {"replaced": replaced, "regret": g["gain"], "regret_low": g["low"], "regret_high": g["high"],
            "regret_rows": g["n"], "harmful": bool(math.isfinite(g["high"]) and g["high"] < 0)}


def regret_summary(r: pd.DataFrame) -> dict[str, Any]:
    """A strategy's ``harmful_promotions`` and ``mean_regret`` over its measured promotions (records without the
    columns, written before they existed: NaN)."""
    if "regret" not in r:
        return {"harmful_promotions": math.nan, "mean_regret": math.nan}
    measured = r["regret"].astype(float).dropna()
    harmful = r["harmful"].fillna(False).astype(bool) & r["regret"].notna()
    return {"harmful_promotions": int(harmful.sum()), "mean_regret": float(measured.mean()) if measured.size else math.nan}
