"""The model registry: immutable versions, an atomic champion pointer, history, retention, locks.

One folder per model, ``models/<model-name>/`` (the names live in :mod:`.layout`)::

    v0001/ …          immutable versions: predictor/ (an AutoGluon deployment clone), metadata.json,
                      extra files such as leaderboard.csv, checksums.json (sha256 of every file)
    CHAMPION          JSON pointer {"version", "previous", "since", "run_id", ...}, replaced atomically
    history.jsonl     append-only promotions, rollbacks and retention deletions
    evaluations.jsonl the champion's measured metric per batch (and estimates.jsonl, attempts.jsonl)
    shadows.jsonl     the shadow role: a validated version on trial beside the champion (:mod:`.shadows`)
    pins.json         versions marked ``keep`` (never deleted by retention)
    .lock .run.lock   the writer lock and the one-run-at-a-time lock
    .staging/ .trash/ where versions are built and where deleted versions disappear

:class:`Registry` is the one facade; each concept is a module behind it: :mod:`.jsonl` (append-only
logs), :mod:`.versions` (the version store), :mod:`.pointer` (CHAMPION, history, recovery),
:mod:`.promotion` (moves of the pointer), :mod:`.retention` (a pure plan and its application),
:mod:`.evaluations` (the measurement logs), :mod:`.locks`, and :mod:`.snapshot` (the registry as it
stood before a run, for replay). Durable writes and hashing come from :mod:`retrainlib.durable`.

Crash safety, the contract every method keeps: a SIGKILL at any instant leaves a champion that
loads and no finished version lost or half-visible. A version is built in ``.staging/``, fsynced,
and renamed into place under the writer lock; a deleted version is first recorded in the history,
then renamed into ``.trash/`` and removed there. The champion pointer and pins are replaced with
write-temp, fsync, ``os.replace``, fsync-directory. History and evaluations are JSON lines, one
fsync per write; a line torn by a kill is ignored when reading and cut off by the next writer.
The pointer is written before its history line; the next writer (and every command, before it
reads) adds a line the kill lost, from the pointer itself, and rolls back a promotion whose
fresh-process smoke test never answered (:meth:`Registry.recover`). A pointer that does not
continue the history (hand-edited, not JSON, naming a missing version) is never written into it:
:meth:`Registry.pointer_problem` says what is wrong, and ``roll_back(to=...)`` repairs it.

>>> import tempfile
>>> reg = Registry(Path(tempfile.mkdtemp()) / "models", "loan-default")
>>> reg.versions(), reg.champion()
([], None)
"""

from __future__ import annotations

import contextlib
import shutil
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

import filelock

from ..errors import RegistryError
from . import evaluations as _logs
from . import jsonl, locks, promotion, retention, shadows
from .layout import (ATTEMPTS, ESTIMATES, ESTIMATORS, EVALUATIONS, HISTORY, SHADOWS, VERSION_PATTERN, check_model_name,
                     is_version_name, listing, now)
from .locks import RUN_LOCK_HELD_ENV
from .pointer import EVENTS, HistoryEvent, Pointer
from .promotion import PromotionResult
from .versions import VersionInfo, VersionStore, tree_size

if TYPE_CHECKING:  # pandas and AutoGluon are imported only where needed: writers start fast
    import pandas as pd

__all__ = [
    "Registry",
    "VersionInfo",
    "HistoryEvent",
    "PromotionResult",
    "is_version_name",
    "VERSION_PATTERN",
    "EVENTS",
    "RUN_LOCK_HELD_ENV",
]


class Registry:
    """One model's registry folder ``root/model_name`` (see the module docstring for its layout).

    Every mutating method takes the writer lock (:meth:`write_lock`), so one process writes at a
    time; readers take no lock and never see a half-written version or pointer.

    Parameters
    ----------
    root : Path
        The models folder, ``<home>/models``.
    model_name : str
        The model's folder name: letters, digits, ``.``, ``_``, ``-``.
    """

    def __init__(self, root: Path, model_name: str):
        self.model_name = check_model_name(model_name)
        self.root = Path(root)
        self.path = self.root / model_name
        self._lock = locks.writer_lock(self.path)
        self._versions = VersionStore(self.path, f"{self.root.name}/{model_name}")
        self._pointer = Pointer(self.path, self._versions)

    def __repr__(self) -> str:
        return f"Registry({str(self.root)!r}, {self.model_name!r})"

    # ---- locks -------------------------------------------------------------------------------
    def write_lock(self) -> filelock.FileLock:
        """The writer lock on ``<path>/.lock``: one writer at a time across processes (reentrant).

        A process killed while holding it releases it (the kernel drops its ``flock``).
        """
        self.path.mkdir(parents=True, exist_ok=True)
        return self._lock

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the writer lock and tidy what a killed writer left first: how every change begins."""
        with self.write_lock():
            self._recover_locked()
            yield

    def run_lock(self, *, timeout: float = -1) -> contextlib.AbstractContextManager[Path]:
        """Hold ``<path>/.run.lock`` for a playbook run; :class:`RunLocked` when another run holds it.

        ``timeout`` seconds to wait (``-1`` waits for ever, ``0`` fails at once).
        """
        return locks.run_lock(self.path, self.model_name, timeout=timeout)

    # ---- versions ----------------------------------------------------------------------------
    def versions(self) -> list[VersionInfo]:
        """Every finished version, oldest first."""
        return self._versions.all()

    def version(self, name: str) -> VersionInfo:
        """The version called ``name``; :class:`RegistryError` for a bad or unknown name."""
        return self._versions.info(name)

    def add_version(self, source_dir: Path, metadata: dict, *, run_id: str | None = None,
                    extra_files: Mapping[str, Path] = {}) -> VersionInfo:
        """Store a deployment clone as the next version ``vNNNN``, immutable from then on.

        ``source_dir`` is copied to ``<version>/predictor/``; ``metadata.json`` holds ``metadata``
        plus ``version``, ``created`` (UTC ISO) and ``run_id`` (these three are set here);
        ``extra_files`` maps a file name in the version folder to a file to copy (e.g.
        ``{"leaderboard.csv": path}``). The version is built in ``.staging/``, fsynced, and renamed
        into place under the writer lock: readers see all of it or none of it.
        """
        meta, extras = self._versions.check_new(Path(source_dir), metadata, extra_files)
        stage = None
        try:
            stage, sums = self._versions.stage(Path(source_dir), extras)  # the heavy part, outside the lock
            with self._writing():
                # never reuse the name of a deleted version: retention records each deletion first
                name = self._versions.next_name(e.get(k) for e in self._pointer.rows() for k in ("version", "previous"))
                meta.update(version=name, created=now(), run_id=run_id)
                return self._versions.commit(stage, sums, meta, name)  # read under the lock: no sweep can race it
        finally:
            if stage is not None and stage.exists():
                shutil.rmtree(stage, ignore_errors=True)

    def verify(self, name: str) -> None:
        """Check every file of version ``name`` against ``checksums.json``; :class:`IntegrityError` naming each problem."""
        self._versions.verify(name)

    def predictor_path(self, name: str, *, verify: bool = True) -> Path:
        """The ``predictor/`` folder of version ``name``, verified against its checksums first."""
        name = self._versions.check_name(name)
        if verify:
            self.verify(name)
        return self.path / name / "predictor"

    def load(self, name: str | None = None):
        """Verify, then load version ``name`` (the champion when ``None``) strictly with AutoGluon."""
        if name is None:
            name = self.champion()
            if name is None:
                raise RegistryError(
                    f"{self._versions.display} has no champion yet, so there is nothing to load; promote a version "
                    f"first (versions: {listing(self._versions.names())})"
                )
        path = self.predictor_path(name, verify=True)
        from .. import automl

        try:
            return automl.load_predictor(path, strict=True)
        except Exception as exc:  # wrap at the boundary: AutoGluon raises many kinds
            raise RegistryError(
                f"version {name} passed its checksums but AutoGluon could not load {path} strictly "
                f"({type(exc).__name__}: {exc}); check the software versions in its metadata.json "
                f"against this environment, or roll back to another version"
            ) from exc

    def estimator(self, name: str):
        """Version ``name``'s label-free estimator: its newest revision (``estimators.jsonl``, recalibrated as
        labels arrived) or else the one registered with it (``estimator.json``, checksummed with the version);
        None when it has neither."""
        name = self._versions.check_name(name)
        from ..estimate import Estimator

        revisions = _logs.read(self.path / ESTIMATORS, name)
        if revisions:
            return Estimator.from_dict(revisions[-1]["estimator"])
        path = self.path / name / "estimator.json"
        if not path.is_file():
            return None
        self.verify(name)
        return Estimator.load(path)

    def record_estimator(self, name: str, estimator, *, run_id: str | None = None) -> None:
        """Append a revision of version ``name``'s estimator (refitted on labelled rows it did not train on) to
        ``estimators.jsonl``; the version folder and its checksummed ``estimator.json`` stay as registered."""
        name = self._versions.check_name(name)
        self._append(ESTIMATORS, [{"time": now(), "run_id": run_id, "version": name,
                                   "revision": int(estimator.revision), "estimator": estimator.to_dict()}])

    def total_size_bytes(self) -> int:
        """Bytes on disk under the registry folder (versions, history, everything)."""
        return tree_size(self.path) if self.path.is_dir() else 0

    # ---- champion pointer and history --------------------------------------------------------
    def champion_record(self) -> dict | None:
        """The ``CHAMPION`` pointer: ``{"version", "previous", "since", "run_id", ...}``, or ``None``.

        :class:`~retrainlib.errors.DamagedPointer` when it is not JSON or names a version the
        registry does not hold; the message says how to repair it.
        """
        return self._pointer.champion_record()

    def champion(self) -> str | None:
        """The champion's version name, ``None`` before the first promotion."""
        rec = self.champion_record()
        return rec.get("version") if rec else None

    def history_champion(self) -> str | None:
        """The champion according to ``history.jsonl``: the version its last promotion or rollback left."""
        return self._pointer.history_champion()

    def pointer_problem(self) -> str | None:
        """One line saying what is wrong with ``CHAMPION`` and how to repair it; ``None`` when it is sound."""
        return self._pointer.problem()

    def history(self) -> list[HistoryEvent]:
        """Every promotion, rollback and retention deletion, oldest first."""
        return self._pointer.history()

    def promote(self, name: str, *, run_id: str | None, reason: str) -> HistoryEvent:
        """Make version ``name`` the champion: verify it, swap the pointer atomically, record it."""
        return promotion.promote(self, name, run_id=run_id, reason=reason)

    def roll_back(self, *, to: str | None = None, run_id: str | None, reason: str) -> HistoryEvent:
        """Make the previous champion (or version ``to``) the champion again.

        Versions are immutable, so nothing is copied: only the pointer moves. The new pointer's
        ``previous`` is the target's own predecessor (what its latest promotion replaced), so
        rolling back twice goes two steps back. :class:`RegistryError` when there is nothing to
        roll back to; over a damaged pointer only ``to=`` a named version (it repairs the pointer).
        """
        return promotion.roll_back(self, to=to, run_id=run_id, reason=reason)

    def rollback_target(self, to: str | None = None) -> str:
        """The version :meth:`roll_back` would make champion; :class:`RegistryError` when there is none."""
        return promotion.rollback_target(self, to)

    def promote_verified(self, name: str, sample: "pd.DataFrame", *, run_id: str | None, reason: str,
                         timeout: float = 120) -> PromotionResult:
        """Promote, then load the new champion in a fresh process and predict ``sample``.

        The fresh process is :mod:`retrainlib.freshproc`'s (a new child of its warm fork server). If
        it fails or overruns ``timeout`` seconds, the registry rolls back by itself to the champion
        before (or to no champion on a first promotion) and records both events. The writer lock
        is held throughout, so no other writer slips in between. Until the smoke test answers, the
        pointer carries ``"smoke_pending": true``; if this process dies before then, the next
        writer rolls back by itself (:meth:`recover`): an unverified promotion never outlives a crash.
        """
        return promotion.promote_verified(self, name, sample, run_id=run_id, reason=reason, timeout=timeout)

    # ---- recovery ----------------------------------------------------------------------------
    def recover(self, *, wait: bool = True) -> list[str]:
        """Tidy up after a killed writer; every mutating method does this first, every command before it reads.

        Removes stale ``.staging`` builds and ``.trash`` leftovers and temp files, cuts torn last
        lines off the JSON-lines files, adds the history line for a pointer swap whose line a
        kill lost, and rolls back a promotion whose smoke test never answered. A damaged pointer
        is left as it is (:meth:`pointer_problem` says how to repair it): no history line is
        ever written for a pointer that does not continue the history. With ``wait=False`` it
        does nothing while a live writer holds the lock (that writer finishes its own work).
        Returns what it did, one phrase each.
        """
        if not self.path.is_dir():
            return []
        lock = self.write_lock()
        try:
            lock.acquire(timeout=-1 if wait else 0)
        except filelock.Timeout:
            return []
        try:
            return self._recover_locked()
        finally:
            lock.release()

    def _recover_locked(self) -> list[str]:
        if not self.path.is_dir():
            return []
        done = self._versions.clear_leftovers()
        for name in (HISTORY, EVALUATIONS, ATTEMPTS, SHADOWS):
            if jsonl.has_torn_tail(self.path / name):
                jsonl.cut_torn_tail(self.path / name)
                done.append(f"cut a torn last line off {name}")
        done += self._pointer.recover()
        return done + shadows.recover(self)

    # ---- the shadow: a validated version on trial beside the champion (:mod:`.shadows`) -------
    def shadow(self) -> str | None:
        """The shadow's version name, ``None`` when no version is on trial."""
        row = shadows.current(self)
        return row["version"] if row else None

    def shadow_record(self) -> dict | None:
        """The shadow's ``start`` row (``version``, ``champion``, ``needed``, ``time``, ``run_id``, ``reason``), or None."""
        return shadows.current(self)

    def start_shadow(self, name: str, *, needed: int, run_id: str | None, reason: str, validated: str | None = None,
                     data_end: str | None = None) -> dict:
        """Put version ``name`` on trial beside the champion for ``needed`` batches after ``data_end`` (the newest batch
        its validation saw); a shadow on trial is ``replaced``."""
        return shadows.start(self, name, champion=self.champion(), needed=needed, run_id=run_id, reason=reason,
                             validated=validated, data_end=data_end)

    def record_shadow_batches(self, rows: Sequence[dict]) -> None:
        """Append shadow and champion scored on the same rows of a batch, one row per batch, to ``shadows.jsonl``."""
        shadows.record_batches(self, rows)

    def shadow_batches(self) -> list[dict]:
        """The shadow's trial so far: one row per batch scored since it started, oldest first (``[]`` without a shadow)."""
        row = shadows.current(self)
        return shadows.batches(self, row["version"], started=row["time"]) if row else []

    def drop_shadow(self, *, run_id: str | None, reason: str) -> dict | None:
        """End the shadow's trial as ``dropped``: it never serves. Returns the ``end`` row (None without a shadow)."""
        return shadows.end(self, "dropped", run_id=run_id, reason=reason)

    def promote_instead_of_shadow(self, name: str, sample: "pd.DataFrame", *, run_id: str | None,
                                  reason: str) -> tuple[PromotionResult, dict | None]:
        """Version ``name``, which needs no trial, serves (smoke-tested like :meth:`promote_verified`); a shadow on
        trial ends ``replaced`` first. Returns the promotion's result and the shadow's ``end`` row (or None)."""
        return shadows.promote_instead(self, name, sample, run_id=run_id, reason=reason)

    def promote_shadow(self, sample: "pd.DataFrame", *, run_id: str | None, reason: str) -> tuple[PromotionResult, dict]:
        """The shadow becomes the champion, smoke-tested in a fresh process like :meth:`promote_verified`; its trial
        ends ``promoted`` (or ``dropped`` when the smoke test failed and the registry rolled back by itself)."""
        return shadows.promote(self, sample, run_id=run_id, reason=reason)

    # ---- pins and retention ------------------------------------------------------------------
    def pins(self) -> set[str]:
        """Versions marked ``keep``."""
        return retention.pins(self)

    def keep(self, name: str, keep: bool = True) -> None:
        """Mark version ``name`` to be kept by retention (``keep=False`` removes the mark)."""
        retention.keep(self, name, keep)

    def apply_retention(self, *, max_versions: int, retention_days: float, now: datetime | None = None) -> list[str]:
        """Delete versions beyond ``max_versions`` and older than ``retention_days`` (:func:`.retention.plan`).

        Beyond ``max_versions``, versions that never served as champion (rejected challengers,
        validated models whose refit was deployed) go first, oldest first; former champions go
        only after them, oldest first, so the newest champions stay rollback targets. Never
        deletes the champion, the previous champion, the version the champion was validated as
        (``validated_version``: the next challenger is judged against it) or a version marked
        ``keep``, nor the shadow on trial. Each deletion is recorded in the history first, then the folder is renamed into ``.trash`` (it
        disappears at once) and removed. Also clears leftovers of killed writers. Returns the
        deleted names.
        """
        return retention.apply(self, max_versions=max_versions, retention_days=retention_days, now=now)

    # ---- evaluations, estimates, attempts ----------------------------------------------------
    def _append(self, name: str, rows: Sequence[dict]) -> None:
        if rows:
            with self._writing():
                jsonl.append(self.path / name, rows)

    def record_evaluations(self, rows: Sequence[dict]) -> None:
        """Append the champion's measured metric per batch to ``evaluations.jsonl``.

        Each row needs ``version``, ``batch``, ``metric``, ``value``; ``time`` (default now),
        ``run_id`` and ``n_rows`` are optional.
        """
        self._append(EVALUATIONS, _logs.check_evaluations(rows))

    def evaluations(self, version: str | None = None) -> list[dict]:
        """Recorded evaluations, oldest first; only ``version``'s when given."""
        return _logs.read(self.path / EVALUATIONS, version)

    def record_estimates(self, rows: Sequence[dict]) -> None:
        """Append label-free estimates per batch to ``estimates.jsonl`` (``version``, ``batch``, ``metric``,
        ``value``, ``low``, ``high``, ``n_rows``, ``reason``)."""
        self._append(ESTIMATES, _logs.check_estimates(rows))

    def estimates(self, version: str | None = None) -> list[dict]:
        """Recorded label-free estimates, oldest first; only ``version``'s when given."""
        return _logs.read(self.path / ESTIMATES, version)

    def record_attempt(self, *, version: str, run_id: str | None, data_end: str, outcome: str | None = None) -> None:
        """Record one retraining attempt: the challenger it trained and the newest batch end it saw.

        The schedule trigger counts its interval from the last attempt, promoted or not, on the
        data's time axis (``data_end``), so backtests and live runs keep the same clock.
        """
        self._append(ATTEMPTS, [_logs.attempt_row(version=version, run_id=run_id, data_end=data_end, outcome=outcome)])

    def record_attempt_outcome(self, version: str, *, outcome: str, run_id: str | None = None,
                               failed_gates: Sequence[str] = (), reasons: Sequence[str] = ()) -> None:
        """Add what became of an attempt's challenger (promoted, rejected, auto-rolled-back) to its record."""
        self._append(ATTEMPTS, [_logs.outcome_row(version, outcome=outcome, run_id=run_id,
                                                  failed_gates=failed_gates, reasons=reasons)])

    def attempts(self) -> list[dict]:
        """Every recorded retraining attempt, oldest first, with its outcome once known."""
        return _logs.attempts(self.path / ATTEMPTS)

    def record_block(self, *, run_id: str | None, data_end: str, batches: Sequence[dict], reasons: Sequence[str]) -> None:
        """Record a run that broken data blocked, in ``attempts.jsonl`` (outcome ``blocked``, no version).

        ``batches`` (``path``, ``sha256``, ``checks``) are the broken batches it found: a later run
        leaves them out of training instead of blocking again (:meth:`blocked_batches`), and the stuck
        rule counts the block like a rejection.
        """
        self._append(ATTEMPTS, [_logs.block_row(run_id=run_id, data_end=data_end, batches=batches, reasons=reasons)])

    def blocked_batches(self) -> dict[str, str]:
        """Batches an earlier run found broken and blocked on: path -> sha256 of the file it judged."""
        return {b["path"]: b["sha256"] for a in self.attempts() if a.get("outcome") == "blocked"
                for b in a.get("batches") or ()}
