"""Step 30: score champion and challenger on the same holdout and apply every gate."""

from __future__ import annotations

from .. import data
from ..outputs import Analysis, Training, Validation
from ..records import plain
from .context import StepContext, under_run_lock

__all__ = ["validate_challenger"]


# --------------------------------------------------------------------------- step 30
@under_run_lock
def validate_challenger(ctx: StepContext) -> Validation:
    """Score champion and challenger on the same holdout and apply every gate; skipped without a challenger."""
    from .. import validation

    trained = ctx.read(Training)
    if not trained.trained:
        out = Validation.skip("no challenger was trained in this run")
        ctx.write(out)
        return out
    analysis = ctx.read(Analysis)
    prof, src = ctx.profile, ctx.profile.data
    holdout_b = data.batches_from_records(analysis.window("holdout"), ctx.paths)
    holdout = data.load_batches(holdout_b, ctx.paths, src)
    holdout = holdout[holdout[src.label].notna()]
    challenger_v = ctx.registry.version(trained.challenger)
    champion = compared = analysis.champion
    champion_v = ctx.registry.version(champion) if champion else None
    # A challenger that trained on no row its champion (a refit) did not is the champion's own fit: it cannot
    # show what newer rows earn. The champion then stands as the model it was validated as, at the challenger's lag.
    stand_in = champion_v.metadata.get("validated_version") if champion_v else None
    if (stand_in and stand_in in {v.name for v in ctx.registry.versions()}
            and {b["path"] for b in challenger_v.metadata["slices"]} <= {b["path"] for b in champion_v.metadata["slices"]}):
        compared, champion_v = stand_in, ctx.registry.version(stand_in)
    # newer data than the model it is compared with (the champion, or the model it was validated as)
    # (unknown when either version has no record of its batches: then the guide's threshold applies)
    known = champion_v is not None and _slice_digests(champion_v) and _slice_digests(challenger_v)
    new_rows = bool(known) and bool(_slice_digests(challenger_v) - _slice_digests(champion_v))
    verdict = validation.validate(
        ctx.registry.load(challenger_v.name),
        holdout,
        profile=prof,
        champion=ctx.registry.load(compared) if champion else None,
        challenger_dir=ctx.registry.predictor_path(challenger_v.name),
        champion_dir=ctx.registry.predictor_path(compared) if champion else None,
        challenger_meta=challenger_v.metadata,
        champion_meta=champion_v.metadata if champion_v else None,
        seed=prof.training.seed,
        challenger_new_rows=new_rows,
    )
    out = Validation("validated", None, challenger_v.name, champion, plain([b.to_dict() for b in holdout_b]),
                     plain({"compared_with": compared, **verdict.to_dict()}), detail=verdict)
    ctx.write(out)
    return out


def _slice_digests(version) -> set[str]:
    """The batches a version trained on, by content (a rewritten file is a different batch)."""
    return {b.get("sha256") or b["path"] for b in version.metadata.get("slices", [])}
