"""Write the Gapminder panel shipped in ``plotly`` as five-yearly Parquet batches (a regression stream).

The data: life expectancy, GDP per capita (inflation-adjusted US$) and population of 142 countries
every five years from 1952 to 2007 (1,704 rows), the extract Jennifer Bryan made for the R package
``gapminder`` from Gapminder's data (gapminder.org, CC-BY 4.0). plotly 7.1.0 (MIT; already one of our
pins) ships it as ``plotly/package_data/datasets/gapminder.csv.gz``. The label is ``lifeExp``; the
features are ``gdpPercap``, ``pop``, ``continent`` and ``country``. The relation drifts: at the same
income, life expectancy rises decade by decade, so a model frozen on the 1950s-60s under-predicts.

Each row is dated 1 January of its year; one batch per survey year (12 batches, 142 rows each).

Usage (from the project home)::

    .venv/bin/python benchmarks/gapminder.py           # data/gapminder/batches/<year>-01-01.parquet
    .venv/bin/retrain backtest --profile params/gapminder.yaml
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pandas as pd

from stream_batches import main, write_periods

FOLDER = "data/gapminder/batches"


def load_gapminder() -> pd.DataFrame:
    """The plotly file as a frame: ``row``, ``date``, the four features and ``lifeExp``."""
    path = importlib.resources.files("plotly") / "package_data" / "datasets" / "gapminder.csv.gz"
    with importlib.resources.as_file(path) as p:
        raw = pd.read_csv(p)
    frame = raw[["country", "continent", "gdpPercap", "pop", "lifeExp"]].copy()
    frame.insert(0, "date", pd.to_datetime(raw["year"].astype(str) + "-01-01"))
    frame.insert(0, "row", range(len(frame)))
    return frame


def write_batches(folder: str | Path = FOLDER) -> list[Path]:
    return write_periods(load_gapminder(), folder, "Y")


if __name__ == "__main__":
    main(__doc__, FOLDER, write_batches)
