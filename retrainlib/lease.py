"""The run lease: the model's run lock held by a run whose steps run in separate processes.

``retrain run`` holds the registry's run lock (:meth:`Registry.run_lock`, an ``flock``) for as long
as its one process lives. An orchestrator such as Airflow runs the four steps as four tasks, maybe
on four machines, so no process lives across them. The lease carries the lock between them:
``<registry>/<model>/.run.lease`` is a JSON file naming the run folder that owns it, the owner
(e.g. the Airflow DAG run), when it was taken and when it expires.

* :func:`take` writes it under the run lock, so it excludes a ``retrain run`` in progress and every
  other taker; a lease held by another owner raises :class:`RunLocked` (``retrain`` exits 75).
* Each step :func:`renew` s it (and refuses to run if the lease now names another run).
* :func:`release` deletes it once the run is finished (its owner only).
* ``retrain run`` checks it under its run lock (:func:`check_free`): a leased model is locked.
* A lease not renewed within its ``ttl`` is stale (its owner died without releasing): the next
  taker breaks it and says so in the log; ``retrain lease --break`` does the same by hand.

>>> import tempfile
>>> from retrainlib.registry import Registry
>>> reg = Registry(Path(tempfile.mkdtemp()), "m")
>>> take(reg, run_id="20240101T000000Z-demo", owner="dag/run-1", ttl=60)["run_id"]
'20240101T000000Z-demo'
>>> take(reg, run_id="20240108T000000Z-demo", owner="dag/run-2", ttl=60)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
retrainlib.errors.RunLocked: another run of model 'm' holds its lease: run 20240101T000000Z-demo (owner dag/run-1) ...
>>> release(reg, owner="dag/run-1")
True
>>> read(reg) is None
True
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from .errors import RunLocked
from .manifest import write_json_atomic
from .registry import Registry

__all__ = ["take", "renew", "release", "read", "check_free", "is_stale", "DEFAULT_TTL", "LEASE_FILE"]

log = logging.getLogger("retrainlib")

LEASE_FILE = ".run.lease"
#: seconds a lease lives without renewal; each step renews it, so this bounds one step, not a run
DEFAULT_TTL = 3600.0
#: how long take/release wait for a run lock held only for a moment by another taker
_BRIEF = 30.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _path(registry: Registry) -> Path:
    return registry.path / LEASE_FILE


def read(registry: Registry) -> dict[str, Any] | None:
    """The lease as written, or None when the model is not leased."""
    try:
        return json.loads(_path(registry).read_text())
    except FileNotFoundError:
        return None


def is_stale(lease: dict[str, Any], now: dt.datetime | None = None) -> bool:
    """Past its expiry: its owner stopped renewing it."""
    return dt.datetime.fromisoformat(lease["expires"]) <= (now or _now())


def _describe(registry: Registry, lease: dict[str, Any]) -> str:
    return (f"another run of model '{registry.model_name}' holds its lease: run {lease['run_id']} "
            f"(owner {lease['owner']}) until {lease['expires']} unless renewed ({_path(registry)}); "
            "wait for that run to finish, or `retrain lease --break` if its owner is gone")


def _write(registry: Registry, lease: dict[str, Any], ttl: float) -> dict[str, Any]:
    now = _now()
    lease = {**lease, "renewed": now.isoformat(timespec="seconds"),
             "expires": (now + dt.timedelta(seconds=ttl)).isoformat(timespec="seconds"), "ttl": ttl,
             "host": socket.gethostname(), "pid": os.getpid()}
    write_json_atomic(_path(registry), lease)
    return lease


def check_free(registry: Registry) -> None:
    """Raise :class:`RunLocked` when a live lease is held (call under the run lock)."""
    lease = read(registry)
    if lease is not None and not is_stale(lease):
        raise RunLocked(_describe(registry, lease))


def take(registry: Registry, *, run_id: str, owner: str, ttl: float = DEFAULT_TTL) -> dict[str, Any]:
    """Lease the model to ``run_id`` for ``owner``; the same owner taking it again gets it back.

    Raises :class:`RunLocked` when another owner holds a live lease or a ``retrain run`` holds the
    run lock. A stale lease is broken (logged).
    """
    with registry.run_lock(timeout=0):
        lease = read(registry)
        if lease is not None and lease["owner"] == owner:
            return _write(registry, lease, ttl)
        if lease is not None:
            if not is_stale(lease):
                raise RunLocked(_describe(registry, lease))
            log.warning("breaking the stale lease of run %s (owner %s, expired %s)", lease["run_id"], lease["owner"], lease["expires"])
        return _write(registry, {"run_id": run_id, "owner": owner, "taken": _now().isoformat(timespec="seconds")}, ttl)


def renew(registry: Registry, *, run_id: str) -> dict[str, Any]:
    """Extend the lease of ``run_id`` by its ttl; :class:`RunLocked` when the lease is not its own."""
    with registry.run_lock(timeout=_BRIEF):
        lease = read(registry)
        if lease is None or lease["run_id"] != run_id:
            held = _describe(registry, lease) if lease else f"model '{registry.model_name}' is not leased"
            raise RunLocked(f"run {run_id} does not hold the lease of model '{registry.model_name}' "
                            f"(was it broken as stale?): {held}")
        return _write(registry, lease, float(lease.get("ttl", DEFAULT_TTL)))


def release(registry: Registry, *, owner: str | None = None, run_id: str | None = None, force: bool = False) -> bool:
    """Delete the lease if ``owner`` (or ``run_id``) holds it, or whoever does with ``force``; True if deleted."""
    with registry.run_lock(timeout=_BRIEF):
        lease = read(registry)
        if lease is None:
            return False
        if not force and lease["owner"] != owner and lease["run_id"] != run_id:
            return False
        _path(registry).unlink()
        return True
