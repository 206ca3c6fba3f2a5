"""Durable files: an atomic, fsynced write and one sha256 — the only copies in retrainlib.

:func:`write_atomic` writes a temporary file beside the target, fsyncs it, ``os.replace``-s it over
the target and fsyncs the folder, so a reader (or a process started after a crash or a kill) sees
either the old file or the new one, never a torn mix. :func:`sha256_file` hashes a file in blocks.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "x.json"
>>> write_json_atomic(p, {"b": 1, "a": [1, 2]})
>>> p.read_text()
'{\\n  "a": [\\n    1,\\n    2\\n  ],\\n  "b": 1\\n}\\n'
>>> sha256_file(p) == sha256_bytes(p.read_bytes())
True
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

__all__ = ["fsync_dir", "fsync_tree", "write_atomic", "write_json_atomic", "sha256_file", "sha256_bytes"]


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


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in ``chunk``-sized blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
