"""Write the Seattle daily weather shipped in ``vega_datasets`` as quarterly Parquet batches (a multiclass stream).

The data: 1,461 days at Seattle (2012-2015) from NOAA's Global Historical Climatology Network
(US government work, public domain), as the Vega project's ``seattle-weather.csv``; vega_datasets
0.9.0 (BSD-3-Clause) ships it as ``vega_datasets/_data/seattle-weather.csv`` (a "local" data set:
no download). The label is ``weather`` (drizzle, fog, rain, snow, sun); the features are
``precipitation``, ``temp_max``, ``temp_min``, ``wind`` and the day of the year. The labelling drifts
for real: until 2013Q1 wet days are mostly "rain", from 2013Q2 they are almost all "fog" (and
"drizzle" and "snow" nearly vanish) — a concept change written into the file, not added by us.

One batch per calendar quarter (16 batches, 90-92 rows each).

Usage (from the project home)::

    .venv/bin/python benchmarks/seattle_weather.py     # data/seattle-weather/batches/<quarter start>.parquet
    .venv/bin/retrain backtest --profile params/seattle-weather.yaml
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import pandas as pd

from stream_batches import main, write_periods

FOLDER = "data/seattle-weather/batches"
RELABEL = "2013-04-01"  # first quarter in which "fog" replaces "rain" as the label of wet days


def load_seattle_weather() -> pd.DataFrame:
    """The vega_datasets file as a frame: ``row``, ``date``, ``day_of_year``, the four measurements and ``weather``."""
    path = importlib.resources.files("vega_datasets") / "_data" / "seattle-weather.csv"
    with importlib.resources.as_file(path) as p:
        raw = pd.read_csv(p, parse_dates=["date"])
    frame = raw[["date", "precipitation", "temp_max", "temp_min", "wind", "weather"]].copy()
    frame.insert(1, "day_of_year", frame["date"].dt.dayofyear)
    frame.insert(0, "row", range(len(frame)))
    return frame


def write_batches(folder: str | Path = FOLDER) -> list[Path]:
    paths = write_periods(load_seattle_weather(), folder, "Q")
    points = {"relabelling_rain_as_fog": {"date": RELABEL, "source": "label counts per quarter of seattle-weather.csv"}}
    (Path(folder).parent / "drift_points.json").write_text(json.dumps(points, indent=2) + "\n")
    return paths


if __name__ == "__main__":
    main(__doc__, FOLDER, write_batches)
