"""The champion pointer and its history: ``CHAMPION``, ``history.jsonl``, and recovery of a half-done move.

``CHAMPION`` is a JSON record ``{"version", "previous", "since", "run_id", "event", "replaced",
"reason"}`` replaced atomically (:func:`retrainlib.durable.write_json_atomic`); every move of it
(promote, rollback, auto-rollback) is then appended to ``history.jsonl``. The pointer is written
before its history line, so a kill in between leaves a pointer one swap ahead of the history:
:meth:`Pointer.recover` adds the lost line from the pointer itself, and rolls back a promotion
whose fresh-process smoke test never answered (``"smoke_pending": true``). A pointer that does not
continue the history (hand-edited, not JSON, naming a missing version) is never written into it:
:meth:`Pointer.problem` says what is wrong and how to repair it.

This module touches only ``CHAMPION`` and ``history.jsonl``; callers hold the writer lock to change them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from ..durable import write_json_atomic
from ..errors import DamagedPointer, RegistryError
from . import jsonl
from .layout import CHAMPION, HISTORY, listing, now
from .versions import VersionStore

__all__ = ["HistoryEvent", "Pointer", "EVENTS", "POINTER_EVENTS", "last_move", "served_versions"]

#: the history's event kinds; the first three move the champion pointer
EVENTS = ("promote", "rollback", "auto-rollback", "retention")
POINTER_EVENTS = ("promote", "rollback", "auto-rollback")


@dataclass(frozen=True)
class HistoryEvent:
    """One line of ``history.jsonl``.

    ``version`` is the champion after the event (for ``retention``: the version deleted) and
    ``previous`` the champion the event replaced (``None`` for ``retention``).
    """

    time: str
    event: str
    version: str | None
    previous: str | None
    run_id: str | None
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "HistoryEvent":
        return cls(
            time=d["time"],
            event=d["event"],
            version=d.get("version"),
            previous=d.get("previous"),
            run_id=d.get("run_id"),
            reason=d.get("reason", ""),
        )


def last_move(rows: list[dict]) -> dict | None:
    """The last promotion or rollback among history ``rows`` (the events that move the pointer)."""
    return next((e for e in reversed(rows) if e.get("event") in POINTER_EVENTS), None)


def served_versions(rows: list[dict]) -> set[str]:
    """Versions that were champion: promoted or rolled back to, minus promotions a smoke test undid."""
    served = {e.get("version") for e in rows if e.get("event") in ("promote", "rollback")}
    undone = {e.get("previous") for e in rows if e.get("event") == "auto-rollback"}
    return {v for v in served - undone if v}


def _in_history(rec: dict, last: dict | None) -> bool:
    return last is not None and (last.get("time"), last.get("version")) == (rec.get("since"), rec.get("version"))


def _is_lost_line(rec: dict, last: dict | None) -> bool:
    """Whether ``rec`` is a swap whose history line a kill lost: it continues from history's last move."""
    if last is None:
        return rec.get("replaced") is None
    return rec.get("replaced") == last.get("version") and str(rec.get("since")) > str(last.get("time"))


class Pointer:
    """``CHAMPION`` and ``history.jsonl`` of one model's registry folder ``path``."""

    def __init__(self, path: Path, versions: VersionStore):
        self.path = path
        self.versions = versions
        self.file = path / CHAMPION
        self.history_file = path / HISTORY

    # ---- history -----------------------------------------------------------------------------
    def rows(self) -> list[dict]:
        """``history.jsonl`` as plain rows, oldest first."""
        return jsonl.read(self.history_file)

    def history(self) -> list[HistoryEvent]:
        """Every promotion, rollback and retention deletion, oldest first."""
        out = []
        for i, row in enumerate(self.rows()):
            try:
                out.append(HistoryEvent.from_dict(row))
            except KeyError as exc:
                raise RegistryError(
                    f"event {i + 1} of {self.history_file} lacks {exc}; expected time, event, version, previous, "
                    f"run_id, reason"
                ) from exc
        return out

    def record(self, ev: HistoryEvent) -> None:
        """Append ``ev`` to the history; under the writer lock."""
        jsonl.append(self.history_file, [ev.to_dict()])

    def history_champion(self) -> str | None:
        """The champion according to ``history.jsonl``: the version its last promotion or rollback left."""
        last = last_move(self.rows())
        return last.get("version") if last else None

    def lineage_previous(self, target: str) -> str | None:
        """The champion before ``target`` in its own lineage: what its latest promotion replaced."""
        prev = None
        for e in self.rows():
            if e.get("event") == "promote" and e.get("version") == target:
                prev = e.get("previous")
        if prev is None or prev == target or prev not in self.versions.names():
            return None
        return prev

    # ---- the pointer -------------------------------------------------------------------------
    def read(self) -> tuple[dict | None, str | None]:
        """The ``CHAMPION`` record as stored and what is wrong with it (``None``: nothing), never raising."""
        try:
            raw = self.file.read_text()
        except FileNotFoundError:
            return None, None
        except (OSError, UnicodeDecodeError) as exc:
            return None, f"{self.file} cannot be read ({type(exc).__name__}: {exc})"
        try:
            rec = json.loads(raw)
        except ValueError as exc:  # cannot happen through this class: the file is replaced atomically
            return None, f"{self.file} is not JSON ({exc}); something other than retrain changed it"
        if not isinstance(rec, dict) or "version" not in rec:
            return None, f"{self.file} holds {raw[:80]!r}; expected a JSON object with 'version'"
        version = rec["version"]
        names = self.versions.names()
        if version is not None and version not in names:
            return rec, (f"{self.file} points to version {version!r}, which is not in {self.versions.display} "
                         f"(versions: {listing(names)})")
        return rec, None

    def _repair_advice(self) -> str:
        try:
            target = self.history_champion()
        except RegistryError:
            target = None
        if target in self.versions.names():
            return f"repair it with `retrain rollback --to {target}` (the champion according to history.jsonl)"
        return f"repair it with `retrain rollback --to vNNNN` (versions: {listing(self.versions.names())})"

    def problem(self) -> str | None:
        """One line saying what is wrong with ``CHAMPION`` and how to repair it; ``None`` when it is sound.

        Sound means: JSON naming a stored version (or none), and either agreeing with the last
        promotion or rollback in ``history.jsonl`` or one swap ahead of it (a kill between the
        pointer write and its history line, which :meth:`recover` completes).
        """
        rec, problem = self.read()
        if problem is None and rec is not None and rec.get("event") in POINTER_EVENTS:
            last = last_move(self.rows())
            if not (_in_history(rec, last) or _is_lost_line(rec, last)):
                problem = (f"{self.file} says the champion is {rec.get('version')} since {rec.get('since')}, "
                           f"but history.jsonl says {self.history_champion()}; something other than retrain changed it")
        return f"{problem}; {self._repair_advice()}" if problem else None

    def champion_record(self) -> dict | None:
        """The ``CHAMPION`` record, or ``None``; :class:`DamagedPointer` saying how to repair a damaged one."""
        rec, problem = self.read()
        if problem:
            raise DamagedPointer(f"{problem}; {self._repair_advice()}")
        return rec

    def swap(
        self,
        *,
        event: str,
        version: str | None,
        previous: str | None,
        replaced: str | None,
        run_id: str | None,
        reason: str,
        smoke_pending: bool = False,
    ) -> HistoryEvent:
        """Replace CHAMPION atomically, then append its history line; under the writer lock."""
        since = now()
        record = {
            "version": version,
            "previous": previous,
            "since": since,
            "run_id": run_id,
            # the rest lets the next writer restore the history line if a kill loses it
            "event": event,
            "replaced": replaced,
            "reason": reason,
        }
        if smoke_pending:  # promote_verified has not heard back from the smoke test yet
            record["smoke_pending"] = True
        write_json_atomic(self.file, record)
        ev = HistoryEvent(time=since, event=event, version=version, previous=replaced, run_id=run_id, reason=reason)
        self.record(ev)
        return ev

    def confirm_smoke(self) -> None:
        """Drop ``smoke_pending`` from the pointer: its smoke test answered; under the writer lock."""
        record = self.champion_record() or {}
        record.pop("smoke_pending", None)
        write_json_atomic(self.file, record)

    # ---- recovery ----------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Complete a move a kill cut short; under the writer lock. Returns what it did, one phrase each.

        Adds the history line of a pointer swap whose line was lost, and rolls back a promotion
        whose smoke test never answered. A damaged pointer is left for a person to repair
        (`retrain rollback --to`), never guessed.
        """
        done: list[str] = []
        rec, problem = self.read()
        if problem or not rec:
            return done
        if rec.get("event") in POINTER_EVENTS:
            last = last_move(self.rows())
            if not _in_history(rec, last):
                if not _is_lost_line(rec, last):
                    return done  # the pointer does not continue the history: problem() reports it
                ev = HistoryEvent(
                    time=rec["since"], event=rec["event"], version=rec.get("version"), previous=rec.get("replaced"),
                    run_id=rec.get("run_id"), reason=rec.get("reason", ""),
                )
                self.record(ev)
                done.append(f"restored the history line of the {ev.event} to {ev.version}")
        if rec.get("smoke_pending"):
            # the promoting process died before its smoke test answered: undo the unverified promotion
            before = rec.get("replaced")
            if before not in self.versions.names():
                before = None
            self.swap(
                event="auto-rollback",
                version=before,
                previous=self.lineage_previous(before) if before else None,
                replaced=rec.get("version"),
                run_id=rec.get("run_id"),
                reason=f"the smoke test of {rec.get('version')} never answered (its process died); rolled back",
            )
            done.append(f"rolled back the unverified promotion of {rec.get('version')} to {before}")
        return done
