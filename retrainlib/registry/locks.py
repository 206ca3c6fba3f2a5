"""The registry's two locks: the writer lock (one writer at a time) and the run lock (one run at a time).

Both are ``flock``-s on files in the model's folder (through :mod:`filelock`, the one adapter to it):
a process killed while holding one releases it, because the kernel drops the lock with the process.
The writer lock is held for a few milliseconds to seconds around every change; the run lock for a
whole playbook run (the runner passes :data:`RUN_LOCK_HELD_ENV` to its notebooks' kernels).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import filelock

from ..errors import RunLocked
from .layout import LOCK, RUN_LOCK

__all__ = ["writer_lock", "run_lock", "RUN_LOCK_HELD_ENV"]

#: set by the runner for its notebooks' kernels to the run folder whose run lock it holds
RUN_LOCK_HELD_ENV = "RETRAIN_RUN_LOCK_HELD"


def _flock(path: Path) -> filelock.FileLock:
    return filelock.FileLock(path, preserve_lock_file=True, fallback_to_soft=False)


def writer_lock(folder: Path) -> filelock.FileLock:
    """The (reentrant, per-object) writer lock on ``folder/.lock``; make one per registry object and reuse it."""
    return _flock(folder / LOCK)


@contextlib.contextmanager
def run_lock(folder: Path, model_name: str, *, timeout: float = -1) -> Iterator[Path]:
    """Hold ``folder/.run.lock`` for a playbook run; :class:`RunLocked` when another run holds it.

    ``timeout`` seconds to wait (``-1`` waits for ever, ``0`` fails at once).
    """
    folder.mkdir(parents=True, exist_ok=True)
    lock_file = folder / RUN_LOCK
    lock = _flock(lock_file)
    try:
        lock.acquire(timeout=timeout)
    except filelock.Timeout as exc:
        raise RunLocked(
            f"another run of model '{model_name}' holds {lock_file} (waited {timeout:g} s); "
            f"wait for it to finish or pass a longer lock timeout; a killed run releases it by itself"
        ) from exc
    try:
        yield lock_file
    finally:
        lock.release()
