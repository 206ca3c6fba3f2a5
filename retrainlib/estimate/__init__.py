"""Label-free performance estimation: what the champion's metric probably is on a batch without labels.

Two methods, one API (:func:`fit_estimator` → :class:`Estimator` → :meth:`Estimator.estimate` →
:class:`Estimate`):

* **classification** (binary, multiclass) — confidence-based estimation (CBPE): the champion's
  probabilities are calibrated with isotonic regression (SciPy's PAVA) on labelled rows the
  champion did *not* train on; on a new batch each row's calibrated probability is the chance of
  each label, so the metric's expectation under them is the estimate (closed form where there is one,
  else the mean over label draws). The band adds two variances: the metric's over label draws
  (sampling) and the calibration's — the mean squared distance from the estimate of the estimates
  under isotonic maps re-fitted on bootstrap samples of the calibration rows. The model's own
  probabilities are kept instead of a map only where they do as well on held-out rows *and* pass as
  calibrated on all of them; the band then still spans the isotonic alternative the rows cannot rule out.
  The calibration does not depend on the metric: estimators of several metrics fitted on the same rows
  share it.
* **regression** — direct loss estimation (DLE): one small LightGBM per metric (one thread), fitted on the
  labelled rows the champion did not train on, learns the champion's absolute or squared error from the
  features and the prediction; a batch's estimated MAE / RMSE / R² follows from the predicted losses, the band
  from the spread of a row's loss over the batch's rows and over the calibration rows.

Both only see *covariate* shift: when the link between features and label changes (a concept
change) the probabilities stay confident and the estimate stays where it was.

Nothing is estimated silently: too little calibration data, a score that calibration cannot fix
(cross-fitted calibration error above what sampling explains), or a batch too small yields an
:class:`Estimate` with ``value=None`` and the reason.

The estimator is plain JSON (isotonic thresholds, the LightGBM model text): it is written into the
registry version it belongs to and checksummed with it.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> p = rng.uniform(0, 1, 2000); y = (rng.uniform(0, 1, 2000) < p).astype(int)
>>> est = fit_estimator(problem_type="binary", metric="accuracy", y_true=y, scores=p, classes=[0, 1])
>>> est.usable
True
>>> e = est.estimate(p[:1000])
>>> abs(e.value - 0.75) < 0.03, e.low < e.value < e.high
(True, True)

What the estimator cannot see it is told by its own record: once labels arrive each estimate is judged
(``evaluations.jsonl``), and :func:`widen` sets later bands by those errors (past a warm-up of :data:`WARMUP` judged
estimates: a robust scale of the newest errors times a normal quantile whose level adaptive conformal inference moves
with the band's hits and misses, never narrower than the batch's sampling spread; the band's ``parts`` say what each
source gives), while :func:`label_check` compares the labels with what the calibrated champion expected and names a
label shift, which marks the estimate ``unreliable``.

Modules: :mod:`.estimator` (the stored :class:`Estimator`, its JSON and :class:`Estimate`), :mod:`.fit`
(:func:`fit_estimator`: checks, then CBPE or DLE), :mod:`.cbpe` (classification), :mod:`.calibration`
(isotonic maps, calibration error, label draws), :mod:`.metrics` (metric expectations and draws under label
probabilities), :mod:`.dle` (regression), :mod:`.track` (the track-record band, the metric's range, label shift).
"""

from __future__ import annotations

from .calibration import N_MAPS  # noqa: F401  (the names retrainlib.estimate had before it was a package)
from .cbpe import N_DRAWS, SPREAD_ROWS  # noqa: F401
from .estimator import CONFIDENCE, ESTIMATOR_FILE, MIN_BATCH_ROWS, Estimate, Estimator, compare, unavailable  # noqa: F401
from .fit import MIN_CLASS_ROWS, MIN_ROWS, fit_estimator  # noqa: F401
from .metrics import _binary_metric  # noqa: F401  (tests check it directly)
from .track import WARMUP, band_summary, band_table, clip_to_range, label_check, metric_range, track_record, unreliable_reason, widen  # noqa: F401

__all__ = [
    "Estimate",
    "Estimator",
    "fit_estimator",
    "unavailable",
    "compare",
    "ESTIMATOR_FILE",
    "MIN_ROWS",
    "MIN_BATCH_ROWS",
    "track_record",
    "widen",
    "label_check",
    "unreliable_reason",
    "clip_to_range",
]
