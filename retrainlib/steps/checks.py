"""Step 10's data checks: loading batches with their hard breaks named, each batch and the holdout judged on their own."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from .. import data, quality
from ..data import frame_fingerprint
from ..scorecache import answered_once
from .context import StepContext

__all__ = ["load_checked", "label_classes", "recent_history", "assess_batches", "Quarantine", "quarantine",
           "check_holdout", "quality_verdict"]


def load_checked(ctx: StepContext, batches, required: list[str], *, require_label: bool,
                  per_batch: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Load batches, stopping at a hard break (label or required column gone) named by its file.

    ``per_batch``, when given, also receives each file's own rows (for scoring batch by batch).
    """
    src = ctx.profile.data
    label = src.label if require_label else None

    def hard_breaks(frame: pd.DataFrame, batch: data.Batch) -> None:
        quality.check_hard_breaks(frame, label=label, required=required, source=batch.path)
        if per_batch is not None:
            per_batch[batch.path] = frame

    return data.load_batches(batches, ctx.paths, src, require_label=require_label, check=hard_breaks)

def label_classes(ctx: StepContext, labels: pd.Series, earlier: list[data.Batch] | None = None) -> list | None:
    """The label's known classes for a classifier (``None`` for regression): what ``unseen_labels`` and
    ``new_labels`` compare with — the classes of ``labels`` and of every ``earlier`` labelled batch."""
    kind = ctx.profile.training.problem_type
    known = labels.dropna()
    if kind == "regression" or (kind is None and pd.api.types.is_float_dtype(known) and known.nunique() > 20):
        return None
    classes = dict.fromkeys(pd.unique(known))
    for b in earlier or ():  # only the label column of each file
        frame = data.read_columns(ctx.paths.resolve(b.path), [ctx.profile.data.label])
        classes.update(dict.fromkeys(pd.unique(frame.iloc[:, 0].dropna())) if frame.shape[1] else {})
    return list(classes)


def recent_history(ctx: StepContext, windows: data.Windows, first: str | None) -> dict[str, pd.DataFrame]:
    """The recent neighbours of the batch ``first``: as many batches just before it as the strategy trains
    on (``len(windows.train)``), oldest first, each file's own rows. What changed-data checks compare with."""
    visible = list(windows.visible)
    at = next((i for i, b in enumerate(visible) if b.path == first), 0)
    before = visible[max(0, at - neighbours(windows)):at]
    frames: dict[str, pd.DataFrame] = {}
    if before:
        load_checked(ctx, before, [], require_label=False, per_batch=frames)
    return frames


def neighbours(windows: data.Windows) -> int:
    """How many batches before a judged batch are its recent neighbours: the strategy's training window."""
    return max(1, len(windows.train))


def assess_batches(ctx: StepContext, frames: dict[str, pd.DataFrame], *, reference: pd.DataFrame | None,
                    classes: list | None, late: set[str] = frozenset(),
                    history: dict[str, pd.DataFrame] | None = None, near: int | None = None) -> list:
    """Every batch judged on its own: a fault in one batch is not diluted by the others in its window.

    With ``near``, each batch is compared with the ``near`` batches just before it (``history``, then
    the earlier ones of ``frames``): its recent neighbours. Batches in ``late`` (newer than the
    holdout: their labels are not due yet, ``data.label_delay_batches``) are judged without their
    label: unlabelled rows there are expected.
    """
    prof, src = ctx.profile, ctx.profile.data

    def judge() -> list:
        return quality.assess_batches(frames, reference=reference, label=src.label, threshold=prof.data_quality_threshold,
                                      ignore_columns=src.ignore_columns, label_classes=classes,
                                      label_problem=prof.training.problem_type, unlabelled=late,
                                      history=history, neighbours=near, constraints=src.constraints)

    parts = ["quality.assess_batches/2", frame_fingerprint(reference) if reference is not None else "-",
             *(f"{name}:{frame_fingerprint(f)}" for name, f in frames.items()),
             *(f"history {name}:{frame_fingerprint(f)}" for name, f in (history or {}).items()),
             json.dumps([src.label, prof.data_quality_threshold, list(src.ignore_columns), prof.training.problem_type,
                         None if classes is None else [repr(c) for c in classes], sorted(late), near,
                         list(src.constraints)], default=str)]
    return list(answered_once(parts, judge))


@dataclass(frozen=True)
class Quarantine:
    """The judged batches split: broken ones an earlier run already blocked on are left out (``left_out``),
    the rest stay (``kept`` frames, ``reports``); ``windows`` trains on no left-out batch."""

    windows: data.Windows
    kept: dict[str, pd.DataFrame]
    reports: list
    left_out: list[dict[str, Any]]

    def frame(self, fallback: pd.DataFrame) -> pd.DataFrame:
        """The kept rows as one frame (``fallback`` when every batch was left out)."""
        frames = list(self.kept.values())
        if not frames:
            return fallback
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def note(self) -> str:
        """One line naming each left-out batch and why, or ''."""
        return "; ".join(f"left out of training: {b['path']} (broken: {', '.join(b['checks'])}; blocked by an "
                         f"earlier run)" for b in self.left_out)


def quarantine(ctx: StepContext, windows: data.Windows, frames: dict[str, pd.DataFrame], reports: list) -> Quarantine:
    """Leave out the broken batches an earlier run already blocked on (the same file: path and sha256).

    Broken data blocks the first run that sees it (:meth:`Registry.record_block`); the runs after it
    train on the batches around it instead of blocking again, so a block on one batch does not block
    the next clean one. A broken batch never seen before is kept here: it blocks this run.
    """
    blocked = ctx.registry.blocked_batches()
    sha = {b.path: b.sha256 for b in (*windows.visible, *windows.current, *windows.train, *windows.holdout)}
    out = [r for r in reports if not r.passed and r.source in blocked and blocked[r.source] == sha.get(r.source)]
    gone = {r.source for r in out}
    if not gone:
        return Quarantine(windows, frames, reports, [])
    windows = replace(windows, train=tuple(b for b in windows.train if b.path not in gone),
                      current=tuple(b for b in windows.current if b.path not in gone))
    return Quarantine(windows, {k: f for k, f in frames.items() if k not in gone},
                      [r for r in reports if r.source not in gone],
                      [{"path": r.source, "checks": list(r.blocked_by)} for r in out])


def broken_batches(reports: list, windows: data.Windows) -> list[dict[str, Any]]:
    """The broken batches among ``reports`` as a block records them: path, sha256 and the failed checks."""
    sha = {b.path: b.sha256 for b in (*windows.visible, *windows.current, *windows.train, *windows.holdout)}
    return [{"path": r.source, "sha256": sha.get(r.source), "checks": list(r.blocked_by)} for r in reports if not r.passed]


def check_holdout(ctx: StepContext, windows: data.Windows, frames: dict[str, pd.DataFrame], *,
                   reference: pd.DataFrame, classes: list | None, required: list[str]) -> dict[str, Any]:
    """The holdout's own checks, before anything is trained or validated on it.

    Its labelled rows must exist (and hold two classes or more for a classifier) and pass the
    quality checks against ``reference``.
    """
    prof, src = ctx.profile, ctx.profile.data
    todo = [b for b in windows.holdout if b.path not in frames]
    if todo:
        load_checked(ctx, todo, required, require_label=False, per_batch=frames)
    files = ", ".join(b.path for b in windows.holdout)
    holdout = pd.concat([frames[b.path] for b in windows.holdout], ignore_index=True)
    labelled = holdout[holdout[src.label].notna()] if src.label in holdout else holdout.iloc[:0]
    out: dict[str, Any] = {"batches": [b.path for b in windows.holdout], "rows": int(len(holdout)),
                           "labelled_rows": int(len(labelled)), "classes": None, "quality": None, "problems": []}
    if len(labelled) == 0:
        out["problems"].append(f"the holdout {files} has no labelled row ({src.label!r} is empty or missing), so no "
                               f"challenger could be validated on it; wait for its labels, or make the holdout the newest "
                               f"labelled batches")
    else:
        if classes is not None:
            out["classes"] = int(labelled[src.label].nunique())
            if out["classes"] < 2:
                out["problems"].append(f"the holdout {files} holds one {src.label!r} class only "
                                       f"({quality._scalar(labelled[src.label].iloc[0])!r}); validation needs two or more; raise "
                                       f"training.holdout_batches or fix the labels in that file")
        q = quality.assess(labelled, reference=reference, label=src.label, threshold=prof.data_quality_threshold,
                           ignore_columns=src.ignore_columns, source=f"holdout {files}", label_classes=classes,
                           label_problem=prof.training.problem_type)
        out["quality"] = q.to_dict()
        if not q.passed:
            out["problems"].append(q.reason())
    out["passed"] = not out["problems"]
    return out


def quality_verdict(window, quarantined: Quarantine, holdout: dict[str, Any]) -> tuple[bool, str]:
    """Whether the data may be trained and validated on, and if not, one line naming each file and check.

    Only broken data blocks: a broken check of the window, of a batch (``quarantined.reports``: those
    an earlier run blocked on are left out, not judged again) or of the holdout, or nothing left to
    train on. Changed data never blocks (its score is the ``data_quality`` trigger).

    The holdout comes first (nothing could be validated), then the first bad batch (it names the
    file to fix), then the window; whatever follows the first is named briefly, after "also".
    """
    found: list[tuple[str, str]] = [(f"data quality: {p}", p.split(";")[0]) for p in holdout["problems"]]
    if not quarantined.windows.train:
        found.append(("data quality: every batch the strategy would train on is broken (" + quarantined.note()
                      + "); fix those files or wait for clean batches", "no clean batch to train on"))
    bad = [b for b in quarantined.reports if not b.passed]
    if bad:
        more = f" (and {len(bad) - 1} more batches)" if len(bad) > 1 else ""
        found.append((f"data quality of batch {bad[0].reason()}{more}",
                      f"batch {bad[0].source} broken: {', '.join(bad[0].blocked_by)}{more}"))
    if not window.passed:
        found.append((f"data quality of the {window.reason()}", f"the {window.source} broken: {', '.join(window.blocked_by)}"))
    if not found:
        return True, ""
    rest = [brief for _, brief in found[1:]]
    return False, found[0][0] + (f"; also {'; '.join(rest)}" if rest else "")
