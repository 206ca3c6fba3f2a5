"""The registry as it stood before a run: a scratch copy that replay runs against.

:func:`snapshot` writes under ``target`` a model registry holding what ``source`` held before
``before`` (a run's start), leaving out what the run itself wrote (told apart by ``run_id``):

* versions created before then, hard-linked (versions are immutable; copied across filesystems);
* ``pins.json`` limited to those versions;
* the rows of every log (:data:`~.layout.LOGS`: history, evaluations, attempts, estimates, estimator revisions, shadows)
  written before then and not by the run;
* ``CHAMPION`` = ``champion`` (the run's champion before), restored from its last history move
  when that names it, so the copy's pointer continues its history like the original did.

It reads ``source`` and writes only under ``target``; the result says what it holds.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..durable import write_atomic, write_json_atomic
from ..errors import RegistryError
from . import jsonl
from .layout import CHAMPION, EVALUATIONS, HISTORY, LOGS, PINS, parse_time, version_names
from .pointer import last_move

__all__ = ["Snapshot", "snapshot"]


@dataclass(frozen=True)
class Snapshot:
    """What :func:`snapshot` wrote: the folder, its versions and champion, how many log rows it kept.

    ``missing``: versions the kept history names as existing then that are gone from ``source`` now.
    """

    path: Path
    versions: tuple[str, ...]
    champion: str | None
    history_rows: int
    evaluation_rows: int
    missing: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "versions": list(self.versions), "champion": self.champion,
                "history_rows": self.history_rows, "evaluation_rows": self.evaluation_rows,
                "missing": list(self.missing)}


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(src, dst)


def _created_before(vdir: Path, before: datetime, run_id: str | None) -> bool:
    try:
        meta = json.loads((vdir / "metadata.json").read_text())
    except (OSError, ValueError):
        return False
    created = parse_time(meta.get("created"))
    return meta.get("run_id") != run_id and created is not None and created < before


def _rows_before(path: Path, before: datetime, run_id: str | None) -> list[dict]:
    """The rows of a log written before ``before`` and not by run ``run_id`` (a torn tail is skipped)."""
    kept = []
    for row in jsonl.read(path):
        when = parse_time(row.get("time"))
        if row.get("run_id") != run_id and when is not None and when < before:
            kept.append(row)
    return kept


def _pointer(champion: str, history: list[dict], since: str) -> dict:
    """The CHAMPION record naming ``champion``: its last history move when that names it, else a fresh promote."""
    last = last_move(history)
    if last is not None and last.get("version") == champion:
        return {"version": champion, "previous": last.get("previous"), "since": last.get("time"),
                "run_id": last.get("run_id"), "event": last.get("event"), "replaced": last.get("previous"),
                "reason": last.get("reason")}
    return {"version": champion, "previous": None, "since": since, "run_id": None,
            "event": "promote", "replaced": None, "reason": "rebuilt for replay"}


def snapshot(source: Path, target: Path, *, before: datetime, run_id: str | None, champion: str | None,
             since: str | None = None) -> Snapshot:
    """Write under ``target`` (a new folder) the registry ``source`` as it stood before ``before``.

    ``champion``: the champion then (a run's ``champion_before``); ``since`` the time stamp a fresh
    pointer carries when the history does not name it (default ``before``). :class:`RegistryError`
    when ``champion`` is no longer among the versions of then (retention or a person removed it).
    """
    source, target = Path(source), Path(target)
    target.mkdir(parents=True, exist_ok=False)
    versions = []
    for name in version_names(source):
        if _created_before(source / name, before, run_id):
            shutil.copytree(source / name, target / name, copy_function=_link_or_copy)
            versions.append(name)
    if (source / PINS).exists():
        pins = [v for v in json.loads((source / PINS).read_text()) if v in versions]
        write_atomic(target / PINS, json.dumps(sorted(pins)) + "\n")

    logs = {name: _rows_before(source / name, before, run_id) for name in LOGS}
    for name, rows in logs.items():
        if rows:
            write_atomic(target / name, "".join(map(jsonl.dumps, rows)))

    history = logs[HISTORY]
    if champion is not None:
        if champion not in versions:
            raise RegistryError(
                f"its champion before the run, {champion}, is no longer in {source} "
                "(retention or a manual deletion removed it; see `retrain history`). Restore the version from a backup"
            )
        write_json_atomic(target / CHAMPION, _pointer(champion, history, since or before.isoformat()))

    existed = {e.get("version") for e in history if e.get("event") != "retention"}
    deleted = {e.get("version") for e in history if e.get("event") == "retention"}
    missing = sorted(v for v in existed - deleted - set(versions) if v)
    return Snapshot(path=target, versions=tuple(versions), champion=champion, history_rows=len(history),
                    evaluation_rows=len(logs[EVALUATIONS]), missing=tuple(missing))
