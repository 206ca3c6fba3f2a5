"""The champion's scores on a frame, computed once per model and rows: what the drift step reads.

The drift step scores the serving champion on a sample of the reference and current windows and on
each new batch. A backtest replays several strategies over the same batches, and their champions are
often byte-identical versions (a fit reused from the shared-fit cache): the same model scores the same
rows again and again. :class:`ChampionScores` loads the champion only when it must and, where the
check cache is on (``RETRAIN_CHECK_CACHE``, which backtests set: :mod:`retrainlib.freshproc`), keeps
each answer under the sha256 of every model file (verified against the registry's checksums first),
the rows' fingerprint and the running software — the answer a fresh load would give. Without that
folder nothing is kept and the champion is loaded on first use, as before.

:func:`answered_once` does the same in memory for the drift step's other pure work: with the check
cache on, windows compared before in this process (two strategies serving the same champion on the
same batches: :func:`compare_once`) and batches judged before against the same reference are
answered from memory, keyed by the rows' fingerprints and every setting.
"""

from __future__ import annotations

import io
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import pandas as pd

from . import automl, freshproc
from .data import frame_fingerprint
from .durable import sha256_bytes, write_atomic, write_json_atomic

__all__ = ["ChampionScores", "answered_once", "compare_once"]

T = TypeVar("T")


class ChampionScores:
    """Version ``version`` of ``registry``: its scores on frames and its problem type, loaded only when needed.

    >>> ChampionScores.__doc__.split(":")[0]
    'Version ``version`` of ``registry``'
    """

    def __init__(self, registry, version: str):
        self.registry, self.version = registry, version
        self._predictor = None
        folder = freshproc.cache_folder()
        self._root = folder / "scores" if folder is not None else None
        self._model: str | None = None
        if self._root is not None:  # the files are what the registry recorded, and their digest names the model
            self._model = freshproc.folder_digest(registry.predictor_path(version, verify=True))

    @property
    def predictor(self):
        """The loaded predictor (verified and loaded strictly by the registry on first use)."""
        if self._predictor is None:
            self._predictor = self.registry.load(self.version)
        return self._predictor

    def _facts(self) -> dict[str, Any]:
        path = self._root / f"{self._model}.json" if self._root is not None else None
        if path is not None and path.is_file():
            return json.loads(path.read_text())
        p = self.predictor
        facts = {"problem_type": p.problem_type,
                 "class_labels": None if p.problem_type == "regression" else [c.item() if hasattr(c, "item") else c for c in p.class_labels]}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, facts)
        return facts

    @property
    def problem_type(self) -> str:
        return self._facts()["problem_type"]

    @property
    def class_labels(self) -> list | None:
        return self._facts()["class_labels"]

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        """:func:`retrainlib.automl.predict_scores` of the champion on ``frame``, from the cache when it has them."""
        if self._root is None:
            return automl.predict_scores(self.predictor, frame)
        key = sha256_bytes(f"{self._model}\n{frame_fingerprint(frame)}".encode())
        path = self._root / f"{key}.npy"
        if path.is_file():
            return np.load(path, allow_pickle=False)
        values = automl.predict_scores(self.predictor, frame)
        self._root.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, values, allow_pickle=False)
        write_atomic(path, buffer.getvalue())  # a concurrent writer of the same key stored the same values
        return values


_ANSWERS: OrderedDict[str, Any] = OrderedDict()  # key -> a frozen answer, newest kept
_ANSWERS_MAX = 1024
_ANSWERS_LOCK = threading.Lock()


def answered_once(parts: Sequence[str], compute: Callable[[], T]) -> T:
    """``compute()``; with the check cache on, the answer an earlier call with the same ``parts`` got in this
    process (``parts`` name everything the answer depends on: row fingerprints and settings; answers are
    frozen records, never changed by their readers)."""
    if freshproc.cache_folder() is None:
        return compute()
    key = sha256_bytes("\n".join(parts).encode())
    with _ANSWERS_LOCK:
        if key in _ANSWERS:
            return _ANSWERS[key]
    answer = compute()
    with _ANSWERS_LOCK:
        _ANSWERS[key] = answer
        while len(_ANSWERS) > _ANSWERS_MAX:
            _ANSWERS.popitem(last=False)
    return answer


def compare_once(reference: pd.DataFrame, current: pd.DataFrame, *, settings, drift_threshold: float,
                 importance: dict | None, seed: int):
    """:func:`retrainlib.drift.compare` of the two windows, through :func:`answered_once`."""
    from . import drift

    parts = ["drift.compare", frame_fingerprint(reference), frame_fingerprint(current), settings.model_dump_json(),
             repr(float(drift_threshold)), json.dumps(importance, sort_keys=True, default=str), str(seed)]
    return answered_once(parts, lambda: drift.compare(reference, current, settings=settings, drift_threshold=drift_threshold,
                                                      importance=importance, seed=seed))
