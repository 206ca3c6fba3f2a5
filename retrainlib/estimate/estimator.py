"""The stored estimator and what it returns: :class:`Estimator` (its JSON, its dispatch to the method that estimates a
batch, which :mod:`.cbpe` and :mod:`.dle` register) and :class:`Estimate`.

May touch: the registry version folder's ``estimator.json`` (through :meth:`Estimator.save` / :meth:`Estimator.load`);
nothing else (no fitting here: :mod:`.fit`, :mod:`.cbpe`, :mod:`.dle`)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..errors import EstimationError
from .calibration import _as_matrix, _calibrate
from .metrics import clip_to_range


def _content_key(*arrays: np.ndarray) -> str:
    """A digest of the arrays' bytes (C order), naming their content in the in-memory caches of this package (a
    calibration, a label check, a binned table). SHA-1: no adversary picks these rows, and on this hardware it reads
    them several times faster than BLAKE2."""
    import hashlib

    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())  # each array's type and shape, so no two splits of bytes collide
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _label_key(yi: np.ndarray) -> np.ndarray:
    """Class places (-1: none) as bytes for :func:`_content_key`: one byte each where they fit (the same labels give the
    same bytes; hashing 14,000 one-byte places instead of eight-byte ones takes half a key's time)."""
    yi = np.asarray(yi)
    fits = len(yi) == 0 or (int(yi.min()) >= -128 and int(yi.max()) <= 127)
    return yi.astype(np.int8 if fits else np.int64)


def _class_places(classes, y) -> np.ndarray:
    """Each label's place in ``classes`` (-1: not one of them), vectorised: pandas' lookup, or, where labels and up to
    16 classes are both signed whole numbers or both booleans, one comparison per class (the same places, several
    times faster; pandas matches no boolean to a whole number either). Callers let a dict decide where a label was not
    found (a label equal to a class but hashed apart)."""
    import pandas as pd

    y = np.asarray(y)
    cls = np.asarray(list(classes))
    if y.dtype.kind in "ib" and cls.dtype.kind == y.dtype.kind and 0 < len(cls) <= 16 and len(np.unique(cls)) == len(cls):
        out = np.full(len(y), -1, dtype=np.intp)
        for i, c in enumerate(cls):
            out[y == c] = i
        return out
    return pd.Index(list(classes)).get_indexer(y)


#: file name of the estimator inside a registry version folder
ESTIMATOR_FILE = "estimator.json"


#: fewest rows a batch needs to be estimated
MIN_BATCH_ROWS = 30


#: the band's coverage
CONFIDENCE = 0.95


#: how each method estimates one batch: ``(estimator, scores, features) -> (value, low, high, parts)``. :mod:`.cbpe`
#: and :mod:`.dle` add theirs (:func:`estimates_batches`), so this module, which both import, imports neither
_ESTIMATE: dict[str, Callable] = {}


def estimates_batches(method: str) -> Callable[[Callable], Callable]:
    """Register the decorated function as how ``method`` (``Estimator.method``) estimates one batch."""
    def add(function: Callable) -> Callable:
        _ESTIMATE[method] = function
        return function

    return add


@dataclass(frozen=True)
class Estimate:
    """The estimated metric of one batch, with its band; ``value`` is None when not estimated (``reason`` says why)."""

    metric: str
    value: float | None
    low: float | None
    high: float | None
    n_rows: int
    method: str
    reason: str = ""
    batch: str | None = None
    source: str = "estimated"
    #: ``unreliable: label shift …`` (with its figures) when the newest labels show what the estimator cannot see
    unreliable: str = ""
    #: the band's half-widths by part: ``sampling``, ``calibration`` (the model's band) and ``track_record`` (the
    #: widening past estimate errors call for, :func:`~.track.widen`), with notes
    parts: dict | None = None

    @property
    def estimated(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Estimate":
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__ if k in d})

    def describe(self) -> str:
        """``estimated roc_auc 0.712 (95% band 0.690–0.734, 1500 rows)`` or why not."""
        if self.value is None:
            return f"{self.metric} not estimated: {self.reason}"
        return (f"estimated {self.metric} {self.value:.3f} ({CONFIDENCE:.0%} band {self.low:.3f}–{self.high:.3f}, "
                f"{self.n_rows} rows)" + (f"; {self.unreliable}" if self.unreliable else ""))


def unavailable(metric: str, reason: str, *, batch: str | None = None, n_rows: int = 0, method: str = "none") -> Estimate:
    """An estimate that was not made, and why."""
    return Estimate(metric, None, None, None, int(n_rows), method, reason, batch)


def compare(estimate: Estimate | dict, measured: float) -> dict[str, Any]:
    """The estimator's own accuracy once labels arrive: estimate, measured, error, inside the band."""
    e = estimate if isinstance(estimate, Estimate) else Estimate.from_dict(estimate)
    if e.value is None:
        return {"estimated": None, "measured": float(measured), "error": None, "in_band": None}
    note = (e.parts or {}).get("track_record_note", "")
    return {
        "estimated": e.value,
        "low": e.low,
        "high": e.high,
        "measured": float(measured),
        "error": float(e.value - measured),
        "in_band": bool(e.low <= measured <= e.high),
        # who set the band: the track record (its hits and misses move the level it aims at) or the model alone
        "band": "track record" if note and not note.startswith("warming up") else "model",
    }


@dataclass
class Estimator:
    """A fitted label-free estimator of one model's metric (see the module docstring)."""

    problem_type: str
    metric: str
    method: str  # 'cbpe' | 'dle'
    classes: list | None
    usable: bool
    reason: str
    calibration_rows: int
    calibration_batches: list[str]
    checks: dict[str, Any]
    state: dict[str, Any] = field(repr=False)
    seed: int = 0
    revision: int = 0  # 0 as registered with its version; n after the n-th recalibration on newer labelled rows

    # ---- persistence
    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["format"] = 1
        return json.loads(json.dumps(d, default=_json_default))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Estimator":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k != "revision"}, revision=int(d.get("revision", 0)))

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), default=_json_default) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Estimator":
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EstimationError(f"{path}: not a readable estimator ({type(exc).__name__}: {exc}); "
                                  "re-register the version or estimate without it") from exc

    def summary(self) -> dict[str, Any]:
        """What a step JSON shows about the estimator (no model state)."""
        return {"method": self.method, "metric": self.metric, "usable": self.usable, "reason": self.reason,
                "calibration_rows": self.calibration_rows, "calibration_batches": self.calibration_batches,
                "checks": self.checks}

    # ---- estimation
    def calibrated(self, scores) -> np.ndarray:
        """The calibrated class probabilities (n, classes) the estimate rests on; their column means are the
        class shares the estimator expects (compare them with the realized shares once labels arrive)."""
        if self.method != "cbpe" or not self.usable:
            raise EstimationError(f"calibrated probabilities need a usable classification estimator (this one: {self.method}"
                                  f"{', ' + self.reason if self.reason else ''})")
        return _calibrate(_maps(self, "maps"), _as_matrix(np.asarray(scores, dtype=float), len(self.classes)))

    def estimate(self, scores, features: pd.DataFrame | None = None, *, batch: str | None = None) -> Estimate:
        """Estimate the metric of one batch from the model's scores (and, for regression, its features).

        ``scores`` is what :func:`retrainlib.automl.predict_scores` returns: the positive-class
        probability (binary), the class probabilities (multiclass) or the predictions (regression).
        """
        scores = np.asarray(scores, dtype=float)
        n = int(len(scores))
        if not self.usable:
            return unavailable(self.metric, self.reason, batch=batch, n_rows=n, method=self.method)
        if n < MIN_BATCH_ROWS:
            return unavailable(self.metric, f"batch has {n} rows, fewer than {MIN_BATCH_ROWS}", batch=batch,
                               n_rows=n, method=self.method)
        value, low, high, parts = _ESTIMATE[self.method](self, scores, features)
        value, low, high = clip_to_range(self.metric, value, low, high)  # the band inside the metric's range
        return Estimate(self.metric, _r(value), _r(low), _r(high), n, self.method, "", batch, parts=parts)


def _maps(est: Estimator, key: str):
    """The calibration maps as arrays, converted once per estimator."""
    cache = est.__dict__.setdefault("_arrays", {})
    if key not in cache:
        as_arrays = lambda ms: [{"x": np.asarray(m["x"]), "y": np.asarray(m["y"])} for m in ms]  # noqa: E731
        cache[key] = as_arrays(est.state["maps"]) if key == "maps" else [as_arrays(b) for b in est.state["bootstrap"]]
    return cache[key]


def _r(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 6)


def _json_default(o: Any) -> Any:
    if hasattr(o, "model_to_string"):  # a LightGBM booster (DLE's loss models): written as its text
        return o.model_to_string()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)

