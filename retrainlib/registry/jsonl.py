"""Append-only JSON-lines files: one fsync per append, a line torn by a kill ignored, then cut off.

A kill in the middle of :func:`append` can leave a last line without its newline. Readers
(:func:`read`) skip such a torn tail; the next writer (:func:`append`, or recovery through
:func:`cut_torn_tail`) removes it before it writes, so the file only ever grows by whole lines.
A broken line *before* the last one was not made by a kill: :func:`read` refuses it, naming the
line and how to fix it.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "log.jsonl"
>>> append(p, [{"a": 1}])
>>> _ = open(p, "ab").write(b'{"a": 2')  # a kill mid-write
>>> read(p), has_torn_tail(p)
([{'a': 1}], True)
>>> append(p, [{"a": 3}]); read(p)
[{'a': 1}, {'a': 3}]
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..durable import fsync_dir
from ..errors import RegistryError

__all__ = ["append", "read", "has_torn_tail", "cut_torn_tail", "dumps"]


def dumps(row: Mapping[str, Any]) -> str:
    """One row as the line every log holds (keys sorted, newline ended)."""
    return json.dumps(dict(row), sort_keys=True) + "\n"


def has_torn_tail(path: Path) -> bool:
    """Whether ``path``'s last line lacks its newline (a write a kill interrupted)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return False
            f.seek(size - 1)
            return f.read(1) != b"\n"
    except FileNotFoundError:
        return False


def cut_torn_tail(path: Path) -> None:
    """Drop a last line without its newline; call under the writer lock."""
    if not has_torn_tail(path):
        return
    with open(path, "rb+") as f:
        pos, chunk, keep = f.seek(0, os.SEEK_END), 65536, 0
        while pos > 0:  # find the end of the last complete line
            start = max(0, pos - chunk)
            f.seek(start)
            i = f.read(pos - start).rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())


def append(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append ``rows`` as JSON lines with one fsync (a torn tail cut first); call under the writer lock."""
    cut_torn_tail(path)
    data = "".join(dumps(r) for r in rows).encode()
    created = not path.exists()
    with open(path, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if created:
        fsync_dir(path.parent)


def read(path: Path) -> list[dict]:
    """Parse JSON lines, oldest first; a torn last line is ignored, a broken line before it is an error."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    torn_tail = not raw.endswith(b"\n")
    out: list[dict] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            if i == len(lines) - 1 and torn_tail:
                break  # a write cut short by a kill; the next writer removes it
            raise RegistryError(
                f"line {i + 1} of {path} is not JSON ({exc}); expected one JSON object per line. "
                f"The file is append-only: restore it from a backup, or move the broken line out of the way"
            ) from exc
        if not isinstance(row, dict):
            raise RegistryError(f"line {i + 1} of {path} is {type(row).__name__}; expected a JSON object per line")
        out.append(row)
    return out
