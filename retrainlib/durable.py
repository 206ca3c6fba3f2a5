"""Durable files: an atomic, fsynced write, one folder publish and one sha256 — the only copies in retrainlib.

:func:`write_atomic` writes a temporary file beside the target, fsyncs it, ``os.replace``-s it over
the target and fsyncs the folder, so a reader (or a process started after a crash or a kill) sees
either the old file or the new one, never a torn mix. :func:`publish_dir` does the same for a folder
built in a :func:`staging` folder beside its final place (a cache entry): fsync, one rename, and
"someone else published it first" answered. :func:`sha256_file` hashes a file in blocks,
:func:`sha256_bytes` bytes, and :func:`sha256_parts` several parts fed in order (no other module
builds a ``hashlib.sha256``).

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "x.json"
>>> write_json_atomic(p, {"b": 1, "a": [1, 2]})
>>> p.read_text()
'{\\n  "a": [\\n    1,\\n    2\\n  ],\\n  "b": 1\\n}\\n'
>>> sha256_file(p) == sha256_bytes(p.read_bytes())
True
>>> sha256_parts("ab", b"c") == sha256_bytes(b"abc")
True
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator

__all__ = ["fsync_dir", "fsync_tree", "write_atomic", "write_json_atomic", "staging", "publish_dir",
           "sha256_file", "sha256_bytes", "sha256_parts"]


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """Flush every file under ``root`` and every folder's entries (a tree built before one rename)."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write temp, fsync, ``os.replace``, fsync the folder: readers see the old or the new file."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_json_atomic(path: str | os.PathLike, obj: Any, *, sort_keys: bool = True, default: Any = str) -> None:
    """:func:`write_atomic` of ``obj`` as indented JSON with a final newline (``default`` for other values)."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=sort_keys, default=default) + "\n")


@contextlib.contextmanager
def staging(final: str | os.PathLike) -> Iterator[Path]:
    """A new hidden folder beside ``final`` (``.stage-<random>``) to build it in; removed on leaving the block
    whatever happened, so only :func:`publish_dir` keeps what was built. Creates ``final``'s parent."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = final.parent / f".stage-{uuid.uuid4().hex}"
    stage.mkdir()
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def publish_dir(stage: str | os.PathLike, final: str | os.PathLike) -> bool:
    """Put the finished folder ``stage`` in place as ``final`` in one rename: its files and folders fsynced
    first and ``final``'s parent after, so a reader (or a process after a crash) sees no folder or the whole one.

    Returns True when this call published it, False when a non-empty ``final`` was there already (someone
    else published it first: ``stage`` is left for its :func:`staging` block to remove). Any other
    failure raises :class:`OSError`.
    """
    fsync_tree(stage)
    try:
        os.rename(stage, final)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and Path(final).is_dir():
            return False
        raise
    fsync_dir(Path(final).parent)
    return True


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_parts(*parts: bytes | str | Iterable[bytes | str]) -> str:
    """Hex sha256 of ``parts`` fed one after another (text as UTF-8; an iterable part is fed item by item):
    the same digest as :func:`sha256_bytes` of their concatenation, without building it."""
    h = hashlib.sha256()
    for part in parts:
        for piece in (part,) if isinstance(part, (bytes, bytearray, memoryview, str)) else part:
            h.update(piece.encode() if isinstance(piece, str) else piece)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in ``chunk``-sized blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
