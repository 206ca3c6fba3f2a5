"""The immutable version store: versions built in ``.staging/``, checksummed, renamed into place, verified.

A version ``vNNNN/`` holds ``predictor/`` (an AutoGluon deployment clone), ``metadata.json``, extra
files such as ``leaderboard.csv``, and ``checksums.json`` (the sha256 of every other file). It is
built and fsynced in ``.staging/`` and renamed into place under the writer lock, so a reader sees
all of it or none of it; once there it never changes (:meth:`VersionStore.verify` checks). A
deleted version is renamed into ``.trash/`` (it disappears at once) and removed there.

This module touches only the version folders, ``.staging/``, ``.trash/`` and stale temp files; it
takes no lock itself (the :class:`~retrainlib.registry.Registry` facade does).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Iterable, Mapping

from ..durable import fsync_dir, fsync_tree, sha256_file, write_json_atomic
from ..errors import IntegrityError, RegistryError
from .layout import STAGING, TRASH, is_version_name, listing, version_names

__all__ = ["VersionInfo", "VersionStore", "tree_size"]

_RESERVED_FILES = ("predictor", "metadata.json", "checksums.json")
#: a ``.staging`` entry whose process is gone, or older than this, is a leftover of a killed writer
_STALE_AFTER = timedelta(days=1)


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


def tree_size(root: Path) -> int:
    """Bytes of every file under ``root`` (files deleted meanwhile count as nothing)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(p: Path) -> None:
    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


class VersionStore:
    """The versions under one model's registry folder ``path``; ``display`` names it in messages."""

    def __init__(self, path: Path, display: str):
        self.path = path
        self.display = display

    @property
    def staging(self) -> Path:
        return self.path / STAGING

    @property
    def trash(self) -> Path:
        return self.path / TRASH

    # ---- reading -----------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every finished version's name, oldest first."""
        return version_names(self.path)

    def check_name(self, name: object) -> str:
        """``name`` when it names a stored version; :class:`RegistryError` listing the versions otherwise."""
        existing = self.names()
        if not is_version_name(name):
            raise RegistryError(
                f"version {name!r} is not a version name (v and four digits); expected one of "
                f"{listing(existing)} in {self.display} (see `retrain history`)"
            )
        if name not in existing:
            raise RegistryError(
                f"version {name!r} is not in {self.display}; expected one of {listing(existing)} "
                f"(see `retrain status`; retention may have deleted it, see `retrain history`)"
            )
        return name  # type: ignore[return-value]

    def info(self, name: str) -> VersionInfo:
        """The version called ``name``; :class:`RegistryError` for a bad or unknown name."""
        name = self.check_name(name)
        vpath = self.path / name
        meta_file = vpath / "metadata.json"
        try:
            metadata = json.loads(meta_file.read_text())
        except FileNotFoundError as exc:
            if not vpath.exists():
                raise RegistryError(f"version {name!r} was deleted from {self.display} while being read") from exc
            raise IntegrityError(
                f"version {name} has no metadata.json in {vpath}; expected the file written with it. "
                f"Restore it from a backup or roll back to another version"
            ) from exc
        except ValueError as exc:
            raise IntegrityError(f"{meta_file} is not JSON ({exc}); restore it from a backup") from exc
        return VersionInfo(name=name, path=vpath, metadata=metadata, size_bytes=tree_size(vpath))

    def all(self) -> list[VersionInfo]:
        """Every finished version, oldest first."""
        out = []
        for name in self.names():
            try:
                out.append(self.info(name))
            except IntegrityError:
                raise
            except RegistryError:
                if (self.path / name).exists():
                    raise
                # deleted by a concurrent retention sweep between listing and reading: skip it
        return out

    def verify(self, name: str) -> None:
        """Check every file of version ``name`` against ``checksums.json``.

        Raises :class:`IntegrityError` naming each changed, missing or extra file.
        """
        name = self.check_name(name)
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
                now = sha256_file(found[rel])
                if now != recorded[rel]:
                    problems.append(f"{rel} changed (sha256 {recorded[rel][:12]}… recorded, {now[:12]}… now)")
        problems += [f"{rel} is extra (not recorded)" for rel in sorted(set(found) - set(recorded))]
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise IntegrityError(
                f"version {name} in {vpath} does not match its checksums: {shown}. Versions are immutable: "
                f"restore the file from a backup, or roll back to another version (`retrain rollback --to vNNNN`)"
            )

    # ---- adding ------------------------------------------------------------------------------
    def next_name(self, used_by_history: Iterable[str]) -> str:
        """The next version name: never one a stored, deleted (``used_by_history``) or trashed version had."""
        used = [int(n[1:]) for n in self.names()]
        used += [int(v[1:]) for v in used_by_history if is_version_name(v)]
        if self.trash.is_dir():
            used += [int(p.name[1:5]) for p in self.trash.iterdir() if is_version_name(p.name[:5])]
        n = max(used, default=0) + 1
        if n > 9999:
            raise RegistryError(f"{self.display} has used all version names up to v9999; start a new model name")
        return f"v{n:04d}"

    @staticmethod
    def check_new(source_dir: Path, metadata: object, extra_files: Mapping[str, Path]) -> tuple[dict, dict[str, Path]]:
        """The metadata and extra files of a new version, checked; :class:`RegistryError` saying what to pass."""
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
        return meta, extras

    def stage(self, source_dir: Path, extras: Mapping[str, Path]) -> tuple[Path, dict[str, str]]:
        """Copy, hash and fsync a new version in ``.staging/`` (the heavy part, outside the lock).

        Returns the staging folder and the sha256 of each of its files; the caller removes the
        folder when :meth:`commit` does not happen.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(exist_ok=True)
        stage = self.staging / f"{os.getpid()}.{uuid.uuid4().hex}"
        shutil.copytree(source_dir, stage / "predictor", symlinks=False)
        for fname, src in extras.items():
            shutil.copyfile(src, stage / fname)
        sums = {p.relative_to(stage).as_posix(): sha256_file(p) for p in _files(stage)}
        fsync_tree(stage)
        return stage, sums

    def commit(self, stage: Path, sums: dict[str, str], metadata: dict, name: str) -> VersionInfo:
        """Write ``metadata.json`` and ``checksums.json`` into ``stage`` and rename it to ``name``; under the writer lock."""
        meta_path = stage / "metadata.json"
        write_json_atomic(meta_path, metadata)
        sums = {**sums, "metadata.json": sha256_file(meta_path)}
        write_json_atomic(stage / "checksums.json", dict(sorted(sums.items())))
        os.rename(stage, self.path / name)
        fsync_dir(self.path)
        fsync_dir(self.staging)
        return self.info(name)

    # ---- deleting and tidying ----------------------------------------------------------------
    def delete(self, name: str) -> None:
        """Rename version ``name`` into ``.trash/`` (gone at once) and remove it; under the writer lock."""
        self.trash.mkdir(exist_ok=True)
        gone = self.trash / f"{name}.{uuid.uuid4().hex}"
        os.rename(self.path / name, gone)
        fsync_dir(self.path)
        shutil.rmtree(gone)
        fsync_dir(self.trash)

    def clear_leftovers(self) -> list[str]:
        """Remove what killed writers left: temp files, ``.trash/`` entries, stale builds; under the writer lock."""
        done: list[str] = []
        for p in self.path.glob(".*.tmp"):  # atomic writes happen under the writer lock: any temp file is stale
            p.unlink(missing_ok=True)
            done.append(f"removed temp file {p.name}")
        if self.trash.is_dir():  # deletions finish under the writer lock: anything here is a leftover
            for p in self.trash.iterdir():
                _remove(p)
                done.append(f"cleared .trash/{p.name}")
        if self.staging.is_dir():
            for p in self.staging.iterdir():
                if _is_stale_stage(p):
                    _remove(p)
                    done.append(f"cleared .staging/{p.name}")
        return done


def _is_stale_stage(p: Path) -> bool:
    try:
        age = time.time() - p.stat().st_mtime
    except FileNotFoundError:
        return False
    if age > _STALE_AFTER.total_seconds():
        return True
    pid_text = p.name.split(".", 1)[0]
    return pid_text.isdigit() and not _pid_alive(int(pid_text))
