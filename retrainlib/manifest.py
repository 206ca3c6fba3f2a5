"""The run manifest: one machine-readable record of a run, written beside its notebooks.

``manifest.json`` holds the run id, the profile (path, sha256, full text and resolved values), the
git commit, software versions, each step's status and timing, the step outputs by file name and
sha256 (``outputs``: ``{"10-analyze-drift": {"file": "10-analyze-drift.json", "sha256": "…"}}``), the
champion before and after, the final status and outcome, and the sha256 of every file in the run
folder. It is rewritten atomically after every step, so a killed run still leaves a record.

:meth:`RunManifest.load` (a run folder or its ``manifest.json``) and :meth:`RunManifest.from_dict`
are the only readers: every module reads a run through the typed record, and a step's output
through :mod:`retrainlib.outputs`' types (:meth:`RunManifest.analysis` …), checked against the
sha256 the record holds. Keys an older or newer version wrote that this one does not know are kept
and written back; missing ones take their defaults. Older records copied parts of the step outputs
inline (``outputs.decision``, ``outputs.verdict`` …) and the windows into ``data``: they still load,
and their step outputs are read from the step files their ``files`` list names. A damaged record
raises :class:`ManifestError`, naming the file and what is wrong.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from .durable import sha256_file, write_json_atomic
from .errors import RetrainError
from .outputs import Analysis, Promotion, Training, Validation, _Output
from .playbook import STEPS, step_of

__all__ = ["RunManifest", "StepRecord", "ProfileRecord", "ErrorRecord", "OutputRef", "MlflowRecord", "ManifestError",
           "file_hashes", "git_commit", "OUTCOMES", "write_json_atomic", "this_process", "mark_abandoned", "MANIFEST"]

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


class ManifestError(RetrainError, ValueError):
    """A run record that cannot be read: ``problem`` says what is wrong with the file at ``path``."""

    def __init__(self, path: Path | str, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path} {problem}; expected the JSON object a run writes: restore the file, "
                         "or move the run folder out of runs/")


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


# --------------------------------------------------------------------------- nested records
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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StepRecord":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class ProfileRecord(_Output):
    """The profile as the run read it: its name, path, sha256, text (URL secrets redacted) and resolved values."""

    name: str | None = None
    path: str | None = None
    sha256: str | None = None
    content: str | None = None
    resolved: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def model_name(self) -> str | None:
        return self.resolved.get("model_name")

    @property
    def registry(self) -> str:
        """The registry folder as the profile names it (relative to the home, or absolute)."""
        return self.resolved.get("registry") or "models"

    @property
    def eval_metric(self) -> str | None:
        return (self.resolved.get("training") or {}).get("eval_metric")

    @property
    def strategy(self) -> Any:
        return (self.resolved.get("training") or {}).get("strategy")


@dataclass(frozen=True)
class ErrorRecord(_Output):
    """Why a run failed: the step (``None``: before or between steps) and the message."""

    step: str | None = None
    message: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def line(self) -> str:
        return f"{self.step}: {self.message}"


@dataclass(frozen=True)
class OutputRef(_Output):
    """A step's output as the record names it: the file in the run folder and its sha256 when written."""

    file: str
    sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class MlflowRecord(_Output):
    """What the MLflow mirror did (:func:`retrainlib.mlflow_mirror.sync`): ``mirrored`` or ``failed`` with the error."""

    status: str = "failed"
    tracking_uri: str | None = None
    runs: dict[str, Any] = field(default_factory=dict)  # our run id -> {"run_id", "url"} of runs mirrored by that sync
    versions: dict[str, Any] = field(default_factory=dict)
    champion: dict[str, Any] | None = None  # {"version", "mlflow_version", "mlflow_version_before"}
    experiment_url: str | None = None
    model_url: str | None = None
    run_url: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _optional: ClassVar[frozenset[str]] = frozenset({"champion", "experiment_url", "model_url", "run_url", "error"})

    @property
    def mirrored(self) -> bool:
        return self.status == "mirrored"


# --------------------------------------------------------------------------- the record
#: the JSON type each field must have (None is always allowed where the default is None)
_KINDS: dict[str, tuple[type, ...]] = {
    "run_id": (str,), "profile": (dict,), "as_of": (str,), "started": (str,), "status": (str,), "outcome": (str,),
    "exit_code": (int,), "finished": (str,), "seconds": (int, float), "reasons": (list,), "git_commit": (str,),
    "software": (dict,), "environment": (dict,), "champion_before": (str,), "champion_after": (str,),
    "challenger": (str,), "metrics": (dict,), "steps": (list,), "outputs": (dict,), "error": (dict,), "replay_of": (str,),
    "notifications": (list,), "warnings": (list,), "process": (dict,), "mlflow": (dict,), "files": (dict,),
}
_NESTED_KINDS: dict[str, dict[str, tuple[type, ...]]] = {
    "profile": {"name": (str,), "path": (str,), "sha256": (str,), "content": (str,), "resolved": (dict,)},
    "error": {"step": (str,), "message": (str,)},
}
_JSON_NAMES = {list: "an array", dict: "an object", str: "a string", int: "a number", float: "a number", bool: "true or false"}
#: the step outputs' types by their record key (the step's notebook stem)
_KEYS = {s.notebook: s for s in STEPS}


@dataclass
class RunManifest:
    """The audit record of one run (see module docstring)."""

    run_id: str
    profile: ProfileRecord
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
    champion_before: str | None = None
    champion_after: str | None = None
    challenger: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # the verdict's scores: {"champion": {...}, "challenger": {...}}
    steps: list[StepRecord] = field(default_factory=list)
    #: each step output written so far, by the step's notebook stem: its file and sha256 (refreshed by :meth:`write`)
    outputs: dict[str, OutputRef] = field(default_factory=dict)
    error: ErrorRecord | None = None
    replay_of: str | None = None
    notifications: list[dict[str, Any]] = field(default_factory=list)  # notify.notify_run's records, one per channel
    #: resource thresholds crossed while training (cpu, memory, disk), one line each
    warnings: list[str] = field(default_factory=list)
    #: who runs it: {"pid", "host", "started"}; lets a later command tell a live run from a dead one
    process: dict[str, Any] | None = field(default_factory=dict)
    mlflow: MlflowRecord | None = None  # what the MLflow mirror did (retrainlib.mlflow_mirror.sync)
    files: dict[str, str] = field(default_factory=dict)
    #: keys another version wrote that this one does not know (kept, written back)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    #: the run folder it was read from or written to (not written); where its step outputs are read
    run_dir: Path | None = field(default=None, compare=False, repr=False)
    _read: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:  # the nested records may be given as their JSON
        if isinstance(self.profile, dict):
            self.profile = ProfileRecord.from_dict(self.profile)
        if isinstance(self.error, dict):
            self.error = ErrorRecord.from_dict(self.error)
        if isinstance(self.mlflow, dict):
            self.mlflow = MlflowRecord.from_dict(self.mlflow)

    # ---- reading
    @classmethod
    def load(cls, where: str | os.PathLike) -> "RunManifest":
        """The record of a run folder (or of its ``manifest.json``); :class:`ManifestError` when it is damaged.

        A missing file raises :class:`FileNotFoundError`.
        """
        path = Path(where)
        path = path / MANIFEST if path.name != MANIFEST else path
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise ManifestError(path, f"cannot be read ({type(exc).__name__}: {exc})") from None
        except ValueError as exc:  # not UTF-8, or not JSON
            raise ManifestError(path, f"is not JSON ({exc})") from None
        return cls.from_dict(raw, path=path)

    @classmethod
    def from_dict(cls, d: Any, *, path: str | os.PathLike | None = None) -> "RunManifest":
        """The record from its JSON (``path``: the file it came from, named in errors; its folder is the run folder)."""
        where = Path(path) if path is not None else Path(MANIFEST)
        if not isinstance(d, dict):
            raise ManifestError(where, f"holds {_JSON_NAMES.get(type(d), type(d).__name__)} instead of a JSON object")
        _check_kinds(where, d, _KINDS)
        for key, kinds in _NESTED_KINDS.items():
            if isinstance(d.get(key), dict):
                _check_kinds(where, d[key], kinds, f"{key}.")
        try:
            return cls._build(d, where.parent if path is not None else None)
        except (AttributeError, TypeError, KeyError, ValueError) as exc:
            raise ManifestError(where, f"has a field of an unexpected type ({type(exc).__name__}: {exc})") from None

    @classmethod
    def _build(cls, d: dict[str, Any], run_dir: Path | None) -> "RunManifest":
        known = {f.name for f in fields(cls)} - {"extra", "run_dir", "_read"}
        kw = {k: v for k, v in d.items() if k in known and v is not None}
        kw["run_id"] = d.get("run_id") or (run_dir.name if run_dir else "")
        kw["profile"] = d.get("profile") or {}
        kw.setdefault("as_of", None)
        kw.setdefault("started", "")
        kw["steps"] = [StepRecord.from_dict(s) for s in d.get("steps") or []]
        kw["outputs"] = _output_refs(d.get("outputs") or {}, d.get("files") or {})
        if "process" in d:
            kw["process"] = d["process"]
        extra = {k: v for k, v in d.items() if k not in known}
        return cls(**kw, extra=extra, run_dir=run_dir)

    def output(self, kind: type) -> Any:
        """The step output of type ``kind`` (:class:`~retrainlib.outputs.Analysis` …); ``None`` when the step wrote none.

        Read from the file the record names, once, and checked against its sha256: a file changed
        since the run recorded it raises :class:`ManifestError` naming it.
        """
        ref = self.outputs.get(step_of(kind).notebook)
        if ref is None or self.run_dir is None:
            return None
        key = (ref.file, ref.sha256)
        if self._read.get(kind.__name__, (None,))[0] != key:
            path = self.run_dir / ref.file
            if not path.is_file():
                raise ManifestError(self.run_dir / MANIFEST, f"names the step output {ref.file}, which is not in {self.run_dir}")
            if ref.sha256 and sha256_file(path) != ref.sha256:
                raise ManifestError(self.run_dir / MANIFEST, f"records another sha256 for {ref.file} than the file has "
                                                             "(it changed after the run wrote it)")
            try:
                value = kind.from_dict(json.loads(path.read_text()))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ManifestError(path, f"is not the {kind.__name__} output it should be ({type(exc).__name__}: {exc})") from None
            self._read[kind.__name__] = (key, value)
        return self._read[kind.__name__][1]

    @property
    def analysis(self) -> Analysis | None:
        """Step 10's output: the data windows, the checks, drift, the decision."""
        return self.output(Analysis)

    @property
    def training(self) -> Training | None:
        """Step 20's output: the challenger and its fit."""
        return self.output(Training)

    @property
    def validation(self) -> Validation | None:
        """Step 30's output: the verdict and its gates."""
        return self.output(Validation)

    @property
    def promotion(self) -> Promotion | None:
        """Step 40's output: what happened to the champion."""
        return self.output(Promotion)

    @property
    def decision_status(self) -> str | None:
        """Step 10's decision (``retrain``, ``no-retrain``, ``bootstrap``, ``blocked-by-quality`` …), or None."""
        a = self.analysis
        return a.decision.status if a else None

    # ---- writing
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("extra", "run_dir", "_read"):
                continue
            value = getattr(self, f.name)
            if f.name == "steps":
                value = [s.to_dict() for s in value]
            elif f.name == "outputs":
                value = {k: ref.to_dict() for k, ref in value.items()}
            elif hasattr(value, "to_dict"):
                value = value.to_dict()
            out[f.name] = value
        return {**out, **self.extra}

    def write(self, run_dir: Path) -> Path:
        """Hash the run folder's files, refer to the step outputs there, and write ``manifest.json`` atomically."""
        self.run_dir = Path(run_dir)
        self.files = file_hashes(self.run_dir)
        self.outputs = {s.notebook: OutputRef(s.json_file, self.files[s.json_file]) for s in STEPS if s.json_file in self.files}
        path = self.run_dir / MANIFEST
        write_json_atomic(path, self.to_dict(), sort_keys=False)
        return path

    def rewrite(self) -> Path:
        """Write the record back as it is (files and output references unchanged), e.g. after marking it abandoned."""
        path = Path(self.run_dir) / MANIFEST
        write_json_atomic(path, self.to_dict(), sort_keys=False)
        return path

    @staticmethod
    def now() -> str:
        return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _check_kinds(where: Path, d: dict[str, Any], kinds: dict[str, tuple[type, ...]], prefix: str = "") -> None:
    """Each key of ``d`` named in ``kinds`` holds null or a JSON value of its type; else :class:`ManifestError`."""
    for key, allowed in kinds.items():
        value = d.get(key)
        if value is not None and (not isinstance(value, allowed) or isinstance(value, bool)):
            raise ManifestError(where, f"has a field of an unexpected type: {prefix + key!r} is "
                                       f"{_JSON_NAMES.get(type(value), type(value).__name__)}, expected {_JSON_NAMES[allowed[0]]}")


def _output_refs(outputs: dict[str, Any], files: dict[str, str]) -> dict[str, OutputRef]:
    """The step outputs' references; an older record's inline copies become references to the step files it lists."""
    refs = {k: OutputRef.from_dict(v) for k, v in outputs.items() if k in _KEYS and isinstance(v, dict) and "file" in v}
    if refs:
        return refs
    return {s.notebook: OutputRef(s.json_file, files[s.json_file]) for s in STEPS if s.json_file in files}


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
            m = RunManifest.load(path)
        except (OSError, ManifestError):
            continue  # an unreadable record is reported by whoever reads it
        if m.status != "running" or not _process_gone(m.process or {}):
            continue
        now = RunManifest.now()
        step = None
        for rec in m.steps:
            if rec.status == "running":
                rec.status, rec.finished, rec.error = "failed", now, "its process died (killed or the host stopped)"
                step = rec.name
            elif rec.status == "pending":
                rec.status = "not-run"
        proc = m.process
        m.status, m.outcome, m.exit_code, m.finished = "abandoned", "abandoned", OUTCOMES["abandoned"], now
        m.champion_after = _recovered_champion(Path(runs), m, m.champion_after)
        m.error = ErrorRecord(step, f"abandoned: its process (pid {proc['pid']} on {proc['host']}) is gone; "
                                    f"found by `{by}` at {now}")
        m.rewrite()
        done.append(m.run_id)
    return done


def _recovered_champion(runs: Path, m: RunManifest, unknown: Any) -> Any:
    """The champion of a dead run's model after the registry's recovery; ``unknown`` while a live writer holds it."""
    from .registry import Registry

    if not m.profile.model_name:
        return unknown
    root = Path(m.profile.registry).expanduser()
    try:
        registry = Registry(root if root.is_absolute() else runs.resolve().parent / root, m.profile.model_name)
        registry.recover(wait=False)
        rec = registry.champion_record()
    except (RetrainError, OSError):  # a damaged pointer: `status` reports it
        return unknown
    if rec and rec.get("smoke_pending"):  # its promoter still holds the writer lock
        return unknown
    return rec.get("version") if rec else None
