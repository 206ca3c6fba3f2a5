"""Fresh-process reload check: load a predictor folder strictly, predict rows, save the scores.

Run by :mod:`retrainlib.validation` in a new interpreter, so nothing from the process that
trained or validated the model (imported modules, in-memory models, caches) can mask a predictor
that does not survive being saved and loaded::

    python -m retrainlib.stability_check <predictor_dir> <rows.parquet> <out.npy> [--num-cpus N]

It writes :func:`retrainlib.automl.predict_scores` of the rows to ``out.npy`` and prints one JSON
line (its pid and the running versions). Exit status 0 on success, 2 with a one-line message on
stderr when the folder cannot be loaded or cannot predict.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retrainlib.stability_check",
        description="Load a predictor in this fresh process and save its predictions of some rows.",
    )
    parser.add_argument("predictor_dir", type=Path, help="AutoGluon predictor folder")
    parser.add_argument("rows", type=Path, help="Parquet file of feature rows")
    parser.add_argument("out", type=Path, help="where to write the predictions (.npy)")
    parser.add_argument("--num-cpus", type=int, default=1, help="threads for prediction (default 1)")
    args = parser.parse_args(argv)

    from . import automl

    automl.pin_threads(args.num_cpus)
    try:
        import numpy as np
        import pandas as pd

        rows = pd.read_parquet(args.rows)
        predictor = automl.load_predictor(args.predictor_dir, strict=True)
        scores = automl.predict_scores(predictor, rows)
        np.save(args.out, scores)
    except Exception as exc:  # boundary: turn any failure into a one-line message and an exit code
        print(f"stability_check: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}", file=sys.stderr)
        return 2
    print(json.dumps({"pid": os.getpid(), "rows": int(len(rows)), "software": automl.software_versions()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
