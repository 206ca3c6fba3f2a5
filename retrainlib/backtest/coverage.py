"""The label-free estimate's track record in a backtest: per batch, was the serving champion's estimate (made before
the batch's labels arrived) inside its band once they did, and per strategy the share of such estimates whose band
held the realized value after the first :data:`~retrainlib.estimate.track.WARMUP` judged ones.

The judgements are the playbook's own (``evaluations.jsonl`` of the strategy's scratch registry: step 10 records
:func:`retrainlib.estimate.compare` of the batch's first estimate when its labels arrive, ``data.label_delay_batches``
later); nothing is re-estimated here.

May touch: nothing; reads the strategy's registry.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..estimate.track import WARMUP
from ..paths import Paths
from ..profiles import load_profile
from ..registry import Registry

__all__ = ["ESTIMATE_COLUMNS", "judged_estimates", "estimate_coverage"]

#: the per-batch record's columns: the estimate of the serving champion on that batch and whether its band held the
#: batch's realized value (None: no estimate was judged on that batch, e.g. no champion or its labels never came)
ESTIMATE_COLUMNS = ("estimated", "estimate_low", "estimate_high", "estimate_in_band")


def judged_estimates(profile_path: Path, home: Path, rows: list[dict[str, Any]]) -> None:
    """Fill :data:`ESTIMATE_COLUMNS` of a strategy's per-batch ``rows`` (in place) from its scratch registry's
    evaluations: the judgement of the estimate of ``row["champion"]`` on ``row["batch"]``."""
    prof = load_profile(profile_path)
    reg = Registry(Paths.discover(home).resolve(prof.registry), prof.model_name)
    judged: dict[tuple[str, str], dict] = {}
    for r in reg.evaluations():
        e = r.get("estimate")
        if isinstance(e, dict) and e.get("in_band") is not None and r.get("metric") == prof.training.eval_metric:
            judged.setdefault((r["version"], Path(r["batch"]).name), e)  # a batch judged twice counts once: the first
    for row in rows:
        e = judged.get((row.get("champion"), row["batch"]))
        row.update(estimated=e["estimated"] if e else math.nan, estimate_low=e.get("low", math.nan) if e else math.nan,
                   estimate_high=e.get("high", math.nan) if e else math.nan,
                   estimate_in_band=bool(e["in_band"]) if e else None)


def estimate_coverage(r: pd.DataFrame) -> dict[str, Any]:
    """A strategy's ``estimate_coverage`` (the share of judged estimates, in batch order, after the first
    :data:`WARMUP`, whose band held the realized value) and ``estimates_judged`` (how many that share is of).
    Records without the column (written before it existed) or with no judged estimate past the warm-up: NaN, 0."""
    if "estimate_in_band" not in r:
        return {"estimate_coverage": math.nan, "estimates_judged": 0}
    order = r.sort_values("batch_start") if "batch_start" in r else r
    hits = order["estimate_in_band"].dropna().astype(bool).iloc[WARMUP:]
    return {"estimate_coverage": float(hits.mean()) if hits.size else math.nan, "estimates_judged": int(hits.size)}
