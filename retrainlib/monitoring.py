"""Resource monitoring while training: CPU, memory and disk against the profile's thresholds.

:class:`ResourceMonitor` samples a process tree (the training child and its workers) on a thread;
:func:`check_free_disk` refuses to start a fit when the registry's disk cannot take a new version.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import psutil

from .errors import TrainingError

__all__ = ["ResourceMonitor", "ResourceReport", "check_free_disk", "check_disk", "disk_needs", "plot_resources"]

_MiB = 2**20


@dataclass(frozen=True)
class ResourceReport:
    """Samples and peaks of one training, and each threshold it crossed."""

    samples: tuple[dict[str, float], ...]
    peak_cpu: float  # fraction of the machine's cores
    peak_memory: float  # fraction of system memory in use
    peak_rss_bytes: int  # the training process tree
    peak_disk: float  # fraction of the disk in use
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["samples"] = list(self.samples)
        d["warnings"] = list(self.warnings)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ResourceReport":
        return cls(tuple(d["samples"]), d["peak_cpu"], d["peak_memory"], d["peak_rss_bytes"], d["peak_disk"], tuple(d["warnings"]))


class ResourceMonitor:
    """Sample ``pid``'s process tree every ``interval`` seconds until stopped.

    >>> import os
    >>> with ResourceMonitor(os.getpid(), disk_path=".", interval=0.05) as mon:
    ...     time.sleep(0.12)
    >>> len(mon.report().samples) >= 1
    True
    """

    def __init__(
        self,
        pid: int,
        *,
        disk_path: str | Path,
        interval: float = 0.5,
        cpu_threshold: float = 1.0,
        memory_threshold: float = 1.0,
        disk_threshold: float = 1.0,
        memory_limit_bytes: int | None = None,
        on_limit: Callable[[str], None] | None = None,
    ) -> None:
        self.pid = pid
        self.memory_limit_bytes = memory_limit_bytes
        self.on_limit = on_limit
        #: why the monitor stopped the tree (None while within its limit)
        self.limit_hit: str | None = None
        self.disk_path = str(disk_path)
        self.interval = interval
        self.thresholds = {"cpu": cpu_threshold, "memory": memory_threshold, "disk": disk_threshold}
        self._samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resource-monitor", daemon=True)
        self._t0 = time.monotonic()
        self._procs: dict[int, psutil.Process] = {}

    def __enter__(self) -> "ResourceMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        # keep Process objects so cpu_percent measures since the previous sample
        out = []
        for p in procs:
            out.append(self._procs.setdefault(p.pid, p))
        return out

    def _sample(self) -> None:
        cpu = rss = 0.0
        for p in self._tree():
            try:
                cpu += p.cpu_percent(None)
                rss += p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        self._samples.append(
            {
                "t": round(time.monotonic() - self._t0, 3),
                "cpu": cpu / 100.0 / (psutil.cpu_count() or 1),
                "memory": psutil.virtual_memory().percent / 100.0,
                "rss_bytes": rss,
                "disk": shutil.disk_usage(self.disk_path).used / shutil.disk_usage(self.disk_path).total,
            }
        )
        limit = self.memory_limit_bytes
        if limit is not None and rss > limit and self.limit_hit is None:
            total = psutil.virtual_memory().total
            self.limit_hit = (
                f"training used {rss / _MiB:,.0f} MiB ({rss / total:.1%} of this machine's {total / 2**30:.1f} GiB), "
                f"above memory_threshold {self.thresholds['memory']:g} ({limit / _MiB:,.0f} MiB)"
            )
            if self.on_limit is not None:
                self.on_limit(self.limit_hit)

    def _run(self) -> None:
        self._tree()  # prime cpu_percent
        while not self._stop.wait(self.interval):
            self._sample()
        self._sample()

    def report(self) -> ResourceReport:
        s = self._samples
        peak = {k: max((x[k] for x in s), default=0.0) for k in ("cpu", "memory", "rss_bytes", "disk")}
        warnings = tuple(
            f"{k} use reached {peak[k]:.0%}, above the profile's {k}_threshold {limit:.0%}"
            for k, limit in self.thresholds.items()
            if peak[k] > limit
        )
        return ResourceReport(tuple(s), peak["cpu"], peak["memory"], int(peak["rss_bytes"]), peak["disk"], warnings)


def disk_needs(train_bytes: int, *, work_dir: str | Path, registry: str | Path,
               version_bytes: int | None = None) -> dict[Path, int]:
    """Bytes a fit writes, per folder: AutoGluon's working folder and the registry.

    ``version_bytes`` is the size of a comparable stored version (the champion's); without one
    (a first fit) a version is taken to be four times the training rows in memory, at least
    5 MiB. The working folder holds the training rows, AutoGluon's models and the deployment
    clone (twice a version); the registry receives one version.

    >>> needs = disk_needs(10 * 2**20, work_dir="/w", registry="/r", version_bytes=3 * 2**20)
    >>> {str(k): v // 2**20 for k, v in needs.items()}
    {'/w': 16, '/r': 3}
    """
    version = int(version_bytes) if version_bytes else max(4 * int(train_bytes), 5 * _MiB)
    return {Path(work_dir): int(train_bytes) + 2 * version, Path(registry): version}


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (a folder about to be created lives on that disk)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(needs: Mapping[str | Path, int], *, disk_threshold: float) -> None:
    """Refuse when any disk cannot take what will be written to it (:func:`disk_needs`).

    Folders on the same disk add up; each disk must keep free space for its total and stay at or
    below ``disk_threshold`` after it. The message names every folder on the disk that is short.
    """
    by_disk: dict[int, list[tuple[Path, int]]] = {}
    for path, need in needs.items():
        where = _existing(Path(path))
        by_disk.setdefault(os.stat(where).st_dev, []).append((Path(path), int(need)))
    for entries in by_disk.values():
        total_need = sum(n for _, n in entries)
        usage = shutil.disk_usage(_existing(entries[0][0]))
        after = (usage.used + total_need) / usage.total
        if usage.free < total_need or after > disk_threshold:
            parts = " and ".join(f"{p} ({n / _MiB:,.0f} MiB)" for p, n in entries)
            raise TrainingError(
                f"not enough free disk for {parts}: {usage.free / 2**30:.2f} GiB free, the fit would take use to "
                f"{after:.0%} (disk_threshold {disk_threshold:.0%}); free space, lower max_versions or "
                f"training.max_rows, or raise disk_threshold"
            )


def check_free_disk(path: str | Path, *, need_bytes: int, disk_threshold: float) -> None:
    """Refuse to train when a new version of ``need_bytes`` would not fit, or would cross ``disk_threshold``."""
    usage = shutil.disk_usage(path)
    after = (usage.used + need_bytes) / usage.total
    if usage.free < need_bytes or after > disk_threshold:
        raise TrainingError(
            f"not enough free disk at {path}: {usage.free / 2**30:.2f} GiB free, a new version needs about "
            f"{need_bytes / 2**30:.2f} GiB and would take use to {after:.0%} (disk_threshold {disk_threshold:.0%}); "
            "free space, lower max_versions, or raise disk_threshold"
        )


def plot_resources(report: ResourceReport | dict, ax=None):
    """CPU, memory and disk over the training, with the report's samples."""
    import matplotlib.pyplot as plt

    samples = report["samples"] if isinstance(report, dict) else report.samples
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    t = [s["t"] for s in samples]
    for key in ("cpu", "memory", "disk"):
        ax.plot(t, [s[key] for s in samples], label=key)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("seconds since training started")
    ax.set_ylabel("fraction used")
    ax.legend(loc="upper left")
    ax.set_title("Resources while training")
    return ax
