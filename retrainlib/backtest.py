"""Backtest retraining strategies: a walk-forward replay of the playbook over history.

Before a team trusts a profile it can ask: on our own batches, which strategy would have kept the
model good, at what training cost? :func:`run_backtest` replays the time-ordered batches of a
profile's data source once per strategy, each in its own scratch project home and registry, with
the playbook's own step functions — nothing is re-implemented here:

* at batch *t* (``as_of`` = its newest row) :func:`steps.analyze_drift` scores the serving champion
  on batch *t* before anything else happens: the champion was trained on batches before its own
  validation batch, so batch *t* is new to it (prequential, "test then train");
* the strategy decides — through a trigger policy of the profile, or forced for ``static``,
  ``every-batch`` and ``refit`` (every trigger is still measured and recorded);
* :func:`steps.retrain_model`, :func:`steps.validate_challenger` and
  :func:`steps.promote_or_rollback` train, validate and promote or reject exactly as a run does
  (fresh-process stability reload, smoke test, retention included);
* ``refit`` is the plain reference a team would compute by hand: before every batch it retrains the
  same model on the newest training window *including* the newest labelled batch (no holdout kept
  back) and deploys it without any gate. :func:`check_acceptance` measures every other strategy
  against it and against ``static``.

Identical fits (same training rows and settings) are computed once and shared across strategies
(:class:`retrainlib.fitcache.FitCache`); each strategy's training CPU-seconds still count every fit
it used, so sharing changes no figure. Each step leaves its run folder (the step JSON) under
``<work_dir>/<strategy>/runs/`` as evidence.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import yaml

from . import automl, data, freshproc, steps
from .errors import ProfileError, RetrainError
from .fitcache import FitCache
from .outputs import Analysis, Promotion, Training, Validation
from .training import CHILD_PROCESS, Trainer
from .paths import Paths
from .profiles import load_profile
from .scorecache import ChampionScores

__all__ = [
    "Strategy",
    "STRATEGIES",
    "BacktestResult",
    "run_backtest",
    "merge_backtest",
    "parse_strategies",
    "load_drift_points",
    "summarize",
    "check_target",
    "check_acceptance",
    "recorded",
    "streams_table",
    "plot_backtest",
    "markdown_table",
]


@dataclass(frozen=True)
class Strategy:
    """When to retrain: a trigger policy of the profile, or always / never (:class:`~retrainlib.steps.RetrainPolicy`)."""

    name: str
    description: str
    policy: str | None = None  # a TriggerSettings policy; None keeps the profile's own
    retrain: str = "profile"  # 'profile': the triggers decide; 'always': every batch; 'never': never after the first champion
    performance_source: str | None = None  # triggers.performance_source; None keeps the profile's own
    gates: bool = True  # False: train on the newest window, holdout included, and deploy without validation

    def to_dict(self) -> dict[str, Any]:
        # "force" is the name written backtests (docs/backtest-*.json) carry for ``retrain``
        force = {"always": True, "never": False}.get(self.retrain)
        return {"name": self.name, "description": self.description, "policy": self.policy, "force": force,
                "performance_source": self.performance_source, "gates": self.gates}


#: the strategies a backtest can replay, in the order tables show them
STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("static", "train once (the first champion), never retrain", retrain="never"),
        Strategy("periodic", "retrain every retraining_interval days (schedule trigger)", policy="periodic"),
        Strategy("drift", "retrain when the drift score exceeds drift_threshold", policy="drift-triggered"),
        Strategy("performance", "retrain when the champion's metric falls below performance_threshold "
                 "or declines (Page-Hinkley)", policy="adaptive"),
        Strategy("performance-estimated", "like performance, but the triggers also read the label-free estimate of the "
                 "newest batch (performance_source: both) — for labels that arrive late", policy="adaptive",
                 performance_source="both"),
        Strategy("hybrid", "the profile's own trigger policy"),
        Strategy("every-batch", "retrain on every new batch (the costly reference)", retrain="always"),
        Strategy("refit", "retrain before every batch on the newest window, the newest batch included, and "
                 "deploy without gates (the plain reference)", retrain="always", gates=False),
    )
}
REFERENCE = "every-batch"
#: the plain reference the acceptance check measures against
PLAIN = "refit"
#: strategies that decide from the data (the target applies to them)
TRIGGERED = ("drift", "performance", "performance-estimated", "hybrid")


def parse_strategies(text: str | Sequence[str] | None) -> list[Strategy]:
    """``"static,drift"`` → strategies; an unknown name lists the known ones.

    >>> [s.name for s in parse_strategies("drift, static")]
    ['drift', 'static']
    """
    if text is None or text == "" or text == "all":
        return list(STRATEGIES.values())
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    out = []
    for n in names:
        if n not in STRATEGIES:
            raise ProfileError(f"unknown backtest strategy {n!r}; expected one of " + ", ".join(repr(k) for k in STRATEGIES))
        if STRATEGIES[n] not in out:
            out.append(STRATEGIES[n])
    return out


def load_drift_points(folder: str | Path) -> list[tuple[str, pd.Timestamp]]:
    """Known drift points of a data source, from ``drift_points.json`` beside or inside its folder.

    The file maps a name to ``{"date": "YYYY-MM-DD", ...}`` (the demo writes one); other keys are
    ignored. No file: no known drift points.
    """
    folder = Path(folder)
    for candidate in (folder / "drift_points.json", folder.parent / "drift_points.json"):
        if candidate.is_file():
            raw = json.loads(candidate.read_text())
            points = [(k, pd.Timestamp(v["date"])) for k, v in raw.items() if isinstance(v, dict) and "date" in v]
            return sorted(points, key=lambda p: p[1])
    return []


@dataclass
class BacktestResult:
    """Per-batch records of every strategy, the summary table, and what the shared fits saved."""

    profile: str
    metric: str
    greater_is_better: bool
    strategies: list[Strategy]
    records: pd.DataFrame  # one row per strategy and replayed batch
    summary: pd.DataFrame  # one row per strategy
    drift_points: list[tuple[str, pd.Timestamp]]
    fit_cache: dict[str, Any]
    seconds: float
    work_dir: Path
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "metric": self.metric,
            "greater_is_better": self.greater_is_better,
            "strategies": [s.to_dict() for s in self.strategies],
            "summary": _records(self.summary),
            "records": _records(self.records),
            "drift_points": [{"name": n, "date": t.isoformat()} for n, t in self.drift_points],
            "fit_cache": self.fit_cache,
            "seconds": round(self.seconds, 1),
            "work_dir": str(self.work_dir),
            "settings": self.settings,
            "target": _records(check_target(self.summary)) if REFERENCE in set(self.summary.index) else [],
            "acceptance": _records(self.acceptance()),
        }

    def acceptance(self) -> pd.DataFrame:
        """:func:`check_acceptance` of this replay, with the profile's stuck limit."""
        return check_acceptance(self.summary, self.records, greater_is_better=self.greater_is_better,
                                stuck_after=self.settings.get("stuck_after", 3))

    def write(self, folder: str | Path | None = None) -> dict[str, Path]:
        """``backtest.json``, ``backtest-per-batch.csv``, ``backtest-summary.csv`` and ``backtest.png``."""
        import matplotlib.pyplot as plt

        folder = Path(folder or self.work_dir)
        folder.mkdir(parents=True, exist_ok=True)
        out = {
            "json": folder / "backtest.json",
            "per_batch": folder / "backtest-per-batch.csv",
            "summary": folder / "backtest-summary.csv",
            "plot": folder / "backtest.png",
        }
        out["json"].write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        self.records.drop(columns=["reasons"]).to_csv(out["per_batch"], index=False)
        self.summary.to_csv(out["summary"])
        fig = plot_backtest(self)
        fig.savefig(out["plot"], dpi=110, bbox_inches="tight")
        plt.close(fig)
        return out


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    frame = frame.reset_index() if frame.index.name else frame
    rows = json.loads(frame.to_json(orient="records", date_format="iso", double_precision=15))
    return rows


def _scratch_profile(profile_path: Path, home: Path, batches: Path, strategy: Strategy, *, period_days: float | None,
                     label_delay: int | None = None) -> Path:
    """Write the strategy's copy of the profile into its scratch home; returns its path."""
    raw = yaml.safe_load(profile_path.read_text())
    raw["data"] = {**raw["data"], "batches": str(batches)}
    raw["registry"] = "models"
    raw.pop("notify", None)  # a replay never sends webhooks
    triggers = dict(raw.get("triggers") or {})
    if strategy.policy is not None:
        triggers["policy"] = strategy.policy
    if strategy.performance_source is not None:
        triggers["performance_source"] = strategy.performance_source
    raw["triggers"] = triggers
    if label_delay is not None:
        raw["data"]["label_delay_batches"] = label_delay
    if strategy.name == "periodic" and period_days is not None:
        raw["retraining_interval"] = period_days
    (home / "params").mkdir(parents=True, exist_ok=True)
    path = home / "params" / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    load_profile(path)  # fail here, naming the file, if the variant is invalid
    return path


def _default_work_dir(paths: Paths, name: str) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return paths.runs / f"{stamp}-{name}-backtest"


def run_backtest(
    profile: str | Path,
    *,
    home: str | Path | None = None,
    strategies: str | Sequence[str] | None = None,
    work_dir: str | Path | None = None,
    warmup: int | None = None,
    max_batches: int | None = None,
    period_days: float | None = None,
    period_batches: int | None = None,
    fit_cache: bool | FitCache = True,
    progress: bool = True,
    partial: bool = False,
    label_delay: int | None = None,
    cold: bool = False,
) -> BacktestResult:
    """Replay the profile's batches once per strategy with the playbook's steps.

    Parameters
    ----------
    profile : path
        The profile whose data source, thresholds and model settings are replayed.
    strategies : "static,periodic,drift,performance,hybrid,every-batch,refit" (default: all)
    work_dir : path
        Scratch homes (one per strategy, each with its registry and step run folders) and the shared
        fits; default ``runs/<UTC timestamp>-<profile>-backtest/``.
    warmup : int
        Batches visible at the first step, where each strategy bootstraps its first champion
        (default ``holdout_batches + window_batches``, the first full training window).
    max_batches : int
        Replay only the oldest ``max_batches`` batches (default all).
    period_days : float
        The ``periodic`` strategy's interval (default the profile's ``retraining_interval``).
    period_batches : int
        Instead, ``periodic`` retrains every ``period_batches`` batches (forced; the schedule
        trigger is still recorded). For batches a year long, where a day interval cannot be longer.
    fit_cache : bool or FitCache
        Share identical fits across strategies (default True); ``False`` computes every fit.
    partial : bool
        Also keep each strategy's records in its folder of ``work_dir`` for :func:`merge_backtest`
        (one worker's share of a backtest spread over workers, e.g. the Airflow backtest DAG).
    label_delay : int
        Every strategy sees labels this many batches late (``data.label_delay_batches``; default the
        profile's). The table still scores each batch's serving champion on that batch's labels.
    cold : bool
        Fresh-process checks in a new interpreter each, without the check cache (the behaviour
        before the warm pool). Default: children of the warm fork server, and a check of
        byte-identical model files on identical rows answered from ``<work_dir>/check-cache``
        (:mod:`retrainlib.freshproc`).

    Returns
    -------
    BacktestResult
        ``records`` (one row per strategy and batch) and ``summary`` (one row per strategy).
    """
    from tqdm import tqdm

    t_start, t_wall = time.monotonic(), time.time()
    paths = Paths.discover(home)
    profile_path = paths.resolve(profile)  # relative to the project home first, then to the working folder
    if not profile_path.exists() and Path(profile).exists():
        profile_path = Path(profile).resolve()
    prof = load_profile(profile_path)
    automl.pin_threads(prof.training.num_cpus)
    chosen = parse_strategies(strategies)
    batches_folder = paths.resolve(prof.data.batches).resolve()
    batches = data.list_batches(prof.data, paths)
    if max_batches is not None:
        batches = batches[:max_batches]
    warmup = warmup or prof.training.holdout_batches + prof.training.window_batches
    if warmup < prof.training.holdout_batches + 1 or warmup >= len(batches):
        raise RetrainError(
            f"warmup={warmup} batches but {len(batches)} batch(es) to replay: the first step needs at least "
            f"holdout_batches+1={prof.training.holdout_batches + 1} and at least one batch must follow it; "
            "add data, raise max_batches or lower warmup"
        )
    work = Path(work_dir) if work_dir else _default_work_dir(paths, prof.name)
    work.mkdir(parents=True, exist_ok=True)
    cache = fit_cache if isinstance(fit_cache, FitCache) else (FitCache(work / "fit-cache") if fit_cache else None)
    steps_to_run = batches[warmup - 1 :]
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(chosen) * len(steps_to_run), desc="backtest", unit="step", disable=not progress, mininterval=5.0)
    restore_checks = freshproc.use(cold=cold, cache_dir=None if cold else work / "check-cache")
    try:
        for strategy in chosen:
            home_s = work / strategy.name
            prof_path = _scratch_profile(profile_path, home_s, batches_folder, strategy, period_days=period_days,
                                         label_delay=label_delay)
            last_trained: int | None = None
            for i, batch in enumerate(steps_to_run):
                bar.set_postfix_str(f"{strategy.name} {batch.name}", refresh=False)
                policy = _policy(strategy)
                if strategy.name == "periodic" and period_batches:
                    due = last_trained is None or i - last_trained >= period_batches
                    policy = steps.RetrainPolicy("always" if due else "never",
                                                 f"backtest strategy 'periodic': retrain every {period_batches} batch(es)")
                row = _replay_step(strategy, prof_path, home_s, batch, warmup - 1 + i, cache or CHILD_PROCESS, policy=policy)
                if row["trained"]:
                    last_trained = i
                rows.append(row)
                bar.update(1)
    finally:
        restore_checks()
        bar.close()
    settings = {"profile_path": str(profile_path), "batches": str(batches_folder), "n_batches": len(batches),
                "warmup": warmup, "period_days": period_days, "period_batches": period_batches, "label_delay": label_delay,
                "fit_cache": cache is not None, "fresh_checks": "cold" if cold else "warm, cached",
                "policy": prof.triggers.policy, "stuck_after": prof.validation.stuck_after}
    stats = cache.stats() if cache is not None else {"enabled": False}
    if partial:  # one worker's share: its records, to be merged by merge_backtest
        for strategy in chosen:
            _write_part(work, strategy, [r for r in rows if r["strategy"] == strategy.name], settings=settings,
                        fit_cache=stats, started=t_wall)
    return _result(prof, chosen, pd.DataFrame(rows), batches_folder, pd.Timestamp(batches[-1].end), fit_cache=stats,
                   seconds=time.monotonic() - t_start, work=work, settings=settings)


def _result(prof, chosen: list[Strategy], records: pd.DataFrame, batches_folder: Path, last_end: pd.Timestamp, *,
            fit_cache: dict[str, Any], seconds: float, work: Path, settings: dict[str, Any]) -> BacktestResult:
    info = automl.metric_info(prof.training.eval_metric, prof.training.problem_type or "binary")
    points = [(n, t) for n, t in load_drift_points(batches_folder) if t <= last_end]
    summary = summarize(records, greater_is_better=info.greater_is_better, drift_points=points)
    return BacktestResult(
        profile=prof.name,
        metric=prof.training.eval_metric,
        greater_is_better=info.greater_is_better,
        strategies=chosen,
        records=records,
        summary=summary,
        drift_points=points,
        fit_cache=fit_cache,
        seconds=seconds,
        work_dir=work,
        settings=settings,
    )


_PART = "backtest-part.json"
_PART_RECORDS = "backtest-part.pkl"


def _write_part(work: Path, strategy: Strategy, rows: list[dict[str, Any]], *, settings: dict[str, Any],
                fit_cache: dict[str, Any], started: float) -> None:
    folder = work / strategy.name
    pd.DataFrame(rows).to_pickle(folder / _PART_RECORDS)  # exact dtypes and floats for the merge
    meta = {"strategy": strategy.name, "settings": settings, "fit_cache": fit_cache, "started": started,
            "finished": time.time(), "last_batch_end": str(rows[-1]["batch_end"]) if rows else None}
    (folder / _PART).write_text(json.dumps(meta, indent=2, default=str) + "\n")


def merge_backtest(work_dir: str | Path) -> BacktestResult:
    """Merge the strategies that ``run_backtest(..., partial=True)`` workers wrote into ``work_dir``.

    The result is the one a single ``run_backtest`` of those strategies gives: same records and
    table; ``fit_cache`` adds up the workers' counts and ``seconds`` is the wall time from the
    first worker's start to the last one's end.
    """
    work = Path(work_dir)
    parts = {p.parent.name: json.loads(p.read_text()) for p in work.glob(f"*/{_PART}")}
    if not parts:
        raise RetrainError(f"no backtest parts in {work}: run `retrain backtest --work-dir {work} --no-summary` per strategy first")
    chosen = [STRATEGIES[n] for n in STRATEGIES if n in parts]
    settings = {json.dumps(p["settings"], sort_keys=True) for p in parts.values()}
    if len(settings) != 1:
        raise RetrainError(f"the backtest parts in {work} were run with different settings; rerun them with the same ones")
    first = next(iter(parts.values()))
    prof = load_profile(Path(first["settings"]["profile_path"]))
    records = pd.concat([pd.read_pickle(work / s.name / _PART_RECORDS) for s in chosen], ignore_index=True)
    stats: dict[str, Any] = {}
    for p in parts.values():
        for k, v in p["fit_cache"].items():
            stats[k] = stats.get(k, 0) + v if not isinstance(v, bool) else v
    stats = {k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()}
    seconds = max(p["finished"] for p in parts.values()) - min(p["started"] for p in parts.values())
    return _result(prof, chosen, records, Path(first["settings"]["batches"]), pd.Timestamp(records["batch_end"].max()),
                   fit_cache=stats, seconds=seconds, work=work, settings=first["settings"])


def _policy(strategy: Strategy) -> steps.RetrainPolicy:
    """The strategy's retrain policy, with the reason its forced decisions record."""
    reason = {"always": f"backtest strategy '{strategy.name}': retrain on every batch",
              "never": f"backtest strategy '{strategy.name}': never retrain after the first champion"}.get(strategy.retrain, "")
    return steps.RetrainPolicy(strategy.retrain, reason)


def _replay_step(strategy: Strategy, prof_path: Path, home: Path, batch: data.Batch, index: int, trainer: Trainer,
                 *, policy: steps.RetrainPolicy) -> dict[str, Any]:
    """One playbook run at the end of ``batch``: the four steps, as the notebooks call them."""
    run_dir = home / "runs" / f"{index + 1:04d}-{Path(batch.name).stem}"
    ctx = steps.open_step(str(prof_path), run_dir=str(run_dir), home=str(home), as_of=batch.end)
    serving = ctx.registry.champion()
    seconds: dict[str, float] = {}

    t0 = time.monotonic()
    analysis = steps.analyze_drift(ctx, policy=policy)
    seconds["analyze"] = time.monotonic() - t0
    newest = analysis.detail.windows.visible[-1]  # the step's live windows (the JSON counts the visible batches)
    if Path(newest.path).name != batch.name:
        raise RetrainError(f"the replay at {batch.name} saw {newest.path} as its newest batch; batch end times must be distinct")
    scored = analysis.scored(newest.path, serving)
    if not scored and serving is not None and ctx.profile.data.label_delay_batches:
        scored = [{"value": _truth(ctx, serving, newest)}]  # its labels come later in the run; the backtest knows them
    decision = analysis.decision
    if not strategy.gates:
        _train_on_newest_window(ctx)

    t0 = time.monotonic()
    trained = steps.retrain_model(ctx, trainer=trainer)
    seconds["retrain"] = time.monotonic() - t0
    t0 = time.monotonic()
    verdict = steps.validate_challenger(ctx) if strategy.gates else _skip_validation(ctx, strategy)
    seconds["validate"] = time.monotonic() - t0
    t0 = time.monotonic()
    promoted = (steps.promote_or_rollback(ctx, trainer=trainer) if strategy.gates
                else _deploy_without_gates(ctx, trained, strategy))
    seconds["promote"] = time.monotonic() - t0

    did_train = trained.trained
    return {
        "strategy": strategy.name,
        "step": index + 1,
        "batch": batch.name,
        "batch_start": pd.Timestamp(batch.start),
        "batch_end": pd.Timestamp(batch.end),
        "rows": batch.rows,
        "champion": serving,
        "value": scored[-1]["value"] if scored else math.nan,
        "decision": decision.status,
        "fired": ",".join(t.name for t in decision.triggers if t.fired),
        "reasons": " | ".join(decision.reasons),
        "bootstrap": decision.status == "bootstrap",
        "trained": did_train,
        "challenger": trained.challenger,
        "fit_cache": trained.fit_cache,
        "cpu_seconds": trained.cpu_seconds if did_train else 0.0,
        "fit_seconds": trained.fit_seconds if did_train else 0.0,
        "verdict": verdict.decision,
        "action": promoted.action,
        "promoted": promoted.promoted,
        "stuck": bool(promoted.stuck),
        "champion_after": promoted.champion_after,
        "analyze_seconds": seconds["analyze"],
        "retrain_seconds": seconds["retrain"],
        "validate_seconds": seconds["validate"],
        "promote_seconds": seconds["promote"],
        "run_dir": str(run_dir),
    }


def _truth(ctx, version: str, batch: data.Batch) -> float:
    """The serving champion's metric on ``batch`` from its labels, which the replayed run does not see yet."""
    src, metric = ctx.profile.data, ctx.profile.training.eval_metric
    frame = data.load_batches([batch], ctx.paths, src)
    frame = frame[frame[src.label].notna()]
    predictor = ChampionScores(ctx.registry, version)  # loaded when a score is not cached
    features = ctx.registry.version(version).metadata["features"]
    classes = predictor.class_labels if predictor.problem_type != "regression" else None
    return automl.score(metric, predictor.problem_type, frame[src.label], predictor.scores(frame[features]), classes)


def _train_on_newest_window(ctx: steps.StepContext) -> None:
    """``refit``: move the training window forward over the holdout, so the fit sees the newest labelled batch.

    Rewrites step 10's ``windows.train`` in the run folder (step 20 reads it from there) to the newest
    batches of training window + holdout — as many as the playbook's window holds (``sliding_window``),
    or all of them — and says so in the file (``backtest_refit``).
    """
    analysis = ctx.read(Analysis)
    planned, holdout = analysis.window("train"), analysis.window("holdout")
    both = planned + [b for b in holdout if b not in planned]
    keep = len(planned) if analysis.strategy == "sliding_window" else len(both)
    ctx.write(analysis.with_train_window(both[-keep:], f"backtest strategy 'refit': trains on the newest {keep} batch(es), "
                                                      f"the holdout included (planned: {[b['path'] for b in planned]})"))


def _skip_validation(ctx: steps.StepContext, strategy: Strategy) -> Validation:
    out = Validation.skip(f"backtest strategy '{strategy.name}' deploys without gates")
    ctx.write(out)
    return out


def _deploy_without_gates(ctx: steps.StepContext, trained: Training, strategy: Strategy) -> Promotion:
    """``refit``: the new fit serves from the next batch on; retention as in a run."""
    reg, prof = ctx.registry, ctx.profile
    before = reg.champion()
    events = []
    if trained.trained:
        events = [reg.promote(trained.challenger, run_id=ctx.run_id,
                              reason=f"backtest strategy '{strategy.name}': deployed without gates").to_dict()]
    removed = reg.apply_retention(max_versions=prof.max_versions, retention_days=prof.backup_retention_days)
    out = Promotion("promoted" if events else "none", before, reg.champion(), events, retention_removed=list(removed),
                    versions=[v.name for v in reg.versions()], registry_bytes=reg.total_size_bytes())
    ctx.write(out)
    return out


def summarize(records: pd.DataFrame, *, greater_is_better: bool = True, drift_points: Sequence[tuple[str, Any]] = ()) -> pd.DataFrame:
    """One row per strategy: mean and worst batch metric, retrains, promotions, CPU-seconds, ratios.

    ``retrains`` and ``promotions`` leave out the first champion (every strategy bootstraps once);
    ``cpu_seconds`` counts every fit including it. ``mean_after_drift`` averages the batches that
    start on or after the first known drift point. Ratios divide by ``every-batch``'s figure.
    With ``static`` and ``refit`` replayed, ``gap_closed`` is the share of the gap between their mean
    metrics a strategy closes ((mean − static) / (refit − static)) and ``refit_ratio`` its mean as a
    share of refit's (refit's / its own when lower is better), both on the batches all three scored.
    """
    order = [s for s in STRATEGIES if s in set(records["strategy"])]
    first_drift = min((pd.Timestamp(t) for _, t in drift_points), default=None)
    out = []
    for name in order:
        r = records[records["strategy"] == name]
        v = r["value"].dropna()
        row = {
            "strategy": name,
            "batches": int(v.size),
            "mean": float(v.mean()) if v.size else math.nan,
            "worst": float((v.min() if greater_is_better else v.max())) if v.size else math.nan,
        }
        if first_drift is not None:
            after = r.loc[r["batch_start"] >= first_drift, "value"].dropna()
            row["mean_after_drift"] = float(after.mean()) if after.size else math.nan
        row.update(
            retrains=int((r["trained"] & ~r["bootstrap"]).sum()),
            promotions=int((r["promoted"] & ~r["bootstrap"]).sum()),
            rejected=int((r["action"] == "rejected").sum()),
            cpu_seconds=float(r["cpu_seconds"].sum()),
            fits_reused=int((r["fit_cache"] == "reused").sum()),
            step_seconds=float(r[["analyze_seconds", "retrain_seconds", "validate_seconds", "promote_seconds"]].sum().sum()),
        )
        out.append(row)
    summary = pd.DataFrame(out).set_index("strategy")
    if REFERENCE in summary.index:
        ref = summary.loc[REFERENCE]
        for col in ("mean", "worst", "mean_after_drift", "retrains", "promotions", "cpu_seconds"):
            if col in summary:
                summary[f"{col}_ratio"] = summary[col] / ref[col] if ref[col] else math.nan
    if PLAIN in summary.index and "static" in summary.index:
        summary = summary.join(_against_refit(records, summary.index, greater_is_better))
    return summary


def _against_refit(records: pd.DataFrame, names: Sequence[str], greater_is_better: bool) -> pd.DataFrame:
    """Per strategy, on the batches that it, ``static`` and ``refit`` all scored (a strategy without a
    champion scores none): ``gap`` (refit's mean lead over static), ``gap_closed`` ((mean − static) /
    (refit − static)), ``refit_ratio`` (mean / refit's, inverted when lower is better) and ``vs_refit``
    (mean − refit's, positive when better)."""
    values = records.pivot_table(index="batch_start", columns="strategy", values="value", aggfunc="first", dropna=False)
    sign = 1 if greater_is_better else -1
    out = {}
    for name in names:
        both = values[[c for c in dict.fromkeys([name, "static", PLAIN])]].dropna()
        if both.empty:
            out[name] = {"gap": math.nan, "gap_closed": math.nan, "refit_ratio": math.nan, "vs_refit": math.nan}
            continue
        mean, static, plain = both[name].mean(), both["static"].mean(), both[PLAIN].mean()
        gap = plain - static
        out[name] = {"gap": sign * gap, "gap_closed": (mean - static) / gap if gap else math.nan,
                     "refit_ratio": mean / plain if greater_is_better else plain / mean, "vs_refit": sign * (mean - plain)}
    return pd.DataFrame.from_dict(out, orient="index")


def longest_unflagged_rejections(records: pd.DataFrame) -> int:
    """The most challengers rejected in a row (batches without a challenger do not break a run) with no
    stuck event among them; a promotion ends a run."""
    longest = run = 0
    flagged = False
    for rec in records[records["trained"]].to_dict("records"):
        if rec["action"] == "rejected":
            run += 1
            flagged = flagged or bool(rec.get("stuck"))
            if not flagged:
                longest = max(longest, run)
        else:
            run, flagged = 0, False
    return longest


def check_acceptance(summary: pd.DataFrame, records: pd.DataFrame, *, greater_is_better: bool = True,
                     policy: str = "hybrid", stuck_after: int = 3,
                     min_gap: float = 0.01, min_gap_closed: float = 0.8, min_refit_ratio: float = 0.97,
                     max_retrain_ratio: float = 1 / 3, tolerance: float = 0.005) -> pd.DataFrame:
    """Issue 11's acceptance on one stream, one row per check (``check``, ``value``, ``limit``, ``ok``):

    * the profile's own policy (``hybrid`` replays it) and ``performance`` each close ≥ ``min_gap_closed``
      of the gap between ``static`` and ``refit`` (only where that gap is ≥ ``min_gap``) and reach
      ≥ ``min_refit_ratio`` of refit's mean;
    * at least one triggered strategy does both with ≤ ``max_retrain_ratio`` of every-batch's retrains;
    * gated ``every-batch`` is within ``tolerance`` of refit's mean or better (``value``: its lead);
    * no strategy rejects more than ``stuck_after`` challengers in a row without a stuck event.

    A check whose strategies were not replayed is left out, and a first row names them.
    """
    rows: list[dict[str, Any]] = []
    have = set(summary.index)
    missing = [n for n in ("static", "performance", policy, REFERENCE, PLAIN) if n not in have]
    if missing:
        rows.append({"check": "strategies the checks need were replayed", "value": "missing: " + ", ".join(missing),
                     "limit": "all", "ok": False})
    streaks = {name: longest_unflagged_rejections(r) for name, r in records.groupby("strategy", sort=False)}
    worst = max(streaks, key=streaks.get)
    stuck = {"check": "most challengers rejected in a row without a stuck event",
             "value": f"{streaks[worst]} ({worst})", "limit": f"<= {stuck_after}", "ok": streaks[worst] <= stuck_after}
    columns = ["check", "value", "limit", "ok"]
    if not {"static", PLAIN} <= have:
        return pd.DataFrame([*rows, stuck], columns=columns)
    def reaches(name: str) -> tuple[bool, bool]:
        s = summary.loc[name]
        closes = abs(s["gap"]) < min_gap or bool(s["gap_closed"] >= min_gap_closed)
        return closes, bool(s["refit_ratio"] >= min_refit_ratio)

    for name in [n for n in (policy, "performance") if n in have]:
        closes, near = reaches(name)
        label = f"{name} (the profile's policy)" if name == policy else name
        gap = summary.loc[name, "gap"]
        rows.append({"check": f"{label} closes the static→refit gap",
                     "value": summary.loc[name, "gap_closed"] if abs(gap) >= min_gap else
                     f"gap {gap:.3f} < {min_gap:g}: n/a" if abs(gap) < min_gap else "no batch scored by it, static and refit",
                     "limit": f">= {min_gap_closed:g}", "ok": closes})
        rows.append({"check": f"{label} reaches refit's mean", "value": summary.loc[name, "refit_ratio"],
                     "limit": f">= {min_refit_ratio:g}", "ok": near})
    if REFERENCE in have:
        cheap = []
        for name in [n for n in ("periodic", *TRIGGERED) if n in have]:
            ratio = summary.loc[name, "retrains_ratio"]
            if all(reaches(name)) and ratio <= max_retrain_ratio:
                cheap.append(f"{name} ({ratio:.2f})")
        rows.append({"check": "a triggered strategy does both with few retrains (retrains / every-batch's)",
                     "value": ", ".join(cheap) or "none", "limit": f"<= {max_retrain_ratio:.2f}", "ok": bool(cheap)})
        diff = summary.loc[REFERENCE, "vs_refit"]
        rows.append({"check": "every-batch (gated) vs refit's mean", "value": diff, "limit": f">= -{tolerance:g}",
                     "ok": bool(diff >= -tolerance)})
    return pd.DataFrame([*rows, stuck], columns=columns)


def check_target(summary: pd.DataFrame, *, min_ratio: float = 0.95, max_retrain_ratio: float = 1 / 3) -> pd.DataFrame:
    """Does a triggered strategy reach ``min_ratio`` of every-batch's mean metric with at most
    ``max_retrain_ratio`` of its retrains, and beat static after the drift points?"""
    rows = []
    static_after = summary.loc["static", "mean_after_drift"] if "static" in summary.index and "mean_after_drift" in summary else None
    for name in [s for s in TRIGGERED if s in summary.index]:
        s = summary.loc[name]
        row = {
            "strategy": name,
            "mean_ratio": s.get("mean_ratio"),
            "mean_ratio_ok": bool(s.get("mean_ratio", 0) >= min_ratio),
            "retrains_ratio": s.get("retrains_ratio"),
            "retrains_ratio_ok": bool(s.get("retrains_ratio", 1) <= max_retrain_ratio),
        }
        if static_after is not None:
            row["beats_static_after_drift"] = bool(s["mean_after_drift"] > static_after)
        row["meets_target"] = all(v for k, v in row.items() if k.endswith("_ok") or k.startswith("beats"))
        rows.append(row)
    return pd.DataFrame(rows).set_index("strategy") if rows else pd.DataFrame()


def recorded(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Summary and acceptance of a written ``backtest.json``, recomputed from its per-batch records
    (not read from its stored tables), with the stuck limit and metric direction it recorded."""
    raw = json.loads(Path(path).read_text())
    records = pd.DataFrame(raw["records"])
    for col in ("batch_start", "batch_end"):
        records[col] = pd.to_datetime(records[col])
    points = [(p["name"], pd.Timestamp(p["date"])) for p in raw.get("drift_points", [])]
    summary = summarize(records, greater_is_better=raw["greater_is_better"], drift_points=points)
    acceptance = check_acceptance(summary, records, greater_is_better=raw["greater_is_better"],
                                  stuck_after=raw.get("settings", {}).get("stuck_after", 3))
    return summary, acceptance


def streams_table(paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per written backtest: each strategy's mean metric, every-batch's and the triggered strategies'
    retrains, and which acceptance checks it misses — all recomputed from the per-batch records."""
    rows = []
    for path in paths:
        raw = json.loads(Path(path).read_text())
        summary, acceptance = recorded(path)
        row: dict[str, Any] = {"stream": raw["profile"], "metric": raw["metric"], "batches": int(summary["batches"].max())}
        for name in summary.index:
            row[f"{name} mean"] = summary.loc[name, "mean"]
        for name in [n for n in (*TRIGGERED, REFERENCE) if n in summary.index]:
            row[f"{name} retrains"] = int(summary.loc[name, "retrains"])
        misses = acceptance.loc[~acceptance["ok"].astype(bool), "check"].map(_short).tolist() if len(acceptance) else []
        row["checks met"] = f"{len(acceptance) - len(misses)} of {len(acceptance)}"
        row["misses"] = "; ".join(misses) or "none"
        rows.append(row)
    return pd.DataFrame(rows).set_index("stream")


def _short(check: str) -> str:
    """A check's name in a few words, for one-line tables."""
    for words, short in (("closes the static", "gap"), ("reaches refit", "97% of refit"), ("few retrains", "cheap trigger"),
                         ("every-batch (gated)", "every-batch ≈ refit"), ("without a stuck event", "silent rejections"),
                         ("were replayed", "strategies missing")):
        if words in check:
            return f"{check.split(' ')[0]} {short}" if short in ("gap", "97% of refit") else short
    return check


def markdown_table(summary: pd.DataFrame, *, digits: int = 3) -> str:
    """The summary as a Markdown table (for README and reports).

    >>> print(markdown_table(pd.DataFrame({"mean": [0.81234]}, index=pd.Index(["static"], name="strategy"))))
    | strategy | mean |
    |---|---|
    | static | 0.812 |
    """
    frame = summary.reset_index()
    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return "–" if math.isnan(v) else f"{v:.1f}" if abs(v) >= 100 else f"{v:.{digits}f}"
        return str(v)
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


_COLORS = {"static": "#7f7f7f", "periodic": "#1f77b4", "drift": "#ff7f0e", "performance": "#2ca02c",
           "performance-estimated": "#17becf",
           "hybrid": "#9467bd", "every-batch": "#d62728", "refit": "#000000"}


def plot_backtest(result: BacktestResult):
    """Top: the metric per batch over time, one line per strategy, dashed lines at the known drift points.
    Bottom: one row per strategy, ○ a challenger trained at that batch, ▲ promoted (it serves from the next)."""
    import matplotlib.pyplot as plt

    names = [s.name for s in result.strategies]
    fig, (ax, ev) = plt.subplots(2, 1, figsize=(11, 4.5 + 0.35 * len(names)), sharex=True,
                                 gridspec_kw={"height_ratios": [3, 0.25 + 0.3 * len(names)]})
    rec = result.records
    styles = ["-", "--", "-.", ":"]
    for k, name in enumerate(names):
        r = rec[rec["strategy"] == name]
        color = _COLORS.get(name)
        ax.plot(r["batch_end"], r["value"], marker=".", color=color, label=name, lw=1.6, ls=styles[k % len(styles)], alpha=0.9)
        row = len(names) - 1 - k
        retr = r[r["trained"] & ~r["bootstrap"]]
        prom = r[r["promoted"] & ~r["bootstrap"]]
        ev.scatter(retr["batch_end"], [row] * len(retr), facecolors="none", edgecolors=color, s=45)
        ev.scatter(prom["batch_end"], [row] * len(prom), marker="^", color=color, s=30)
    for a in (ax, ev):
        for _, t in result.drift_points:
            a.axvline(t, color="black", ls="--", lw=1)
    for name, t in result.drift_points:
        ax.annotate(" " + name.replace("_", " "), (t, 0.02), xycoords=("data", "axes fraction"), fontsize=8)
    ax.set_ylabel(f"{result.metric} of the serving champion")
    ax.set_title(f"Backtest of retraining strategies — {result.profile} (prequential: each batch scored before training on it)")
    ax.legend(loc="best", fontsize=8, ncol=3)
    ax.grid(alpha=0.3)
    ev.set_yticks(range(len(names)), list(reversed(names)), fontsize=8)
    ev.set_ylim(-0.6, len(names) - 0.4)
    ev.set_xlabel("batch end   (○ challenger trained, ▲ promoted)")
    ev.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig
