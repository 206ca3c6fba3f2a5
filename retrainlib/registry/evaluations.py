"""The registry's measurement logs: ``evaluations.jsonl``, ``estimates.jsonl`` and ``attempts.jsonl``.

* evaluations: the champion's measured metric per batch (``version``, ``batch``, ``metric``, ``value``);
* estimates: label-free estimates per batch, before the labels arrive;
* attempts: each retraining attempt (the challenger and the newest batch end it saw: the schedule's
  clock, on the data's time axis) and, in a later row, what became of it; also each run that broken
  data blocked (outcome ``blocked``, no version, the broken batches), which the stuck rule counts.

All three are append-only JSON lines (:mod:`.jsonl`). Rows are checked here (a bad row is refused
with the row number and what to pass); writing happens under the facade's writer lock. This module
touches only these three files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import RegistryError
from . import jsonl
from .layout import now

__all__ = ["check_evaluations", "check_estimates", "attempt_row", "block_row", "outcome_row", "read", "attempts"]

_EVAL_REQUIRED = ("version", "batch", "metric", "value")


def check_evaluations(rows: Sequence[dict]) -> list[dict]:
    """Evaluation rows, checked and completed (``time`` now, ``run_id`` and ``n_rows`` None, ``value`` a float)."""
    clean = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise RegistryError(f"evaluation row {i} is {type(row).__name__}; expected a dict")
        missing = [k for k in _EVAL_REQUIRED if k not in row]
        if missing:
            raise RegistryError(
                f"evaluation row {i} lacks {', '.join(missing)}; expected keys time, run_id, version, batch, "
                f"metric, value, n_rows (got {', '.join(sorted(row))})"
            )
        r = {"time": now(), "run_id": None, "n_rows": None, **dict(row)}
        try:
            r["value"] = float(r["value"])
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"evaluation row {i} has value {row['value']!r}; expected a number") from exc
        try:
            json.dumps(r)
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"evaluation row {i} is not JSON-serialisable ({exc}); pass plain values") from exc
        clean.append(r)
    return clean


def check_estimates(rows: Sequence[dict]) -> list[dict]:
    """Estimate rows with ``time`` added; each needs ``version`` and ``batch``."""
    clean = [{"time": now(), **dict(r)} for r in rows]
    for i, r in enumerate(clean):
        if "version" not in r or "batch" not in r:
            raise RegistryError(f"estimate row {i} lacks version or batch; got {', '.join(sorted(r))}")
    return clean


def attempt_row(*, version: str, run_id: str | None, data_end: str, outcome: str | None = None) -> dict:
    """The row of one retraining attempt: the challenger it trained and the newest batch end it saw."""
    return {"time": now(), "run_id": run_id, "version": version, "data_end": str(data_end), "outcome": outcome}


def block_row(*, run_id: str | None, data_end: str, batches: Sequence[dict], reasons: Sequence[str]) -> dict:
    """The row of a run that broken data blocked: no challenger, the broken batches and why."""
    return {"time": now(), "run_id": run_id, "version": None, "data_end": str(data_end), "outcome": "blocked",
            "batches": [dict(b) for b in batches], "reasons": list(reasons)}


def outcome_row(version: str, *, outcome: str, run_id: str | None = None,
                failed_gates: Sequence[str] = (), reasons: Sequence[str] = ()) -> dict:
    """The row completing an attempt's record: what became of its challenger."""
    return {"time": now(), "run_id": run_id, "version": version, "outcome": outcome,
            "failed_gates": list(failed_gates), "reasons": list(reasons)}


def read(path: Path, version: str | None = None) -> list[dict]:
    """The rows of an evaluations, estimates or estimator-revisions log, oldest first; only ``version``'s when given."""
    return [r for r in jsonl.read(path) if version is None or r.get("version") == version]


def attempts(path: Path) -> list[dict]:
    """Every recorded retraining attempt, oldest first, with its outcome once known."""
    out: list[dict] = []
    for row in jsonl.read(path):
        if "data_end" in row:
            out.append(dict(row))
            continue
        for attempt in reversed(out):  # an outcome row completes its attempt's record
            if attempt.get("version") == row.get("version"):
                attempt.update({k: v for k, v in row.items() if k not in ("time", "run_id")})
                break
    return out
