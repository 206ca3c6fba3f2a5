"""The built-in demo: a seeded loan book that drifts, written as weekly Parquet batches.

Each week brings new loan applications (numeric and categorical features) whose default label is
known. Two changes are planted at known weeks:

* **covariate shift** (``COVARIATE_SHIFT_WEEK``): a downturn — incomes fall, debt-to-income rises,
  applications move toward the south region and 60-month terms, credit scores slip;
* **concept change** (``CONCEPT_CHANGE_WEEK``): the link between features and default changes —
  debt-to-income becomes the main risk driver, the credit score counts for less, and the
  ``small_business`` purpose turns from risky to safe.

The same seed gives byte-identical batches.

``scenario="covariate-shift"`` (``retrain demo-data --scenario covariate-shift``) plants a *pure*
covariate shift the champion is hurt by, and nothing else (no downturn, no concept change): education
loans, 15% of applications until ``SEGMENT_SHIFT_WEEK``, grow to 85% over ``SEGMENT_SHIFT_SPAN`` weeks.
Their risk alternates with the applicant's age, year by year (high, low, high, ...), the same rule in
every week: a model fitted on a few weeks of the 15% has too few loans per year of age to learn it (it
scores the segment near its average, about even); one fitted on more education loans learns it. So a
champion fitted on few weeks loses ROC AUC as the segment grows, its label-free estimate sees that (the
rows move to where its scores are uncertain), and a model retrained on more labelled weeks recovers.

>>> frame = generate_week(3, seed=7, rows=5)
>>> list(frame.columns)[:4]
['loan_id', 'application_date', 'age', 'income']
>>> bool(frame.equals(generate_week(3, seed=7, rows=5)))
True
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "generate_week",
    "write_batches",
    "DEMO_BATCHES",
    "START_DATE",
    "COVARIATE_SHIFT_WEEK",
    "CONCEPT_CHANGE_WEEK",
    "WEEKS",
    "ROWS_PER_WEEK",
    "week_end",
    "SCENARIOS",
    "SEGMENT_SHIFT_WEEK",
    "SEGMENT_SHIFT_SPAN",
]

#: default folder of the demo batches, relative to the project home
DEMO_BATCHES = "data/demo/batches"
START_DATE = dt.date(2024, 1, 1)  # a Monday
WEEKS = 30
ROWS_PER_WEEK = 1500
COVARIATE_SHIFT_WEEK = 12
CONCEPT_CHANGE_WEEK = 18
#: ``default``: downturn (covariate shift) then concept change; ``covariate-shift``: a growing segment the champion scores badly
SCENARIOS = ("default", "covariate-shift")
DEFAULT_FOLDERS = {"default": "data/demo/batches", "covariate-shift": "data/demo-covariate-shift/batches"}
SEGMENT_SHIFT_WEEK = 12
SEGMENT_SHIFT_SPAN = 8
SEGMENT_SHARE = (0.15, 0.85)  # education loans' share of applications before and after the shift
SEGMENT_BAND_YEARS = 1  # width of the alternating age bands of their risk (1: odd and even ages)

REGIONS = np.array(["north", "south", "east", "west"])
PURPOSES = np.array(["car", "home_improvement", "debt_consolidation", "small_business", "education"])
TERMS = np.array(["36m", "60m"])
EMPLOYMENT = np.array(["salaried", "self_employed", "contract", "unemployed"])


def week_end(week: int) -> dt.date:
    """The Sunday that closes week ``week`` (1-based)."""
    return START_DATE + dt.timedelta(days=7 * week - 1)


def _ramp(week: int, start: int, span: int = 3) -> float:
    """0 before ``start``, rising to 1 over ``span`` weeks."""
    return float(np.clip((week - start + 1) / span, 0.0, 1.0))


def _segment_share(week: int) -> float:
    """Share of education loans in the ``covariate-shift`` scenario: 15%, then up to 85%."""
    low, high = SEGMENT_SHARE
    return low + (high - low) * _ramp(week, SEGMENT_SHIFT_WEEK, span=SEGMENT_SHIFT_SPAN)


def generate_week(week: int, *, seed: int = 42, rows: int = ROWS_PER_WEEK, scenario: str = "default") -> pd.DataFrame:
    """One week of applications with their default label (``scenario``: one of :data:`SCENARIOS`)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"demo scenario {scenario!r} is unknown; expected one of {', '.join(SCENARIOS)}")
    segment = scenario == "covariate-shift"
    rng = np.random.default_rng([seed, week])
    shift = 0.0 if segment else _ramp(week, COVARIATE_SHIFT_WEEK)
    concept = 0.0 if segment else _ramp(week, CONCEPT_CHANGE_WEEK, span=1)
    # the draws are made in this order: features, then labels, then times (the same seed gives the same week)
    f = _applications(rng, week, rows, shift=shift, segment=segment)
    logit = _education_logit(f, _logit(f, concept)) if segment else _logit(f, concept)
    f["default"] = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return _frame(f, week, _application_dates(rng, week, rows))


def _applications(rng: np.random.Generator, week: int, rows: int, *, shift: float, segment: bool) -> dict:
    """The features of one week's applications, drawn from ``rng`` (``shift``: how far the downturn has gone)."""
    age = rng.normal(41, 11, rows).clip(19, 80).round()
    income = np.exp(rng.normal(np.log(52_000) - 0.25 * shift, 0.45, rows)).round(-2)
    loan_amount = (income * rng.uniform(0.1, 0.6, rows)).round(-2)
    dti = np.clip(rng.beta(2, 5, rows) + 0.08 * shift + rng.normal(0, 0.02, rows), 0, 0.95).round(3)
    credit_score = rng.normal(680 - 25 * shift, 60, rows).clip(300, 850).round()
    employment_years = rng.exponential(6, rows).clip(0, 45).round(1)
    open_accounts = rng.poisson(4 + shift, rows)
    region_p = np.array([0.3, 0.2, 0.25, 0.25]) * (1 - shift) + np.array([0.2, 0.45, 0.2, 0.15]) * shift
    region = rng.choice(REGIONS, rows, p=region_p)
    purpose_p = np.array([0.25, 0.2, 0.3, 0.15, 0.1])
    if segment:  # education (the last purpose) takes the share of the week, the others keep their proportions
        share = _segment_share(week)
        purpose_p = np.append(purpose_p[:-1] / purpose_p[:-1].sum() * (1 - share), share)
    purpose = rng.choice(PURPOSES, rows, p=purpose_p)
    term = rng.choice(TERMS, rows, p=[0.7 - 0.25 * shift, 0.3 + 0.25 * shift])
    employment = rng.choice(EMPLOYMENT, rows, p=[0.6, 0.2, 0.15, 0.05])
    return {
        "age": age, "income": income, "loan_amount": loan_amount, "debt_to_income": dti, "credit_score": credit_score,
        "employment_years": employment_years, "open_accounts": open_accounts, "region": region, "purpose": purpose,
        "term": term, "employment": employment,
    }


def _logit(f: dict, concept: float) -> np.ndarray:
    """Log-odds of default: the risk before the concept change blended with the one after (``concept``: 0 to 1)."""
    z_credit = (f["credit_score"] - 680) / 60
    dti, term, purpose, employment = f["debt_to_income"], f["term"], f["purpose"], f["employment"]
    base = (
        -1.6
        - 1.1 * z_credit
        + 2.2 * (dti - 0.3)
        + 0.5 * (term == "60m")
        + 0.6 * (purpose == "small_business")
        + 0.9 * (employment == "unemployed")
        - 0.02 * (f["employment_years"] - 6)
        - 0.25 * np.log(f["income"] / 52_000)
    )
    after = (
        -1.6
        - 0.35 * z_credit
        + 7.0 * (dti - 0.33)
        - 0.4 * (term == "60m")
        - 0.7 * (purpose == "small_business")
        + 0.9 * (employment == "unemployed")
        + 0.6 * (f["region"] == "south")
        - 0.02 * (f["employment_years"] - 6)
    )
    return (1 - concept) * base + concept * after


def _education_logit(f: dict, logit: np.ndarray) -> np.ndarray:
    """The ``covariate-shift`` scenario: education loans' risk alternates with age bands (the same rule every week)."""
    band = np.floor((f["age"] - 18) / SEGMENT_BAND_YEARS) % 2
    return np.where(f["purpose"] == "education", np.where(band == 0, -3.0, 3.0), logit)


def _application_dates(rng: np.random.Generator, week: int, rows: int) -> pd.DatetimeIndex:
    """Sorted application times spread over the week's seven days."""
    monday = START_DATE + dt.timedelta(days=7 * (week - 1))
    seconds = np.sort(rng.integers(0, 7 * 86400, rows))
    return pd.Timestamp(monday) + pd.to_timedelta(seconds, unit="s")


def _frame(f: dict, week: int, dates: pd.DatetimeIndex) -> pd.DataFrame:
    """The week as a table: ids, dates, integer counts and categorical columns with every category declared."""
    rows = len(dates)
    return pd.DataFrame(
        {
            "loan_id": [f"L{week:03d}-{i:05d}" for i in range(rows)],
            "application_date": dates,
            "age": f["age"].astype(int),
            "income": f["income"],
            "loan_amount": f["loan_amount"],
            "debt_to_income": f["debt_to_income"],
            "credit_score": f["credit_score"].astype(int),
            "employment_years": f["employment_years"],
            "open_accounts": f["open_accounts"].astype(int),
            "region": pd.Categorical(f["region"], categories=REGIONS),
            "purpose": pd.Categorical(f["purpose"], categories=PURPOSES),
            "term": pd.Categorical(f["term"], categories=TERMS),
            "employment": pd.Categorical(f["employment"], categories=EMPLOYMENT),
            "default": f["default"],
        }
    )


def write_batches(
    folder: str | Path, *, weeks: int = WEEKS, seed: int = 42, rows: int = ROWS_PER_WEEK, first_week: int = 1,
    scenario: str = "default",
) -> list[Path]:
    """Write weeks ``first_week..weeks`` as ``<folder>/<week end date>.parquet``; return the paths.

    Also writes ``<folder>/../drift_points.json`` naming the weeks where drift was planted.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for week in range(first_week, weeks + 1):
        path = folder / f"{week_end(week).isoformat()}.parquet"
        generate_week(week, seed=seed, rows=rows, scenario=scenario).to_parquet(path, index=False)
        paths.append(path)
    if scenario == "covariate-shift":
        start = (week_end(SEGMENT_SHIFT_WEEK - 1) + dt.timedelta(days=1)).isoformat()
        points = {"scenario": scenario, "covariate_shift": {
            "week": SEGMENT_SHIFT_WEEK, "date": start, "full_week": SEGMENT_SHIFT_WEEK + SEGMENT_SHIFT_SPAN - 1,
            "what": "education loans grow from 15% to 85% of applications; their risk alternates with each year of age, "
                    "which the first champion saw too few of to learn"}, "seed": seed, "rows_per_week": rows}
        (folder.parent / "drift_points.json").write_text(json.dumps(points, indent=2) + "\n")
        return paths
    points = {
        "covariate_shift": {"week": COVARIATE_SHIFT_WEEK, "date": (week_end(COVARIATE_SHIFT_WEEK - 1) + dt.timedelta(days=1)).isoformat()},
        "concept_change": {"week": CONCEPT_CHANGE_WEEK, "date": (week_end(CONCEPT_CHANGE_WEEK - 1) + dt.timedelta(days=1)).isoformat()},
        "seed": seed,
        "rows_per_week": rows,
    }
    (folder.parent / "drift_points.json").write_text(json.dumps(points, indent=2) + "\n")
    return paths
