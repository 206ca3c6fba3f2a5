"""The walk-forward loop: each strategy's scratch home and profile, its steps over the batches in time order, and the
merge of strategies run by separate workers (:func:`run_backtest` with its :class:`BacktestSettings`,
:func:`merge_backtest`).

May touch: the backtest's work folder (scratch homes, shared fits, check cache, parts); reads the profile and its
data source."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import yaml

from .. import automl, data, freshproc, steps
from ..durable import write_atomic
from ..errors import RetrainError
from ..fitcache import FitCache
from ..paths import Paths
from ..profiles import Profile, load_profile
from ..training import CHILD_PROCESS
from .coverage import judged_estimates
from .regret import no_regret, promotion_regret
from .result import BacktestResult
from .step import _policy, _replay_step
from .strategies import SHADOW, SHADOW_BATCHES, STRATEGIES, Strategy, parse_strategies
from .summary import summarize


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
    if strategy.name == SHADOW:  # the profile's trial length, else 2 batches
        validation = dict(raw.get("validation") or {})
        validation["shadow_batches"] = validation.get("shadow_batches") or SHADOW_BATCHES
        raw["validation"] = validation
    (home / "params").mkdir(parents=True, exist_ok=True)
    path = home / "params" / f"{raw['name']}.yaml"
    write_atomic(path, yaml.safe_dump(raw, sort_keys=False))
    load_profile(path)  # fail here, naming the file, if the variant is invalid
    return path


def _default_work_dir(paths: Paths, name: str) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return paths.runs / f"{stamp}-{name}-backtest"


@dataclass(frozen=True)
class BacktestSettings:
    """How :func:`run_backtest` replays a profile: which strategies, over which batches, where, and how.

    Built once (by ``retrain backtest``, ``retrain tune``, a benchmark) and passed whole; every field is
    also accepted by :func:`run_backtest` as a keyword argument.

    Attributes
    ----------
    strategies : "static,periodic,drift,performance,hybrid,every-batch,shadow,refit" (default: all)
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
    progress : bool
        Show a progress bar (default True).
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
    regret_batches : int
        Every promotion's regret is measured on this many batches after it (:mod:`.regret`; default 1).
    """

    strategies: str | Sequence[str] | None = None
    work_dir: str | Path | None = None
    warmup: int | None = None
    max_batches: int | None = None
    period_days: float | None = None
    period_batches: int | None = None
    fit_cache: bool | FitCache = True
    progress: bool = True
    partial: bool = False
    label_delay: int | None = None
    cold: bool = False
    regret_batches: int = 1


@dataclass(frozen=True)
class _Plan:
    """What one backtest replays: the profile, its strategies and batches, the work folder and the shared fits."""

    paths: Paths
    profile_path: Path
    prof: Profile
    chosen: list[Strategy]
    batches_folder: Path
    batches: list[data.Batch]
    warmup: int
    work: Path
    cache: FitCache | None

    @property
    def to_replay(self) -> list[data.Batch]:
        """The batches a step is replayed at: the first full warmup, then every later one."""
        return self.batches[self.warmup - 1 :]

    def record(self, s: BacktestSettings) -> dict[str, Any]:
        """The settings the result records (and :func:`merge_backtest` requires equal across workers)."""
        return {"profile_path": str(self.profile_path), "batches": str(self.batches_folder), "n_batches": len(self.batches),
                "warmup": self.warmup, "period_days": s.period_days, "period_batches": s.period_batches,
                "label_delay": s.label_delay, "fit_cache": self.cache is not None,
                "fresh_checks": "cold" if s.cold else "warm, cached", "policy": self.prof.triggers.policy,
                "stuck_after": self.prof.validation.stuck_after, "regret_batches": s.regret_batches}


def run_backtest(profile: str | Path, settings: BacktestSettings | None = None, *, home: str | Path | None = None,
                 **options: Any) -> BacktestResult:
    """Replay the profile's batches once per strategy with the playbook's steps.

    Parameters
    ----------
    profile : path
        The profile whose data source, thresholds and model settings are replayed (relative to the
        project ``home`` first, then to the working folder).
    settings : BacktestSettings
        Which strategies, over which batches, where and how (default :class:`BacktestSettings`).
    **options
        Any field of :class:`BacktestSettings`, overriding ``settings``
        (``run_backtest(profile, strategies="static", max_batches=12)``).

    Returns
    -------
    BacktestResult
        ``records`` (one row per strategy and batch) and ``summary`` (one row per strategy).
    """
    t_start, t_wall = time.monotonic(), time.time()
    s = replace(settings or BacktestSettings(), **options)
    plan = _plan(profile, s, Paths.discover(home))
    rows = _replay(plan, s)
    recorded = plan.record(s)
    stats = plan.cache.stats() if plan.cache is not None else {"enabled": False}
    if s.partial:  # one worker's share: its records, to be merged by merge_backtest
        for strategy in plan.chosen:
            _write_part(plan.work, strategy, [r for r in rows if r["strategy"] == strategy.name], settings=recorded,
                        fit_cache=stats, started=t_wall)
    return _result(plan.prof, plan.chosen, pd.DataFrame(rows), plan.batches_folder, pd.Timestamp(plan.batches[-1].end),
                   fit_cache=stats, seconds=time.monotonic() - t_start, work=plan.work, settings=recorded)


def _plan(profile: str | Path, s: BacktestSettings, paths: Paths) -> _Plan:
    """Resolve the profile, its strategies and batches; check the warmup; make the work folder and the fit cache."""
    profile_path = paths.resolve(profile)  # relative to the project home first, then to the working folder
    if not profile_path.exists() and Path(profile).exists():
        profile_path = Path(profile).resolve()
    prof = load_profile(profile_path)
    automl.pin_threads(prof.training.num_cpus)
    chosen = parse_strategies(s.strategies)
    batches_folder = paths.resolve(prof.data.batches).resolve()
    batches = data.list_batches(prof.data, paths)
    if s.max_batches is not None:
        batches = batches[:s.max_batches]
    warmup = s.warmup or prof.training.holdout_batches + prof.training.window_batches
    if warmup < prof.training.holdout_batches + 1 or warmup >= len(batches):
        raise RetrainError(
            f"warmup={warmup} batches but {len(batches)} batch(es) to replay: the first step needs at least "
            f"holdout_batches+1={prof.training.holdout_batches + 1} and at least one batch must follow it; "
            "add data, raise max_batches or lower warmup"
        )
    work = Path(s.work_dir) if s.work_dir else _default_work_dir(paths, prof.name)
    work.mkdir(parents=True, exist_ok=True)
    fit_cache = s.fit_cache
    cache = fit_cache if isinstance(fit_cache, FitCache) else (FitCache(work / "fit-cache") if fit_cache else None)
    return _Plan(paths, profile_path, prof, chosen, batches_folder, batches, warmup, work, cache)


def _replay(plan: _Plan, s: BacktestSettings) -> list[dict[str, Any]]:
    """Every strategy's records, strategy after strategy, with the fresh-process checks set up as ``s`` says."""
    from tqdm import tqdm

    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(plan.chosen) * len(plan.to_replay), desc="backtest", unit="step", disable=not s.progress,
               mininterval=5.0)
    restore_checks = freshproc.use(cold=s.cold, cache_dir=None if s.cold else plan.work / "check-cache")
    try:
        for strategy in plan.chosen:
            rows += _replay_strategy(plan, s, strategy, bar)
    finally:
        restore_checks()
        bar.close()
    return rows


def _replay_strategy(plan: _Plan, s: BacktestSettings, strategy: Strategy, bar) -> list[dict[str, Any]]:
    """One strategy walked forward over the batches in its scratch home: its per-batch records, with each promotion's
    regret and the estimates' bands judged as labels arrived."""
    home_s = plan.work / strategy.name
    prof_path = _scratch_profile(plan.profile_path, home_s, plan.batches_folder, strategy, period_days=s.period_days,
                                 label_delay=s.label_delay)
    steps_to_run = plan.to_replay
    rows: list[dict[str, Any]] = []
    last_trained: int | None = None
    for i, batch in enumerate(steps_to_run):
        bar.set_postfix_str(f"{strategy.name} {batch.name}", refresh=False)
        policy = _policy(strategy)
        if strategy.name == "periodic" and s.period_batches:
            due = last_trained is None or i - last_trained >= s.period_batches
            policy = steps.RetrainPolicy("always" if due else "never",
                                         f"backtest strategy 'periodic': retrain every {s.period_batches} batch(es)")
        row = _replay_step(strategy, prof_path, home_s, batch, plan.warmup - 1 + i, plan.cache or CHILD_PROCESS,
                           policy=policy)
        if row["replaced"] and not row["bootstrap"]:  # the promotion's cost on the batches that follow
            row.update(promotion_regret(prof_path, home_s, row["replaced"], row["champion_after"],
                                        steps_to_run[i + 1 : i + 1 + s.regret_batches], plan.paths))
        else:
            row.update(no_regret(row["replaced"]))
        if row["trained"]:
            last_trained = i
        rows.append(row)
        bar.update(1)
    judged_estimates(prof_path, home_s, rows)  # the estimates' bands, judged as labels arrived
    return rows


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
    write_atomic(folder / _PART, json.dumps(meta, indent=2, default=str) + "\n")


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

