"""Plain JSON values from results: the one conversion every ``to_dict()`` and step file uses.

>>> import numpy as np
>>> plain({"a": np.float64("nan"), "b": (np.int64(2), np.bool_(True))})
{'a': None, 'b': [2, True]}
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["plain"]


def plain(value: Any) -> Any:
    """JSON-ready: NumPy scalars to Python, NaN/inf to None, tuples and arrays to lists,
    paths and times to strings, result objects through their ``to_dict()``."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (Path, dt.date, dt.datetime)):  # pandas Timestamps are datetimes
        return str(value)
    if hasattr(value, "to_dict") and not isinstance(value, type):
        return plain(value.to_dict())
    return value
