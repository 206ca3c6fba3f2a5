"""``retrain tune``: choose a profile's retraining policy, thresholds and window from its own history.

A thin layer over the backtest (:mod:`retrainlib.backtest`): every candidate is a walk-forward replay
of the playbook's own steps (``backtest.step._replay_step``) in its own scratch home, with one shared
:class:`~retrainlib.fitcache.FitCache` and check cache, so identical fits and checks are computed once.

The scored history is split in time. The **tune** segment (the older part) is replayed from a folder
that holds links to its batch files only, so nothing after it is listed or read while choosing. The
pick is made and fixed there: the cheapest candidate (fewest retrains) whose tune-segment mean is
within ``tolerance`` of the best one's, and whose mean over the newest half of the tune segment is
too. Only then does every candidate's replay continue over the **confirm** segment (the newest
``confirm_share`` of the scored batches, at least 3), beside ``refit``, to report how the pick does
on batches it never saw.

Candidates, searched in two stages (a full product would cost a replay per combination):

1. the training window, with the backtest's plain ``refit`` (retrain before every batch on the newest
   window, no gates: cheap, and the reference the confirm figures are read against): ``sliding_window``
   of half, the same and twice the profile's ``window_batches``, ``full`` and ``incremental``; the best
   tune mean wins (the smaller window on a tie), and only its refit goes on over the confirm segment
   (each window's fits are its own: the windows are most of tune's cost);
2. at that window, the candidates the pick is chosen from: ``static``, gated ``every-batch``,
   ``periodic`` every 2/4/8 batches, ``performance`` at three thresholds taken from the metric refit's
   champions measured on the tune segment (its quartiles and median), ``drift`` at three thresholds
   from the drift scores measured there, the profile's own ``hybrid``, and each river detector of
   :data:`retrainlib.detectors.DETECTORS` on the champion's per-row losses.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import yaml

from . import automl, data, freshproc, playbook, steps
from .backtest.run import _scratch_profile
from .backtest.step import _policy, _replay_step
from .backtest.strategies import Strategy
from .detectors import DETECTORS
from .durable import write_atomic
from .errors import RetrainError
from .fitcache import FitCache
from .outputs import Analysis
from .paths import Paths
from .profiles import Profile, load_profile

__all__ = ["Candidate", "TuneResult", "TuneSettings", "tune", "choose", "split_history", "write_tuned_profile"]


@dataclass(frozen=True)
class Candidate:
    """One policy to replay: a family (``performance``, ``drift``, ...), the profile keys it sets and why."""

    name: str
    family: str
    settings: dict[str, Any] = field(default_factory=dict)  # dotted profile keys -> values
    retrain: str = "profile"  # 'profile' | 'always' | 'never'
    every: int | None = None  # periodic: retrain every N batches
    why: str = ""
    gates: bool = True  # False: the backtest's plain ``refit`` (newest window, holdout included, no gates)

    def strategy(self) -> Strategy:
        return Strategy(self.name, self.why, retrain=self.retrain, gates=self.gates)


def split_history(n_batches: int, warmup: int, confirm_share: float) -> int:
    """Index of the first confirm batch: the newest ``confirm_share`` of the scored batches, at least 3.

    >>> split_history(24, 7, 0.4)  # 17 scored batches: the newest 7 confirm
    17
    """
    scored = n_batches - warmup
    confirm = max(3, math.ceil(confirm_share * scored))
    if scored - confirm < 2:
        raise RetrainError(f"{n_batches} batches with a first champion at batch {warmup} leave {scored} scored batch(es); "
                           f"tuning needs at least 2 to choose on and 3 to confirm on ({confirm} with --confirm-share "
                           f"{confirm_share:g}); add batches, lower training.window_batches or --confirm-share")
    return n_batches - confirm


def choose(table: pd.DataFrame, *, tolerance: float, greater_is_better: bool = True) -> tuple[str, str]:
    """The cheapest candidate whose tune mean is within ``tolerance`` of the best; ties to fewer retrains, then the
    better mean, then the earlier row. ``table`` has ``name``, ``tune_mean`` and ``tune_retrains``.

    With a ``recent_mean`` column (the mean over the newest half of the tune segment), a candidate must also be
    within ``tolerance`` of the best there: a drifting stream's next batches look more like its recent past than
    its whole history, so a cheap candidate that kept up early but fell behind lately is not picked. When none is
    close on both, the recent half alone decides.

    >>> t = pd.DataFrame({"name": ["a", "b"], "tune_mean": [0.80, 0.795], "tune_retrains": [9, 2]})
    >>> choose(t, tolerance=0.01)[0]
    'b'
    >>> choose(t.assign(recent_mean=[0.80, 0.70]), tolerance=0.01)[0]  # b fell behind on the newest half
    'a'
    """
    sign = 1 if greater_is_better else -1
    scored = table[table["tune_mean"].notna()]
    if scored.empty:
        raise RetrainError("no candidate scored a batch of the tune segment; add batches or lower --confirm-share")
    best = scored.loc[(sign * scored["tune_mean"]).idxmax()]
    near = scored[sign * (scored["tune_mean"] - best["tune_mean"]) >= -tolerance - 1e-12]
    recent_note = ""
    if "recent_mean" in scored and scored["recent_mean"].notna().any():
        top = (sign * scored["recent_mean"]).max()
        close = lambda f: f[sign * f["recent_mean"] - top >= -tolerance - 1e-12]  # noqa: E731
        near = close(near) if not close(near).empty else close(scored)
        recent_note = f" and of the best on the newest half of the tune segment ({sign * top:.4f})"
    order = near.assign(_m=-sign * near["tune_mean"], _i=range(len(near))).sort_values(["tune_retrains", "_m", "_i"])
    pick = order.iloc[0]
    reason = (f"{pick['name']}: {int(pick['tune_retrains'])} retrain(s) on the tune segment, mean {pick['tune_mean']:.4f}, "
              f"within {tolerance:g} of the best ({best['name']}: {best['tune_mean']:.4f}, "
              f"{int(best['tune_retrains'])} retrain(s)){recent_note}; the fewest retrains among the {len(near)} "
              "candidate(s) that close")
    return str(pick["name"]), reason


@dataclass
class TuneResult:
    """The candidates' tune and confirm figures, the pick, and the files written."""

    profile: str
    metric: str
    greater_is_better: bool
    confirm_from: str
    table: pd.DataFrame
    pick: str
    pick_reason: str
    window: str
    references: dict[str, dict[str, Any]]
    seconds: float
    fit_cache: dict[str, Any]
    work_dir: Path
    tuned_profile: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)
    records: pd.DataFrame | None = None  # every replayed step: candidate, segment and the backtest's per-batch record

    def to_dict(self) -> dict[str, Any]:
        pick = self.table.set_index("name").loc[self.pick]
        return {
            "tuned_profile": str(self.tuned_profile) if self.tuned_profile else None,
            "confirm_from": self.confirm_from,
            "policy": {"name": self.pick, "family": pick["family"], "settings": pick["settings"]},
            "candidates": _records(self.table),
            "pick_reason": self.pick_reason,
            "window": self.window,
            "references": self.references,
            "metric": self.metric,
            "seconds": round(self.seconds, 1),
            "fit_cache": self.fit_cache,
            "work_dir": str(self.work_dir),
        }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records"))


class _Replay:
    """One candidate's scratch home, walked forward batch by batch; the tune segment first, the confirm one after."""

    def __init__(self, cand: Candidate, work: Path, profile_path: Path, folder: Path, cache: FitCache):
        self.cand, self.home, self.cache = cand, work / _slug(cand.name), cache
        self.path = _scratch_profile(profile_path, self.home, folder, cand.strategy(), period_days=None)
        self._set({**cand.settings})
        self.rows: list[dict[str, Any]] = []
        self.last_trained: int | None = None

    def _set(self, settings: dict[str, Any]) -> None:
        raw = yaml.safe_load(self.path.read_text())
        for key, value in settings.items():
            target = raw
            *parents, last = key.split(".")
            for p in parents:
                target = target.setdefault(p, {})
            target[last] = value
        write_atomic(self.path, yaml.safe_dump(raw, sort_keys=False))
        load_profile(self.path)

    def point_at(self, folder: Path) -> None:
        self._set({"data.batches": str(folder)})

    def step(self, batch: data.Batch, index: int, i: int) -> dict[str, Any]:
        policy = _policy(self.cand.strategy())
        if self.cand.every:
            due = self.last_trained is None or i - self.last_trained >= self.cand.every
            policy = steps.RetrainPolicy("always" if due else "never", f"tune candidate {self.cand.name}: every "
                                                                        f"{self.cand.every} batches")
        row = _replay_step(self.cand.strategy(), self.path, self.home, batch, index, self.cache, policy=policy)
        if row["trained"]:
            self.last_trained = i
        self.rows.append(row)
        return row


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


def _figures(rows: list[dict[str, Any]], segment: set[str]) -> tuple[float, int, int]:
    r = [x for x in rows if x["batch"] in segment]
    values = [x["value"] for x in r if x["value"] == x["value"]]
    retrains = sum(1 for x in r if x["trained"] and not x["bootstrap"])
    return (float(sum(values) / len(values)) if values else math.nan), retrains, len(values)


def _recent_mean(rows: list[dict[str, Any]], segment: set[str]) -> float:
    """The mean over the newest half (rounded up) of the segment's scored batches, in replay order."""
    values = [x["value"] for x in rows if x["batch"] in segment and x["value"] == x["value"]]
    newest = values[len(values) // 2:]
    return float(sum(newest) / len(newest)) if newest else math.nan


def _trigger_values(rows: list[dict[str, Any]], name: str) -> list[float]:
    out = []
    for r in rows:
        a = playbook.read_output(Path(r["run_dir"]), Analysis)
        for t in (a.decision.triggers if a else ()):
            if t.name == name and t.value is not None:
                out.append(float(t.value))
    return out


def _quantiles(values: Sequence[float], qs: Sequence[float], digits: int = 3) -> list[float]:
    s = pd.Series(values, dtype=float).dropna()
    return sorted({round(float(s.quantile(q)), digits) for q in qs}) if len(s) else []


def _window_candidates(prof, only: Sequence[str] | None = None, rows: Sequence[int] = ()) -> list[Candidate]:
    """Stage 1: the plain ``refit`` (no gates, so no validation or promotion checks) over each training window.

    A sliding window other than the profile's own is left out when some ``n`` consecutive batches of
    ``rows`` (the tune segment's batch sizes) hold fewer than ``training.min_train_rows`` rows:
    it could not train there (Gapminder's one-batch window holds 142 rows).
    """
    w = prof.training.window_batches
    out = []
    for n in dict.fromkeys((max(1, w // 2), w, 2 * w)):
        fewest = min((sum(rows[i:i + n]) for i in range(len(rows) - n + 1)), default=None)
        if n != w and fewest is not None and fewest < prof.training.min_train_rows:
            continue
        out.append(Candidate(f"refit window {n}", "refit", {"training.strategy": "sliding_window",
                                                            "training.window_batches": n}, "always",
                             why=f"a sliding window of the newest {n} batches", gates=False))
    out.append(Candidate("refit window full", "refit", {"training.strategy": "full"}, "always",
                         why="every labelled batch (full)", gates=False))
    out.append(Candidate("refit window incremental", "refit", {"training.strategy": "incremental"}, "always",
                         why="the champion's batches plus every newer one (incremental)", gates=False))
    return [c for c in out if only is None or c.name.removeprefix("refit window ") in only]


def _policy_candidates(prof, window: dict[str, Any], history: list[dict[str, Any]], n_tune: int,
                       greater_is_better: bool) -> list[Candidate]:
    """Stage 2: policies at the chosen window, thresholds from what ``refit`` measured there on the tune segment."""
    values = [r["value"] for r in history if r["value"] == r["value"]]
    perf = _quantiles(values, (0.25, 0.5, 0.75) if greater_is_better else (0.75, 0.5, 0.25), 4)
    drift = _quantiles(_trigger_values(history, "drift"), (0.5, 0.75, 0.9))
    one = {"triggers.policy": "any"}
    out = [Candidate("static", "static", dict(window), "never", why="never retrain after the first champion"),
           Candidate("every-batch", "every-batch", dict(window), "always", why="retrain on every batch, gated")]
    for k in (2, 4, 8):
        if k < n_tune:
            out.append(Candidate(f"periodic every {k}", "periodic", dict(window), every=k,
                                 why=f"retrain every {k} batches"))
    for t in perf:
        out.append(Candidate(f"performance {t:g}", "performance",
                             {**window, **one, "triggers.use": ["performance"], "performance_threshold": t},
                             why=f"{prof.training.eval_metric} {t:g}: a quantile of refit's champions measured "
                                 f"on the tune segment ({len(values)} batches, {min(values):.3f}-{max(values):.3f})"))
    for t in drift:
        if 0 <= t <= 1:
            out.append(Candidate(f"drift {t:g}", "drift", {**window, **one, "triggers.use": ["drift"], "drift_threshold": t},
                                 why=f"drift score {t:g}: a quantile of the drift scores measured on the tune segment"))
    out.append(Candidate("hybrid (profile's own)", "hybrid", {**window, "triggers.policy": "hybrid"},
                         why="the profile's hybrid: schedule, drift, performance, degradation"))
    for name, spec in DETECTORS.items():
        out.append(Candidate(f"degradation {name}", "degradation",
                             {**window, **one, "triggers.use": ["degradation"], "triggers.degradation_detector": name,
                              "triggers.detector_level": spec.default_level},
                             why=f"{spec.river_name} on the champion's per-row losses ({spec.level_means.split(',')[0]} "
                                 f"{spec.default_level:g}, its default)"))
    return out


@dataclass(frozen=True)
class TuneSettings:
    """How :func:`tune` splits the history and chooses; built once (``retrain tune``, a benchmark) and passed whole.
    Every field is also accepted by :func:`tune` as a keyword argument.

    Attributes
    ----------
    confirm_share : float
        The newest share of the scored batches the confirm segment holds (at least 3 batches; default 0.4).
    tolerance : float
        The pick is the cheapest candidate whose tune mean is within this of the best one's, in the metric's
        units (default 0.01).
    work_dir : path
        Scratch homes, the shared fits and checks; default ``runs/<UTC timestamp>-<profile>-tune/``.
    progress : bool
        Show a progress bar (default True).
    max_batches : int
        Tune over the oldest ``max_batches`` batches only (default all).
    write_profile : bool
        Write ``params/<name>.tuned.yaml`` with the pick (default True).
    families : sequence of str
        Limits stage 2 to those candidate families (``static``, ``every-batch``, ``periodic``, ``performance``,
        ``drift``, ``hybrid``, ``degradation``; default all).
    windows : sequence of str
        Limits stage 1 to those windows (``"3"`` for 3 batches, ``full``, ``incremental``; default all).
    """

    confirm_share: float = 0.4
    tolerance: float = 0.01
    work_dir: str | Path | None = None
    progress: bool = True
    max_batches: int | None = None
    write_profile: bool = True
    families: Sequence[str] | None = None
    windows: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if not 0 < self.confirm_share < 1:
            raise RetrainError(f"--confirm-share {self.confirm_share:g} is not a share; give a number between 0 and 1, "
                               "e.g. 0.4")
        if self.tolerance < 0:
            raise RetrainError(f"--tolerance {self.tolerance:g} is negative; give 0 or more, in the metric's units, "
                               "e.g. 0.01")


@dataclass(frozen=True)
class _History:
    """The profile and its batches split in time at ``cut``: the tune segment's steps, then the confirm segment's."""

    paths: Paths
    profile_path: Path
    prof: Profile
    greater_is_better: bool
    batches: list[data.Batch]
    warmup: int
    cut: int
    work: Path

    @property
    def tune_steps(self) -> list[data.Batch]:
        return self.batches[self.warmup - 1: self.cut]

    @property
    def confirm_steps(self) -> list[data.Batch]:
        return self.batches[self.cut:]

    @property
    def tune_names(self) -> set[str]:
        return {b.name for b in self.tune_steps}

    @property
    def confirm_names(self) -> set[str]:
        return {b.name for b in self.confirm_steps}

    @property
    def tune_folder(self) -> Path:
        """Links to the tune segment's files only: nothing newer is listed or read."""
        return self.work / "tune-batches"

    @property
    def all_folder(self) -> Path:
        return self.work / "all-batches"


def _history(profile: str | Path, s: TuneSettings, paths: Paths) -> _History:
    """Load the profile, split its batches in time, and make the work folder with a folder of links for each segment."""
    profile_path = paths.profile(profile).resolve()
    prof = load_profile(profile_path)
    automl.pin_threads(prof.training.num_cpus)
    info = automl.metric_info(prof.training.eval_metric, prof.training.problem_type or "binary")
    batches = data.list_batches(prof.data, paths)
    if s.max_batches is not None:
        batches = batches[:s.max_batches]
    warmup = prof.training.holdout_batches + prof.training.window_batches
    if warmup >= len(batches):
        raise RetrainError(f"{len(batches)} batch(es) but the first champion needs {warmup} (holdout + window); add data")
    cut = split_history(len(batches), warmup, s.confirm_share)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    work = Path(s.work_dir) if s.work_dir else paths.runs / f"{stamp}-{prof.name}-tune"
    work.mkdir(parents=True, exist_ok=True)
    h = _History(paths, profile_path, prof, info.greater_is_better, batches, warmup, cut, work)
    _link(h.tune_folder, batches[:cut], paths)
    _link(h.all_folder, batches, paths)
    return h


def _link(folder: Path, batches: list[data.Batch], paths: Paths) -> None:
    """A folder of symbolic links to ``batches``' files (those already there are kept)."""
    folder.mkdir(exist_ok=True)
    for b in batches:
        link = folder / b.name
        if not link.exists():
            os.symlink(paths.resolve(b.path).resolve(), link)


class _Walk:
    """Every candidate's replay, walked forward segment by segment, and the progress bar over all of them."""

    def __init__(self, h: _History, cache: FitCache, bar):
        self.h, self.cache, self.bar = h, cache, bar
        self.replays: dict[str, _Replay] = {}

    def __call__(self, cands: list[Candidate], seg: list[data.Batch], start: int, folder_now: Path) -> None:
        self.bar.total = (self.bar.total or 0) + len(cands) * len(seg)
        for c in cands:
            rep = self.replays.get(c.name) or self.replays.setdefault(
                c.name, _Replay(c, self.h.work, self.h.profile_path, folder_now, self.cache))
            rep.point_at(folder_now)
            for i, b in enumerate(seg):
                self.bar.set_postfix_str(f"{c.name} {b.name}", refresh=False)
                rep.step(b, self.h.warmup - 1 + start + i, start + i)
                self.bar.update(1)

    def table(self, cands: list[Candidate], confirm: bool = False) -> pd.DataFrame:
        """One row per candidate: its tune-segment figures, and its confirm-segment ones when ``confirm``."""
        names = self.h.confirm_names if confirm else frozenset()
        return pd.DataFrame([_row(c, self.replays[c.name].rows, self.h.tune_names, names) for c in cands])


def tune(profile: str | Path, settings: TuneSettings | None = None, *, home: str | Path | None = None,
         on_chosen: Callable[[str, pd.DataFrame], None] | None = None, **options: Any) -> TuneResult:
    """Choose the policy, thresholds and window on the tune segment; confirm every candidate on the newest batches.

    ``settings`` (:class:`TuneSettings`; its fields are also accepted as keyword arguments, overriding it) says
    how the history is split and the pick chosen. ``on_chosen(pick, table)`` is called once the pick is
    fixed, before any confirm batch is read (tests use it).
    """
    from tqdm import tqdm

    s = replace(settings or TuneSettings(), **options)
    t0 = time.monotonic()
    h = _history(profile, s, Paths.discover(home))
    cache = FitCache(h.work / "fit-cache")
    restore = freshproc.use(cold=False, cache_dir=h.work / "check-cache")
    walk = _Walk(h, cache, tqdm(desc="tune", unit="step", disable=not s.progress, mininterval=5.0))
    try:
        stage1, win, win_mean = _choose_window(walk, s.windows)
        stage2, pick, reason = _choose_policy(walk, win, s)
        if on_chosen is not None:
            on_chosen(pick, walk.table([*stage1, *stage2]))
        # the pick is fixed: now, and only now, the confirm segment is replayed (of the windows, the chosen one's refit)
        walk([win, *stage2], h.confirm_steps, len(h.tune_steps), h.all_folder)
    finally:
        restore()
        walk.bar.close()
    cands = [*stage1, *stage2]
    table = walk.table(cands, confirm=True)
    table["confirm_retrains"] = table["confirm_retrains"].astype("Int64")  # none where a probe was not replayed
    refs = {name: _ref(walk.replays[key].rows, h.confirm_names) if key in walk.replays else None
            for name, key in (("refit", win.name), ("static", "static"), ("every-batch", "every-batch"))}
    tune_names = h.tune_names
    records = pd.DataFrame([{"candidate": name, "segment": "tune" if r["batch"] in tune_names else "confirm", **r}
                            for name, rp in walk.replays.items() for r in rp.rows])
    result = TuneResult(h.prof.name, h.prof.training.eval_metric, h.greater_is_better, h.confirm_steps[0].name, table,
                        pick, reason, win.name.removeprefix("refit window "), refs, time.monotonic() - t0, cache.stats(),
                        h.work, records=records)
    if s.write_profile:
        result.tuned_profile = write_tuned_profile(h.profile_path, next(c for c in cands if c.name == pick),
                                                   h.paths.params / f"{h.prof.name}.tuned.yaml", reason=reason,
                                                   paths=h.paths, window_reason=f"retrain tune: refit's best tune-segment "
                                                                                f"mean was with {win.why} ({win_mean:.4f})")
    return result


def _choose_window(walk: _Walk, windows: Sequence[str] | None) -> tuple[list[Candidate], Candidate, float]:
    """Stage 1: every window's ``refit`` over the tune segment; the best tune mean wins (the smaller window on a tie).
    Returns the window candidates, the chosen one and its tune mean."""
    h = walk.h
    stage1 = _window_candidates(h.prof, windows, rows=[b.rows for b in h.batches[:h.cut - h.prof.training.holdout_batches]])
    if not stage1:
        raise RetrainError(f"no window candidate among {list(windows or [])}; give batch counts, full or incremental")
    walk(stage1, h.tune_steps, 0, h.tune_folder)
    t1 = walk.table(stage1)
    win_name, _ = choose(t1.assign(tune_retrains=0).drop(columns="recent_mean"), tolerance=0.0,
                         greater_is_better=h.greater_is_better)  # the window: the best mean over the whole tune segment
    win = next(c for c in stage1 if c.name == win_name)
    return stage1, win, float(t1.set_index("name").loc[win_name, "tune_mean"])


def _choose_policy(walk: _Walk, win: Candidate, s: TuneSettings) -> tuple[list[Candidate], str, str]:
    """Stage 2: the policies at the chosen window over the tune segment, and the pick among them with its reason
    (refit is a reference, not a policy)."""
    h = walk.h
    window = {k: v for k, v in win.settings.items() if k.startswith("training.")}
    stage2 = [c for c in _policy_candidates(h.prof, window, walk.replays[win.name].rows, len(h.tune_steps),
                                            h.greater_is_better)
              if s.families is None or c.family in s.families]
    walk(stage2, h.tune_steps, 0, h.tune_folder)
    pick, reason = choose(walk.table(stage2), tolerance=s.tolerance, greater_is_better=h.greater_is_better)
    return stage2, pick, reason


def _row(c: Candidate, rows: list[dict[str, Any]], tune_names: set[str], confirm_names: set[str] = frozenset()) -> dict:
    tm, tr, tn = _figures(rows, tune_names)
    out = {"name": c.name, "family": c.family, "settings": {**c.settings, **({"every_batches": c.every} if c.every else {})},
           "why": c.why, "tune_mean": tm, "recent_mean": _recent_mean(rows, tune_names), "tune_retrains": tr,
           "tune_batches": tn}
    if confirm_names:
        cm, cr, cn = _figures(rows, confirm_names)
        replayed = any(r["batch"] in confirm_names for r in rows)  # a window probe not chosen stops at the split
        out.update(confirm_mean=cm, confirm_retrains=cr if replayed else None, confirm_batches=cn)
    return out


def _ref(rows: list[dict[str, Any]], confirm_names: set[str]) -> dict[str, Any]:
    m, r, n = _figures(rows, confirm_names)
    return {"confirm_mean": m, "confirm_retrains": r, "confirm_batches": n}


# --------------------------------------------------------------------------- the tuned profile
_FAMILY_POLICY = {"static": None, "every-batch": None, "periodic": "periodic"}


def tuned_settings(c: Candidate, spacing_days: float) -> dict[str, Any]:
    """The profile keys the pick sets (a forced family becomes the nearest playbook policy)."""
    s = {k: v for k, v in c.settings.items()}
    if c.family == "periodic":
        s.update({"triggers.policy": "periodic", "retraining_interval": min(366.0, round(c.every * spacing_days, 2))})
    elif c.family == "every-batch":
        s.update({"triggers.policy": "periodic", "retraining_interval": max(round(spacing_days * 0.5, 2), 0.01)})
    elif c.family == "static":
        s.update({"triggers.policy": "any", "triggers.use": []})  # no trigger: the champion stays
    return s


def write_tuned_profile(profile_path: Path, pick: Candidate, target: Path, *, reason: str, paths: Paths,
                        window_reason: str = "") -> Path:
    """The profile with only the pick's policy, threshold and window keys changed, each commented with why."""
    prof = load_profile(profile_path)
    ends = [pd.Timestamp(b.end) for b in data.list_batches(prof.data, paths)]
    spacing = float(pd.Series(ends).diff().dt.total_seconds().median() / 86400) if len(ends) > 1 else 1.0
    settings = tuned_settings(pick, spacing)
    text = profile_path.read_text()
    why = f"retrain tune: {pick.why}; picked: {reason.split(': ', 1)[1].split('; ')[0]}"
    for key, value in settings.items():
        text = _set_key(text, key, value, window_reason if key.startswith("training.") and window_reason else why)
    text = f"# Tuned by `retrain tune` from {profile_path.name}: only the keys commented 'retrain tune' changed.\n" + text
    target.parent.mkdir(parents=True, exist_ok=True)
    check = target.with_name(f".{target.name}.check.yaml")
    check.write_text(text)
    try:
        load_profile(check)
    finally:
        check.unlink()
    write_atomic(target, text)
    return target


def _set_key(text: str, key: str, value: Any, why: str) -> str:
    """Replace (or add) one top-level or ``section.key`` line of a profile's YAML text, keeping everything else."""
    shown = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()
    lines = text.splitlines()
    parts = key.split(".")
    if len(parts) == 1:
        pat = re.compile(rf"^{re.escape(parts[0])}:")
        new = f"{parts[0]}: {shown}  # {why}"
        for i, ln in enumerate(lines):
            if pat.match(ln):
                lines[i] = new
                return "\n".join(lines) + "\n"
        return "\n".join([*lines, new]) + "\n"
    section, name = parts
    start = next((i for i, ln in enumerate(lines) if re.match(rf"^{re.escape(section)}:\s*(#.*)?$", ln)), None)
    new = f"  {name}: {shown}  # {why}"
    if start is None:
        return "\n".join([*lines, f"{section}:", new]) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i].startswith((" ", "#"))), len(lines))
    for i in range(start + 1, end):
        if re.match(rf"^  {re.escape(name)}:", lines[i]):
            j = i + 1  # a block value (a list or mapping below the key) is replaced whole
            while j < end and lines[j].startswith("    "):
                j += 1
            lines[i:j] = [new]
            return "\n".join(lines) + "\n"
    lines.insert(start + 1, new)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- report
def cell(value: Any) -> str:
    """A table cell: a mean to 4 decimals, a count as is, ``—`` where a candidate has no figure."""
    if value is None or pd.isna(value):
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_report(result: TuneResult, folder: str | Path | None = None) -> dict[str, Path]:
    """``tune.md`` (the table, the pick and the confirm figures beside the references) and ``tune.png``."""
    import matplotlib.pyplot as plt

    folder = Path(folder or result.work_dir)
    folder.mkdir(parents=True, exist_ok=True)
    t = result.table
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, seg in zip(axes, ("tune", "confirm")):
        ax.scatter(t[f"{seg}_retrains"], t[f"{seg}_mean"], s=18, color="0.5", label="candidates")
        p = t[t["name"] == result.pick].iloc[0]
        ax.scatter([p[f"{seg}_retrains"]], [p[f"{seg}_mean"]], s=90, marker="*", color="tab:red", label=f"pick: {result.pick}")
        if seg == "confirm":
            for name, ref in result.references.items():
                if ref and ref["confirm_mean"] == ref["confirm_mean"]:
                    ax.scatter([ref["confirm_retrains"]], [ref["confirm_mean"]], s=40, marker="s", label=name)
        ax.set_xlabel("retrains")
        ax.set_ylabel(f"mean {result.metric}")
        ax.set_title(f"{seg} segment" + (f" (from {result.confirm_from})" if seg == "confirm" else ""))
        ax.legend(fontsize=7)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    out = {"report": folder / "tune.md", "plot": folder / "tune.png", "per_batch": folder / "tune-per-batch.csv"}
    write_atomic(out["plot"], png.getvalue())
    if result.records is not None:
        write_atomic(out["per_batch"], result.records.drop(columns=["reasons"], errors="ignore").to_csv(index=False))
    else:
        out.pop("per_batch")
    cols = ["name", "tune_mean", "recent_mean", "tune_retrains", "confirm_mean", "confirm_retrains"]
    lines = [f"# Tuning {result.profile}", "",
             f"Chosen on the batches before {result.confirm_from}; confirmed on {result.confirm_from} and after, which "
             "the choice never read. Window (refit's best tune mean): " + result.window + "; the other windows' "
             "refits were not replayed on the confirm segment (—).", "",
             f"**Pick: {result.pick}** — {result.pick_reason}.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in t[cols].to_dict("records"):
        mark = " **(pick)**" if r["name"] == result.pick else ""
        lines.append(f"| {r['name']}{mark} | " + " | ".join(cell(r[c]) for c in cols[1:]) + " |")
    lines += ["", "Confirm segment, references:", ""]
    for name, ref in result.references.items():
        if ref:
            lines.append(f"- {name}: mean {ref['confirm_mean']:.4f}, {ref['confirm_retrains']} retrain(s)")
    lines += ["", f"Shared fits: {result.fit_cache['fits_computed']} computed, {result.fit_cache['fits_reused']} reused. "
              f"Wall time {result.seconds:.0f} s.", "", "![cost and quality](tune.png)", ""]
    write_atomic(out["report"], "\n".join(lines))
    return out
