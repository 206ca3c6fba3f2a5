"""The ``shadow`` role: a validated version on trial beside the champion, in ``shadows.jsonl``.

One append-only log holds the whole role (:mod:`.jsonl`: one fsync a line, a torn last line ignored):

* ``start``: version ``version`` becomes the shadow of champion ``champion`` for ``needed`` batches;
* ``batch``: shadow and champion scored on the same labelled rows of one batch (``shadow_value``,
  ``champion_value``, ``n_rows``);
* ``end``: the trial ended: ``outcome`` ``promoted`` (it serves now), ``dropped`` (worse, or its smoke
  test failed) or ``replaced`` (a newer passing challenger took its place).

The shadow is the newest ``start`` with no ``end`` after it. There is no pointer to tear: a kill
leaves the log as it was or one line longer. The switch to champion (:func:`promote`) moves the
``CHAMPION`` pointer with its smoke test first and appends ``end`` after; a kill between the two
leaves a shadow that is the champion, which :func:`recover` closes (``promoted``), and a kill during
the smoke test is rolled back by the pointer's own recovery, leaving champion and shadow as they were.
Either way the registry is in a state its history already had.

This module touches only ``shadows.jsonl`` (and the pointer, through :mod:`.promotion`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..errors import RegistryError
from . import jsonl
from .layout import SHADOWS, now
from .promotion import PromotionResult, promote_verified

if TYPE_CHECKING:
    import pandas as pd

    from . import Registry

__all__ = ["current", "batches", "start", "record_batches", "end", "promote", "promote_instead", "recover", "ENDINGS"]

#: how a shadow's trial can end
ENDINGS = ("promoted", "dropped", "replaced")


def _rows(reg: "Registry") -> list[dict]:
    return jsonl.read(reg.path / SHADOWS)


def current(reg: "Registry") -> dict | None:
    """The ``start`` row of the shadow on trial, or None (its version deleted by hand: None too)."""
    active: dict | None = None
    for row in _rows(reg):
        if row.get("event") == "start":
            active = row
        elif row.get("event") == "end" and active is not None and row.get("version") == active.get("version"):
            active = None
    if active is not None and active.get("version") not in reg._versions.names():
        return None
    return active


def batches(reg: "Registry", version: str, *, started: str | None = None) -> list[dict]:
    """The ``batch`` rows of ``version``'s trial (those after its ``start`` at ``started``), one per batch, oldest first."""
    seen: dict[str, dict] = {}
    for row in _rows(reg):
        if row.get("event") == "batch" and row.get("version") == version and (started is None or str(row.get("time")) >= started):
            seen.setdefault(row["batch"], row)
    return list(seen.values())


def start(reg: "Registry", version: str, *, champion: str | None, needed: int, run_id: str | None, reason: str,
          validated: str | None = None, data_end: str | None = None) -> dict:
    """Make ``version`` the shadow (ending the one on trial as ``replaced``); returns its ``start`` row.

    ``data_end``: the end of the newest batch its validation saw; its trial counts only later batches."""
    with reg._writing():
        version = reg._versions.check_name(version)
        if version == reg.champion():
            raise RegistryError(f"version {version} is the champion; a shadow must be another version")
        rows = []
        old = current(reg)
        if old is not None:
            rows.append(_end_row(old["version"], "replaced", run_id, f"replaced by {version}: {reason}"))
        row = {"time": now(), "event": "start", "version": version, "champion": champion, "needed": int(needed),
               "validated": validated, "data_end": data_end, "run_id": run_id, "reason": reason}
        jsonl.append(reg.path / SHADOWS, rows + [row])
        return row


def record_batches(reg: "Registry", rows: Sequence[dict]) -> None:
    """Append ``batch`` rows (``version``, ``champion``, ``batch``, ``metric``, ``shadow_value``, ``champion_value``)."""
    required = ("version", "champion", "batch", "metric", "shadow_value", "champion_value")
    clean = []
    for i, r in enumerate(rows):
        missing = [k for k in required if k not in r]
        if missing:
            raise RegistryError(f"shadow batch row {i} lacks {', '.join(missing)}; expected {', '.join(required)}")
        clean.append({"time": now(), "event": "batch", **dict(r)})
    if clean:
        with reg._writing():
            jsonl.append(reg.path / SHADOWS, clean)


def _end_row(version: str, outcome: str, run_id: str | None, reason: str) -> dict:
    if outcome not in ENDINGS:
        raise RegistryError(f"a shadow's trial ends {outcome!r}; expected one of {', '.join(ENDINGS)}")
    return {"time": now(), "event": "end", "version": version, "outcome": outcome, "run_id": run_id, "reason": reason}


def end(reg: "Registry", outcome: str, *, run_id: str | None, reason: str) -> dict | None:
    """End the shadow's trial (``dropped`` or ``replaced``); returns the ``end`` row, None without a shadow."""
    with reg._writing():
        active = current(reg)
        if active is None:
            return None
        row = _end_row(active["version"], outcome, run_id, reason)
        jsonl.append(reg.path / SHADOWS, [row])
        return row


def promote(reg: "Registry", sample: "pd.DataFrame", *, run_id: str | None, reason: str) -> tuple[PromotionResult, dict]:
    """The switch: the shadow becomes the champion with a fresh-process smoke test, then its trial ends.

    ``promoted`` when the smoke test passed; ``dropped`` when it failed (the registry rolled back by
    itself). Returns the promotion's result and the ``end`` row. Holds the writer lock throughout.
    """
    with reg._writing():
        active = current(reg)
        if active is None:
            raise RegistryError(f"{reg._versions.display} has no shadow to promote")
        res = promote_verified(reg, active["version"], sample, run_id=run_id, reason=reason)
        outcome = "promoted" if res.promoted else "dropped"
        why = reason if res.promoted else f"its smoke test failed: {res.detail}"
        row = _end_row(active["version"], outcome, run_id, why)
        jsonl.append(reg.path / SHADOWS, [row])
        return res, row


def promote_instead(reg: "Registry", version: str, sample: "pd.DataFrame", *, run_id: str | None,
                    reason: str) -> tuple[PromotionResult, dict | None]:
    """A challenger that needs no trial serves while a shadow may be on trial: that trial ends ``replaced`` first,
    then ``version`` becomes the champion with its smoke test (:func:`.promotion.promote_verified`).

    Returns the promotion's result and the ``end`` row (None without a shadow). Holds the writer lock throughout.
    A kill between the two leaves the champion as it was and no shadow: the trial is over (it was moot, its
    champion was being replaced) and the challenger does not serve; the next run judges a challenger anew.
    """
    with reg._writing():
        active, row = current(reg), None
        if active is not None:
            row = _end_row(active["version"], "replaced", run_id, f"replaced by {version}, which serves without a trial: {reason}")
            jsonl.append(reg.path / SHADOWS, [row])
        return promote_verified(reg, version, sample, run_id=run_id, reason=reason), row


def recover(reg: "Registry") -> list[str]:
    """Close a trial whose switch a kill cut after the pointer moved (the shadow is the verified champion); under the lock."""
    active = current(reg)
    if active is None:
        return []
    rec = reg._pointer.read()[0] or {}
    if rec.get("version") == active["version"] and not rec.get("smoke_pending"):
        jsonl.append(reg.path / SHADOWS, [_end_row(active["version"], "promoted", active.get("run_id"),
                                                    "the switch to champion completed before a kill; its end recorded on recovery")])
        return [f"recorded the end of {active['version']}'s shadow trial (it is the champion)"]
    return []
