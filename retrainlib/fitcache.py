"""The shared-fit cache: an identical fit is computed once and reused.

Two fits are identical when their training rows (``data.frame_fingerprint``) and their AutoGluon
settings (``training.fit_settings``) are the same. A backtest replays several strategies over the
same history; whenever two strategies retrain on the same window with the same settings, the
second gets a copy of the first one's deployment clone and its recorded :class:`TrainingResult`
(including the fit's measured CPU-seconds, so every strategy's cost is reported as if it had
trained alone). Fits bounded by configuration are reproducible (docs/guides/operations.md), so a
copy is what a second fit would have produced; a fit whose ``time_limit`` was binding depends on
the machine's load and is never cached.

The cache is a plain folder, so workers on several machines can share it on shared storage
(NFS, EFS): an entry appears by an atomic rename, and a per-fit lock file (``.<key>.lock``,
``flock``) makes a worker that needs a fit another worker is computing wait for it and reuse it.

>>> import tempfile
>>> cache = FitCache(tempfile.mkdtemp())
>>> cache.stats()
{'fits_computed': 0, 'fits_reused': 0, 'cpu_seconds_computed': 0.0, 'cpu_seconds_saved': 0.0, 'not_cached': 0}
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import filelock
import pandas as pd

from . import training
from .data import frame_fingerprint
from .durable import publish_dir, sha256_parts, staging
from .errors import TrainingError
from .monitoring import check_free_disk
from .profiles import Profile

__all__ = ["FitCache", "fit_key"]


def fit_key(train: pd.DataFrame, settings: dict[str, Any]) -> str:
    """sha256 of the training rows' fingerprint and the fit settings (key order does not matter)."""
    return sha256_parts(frame_fingerprint(train), json.dumps(settings, sort_keys=True, default=str))


class FitCache(training.Trainer):
    """A folder of finished fits keyed by :func:`fit_key`; counts what it computed and saved.

    A :class:`~retrainlib.training.Trainer`: ``steps.retrain_model(ctx, trainer=cache)`` fits through it.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.fits_computed = 0
        self.fits_reused = 0
        self.not_cached = 0
        self.cpu_seconds_computed = 0.0
        self.cpu_seconds_saved = 0.0
        self.last_hit: bool | None = None  # whether the latest call was served from the cache

    def __repr__(self) -> str:
        return f"FitCache({str(self.root)!r}, {self.stats()})"

    def stats(self) -> dict[str, Any]:
        """Fits computed and reused, and the training CPU-seconds the reuse saved."""
        return {
            "fits_computed": self.fits_computed,
            "fits_reused": self.fits_reused,
            "cpu_seconds_computed": round(self.cpu_seconds_computed, 3),
            "cpu_seconds_saved": round(self.cpu_seconds_saved, 3),
            "not_cached": self.not_cached,
        }

    def provenance(self) -> str | None:
        """``reused`` or ``computed``: where the latest fit came from."""
        return None if self.last_hit is None else ("reused" if self.last_hit else "computed")

    def fit(
        self, train: pd.DataFrame, *, profile: Profile, work_dir: str | os.PathLike, disk_path: str | os.PathLike, **kwargs: Any
    ) -> training.TrainingResult:
        """Like :func:`retrainlib.training.train_challenger`, reusing an identical earlier fit.

        The deployment clone lands in ``work_dir/predictor`` either way; the returned result's
        timings and resources are those measured when the fit was computed.
        """
        key = fit_key(train, training.fit_settings(profile))
        entry = self.root / key
        work_dir = Path(work_dir)
        if (entry / "result.json").is_file():
            return self._reuse(entry, train, profile=profile, work_dir=work_dir, disk_path=disk_path, **kwargs)
        # processes on other workers share this folder: one computes a fit, the others wait and reuse it
        with filelock.FileLock(self.root / f".{key}.lock", fallback_to_soft=False):
            if (entry / "result.json").is_file():
                return self._reuse(entry, train, profile=profile, work_dir=work_dir, disk_path=disk_path, **kwargs)
            return self._compute(entry, train, profile=profile, work_dir=work_dir, disk_path=disk_path, **kwargs)

    def _reuse(self, entry: Path, train: pd.DataFrame, *, profile: Profile, work_dir: Path, disk_path, **kwargs: Any) -> training.TrainingResult:
        if len(train) < profile.training.min_train_rows:  # the same refusal a real fit gives
            return training.train_challenger(train, profile=profile, work_dir=work_dir, disk_path=disk_path, **kwargs)
        check_free_disk(disk_path, need_bytes=kwargs.get("version_bytes") or 50 * 2**20,
                        disk_threshold=profile.disk_threshold)
        work_dir.mkdir(parents=True, exist_ok=False)
        shutil.copytree(entry / "predictor", work_dir / "predictor")
        result = training.TrainingResult.from_dict(json.loads((entry / "result.json").read_text()),
                                                   predictor_dir=work_dir / "predictor",
                                                   leaderboard=pd.read_csv(entry / "leaderboard.csv"))
        self.fits_reused += 1
        self.cpu_seconds_saved += result.cpu_seconds
        self.last_hit = True
        return result

    def _compute(self, entry: Path, train: pd.DataFrame, *, profile: Profile, work_dir: Path, disk_path, **kwargs: Any) -> training.TrainingResult:
        result = training.train_challenger(train, profile=profile, work_dir=work_dir, disk_path=disk_path, **kwargs)
        self.fits_computed += 1
        self.cpu_seconds_computed += result.cpu_seconds
        self.last_hit = False
        if result.time_limit_binding:  # cut short by the clock: a second fit may differ
            self.not_cached += 1
            return result
        try:
            with staging(entry) as stage:
                shutil.copytree(result.predictor_dir, stage / "predictor")
                result.leaderboard.to_csv(stage / "leaderboard.csv", index=False)
                record = result.to_dict()
                record.pop("leaderboard")
                (stage / "result.json").write_text(json.dumps(record, default=str))
                publish_dir(stage, entry)  # False: another worker's identical fit is there already
        except OSError as exc:
            if not (entry / "result.json").is_file():
                raise TrainingError(f"could not store the fit in the shared-fit cache {self.root}: {exc}") from exc
        if not (entry / "result.json").is_file():
            raise TrainingError(f"the shared-fit cache entry {entry} is there without its result.json; remove the folder")
        return result
