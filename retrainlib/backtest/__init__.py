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

Modules: :mod:`.strategies` (the table of strategies), :mod:`.run` (the walk-forward loop and the merge of
workers' parts), :mod:`.step` (one replayed playbook run at one batch), :mod:`.summary` (summary, acceptance and
target tables from the records), :mod:`.result` (:class:`BacktestResult`, its files, reading them back, the plot),
:mod:`.coverage` (each batch's label-free estimate as judged when its labels arrived, and each strategy's band coverage).
"""

from __future__ import annotations

from .result import BacktestResult, markdown_table, plot_backtest, recorded, streams_table
from .run import BacktestSettings, load_drift_points, merge_backtest, run_backtest
from .strategies import PLAIN, REFERENCE, STRATEGIES, TRIGGERED, Strategy, parse_strategies  # noqa: F401
from .summary import check_acceptance, check_target, longest_unflagged_rejections, summarize  # noqa: F401

__all__ = [
    "Strategy",
    "STRATEGIES",
    "BacktestResult",
    "BacktestSettings",
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
