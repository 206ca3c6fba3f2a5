"""The smoke test a new champion must pass in a fresh process: load strictly, predict a sample.

Run as ``python -m retrainlib.smoke <predictor dir> <sample parquet>``. Exit code 0 and one JSON
line on stdout when the predictor loads strictly (same AutoGluon and Python versions) and returns
one finite score per sample row; exit code 1 and one line on stderr saying what failed otherwise.
:meth:`retrainlib.registry.Registry.promote_verified` runs it after swapping the champion pointer
and rolls back when it fails.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

__all__ = ["smoke_test", "main"]


def smoke_test(predictor_dir: str | os.PathLike, sample_path: str | os.PathLike) -> dict:
    """Load ``predictor_dir`` strictly and predict the rows of ``sample_path``; a summary dict.

    Raises ``RuntimeError`` (or AutoGluon's own error) when loading or predicting fails, or when
    a score is missing or not finite.
    """
    import numpy as np
    import pandas as pd

    from . import automl

    t0 = time.monotonic()
    automl.pin_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    sample = pd.read_parquet(sample_path)
    if len(sample) == 0:
        raise RuntimeError(f"the sample {sample_path} has no rows; pass a few rows of recent data")
    predictor = automl.load_predictor(predictor_dir, strict=True)
    loaded = time.monotonic()
    scores = np.asarray(automl.predict_scores(predictor, sample), dtype=float)
    if scores.shape[0] != len(sample):
        raise RuntimeError(f"predicted {scores.shape[0]} scores for {len(sample)} sample rows; expected one per row")
    if not np.all(np.isfinite(scores)):
        raise RuntimeError(f"{int((~np.isfinite(scores)).sum())} of the predicted scores are not finite")
    return {
        "ok": True,
        "predictor": str(predictor_dir),
        "rows": int(len(sample)),
        "problem_type": predictor.problem_type,
        "load_seconds": round(loaded - t0, 3),
        "predict_seconds": round(time.monotonic() - loaded, 3),
    }


#: fault tests set this to a file path: the smoke test writes it, then waits until it is killed, so a
#: test can kill a promotion exactly while the new champion awaits its smoke test
HOLD_ENV = "RETRAIN_SMOKE_HOLD"


def _hold_for_fault_tests() -> None:
    marker = os.environ.get(HOLD_ENV)
    if not marker:
        return
    Path(marker).write_text(f"{os.getpid()}\n")
    while True:
        time.sleep(3600)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m retrainlib.smoke <predictor dir> <sample parquet>", file=sys.stderr)
        return 2
    predictor_dir, sample_path = (Path(a) for a in args)
    for p, what in ((predictor_dir, "predictor folder"), (sample_path, "sample parquet file")):
        if not p.exists():
            print(f"smoke test failed: the {what} {p} does not exist", file=sys.stderr)
            return 1
    _hold_for_fault_tests()
    try:
        summary = smoke_test(predictor_dir, sample_path)
    except Exception as exc:  # the boundary of a process: report one line, exit non-zero
        msg = str(exc).strip().splitlines()
        print(f"smoke test failed: {type(exc).__name__}: {msg[0] if msg else ''}", file=sys.stderr)
        return 1
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
