"""The model registry: immutable versions, an atomic champion pointer, history, retention, locks.

One folder per model, ``models/<model-name>/``::

    v0001/ …          immutable versions: predictor/ (an AutoGluon deployment clone), metadata.json,
                      extra files such as leaderboard.csv, checksums.json (sha256 of every file)
    CHAMPION          JSON pointer {"version", "previous", "since", "run_id", ...}, replaced atomically
    history.jsonl     append-only promotions, rollbacks and retention deletions
    evaluations.jsonl the champion's measured metric per batch
    pins.json         versions marked ``keep`` (never deleted by retention)
    .lock .run.lock   the writer lock and the one-run-at-a-time lock
    .staging/ .trash/ where versions are built and where deleted versions disappear

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
import json
import math
import os
import re
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import filelock

from .durable import fsync_dir as _fsync_dir
from .durable import sha256_file as _sha256
from .durable import write_json_atomic as _atomic_write_json
from .errors import DamagedPointer, IntegrityError, RegistryError, RunLocked

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

#: what a version folder is called: ``v`` and four digits
VERSION_PATTERN = re.compile(r"^v\d{4}$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: the history's event kinds; the first three move the champion pointer
EVENTS = ("promote", "rollback", "auto-rollback", "retention")
_POINTER_EVENTS = ("promote", "rollback", "auto-rollback")
_RESERVED_FILES = ("predictor", "metadata.json", "checksums.json")
#: set by the runner for its notebooks' kernels to the run folder whose run lock it holds
RUN_LOCK_HELD_ENV = "RETRAIN_RUN_LOCK_HELD"
#: a ``.staging`` entry whose process is gone, or older than this, is a leftover of a killed writer
_STALE_AFTER = timedelta(days=1)


def is_version_name(name: object) -> bool:
    """Whether ``name`` is a version name (``v`` and four digits).

    >>> is_version_name("v0003"), is_version_name("../x"), is_version_name("/tmp/v0001")
    (True, False, False)
    """
    return isinstance(name, str) and VERSION_PATTERN.fullmatch(name) is not None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


# --------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class VersionInfo:
    """One stored version: its name, folder, metadata and size on disk."""

    name: str
    path: Path
    metadata: dict = field(hash=False)
    size_bytes: int

    @property
    def created(self) -> str | None:
        return self.metadata.get("created")

    def to_dict(self) -> dict:
        return {"name": self.name, "path": str(self.path), "size_bytes": self.size_bytes, "metadata": dict(self.metadata)}


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


# --------------------------------------------------------------------------------------------
# durable file primitives


def _has_torn_tail(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return False
            f.seek(size - 1)
            return f.read(1) != b"\n"
    except FileNotFoundError:
        return False


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line without its newline (a write a kill interrupted); call under the writer lock."""
    if not path.exists():
        return
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        # find the last complete line
        pos, chunk = size, 65536
        keep = 0
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            buf = f.read(pos - start)
            i = buf.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())


def _append_lines(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append JSON lines with one fsync; call under the writer lock."""
    _cut_torn_tail(path)
    data = "".join(json.dumps(dict(r), sort_keys=True) + "\n" for r in rows).encode()
    created = not path.exists()
    with open(path, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if created:
        _fsync_dir(path.parent)


def _read_lines(path: Path) -> list[dict]:
    """Parse JSON lines; a torn last line is ignored, a broken line before it is an error."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    torn_tail = not raw.endswith(b"\n")
    out: list[dict] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        last = i == len(lines) - 1
        try:
            row = json.loads(line)
        except ValueError as exc:
            if last and torn_tail:
                break  # a write cut short by a kill; the next writer removes it
            raise RegistryError(
                f"line {i + 1} of {path} is not JSON ({exc}); expected one JSON object per line. "
                f"The file is append-only: restore it from a backup, or move the broken line out of the way"
            ) from exc
        if not isinstance(row, dict):
            raise RegistryError(f"line {i + 1} of {path} is {type(row).__name__}; expected a JSON object per line")
        out.append(row)
    return out


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _tree_size(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _listing(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none yet"


# --------------------------------------------------------------------------------------------
# the registry


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
        if not isinstance(model_name, str) or not _MODEL_NAME.fullmatch(model_name):
            raise RegistryError(
                f"model name {model_name!r} is not a folder name; expected letters, digits, '.', '_' or '-' "
                f"(e.g. 'loan-default'); fix data.model_name in the profile"
            )
        self.root = Path(root)
        self.model_name = model_name
        self.path = self.root / model_name
        self._lock = filelock.FileLock(self.path / ".lock", preserve_lock_file=True, fallback_to_soft=False)

    def __repr__(self) -> str:
        return f"Registry({str(self.root)!r}, {self.model_name!r})"

    # ---- files -------------------------------------------------------------------------------
    @property
    def _champion_file(self) -> Path:
        return self.path / "CHAMPION"

    @property
    def _history_file(self) -> Path:
        return self.path / "history.jsonl"

    @property
    def _evaluations_file(self) -> Path:
        return self.path / "evaluations.jsonl"

    @property
    def _attempts_file(self) -> Path:
        return self.path / "attempts.jsonl"

    @property
    def _pins_file(self) -> Path:
        return self.path / "pins.json"

    @property
    def _staging(self) -> Path:
        return self.path / ".staging"

    @property
    def _trash(self) -> Path:
        return self.path / ".trash"

    def _display(self) -> str:
        return f"{self.root.name}/{self.model_name}"

    # ---- locks -------------------------------------------------------------------------------
    def write_lock(self) -> filelock.FileLock:
        """The writer lock on ``<path>/.lock``: one writer at a time across processes (reentrant).

        A process killed while holding it releases it (the kernel drops its ``flock``).
        """
        self.path.mkdir(parents=True, exist_ok=True)
        return self._lock

    @contextlib.contextmanager
    def run_lock(self, *, timeout: float = -1) -> Iterator[Path]:
        """Hold ``<path>/.run.lock`` for a playbook run; :class:`RunLocked` when another run holds it.

        ``timeout`` seconds to wait (``-1`` waits for ever, ``0`` fails at once).
        """
        self.path.mkdir(parents=True, exist_ok=True)
        lock_file = self.path / ".run.lock"
        lock = filelock.FileLock(lock_file, preserve_lock_file=True, fallback_to_soft=False)
        try:
            lock.acquire(timeout=timeout)
        except filelock.Timeout as exc:
            raise RunLocked(
                f"another run of model '{self.model_name}' holds {lock_file} (waited {timeout:g} s); "
                f"wait for it to finish or pass a longer lock timeout; a killed run releases it by itself"
            ) from exc
        try:
            yield lock_file
        finally:
            lock.release()

    # ---- versions ----------------------------------------------------------------------------
    def _version_names(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if is_version_name(p.name) and p.is_dir())

    def versions(self) -> list[VersionInfo]:
        """Every finished version, oldest first."""
        out = []
        for name in self._version_names():
            try:
                out.append(self.version(name))
            except IntegrityError:
                raise
            except RegistryError:
                if (self.path / name).exists():
                    raise
                # deleted by a concurrent retention sweep between listing and reading: skip it
        return out

    def _check_name(self, name: object) -> str:
        existing = self._version_names()
        if not is_version_name(name):
            raise RegistryError(
                f"version {name!r} is not a version name (v and four digits); expected one of "
                f"{_listing(existing)} in {self._display()} (see `retrain history`)"
            )
        if name not in existing:
            raise RegistryError(
                f"version {name!r} is not in {self._display()}; expected one of {_listing(existing)} "
                f"(see `retrain status`; retention may have deleted it, see `retrain history`)"
            )
        return name  # type: ignore[return-value]

    def version(self, name: str) -> VersionInfo:
        """The version called ``name``; :class:`RegistryError` for a bad or unknown name."""
        name = self._check_name(name)
        vpath = self.path / name
        meta_file = vpath / "metadata.json"
        try:
            metadata = json.loads(meta_file.read_text())
        except FileNotFoundError as exc:
            if not vpath.exists():
                raise RegistryError(f"version {name!r} was deleted from {self._display()} while being read") from exc
            raise IntegrityError(
                f"version {name} has no metadata.json in {vpath}; expected the file written with it. "
                f"Restore it from a backup or roll back to another version"
            ) from exc
        except ValueError as exc:
            raise IntegrityError(f"{meta_file} is not JSON ({exc}); restore it from a backup") from exc
        return VersionInfo(name=name, path=vpath, metadata=metadata, size_bytes=_tree_size(vpath))

    def _next_name(self) -> str:
        used = [int(n[1:]) for n in self._version_names()]
        # never reuse the name of a deleted version: retention records each deletion first
        for e in self._history_rows():
            for key in ("version", "previous"):
                v = e.get(key)
                if is_version_name(v):
                    used.append(int(v[1:]))
        if self._trash.is_dir():
            used += [int(p.name[1:5]) for p in self._trash.iterdir() if is_version_name(p.name[:5])]
        n = max(used, default=0) + 1
        if n > 9999:
            raise RegistryError(f"{self._display()} has used all version names up to v9999; start a new model name")
        return f"v{n:04d}"

    def add_version(
        self,
        source_dir: Path,
        metadata: dict,
        *,
        run_id: str | None = None,
        extra_files: Mapping[str, Path] = {},
    ) -> VersionInfo:
        """Store a deployment clone as the next version ``vNNNN``, immutable from then on.

        ``source_dir`` is copied to ``<version>/predictor/``; ``metadata.json`` holds ``metadata``
        plus ``version``, ``created`` (UTC ISO) and ``run_id`` (these three are set here);
        ``extra_files`` maps a file name in the version folder to a file to copy (e.g.
        ``{"leaderboard.csv": path}``). The version is built in ``.staging/``, fsynced, and renamed
        into place under the writer lock: readers see all of it or none of it.
        """
        source_dir = Path(source_dir)
        if not source_dir.is_dir():
            raise RegistryError(
                f"cannot add a version from {source_dir}: expected a folder holding an AutoGluon predictor "
                f"(a deployment clone from automl.deploy_clone); it is missing or not a folder"
            )
        if not (source_dir / "predictor.pkl").is_file():
            raise RegistryError(
                f"cannot add a version from {source_dir}: it has no predictor.pkl, so it is not an AutoGluon "
                f"predictor folder; pass the folder automl.deploy_clone returned"
            )
        if not isinstance(metadata, Mapping):
            raise RegistryError(f"metadata must be a dict; got {type(metadata).__name__}")
        meta = {k: v for k, v in dict(metadata).items() if k not in ("version", "created", "run_id")}
        try:
            json.dumps(meta)
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"metadata for the new version is not JSON-serialisable ({exc}); pass plain values") from exc
        extras: dict[str, Path] = {}
        for fname, src in dict(extra_files).items():
            if not isinstance(fname, str) or fname in _RESERVED_FILES or "/" in fname or "\\" in fname or fname.startswith(".") or not fname:
                raise RegistryError(
                    f"extra file name {fname!r} is not allowed; expected a plain file name other than "
                    f"{', '.join(_RESERVED_FILES)} (e.g. 'leaderboard.csv')"
                )
            if not Path(src).is_file():
                raise RegistryError(f"extra file {fname!r} comes from {src}, which is not a file; pass an existing file")
            extras[fname] = Path(src)

        self.path.mkdir(parents=True, exist_ok=True)
        self._staging.mkdir(exist_ok=True)
        stage = self._staging / f"{os.getpid()}.{uuid.uuid4().hex}"
        try:
            # the heavy part, outside the lock: copy, hash, fsync
            shutil.copytree(source_dir, stage / "predictor", symlinks=False)
            for fname, src in extras.items():
                shutil.copyfile(src, stage / fname)
            sums = {p.relative_to(stage).as_posix(): _sha256(p) for p in _files(stage)}
            _fsync_tree(stage)
            with self.write_lock():
                self._recover_locked()
                name = self._next_name()
                meta.update(version=name, created=_now(), run_id=run_id)
                meta_path = stage / "metadata.json"
                with open(meta_path, "w") as f:
                    json.dump(meta, f, indent=2, sort_keys=True, default=str)
                    f.write("\n")
                    f.flush()
                    os.fsync(f.fileno())
                sums["metadata.json"] = _sha256(meta_path)
                with open(stage / "checksums.json", "w") as f:
                    json.dump(dict(sorted(sums.items())), f, indent=2)
                    f.write("\n")
                    f.flush()
                    os.fsync(f.fileno())
                _fsync_dir(stage)
                os.rename(stage, self.path / name)
                _fsync_dir(self.path)
                _fsync_dir(self._staging)
                return self.version(name)  # read under the lock: no sweep can race it
        finally:
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)

    def verify(self, name: str) -> None:
        """Check every file of version ``name`` against ``checksums.json``.

        Raises :class:`IntegrityError` naming each changed, missing or extra file.
        """
        name = self._check_name(name)
        vpath = self.path / name
        sums_file = vpath / "checksums.json"
        try:
            recorded: dict[str, str] = json.loads(sums_file.read_text())
        except FileNotFoundError as exc:
            raise IntegrityError(
                f"version {name} has no checksums.json in {vpath}, so its files cannot be verified; "
                f"restore it from a backup or roll back to another version"
            ) from exc
        except ValueError as exc:
            raise IntegrityError(f"{sums_file} is not JSON ({exc}); restore it from a backup or roll back") from exc
        found = {p.relative_to(vpath).as_posix(): p for p in _files(vpath)}
        found.pop("checksums.json", None)
        problems = []
        for rel in sorted(recorded):
            if rel not in found:
                problems.append(f"{rel} is missing")
            else:
                now = _sha256(found[rel])
                if now != recorded[rel]:
                    problems.append(f"{rel} changed (sha256 {recorded[rel][:12]}… recorded, {now[:12]}… now)")
        problems += [f"{rel} is extra (not recorded)" for rel in sorted(set(found) - set(recorded))]
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise IntegrityError(
                f"version {name} in {vpath} does not match its checksums: {shown}. Versions are immutable: "
                f"restore the file from a backup, or roll back to another version (`retrain rollback --to vNNNN`)"
            )

    def predictor_path(self, name: str, *, verify: bool = True) -> Path:
        """The ``predictor/`` folder of version ``name``, verified against its checksums first."""
        name = self._check_name(name)
        if verify:
            self.verify(name)
        return self.path / name / "predictor"

    def load(self, name: str | None = None):
        """Verify, then load version ``name`` (the champion when ``None``) strictly with AutoGluon."""
        if name is None:
            name = self.champion()
            if name is None:
                raise RegistryError(
                    f"{self._display()} has no champion yet, so there is nothing to load; promote a version "
                    f"first (versions: {_listing(self._version_names())})"
                )
        path = self.predictor_path(name, verify=True)
        from . import automl

        try:
            return automl.load_predictor(path, strict=True)
        except Exception as exc:  # wrap at the boundary: AutoGluon raises many kinds
            raise RegistryError(
                f"version {name} passed its checksums but AutoGluon could not load {path} strictly "
                f"({type(exc).__name__}: {exc}); check the software versions in its metadata.json "
                f"against this environment, or roll back to another version"
            ) from exc

    def total_size_bytes(self) -> int:
        """Bytes on disk under the registry folder (versions, history, everything)."""
        return _tree_size(self.path) if self.path.is_dir() else 0

    # ---- champion pointer --------------------------------------------------------------------
    def _read_pointer(self) -> tuple[dict | None, str | None]:
        """The ``CHAMPION`` record as stored and what is wrong with it (``None``: nothing), never raising."""
        try:
            raw = self._champion_file.read_text()
        except FileNotFoundError:
            return None, None
        except (OSError, UnicodeDecodeError) as exc:
            return None, f"{self._champion_file} cannot be read ({type(exc).__name__}: {exc})"
        try:
            rec = json.loads(raw)
        except ValueError as exc:  # cannot happen through this class: the file is replaced atomically
            return None, f"{self._champion_file} is not JSON ({exc}); something other than retrain changed it"
        if not isinstance(rec, dict) or "version" not in rec:
            return None, f"{self._champion_file} holds {raw[:80]!r}; expected a JSON object with 'version'"
        version = rec["version"]
        if version is not None and version not in self._version_names():
            return rec, (f"{self._champion_file} points to version {version!r}, which is not in {self._display()} "
                         f"(versions: {_listing(self._version_names())})")
        return rec, None

    def _last_move(self) -> dict | None:
        """History's last promotion or rollback (the events that move the pointer)."""
        return next((e for e in reversed(self._history_rows()) if e.get("event") in _POINTER_EVENTS), None)

    def history_champion(self) -> str | None:
        """The champion according to ``history.jsonl``: the version its last promotion or rollback left."""
        last = self._last_move()
        return last.get("version") if last else None

    def _repair_advice(self) -> str:
        try:
            target = self.history_champion()
        except RegistryError:
            target = None
        if target in self._version_names():
            return f"repair it with `retrain rollback --to {target}` (the champion according to history.jsonl)"
        return f"repair it with `retrain rollback --to vNNNN` (versions: {_listing(self._version_names())})"

    def pointer_problem(self) -> str | None:
        """One line saying what is wrong with ``CHAMPION`` and how to repair it; ``None`` when it is sound.

        Sound means: JSON naming a stored version (or none), and either agreeing with the last
        promotion or rollback in ``history.jsonl`` or one swap ahead of it (a kill between the
        pointer write and its history line, which :meth:`recover` completes).
        """
        rec, problem = self._read_pointer()
        if problem is None and rec is not None and rec.get("event") in _POINTER_EVENTS:
            last = self._last_move()
            if not (self._in_history(rec, last) or self._is_lost_line(rec, last)):
                problem = (f"{self._champion_file} says the champion is {rec.get('version')} since {rec.get('since')}, "
                           f"but history.jsonl says {self.history_champion()}; something other than retrain changed it")
        return f"{problem}; {self._repair_advice()}" if problem else None

    @staticmethod
    def _in_history(rec: dict, last: dict | None) -> bool:
        return last is not None and (last.get("time"), last.get("version")) == (rec.get("since"), rec.get("version"))

    @staticmethod
    def _is_lost_line(rec: dict, last: dict | None) -> bool:
        """Whether ``rec`` is a swap whose history line a kill lost: it continues from history's last move."""
        if last is None:
            return rec.get("replaced") is None
        return rec.get("replaced") == last.get("version") and str(rec.get("since")) > str(last.get("time"))

    def champion_record(self) -> dict | None:
        """The ``CHAMPION`` pointer: ``{"version", "previous", "since", "run_id", ...}``, or ``None``.

        :class:`~retrainlib.errors.DamagedPointer` when it is not JSON or names a version the
        registry does not hold; the message says how to repair it.
        """
        rec, problem = self._read_pointer()
        if problem:
            raise DamagedPointer(f"{problem}; {self._repair_advice()}")
        return rec

    def champion(self) -> str | None:
        """The champion's version name, ``None`` before the first promotion."""
        rec = self.champion_record()
        return rec.get("version") if rec else None

    def _swap_pointer(
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
        """Replace CHAMPION atomically, then append its history line (under the writer lock)."""
        since = _now()
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
        _atomic_write_json(self._champion_file, record)
        ev = HistoryEvent(time=since, event=event, version=version, previous=replaced, run_id=run_id, reason=reason)
        _append_lines(self._history_file, [ev.to_dict()])
        return ev

    def promote(self, name: str, *, run_id: str | None, reason: str) -> HistoryEvent:
        """Make version ``name`` the champion: verify it, swap the pointer atomically, record it."""
        return self._promote(name, run_id=run_id, reason=reason, smoke_pending=False)

    def _promote(self, name: str, *, run_id: str | None, reason: str, smoke_pending: bool) -> HistoryEvent:
        with self.write_lock():
            self._recover_locked()
            name = self._check_name(name)
            current = self.champion()
            if name == current:
                raise RegistryError(
                    f"version {name} is already the champion of {self._display()}; promote another version "
                    f"(versions: {_listing(self._version_names())})"
                )
            self.verify(name)
            return self._swap_pointer(
                event="promote", version=name, previous=current, replaced=current, run_id=run_id, reason=reason,
                smoke_pending=smoke_pending,
            )

    def _lineage_previous(self, target: str) -> str | None:
        """The champion before ``target`` in its own lineage: what its latest promotion replaced."""
        prev = None
        for e in self._history_rows():
            if e.get("event") == "promote" and e.get("version") == target:
                prev = e.get("previous")
        if prev is None or prev == target or prev not in self._version_names():
            return None
        return prev

    def roll_back(self, *, to: str | None = None, run_id: str | None, reason: str) -> HistoryEvent:
        """Make the previous champion (or version ``to``) the champion again.

        Versions are immutable, so nothing is copied: only the pointer moves. The new pointer's
        ``previous`` is the target's own predecessor (what its latest promotion replaced), so
        rolling back twice goes two steps back. :class:`RegistryError` when there is nothing to
        roll back to.
        """
        with self.write_lock():
            self._recover_locked()
            problem = self.pointer_problem()
            if problem:
                return self._repair_pointer(problem, to=to, run_id=run_id, reason=reason)
            target, current = self._rollback_target_locked(to)
            self.verify(target)
            return self._swap_pointer(
                event="rollback",
                version=target,
                previous=self._lineage_previous(target),
                replaced=current,
                run_id=run_id,
                reason=reason,
            )

    def _repair_pointer(self, problem: str, *, to: str | None, run_id: str | None, reason: str) -> HistoryEvent:
        """Roll back over a damaged pointer: only to a named version; history says which champion it replaces."""
        if to is None:
            raise DamagedPointer(f"cannot roll back to 'the previous champion': {problem}")
        target = self._check_name(to)
        self.verify(target)
        replaced = self.history_champion()
        return self._swap_pointer(
            event="rollback",
            version=target,
            previous=self._lineage_previous(target),
            replaced=replaced if replaced in self._version_names() else None,
            run_id=run_id,
            reason=f"{reason}; repaired the damaged CHAMPION pointer ({problem.split(';')[0]})",
        )

    def rollback_target(self, to: str | None = None) -> str:
        """The version :meth:`roll_back` would make champion; :class:`RegistryError` when there is none."""
        return self._rollback_target_locked(to)[0]

    def _rollback_target_locked(self, to: str | None) -> tuple[str, str | None]:
        """(target, current champion); read-only, callers hold the writer lock to act on it."""
        rec = self.champion_record() or {}
        current = rec.get("version")
        if to is None:
            target = rec.get("previous")
            if target is None:
                raise RegistryError(
                    f"nothing to roll back to: {self._display()} has champion {current or 'none'} and no "
                    f"previous champion; name a version with `retrain rollback --to vNNNN` "
                    f"(versions: {_listing(self._version_names())})"
                )
            if target not in self._version_names():
                raise RegistryError(
                    f"the previous champion {target} is no longer in {self._display()}; name a version with "
                    f"`retrain rollback --to vNNNN` (versions: {_listing(self._version_names())})"
                )
        else:
            target = self._check_name(to)
            if target == current:
                raise RegistryError(
                    f"version {target} is already the champion of {self._display()}; name another version "
                    f"(versions: {_listing(self._version_names())})"
                )
        return target, current

    def promote_verified(
        self,
        name: str,
        sample: "pd.DataFrame",
        *,
        run_id: str | None,
        reason: str,
        timeout: float = 120,
    ) -> PromotionResult:
        """Promote, then load the new champion in a fresh process and predict ``sample``.

        The fresh process is :mod:`retrainlib.freshproc`'s (a new child of its warm fork server). If
        it fails or overruns ``timeout`` seconds, the registry rolls back by itself to the champion
        before (or to no champion on a first promotion) and records both events. The writer lock
        is held throughout, so no other writer slips in between. Until the smoke test answers, the
        pointer carries ``"smoke_pending": true``; if this process dies before then, the next
        writer rolls back by itself (:meth:`recover`): an unverified promotion never outlives a crash.
        """
        if sample is None or len(sample) == 0:
            raise RegistryError("the smoke-test sample is empty; pass a few rows of recent data (features, label optional)")
        t0 = time.monotonic()
        from . import freshproc

        with self.write_lock():
            try:
                smoke = freshproc.start(self.path / name / "predictor", sample, timeout=timeout, hold=True)
            except Exception as exc:  # before anything moved: refuse, naming the cause
                raise RegistryError(
                    f"the smoke test cannot start ({type(exc).__name__}: {exc}); pass a DataFrame of plain feature columns"
                ) from exc
            with smoke:
                promoted = self._promote(name, run_id=run_id, reason=reason, smoke_pending=True)
                result = smoke.result()
            before = promoted.previous
            ok = result.ok
            detail = result.detail if ok or result.detail.startswith("no answer") else f"smoke test failed: {result.detail}"
            if ok:
                record = self.champion_record() or {}
                record.pop("smoke_pending", None)
                _atomic_write_json(self._champion_file, record)
                return PromotionResult(
                    version=name, previous=before, promoted=True, smoke_passed=True, detail=detail,
                    seconds=time.monotonic() - t0, events=(promoted,),
                )
            back = self._swap_pointer(
                event="auto-rollback",
                version=before,
                previous=self._lineage_previous(before) if before else None,
                replaced=name,
                run_id=run_id,
                reason=f"smoke test of {name} failed in a fresh process: {detail}",
            )
            return PromotionResult(
                version=name, previous=before, promoted=False, smoke_passed=False, detail=detail,
                seconds=time.monotonic() - t0, events=(promoted, back),
            )

    # ---- history -----------------------------------------------------------------------------
    def _history_rows(self) -> list[dict]:
        return _read_lines(self._history_file)

    def history(self) -> list[HistoryEvent]:
        """Every promotion, rollback and retention deletion, oldest first."""
        out = []
        for i, row in enumerate(self._history_rows()):
            try:
                out.append(HistoryEvent.from_dict(row))
            except KeyError as exc:
                raise RegistryError(
                    f"event {i + 1} of {self._history_file} lacks {exc}; expected time, event, version, previous, "
                    f"run_id, reason"
                ) from exc
        return out

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
        done: list[str] = []
        if not self.path.is_dir():
            return done
        for p in self.path.glob(".*.tmp"):  # atomic writes happen under this lock: any temp file is stale
            p.unlink(missing_ok=True)
            done.append(f"removed temp file {p.name}")
        if self._trash.is_dir():  # deletions finish under this lock: anything here is a leftover
            for p in self._trash.iterdir():
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                done.append(f"cleared .trash/{p.name}")
        if self._staging.is_dir():
            for p in self._staging.iterdir():
                if self._is_stale_stage(p):
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                    done.append(f"cleared .staging/{p.name}")
        for f in (self._history_file, self._evaluations_file, self._attempts_file):
            if _has_torn_tail(f):
                _cut_torn_tail(f)
                done.append(f"cut a torn last line off {f.name}")
        rec, problem = self._read_pointer()
        if problem or not rec:
            return done  # a damaged pointer is repaired by a person (`retrain rollback --to`), never guessed
        if rec.get("event") in _POINTER_EVENTS:
            last = self._last_move()
            if not self._in_history(rec, last):
                if not self._is_lost_line(rec, last):
                    return done  # the pointer does not continue the history: pointer_problem() reports it
                ev = HistoryEvent(
                    time=rec["since"], event=rec["event"], version=rec.get("version"), previous=rec.get("replaced"),
                    run_id=rec.get("run_id"), reason=rec.get("reason", ""),
                )
                _append_lines(self._history_file, [ev.to_dict()])
                done.append(f"restored the history line of the {ev.event} to {ev.version}")
        if rec.get("smoke_pending"):
            # the promoting process died before its smoke test answered: undo the unverified promotion
            before = rec.get("replaced")
            if before not in self._version_names():
                before = None
            self._swap_pointer(
                event="auto-rollback",
                version=before,
                previous=self._lineage_previous(before) if before else None,
                replaced=rec.get("version"),
                run_id=rec.get("run_id"),
                reason=f"the smoke test of {rec.get('version')} never answered (its process died); rolled back",
            )
            done.append(f"rolled back the unverified promotion of {rec.get('version')} to {before}")
        return done

    @staticmethod
    def _is_stale_stage(p: Path) -> bool:
        try:
            age = time.time() - p.stat().st_mtime
        except FileNotFoundError:
            return False
        if age > _STALE_AFTER.total_seconds():
            return True
        pid_text = p.name.split(".", 1)[0]
        return pid_text.isdigit() and not _pid_alive(int(pid_text))

    # ---- pins and retention ------------------------------------------------------------------
    def pins(self) -> set[str]:
        """Versions marked ``keep``."""
        try:
            data = json.loads(self._pins_file.read_text())
        except FileNotFoundError:
            return set()
        except ValueError as exc:
            raise RegistryError(f"{self._pins_file} is not JSON ({exc}); expected a list of version names") from exc
        return {v for v in data if is_version_name(v)}

    def keep(self, name: str, keep: bool = True) -> None:
        """Mark version ``name`` to be kept by retention (``keep=False`` removes the mark)."""
        with self.write_lock():
            self._recover_locked()
            name = self._check_name(name)
            pins = self.pins()
            pins = pins | {name} if keep else pins - {name}
            _atomic_write_json(self._pins_file, sorted(pins))

    def apply_retention(self, *, max_versions: int, retention_days: float, now: datetime | None = None) -> list[str]:
        """Delete versions beyond ``max_versions`` and older than ``retention_days``.

        Beyond ``max_versions``, versions that never served as champion (rejected challengers,
        validated models whose refit was deployed) go first, oldest first; former champions go
        only after them, oldest first, so the newest champions stay rollback targets. Never deletes the champion, the previous champion, or a version marked ``keep``. Each
        deletion is recorded in the history first, then the folder is renamed into ``.trash``
        (it disappears at once) and removed. Also clears leftovers of killed writers. Returns the
        deleted names.
        """
        if isinstance(max_versions, bool) or not isinstance(max_versions, int) or max_versions < 1:
            raise RegistryError(f"max_versions must be an integer >= 1; got {max_versions!r}")
        if not isinstance(retention_days, (int, float)) or isinstance(retention_days, bool) or not retention_days > 0 or math.isnan(retention_days):
            raise RegistryError(f"retention_days must be a number of days > 0; got {retention_days!r}")
        now = now or datetime.now(timezone.utc)
        if now.tzinfo is None:
            now = now.replace(tzinfo=timezone.utc)
        cutoff = now - timedelta(days=float(retention_days))
        with self.write_lock():
            self._recover_locked()
            rec = self.champion_record() or {}
            protected = {rec.get("version"), rec.get("previous")} | self.pins()
            infos = self.versions()
            doomed: list[tuple[str, str]] = []
            for info in infos:
                created = info.created
                try:
                    when = datetime.fromisoformat(created) if created else None
                except ValueError:
                    when = None
                if when is not None and when.tzinfo is None:
                    when = when.replace(tzinfo=timezone.utc)
                if info.name not in protected and when is not None and when < cutoff:
                    doomed.append((info.name, f"older than {retention_days:g} days (created {created})"))
            remaining = [i.name for i in infos if i.name not in {d for d, _ in doomed}]
            excess = len(remaining) - max_versions
            served = self._served_versions()
            # versions that never served (rejected challengers) go first, then former champions; oldest first
            for name in sorted(remaining, key=lambda n: (n in served, n)):
                if excess <= 0:
                    break
                if name not in protected:
                    kind = "former champion" if name in served else "never champion"
                    doomed.append((name, f"more than max_versions={max_versions} versions ({kind})"))
                    excess -= 1
            deleted = []
            for name, why in sorted(doomed):
                self._delete_locked(name, why)
                deleted.append(name)
            return deleted

    def _served_versions(self) -> set[str]:
        """Versions that were champion: promoted or rolled back to, minus promotions a smoke test undid."""
        rows = self._history_rows()
        served = {e.get("version") for e in rows if e.get("event") in ("promote", "rollback")}
        undone = {e.get("previous") for e in rows if e.get("event") == "auto-rollback"}
        return {v for v in served - undone if v}

    def _delete_locked(self, name: str, why: str) -> None:
        ev = HistoryEvent(time=_now(), event="retention", version=name, previous=None, run_id=None, reason=f"deleted: {why}")
        _append_lines(self._history_file, [ev.to_dict()])  # recorded first: a kill never loses a version silently
        self._trash.mkdir(exist_ok=True)
        gone = self._trash / f"{name}.{uuid.uuid4().hex}"
        os.rename(self.path / name, gone)
        _fsync_dir(self.path)
        shutil.rmtree(gone)
        _fsync_dir(self._trash)

    # ---- evaluations -------------------------------------------------------------------------
    _EVAL_REQUIRED = ("version", "batch", "metric", "value")

    def record_evaluations(self, rows: Sequence[dict]) -> None:
        """Append the champion's measured metric per batch to ``evaluations.jsonl``.

        Each row needs ``version``, ``batch``, ``metric``, ``value``; ``time`` (default now),
        ``run_id`` and ``n_rows`` are optional.
        """
        clean = []
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise RegistryError(f"evaluation row {i} is {type(row).__name__}; expected a dict")
            missing = [k for k in self._EVAL_REQUIRED if k not in row]
            if missing:
                raise RegistryError(
                    f"evaluation row {i} lacks {', '.join(missing)}; expected keys time, run_id, version, batch, "
                    f"metric, value, n_rows (got {', '.join(sorted(row))})"
                )
            r = {"time": _now(), "run_id": None, "n_rows": None, **dict(row)}
            try:
                r["value"] = float(r["value"])
            except (TypeError, ValueError) as exc:
                raise RegistryError(f"evaluation row {i} has value {row['value']!r}; expected a number") from exc
            try:
                json.dumps(r)
            except (TypeError, ValueError) as exc:
                raise RegistryError(f"evaluation row {i} is not JSON-serialisable ({exc}); pass plain values") from exc
            clean.append(r)
        if not clean:
            return
        with self.write_lock():
            self._recover_locked()
            _append_lines(self._evaluations_file, clean)

    def evaluations(self, version: str | None = None) -> list[dict]:
        """Recorded evaluations, oldest first; only ``version``'s when given."""
        rows = _read_lines(self._evaluations_file)
        return [r for r in rows if version is None or r.get("version") == version]

    # ---- label-free estimates ----------------------------------------------------------------
    @property
    def _estimates_file(self) -> Path:
        return self.path / "estimates.jsonl"

    def estimator(self, name: str):
        """Version ``name``'s label-free estimator (``estimator.json``, checksummed with the version), or None
        when the version was registered without one."""
        name = self._check_name(name)
        path = self.path / name / "estimator.json"
        if not path.is_file():
            return None
        self.verify(name)
        from .estimate import Estimator

        return Estimator.load(path)

    def record_estimates(self, rows: Sequence[dict]) -> None:
        """Append label-free estimates per batch to ``estimates.jsonl`` (``version``, ``batch``, ``metric``,
        ``value``, ``low``, ``high``, ``n_rows``, ``reason``)."""
        clean = [{"time": _now(), **dict(r)} for r in rows]
        for i, r in enumerate(clean):
            if "version" not in r or "batch" not in r:
                raise RegistryError(f"estimate row {i} lacks version or batch; got {', '.join(sorted(r))}")
        if not clean:
            return
        with self.write_lock():
            self._recover_locked()
            _append_lines(self._estimates_file, clean)

    def estimates(self, version: str | None = None) -> list[dict]:
        """Recorded label-free estimates, oldest first; only ``version``'s when given."""
        rows = _read_lines(self._estimates_file)
        return [r for r in rows if version is None or r.get("version") == version]

    # ---- retraining attempts (the schedule's clock) --------------------------------------------
    def record_attempt(self, *, version: str, run_id: str | None, data_end: str, outcome: str | None = None) -> None:
        """Record one retraining attempt: the challenger it trained and the newest batch end it saw.

        The schedule trigger counts its interval from the last attempt, promoted or not, on the
        data's time axis (``data_end``), so backtests and live runs keep the same clock.
        """
        row = {"time": _now(), "run_id": run_id, "version": version, "data_end": str(data_end), "outcome": outcome}
        with self.write_lock():
            self._recover_locked()
            _append_lines(self._attempts_file, [row])

    def record_attempt_outcome(self, version: str, *, outcome: str, run_id: str | None = None,
                               failed_gates: Sequence[str] = (), reasons: Sequence[str] = ()) -> None:
        """Add what became of an attempt's challenger (promoted, rejected, auto-rolled-back) to its record."""
        row = {"time": _now(), "run_id": run_id, "version": version, "outcome": outcome,
               "failed_gates": list(failed_gates), "reasons": list(reasons)}
        with self.write_lock():
            self._recover_locked()
            _append_lines(self._attempts_file, [row])

    def attempts(self) -> list[dict]:
        """Every recorded retraining attempt, oldest first, with its outcome once known."""
        out: list[dict] = []
        for row in _read_lines(self._attempts_file):
            if "data_end" in row:
                out.append(dict(row))
                continue
            for attempt in reversed(out):  # an outcome row completes its attempt's record
                if attempt.get("version") == row.get("version"):
                    attempt.update({k: v for k, v in row.items() if k not in ("time", "run_id")})
                    break
        return out
