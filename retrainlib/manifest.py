"""The run manifest: one machine-readable record of a run, written beside its notebooks.

``manifest.json`` holds the run id, the profile (path, sha256, full text and resolved values), the
git commit, software versions, data fingerprints, each step's status, timing and outputs, the
champion before and after, the final status and outcome, and the sha256 of every file in the run
folder. It is rewritten atomically after every step, so a killed run still leaves a record.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .durable import sha256_file, write_json_atomic

__all__ = ["RunManifest", "StepRecord", "load_manifest", "file_hashes", "git_commit", "OUTCOMES", "write_json_atomic",
           "this_process", "mark_abandoned"]

MANIFEST = "manifest.json"

#: what a run ended in, and the exit code `retrain run` returns for it
OUTCOMES = {
    "promoted": 0,
    "bootstrapped": 0,
    "no-retrain-needed": 3,
    "rejected": 4,
    "blocked-by-quality": 5,
    "stuck": 6,  # champion below performance_threshold and validation.stuck_after rejections or blocks in a row
    "rolled-back": 7,  # automatic (failed smoke test) or by hand (`retrain rollback`)
    "shadow-started": 10,  # validation.shadow_batches: the passing challenger is on trial beside the champion
    "promoted-from-shadow": 11,  # the shadow's trial passed: it serves now
    "shadow-dropped": 12,  # the shadow's trial failed: it never served
    "failed": 1,
    "abandoned": 1,
}


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` except the manifest itself."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST and not p.name.startswith("."):
            out[str(p.relative_to(folder))] = sha256_file(p)
    return out


def git_commit(home: Path) -> str | None:
    """The project's commit (with ``+dirty`` when the tree has changes), or None outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=home, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=home, capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


@dataclass
class StepRecord:
    """One notebook's execution."""

    name: str
    status: str = "pending"  # pending | running | succeeded | failed | not-run
    started: str | None = None
    finished: str | None = None
    seconds: float | None = None
    notebook: str | None = None
    output: str | None = None
    error: str | None = None


@dataclass
class RunManifest:
    """The audit record of one run (see module docstring)."""

    run_id: str
    profile: dict[str, Any]
    as_of: str | None
    started: str
    status: str = "running"  # running | succeeded | failed | abandoned (its process died without a word)
    outcome: str | None = None
    exit_code: int | None = None
    finished: str | None = None
    seconds: float | None = None
    reasons: list[str] = field(default_factory=list)
    git_commit: str | None = None
    software: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    champion_before: str | None = None
    champion_after: str | None = None
    challenger: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    steps: list[StepRecord] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    replay_of: str | None = None
    notifications: list[dict[str, Any]] = field(default_factory=list)
    #: resource thresholds crossed while training (cpu, memory, disk), one line each
    warnings: list[str] = field(default_factory=list)
    #: who runs it: {"pid", "host", "started"}; lets a later command tell a live run from a dead one
    process: dict[str, Any] = field(default_factory=dict)
    mlflow: dict[str, Any] | None = None  # what the MLflow mirror did (retrainlib.mlflow_mirror.sync)
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, run_dir: Path) -> Path:
        self.files = file_hashes(run_dir)
        path = run_dir / MANIFEST
        write_json_atomic(path, self.to_dict(), sort_keys=False)
        return path

    @staticmethod
    def now() -> str:
        return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def this_process() -> dict[str, Any]:
    """This process as a manifest records it: pid, host and start time (to tell a reused pid apart)."""
    import psutil

    return {"pid": os.getpid(), "host": socket.gethostname(), "started": psutil.Process().create_time()}


def _process_gone(proc: dict[str, Any]) -> bool:
    """Whether the process a manifest names is certainly gone (on another host nobody can tell: False)."""
    import psutil

    if not proc or proc.get("host") != socket.gethostname() or not isinstance(proc.get("pid"), int):
        return False
    try:
        started = psutil.Process(proc["pid"]).create_time()
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
    return abs(started - float(proc.get("started") or 0)) > 1.0  # the pid now belongs to another process


def mark_abandoned(runs: Path, *, by: str) -> list[str]:
    """Mark each run under ``runs`` left ``running`` by a process that is gone as ``abandoned``; their ids.

    A run killed without a chance to write (SIGKILL, power loss) keeps saying ``running``; the next
    command that reads runs finds its process gone (same host, pid dead or reused) and completes
    the record: the running step failed, later steps not run, status and outcome ``abandoned``.
    Its ``champion_after`` is the champion once the registry has completed what the run left (a
    promotion whose smoke test never answered is rolled back first), so record and history agree.
    """
    done = []
    for path in sorted(Path(runs).glob(f"*/{MANIFEST}")) if Path(runs).is_dir() else []:
        try:
            m = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # an unreadable record is reported by whoever reads it
        if not isinstance(m, dict) or m.get("status") != "running" or not _process_gone(m.get("process") or {}):
            continue
        now = RunManifest.now()
        step = None
        for rec in m.get("steps") or []:
            if rec.get("status") == "running":
                rec.update(status="failed", finished=now, error="its process died (killed or the host stopped)")
                step = rec.get("name")
            elif rec.get("status") == "pending":
                rec["status"] = "not-run"
        proc = m["process"]
        m.update(status="abandoned", outcome="abandoned", exit_code=OUTCOMES["abandoned"], finished=now,
                 champion_after=_recovered_champion(Path(runs), m, m.get("champion_after")),
                 error={"step": step, "message": f"abandoned: its process (pid {proc['pid']} on {proc['host']}) is gone; "
                                                 f"found by `{by}` at {now}"})
        write_json_atomic(path, m)
        done.append(m.get("run_id") or path.parent.name)
    return done


def _recovered_champion(runs: Path, m: dict[str, Any], unknown: Any) -> Any:
    """The champion of a dead run's model after the registry's recovery; ``unknown`` while a live writer holds it."""
    from .errors import RetrainError
    from .registry import Registry

    resolved = (m.get("profile") or {}).get("resolved") or {}
    if not resolved.get("model_name"):
        return unknown
    root = Path(resolved.get("registry") or "models").expanduser()
    try:
        registry = Registry(root if root.is_absolute() else runs.resolve().parent / root, resolved["model_name"])
        registry.recover(wait=False)
        rec = registry.champion_record()
    except (RetrainError, OSError):  # a damaged pointer: `status` reports it
        return unknown
    if rec and rec.get("smoke_pending"):  # its promoter still holds the writer lock
        return unknown
    return rec.get("version") if rec else None


def load_manifest(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Read a run folder's manifest as a dict."""
    path = Path(run_dir) / MANIFEST
    return json.loads(path.read_text())
