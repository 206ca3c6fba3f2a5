"""Step 10's data checks: loading batches with their hard breaks named, each batch and the holdout judged on their own."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from .. import data, quality
from ..data import frame_fingerprint
from ..scorecache import answered_once
from .context import StepContext

__all__ = ["load_checked", "label_classes", "assess_batches", "check_holdout", "quality_verdict"]


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


def assess_batches(ctx: StepContext, frames: dict[str, pd.DataFrame], *, reference: pd.DataFrame | None,
                    classes: list | None, late: set[str] = frozenset()) -> list:
    """Every batch judged on its own: a fault in one batch is not diluted by the others in its window.

    Batches in ``late`` (newer than the holdout: their labels are not due yet, ``data.label_delay_batches``)
    are judged without their label: unlabelled rows there are expected.
    """
    prof, src = ctx.profile, ctx.profile.data

    def judge() -> list:
        return quality.assess_batches(frames, reference=reference, label=src.label, threshold=prof.data_quality_threshold,
                                      ignore_columns=src.ignore_columns, label_classes=classes,
                                      label_problem=prof.training.problem_type, unlabelled=late)

    parts = ["quality.assess_batches", frame_fingerprint(reference) if reference is not None else "-",
             *(f"{name}:{frame_fingerprint(f)}" for name, f in frames.items()),
             json.dumps([src.label, prof.data_quality_threshold, list(src.ignore_columns), prof.training.problem_type,
                         None if classes is None else [repr(c) for c in classes], sorted(late)], default=str)]
    return list(answered_once(parts, judge))


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


def quality_verdict(window, per_batch: list, holdout: dict[str, Any]) -> tuple[bool, str]:
    """Whether the data may be trained and validated on, and if not, one line naming each file and check.

    The holdout comes first (nothing could be validated), then the first bad batch (it names the
    file to fix), then the window; whatever follows the first is named briefly, after "also".
    """
    found: list[tuple[str, str]] = [(f"data quality: {p}", p.split(";")[0]) for p in holdout["problems"]]
    bad = [b for b in per_batch if not b.passed]
    if bad:
        more = f" (and {len(bad) - 1} more batches)" if len(bad) > 1 else ""
        found.append((f"data quality of batch {bad[0].reason()}{more}",
                      f"batch {bad[0].source} failed {', '.join(bad[0].failed)}{more}"))
    if not window.passed:
        found.append((f"data quality of the {window.reason()}", f"the {window.source} failed {', '.join(window.failed)}"))
    if not found:
        return True, ""
    rest = [brief for _, brief in found[1:]]
    return False, found[0][0] + (f"; also {'; '.join(rest)}" if rest else "")
