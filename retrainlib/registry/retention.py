"""Retention: which versions to delete, as a pure plan, and its application under the writer lock.

:func:`plan` looks only at its arguments (each version's name and creation time, which versions
ever served as champion, which are protected) and returns the deletions with their reasons:

1. every unprotected version older than ``retention_days``;
2. then, while more than ``max_versions`` remain, versions that never served as champion
   (rejected challengers, validated models whose refit was deployed), oldest first, and only after
   them former champions, oldest first, so the newest champions stay rollback targets.

The champion, the previous champion, the version the champion was validated as (its refit serves;
the next challenger is judged against it), the shadow on trial (:mod:`.shadows`) and versions marked
``keep`` (``pins.json``) are never deleted. :func:`apply` records each deletion in ``history.jsonl`` first, then removes the version.

>>> from datetime import datetime, timezone
>>> now = datetime(2024, 6, 1, tzinfo=timezone.utc)
>>> vs = [(f"v000{i}", f"2024-05-2{i}T00:00:00+00:00") for i in range(1, 6)]
>>> [d.name for d in plan(vs, served={"v0001", "v0003", "v0005"}, protected={"v0005", "v0003"},
...                        max_versions=3, retention_days=30, now=now)]
['v0002', 'v0004']
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Iterable, Sequence

from ..durable import write_json_atomic
from ..errors import RegistryError
from .layout import PINS, is_version_name, now as _now, parse_time
from .pointer import HistoryEvent, served_versions

if TYPE_CHECKING:
    from . import Registry

__all__ = ["Deletion", "plan", "check_limits", "apply", "pins", "keep"]


@dataclass(frozen=True)
class Deletion:
    """One version retention deletes, and why (the reason goes into ``history.jsonl``)."""

    name: str
    reason: str


def check_limits(max_versions: object, retention_days: object) -> None:
    """:class:`RegistryError` unless ``max_versions`` is an integer >= 1 and ``retention_days`` a number > 0."""
    if isinstance(max_versions, bool) or not isinstance(max_versions, int) or max_versions < 1:
        raise RegistryError(f"max_versions must be an integer >= 1; got {max_versions!r}")
    if (not isinstance(retention_days, (int, float)) or isinstance(retention_days, bool) or not retention_days > 0
            or math.isnan(retention_days)):
        raise RegistryError(f"retention_days must be a number of days > 0; got {retention_days!r}")


def plan(versions: Sequence[tuple[str, str | None]], *, served: Iterable[str], protected: Iterable[str | None],
         max_versions: int, retention_days: float, now: datetime) -> list[Deletion]:
    """The deletions, in name order, for ``versions`` (``(name, created)`` pairs, oldest first); pure.

    ``served``: versions that were champion (:func:`~retrainlib.registry.pointer.served_versions`);
    ``protected``: never deleted (champion, previous champion, pins). A version whose ``created``
    is missing or unreadable is never too old.
    """
    check_limits(max_versions, retention_days)
    served, protected = set(served), set(protected)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    cutoff = now - timedelta(days=float(retention_days))
    doomed: list[Deletion] = []
    for name, created in versions:
        when = parse_time(created)
        if name not in protected and when is not None and when < cutoff:
            doomed.append(Deletion(name, f"older than {retention_days:g} days (created {created})"))
    gone = {d.name for d in doomed}
    remaining = [name for name, _ in versions if name not in gone]
    excess = len(remaining) - max_versions
    # versions that never served (rejected challengers) go first, then former champions; oldest first
    for name in sorted(remaining, key=lambda n: (n in served, n)):
        if excess <= 0:
            break
        if name not in protected:
            kind = "former champion" if name in served else "never champion"
            doomed.append(Deletion(name, f"more than max_versions={max_versions} versions ({kind})"))
            excess -= 1
    return sorted(doomed, key=lambda d: (d.name, d.reason))


def pins(reg: "Registry") -> set[str]:
    """Versions marked ``keep`` in ``pins.json``."""
    path = reg.path / PINS
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return set()
    except ValueError as exc:
        raise RegistryError(f"{path} is not JSON ({exc}); expected a list of version names") from exc
    return {v for v in data if is_version_name(v)}


def keep(reg: "Registry", name: str, keep: bool = True) -> None:
    """Mark version ``name`` to be kept by retention (``keep=False`` removes the mark)."""
    with reg._writing():
        name = reg._versions.check_name(name)
        current = pins(reg)
        write_json_atomic(reg.path / PINS, sorted(current | {name} if keep else current - {name}))


def apply(reg: "Registry", *, max_versions: int, retention_days: float, now: datetime | None = None) -> list[str]:
    """Plan under the writer lock, then for each deletion: history line first, then the folder. Returns the names."""
    check_limits(max_versions, retention_days)
    with reg._writing():
        rec = reg.champion_record() or {}
        infos = reg._versions.all()
        # the version the champion (a refit) was validated as: the next challenger is judged against it
        validated_as = next((i.metadata.get("validated_version") for i in infos if i.name == rec.get("version")), None)
        deletions = plan(
            [(i.name, i.created) for i in infos],
            served=served_versions(reg._pointer.rows()),
            protected={rec.get("version"), rec.get("previous"), validated_as, reg.shadow()} | pins(reg),
            max_versions=max_versions, retention_days=retention_days, now=now or datetime.now(timezone.utc),
        )
        for d in deletions:
            ev = HistoryEvent(time=_now(), event="retention", version=d.name, previous=None, run_id=None,
                              reason=f"deleted: {d.reason}")
            reg._pointer.record(ev)  # recorded first: a kill never loses a version silently
            reg._versions.delete(d.name)
        return [d.name for d in deletions]
