"""Moving the champion: promote, roll back (or repair a damaged pointer), and promote with a smoke test.

Each function is one move of :class:`~retrainlib.registry.pointer.Pointer` under the writer lock
(taken through the facade, after recovery), after verifying the target version's checksums.
:func:`promote_verified` keeps the lock while a fresh process (:mod:`retrainlib.freshproc`) loads
the new champion and predicts a sample, and rolls back by itself when that fails or overruns.

This module touches what :mod:`.pointer` touches; it reads versions through :mod:`.versions`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ..errors import DamagedPointer, RegistryError
from .layout import listing
from .pointer import HistoryEvent

if TYPE_CHECKING:  # pandas and AutoGluon are imported only where needed: writers start fast
    import pandas as pd

    from . import Registry

__all__ = ["PromotionResult", "promote", "roll_back", "rollback_target", "promote_verified"]


@dataclass(frozen=True)
class PromotionResult:
    """What :meth:`Registry.promote_verified` did: promoted and smoke-tested, or rolled back by itself."""

    version: str
    previous: str | None
    promoted: bool
    smoke_passed: bool
    detail: str
    seconds: float
    events: tuple[HistoryEvent, ...]

    @property
    def champion(self) -> str | None:
        """The champion after the promotion (and any automatic rollback)."""
        return self.version if self.promoted else self.previous

    def to_dict(self) -> dict:
        d = asdict(self)
        d["events"] = [e.to_dict() for e in self.events]
        d["champion"] = self.champion
        return d


def promote(reg: "Registry", name: str, *, run_id: str | None, reason: str, smoke_pending: bool = False) -> HistoryEvent:
    """Make version ``name`` the champion: verify it, swap the pointer atomically, record it."""
    with reg._writing():
        versions, pointer = reg._versions, reg._pointer
        name = versions.check_name(name)
        current = reg.champion()
        if name == current:
            raise RegistryError(
                f"version {name} is already the champion of {versions.display}; promote another version "
                f"(versions: {listing(versions.names())})"
            )
        versions.verify(name)
        return pointer.swap(
            event="promote", version=name, previous=current, replaced=current, run_id=run_id, reason=reason,
            smoke_pending=smoke_pending,
        )


def roll_back(reg: "Registry", *, to: str | None, run_id: str | None, reason: str) -> HistoryEvent:
    """Make the previous champion (or version ``to``) the champion again; see :meth:`Registry.roll_back`."""
    with reg._writing():
        versions, pointer = reg._versions, reg._pointer
        problem = pointer.problem()
        if problem:
            return _repair(reg, problem, to=to, run_id=run_id, reason=reason)
        target, current = _target(reg, to)
        versions.verify(target)
        return _swap_back(pointer, target, replaced=current, run_id=run_id, reason=reason)


def _repair(reg: "Registry", problem: str, *, to: str | None, run_id: str | None, reason: str) -> HistoryEvent:
    """Roll back over a damaged pointer: only to a named version; history says which champion it replaces."""
    if to is None:
        raise DamagedPointer(f"cannot roll back to 'the previous champion': {problem}")
    versions, pointer = reg._versions, reg._pointer
    target = versions.check_name(to)
    versions.verify(target)
    replaced = pointer.history_champion()
    return _swap_back(pointer, target, replaced=replaced if replaced in versions.names() else None, run_id=run_id,
                      reason=f"{reason}; repaired the damaged CHAMPION pointer ({problem.split(';')[0]})")


def _swap_back(pointer, target: str, *, replaced: str | None, run_id: str | None, reason: str) -> HistoryEvent:
    """The pointer swap of a rollback to ``target``: its lineage's previous champion is the one it had."""
    return pointer.swap(event="rollback", version=target, previous=pointer.lineage_previous(target), replaced=replaced,
                        run_id=run_id, reason=reason)


def rollback_target(reg: "Registry", to: str | None = None) -> str:
    """The version :func:`roll_back` would make champion; :class:`RegistryError` when there is none."""
    return _target(reg, to)[0]


def _target(reg: "Registry", to: str | None) -> tuple[str, str | None]:
    """(target, current champion); read-only, callers hold the writer lock to act on it."""
    versions = reg._versions
    rec = reg.champion_record() or {}
    current = rec.get("version")
    if to is None:
        target = rec.get("previous")
        if target is None:
            raise RegistryError(
                f"nothing to roll back to: {versions.display} has champion {current or 'none'} and no "
                f"previous champion; name a version with `retrain rollback --to vNNNN` "
                f"(versions: {listing(versions.names())})"
            )
        if target not in versions.names():
            raise RegistryError(
                f"the previous champion {target} is no longer in {versions.display}; name a version with "
                f"`retrain rollback --to vNNNN` (versions: {listing(versions.names())})"
            )
    else:
        target = versions.check_name(to)
        if target == current:
            raise RegistryError(
                f"version {target} is already the champion of {versions.display}; name another version "
                f"(versions: {listing(versions.names())})"
            )
    return target, current


def promote_verified(reg: "Registry", name: str, sample: "pd.DataFrame", *, run_id: str | None, reason: str,
                     timeout: float = 120) -> PromotionResult:
    """Promote, then load the new champion in a fresh process and predict ``sample``; see :meth:`Registry.promote_verified`."""
    if sample is None or len(sample) == 0:
        raise RegistryError("the smoke-test sample is empty; pass a few rows of recent data (features, label optional)")
    t0 = time.monotonic()
    from .. import freshproc

    with reg.write_lock():
        try:
            smoke = freshproc.start(reg.path / name / "predictor", sample, timeout=timeout, hold=True)
        except Exception as exc:  # before anything moved: refuse, naming the cause
            raise RegistryError(
                f"the smoke test cannot start ({type(exc).__name__}: {exc}); pass a DataFrame of plain feature columns"
            ) from exc
        with smoke:
            promoted = promote(reg, name, run_id=run_id, reason=reason, smoke_pending=True)
            result = smoke.result()
        before = promoted.previous
        ok = result.ok
        detail = result.detail if ok or result.detail.startswith("no answer") else f"smoke test failed: {result.detail}"
        if ok:
            reg._pointer.confirm_smoke()
            return PromotionResult(
                version=name, previous=before, promoted=True, smoke_passed=True, detail=detail,
                seconds=time.monotonic() - t0, events=(promoted,),
            )
        back = reg._pointer.swap(
            event="auto-rollback",
            version=before,
            previous=reg._pointer.lineage_previous(before) if before else None,
            replaced=name,
            run_id=run_id,
            reason=f"smoke test of {name} failed in a fresh process: {detail}",
        )
        return PromotionResult(
            version=name, previous=before, promoted=False, smoke_passed=False, detail=detail,
            seconds=time.monotonic() - t0, events=(promoted, back),
        )
