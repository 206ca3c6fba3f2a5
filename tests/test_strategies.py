"""Contract of the strategy table: every strategy in ``STRATEGIES`` replayed on the same tiny stream.

As the gates (tests/test_gates.py) and the drift methods (tests/test_drift_methods.py) each get one
contract, so does every backtest strategy: it replays every batch through the playbook's steps, its
records are what those steps wrote, it bootstraps its first champion once and serves it until a
promotion replaces it, and it counts its retrains by its own rule (``never``: none; ``always``: every
batch; ``profile``: exactly when step 10's decision said so). A strategy added to the table is replayed
here without a new line. One backtest of five weekly batches (three replayed: the bootstrap and two
more) with real tiny AutoGluon fits, shared by every test of this module; identical fits are computed
once (the shared-fit cache), as a backtest does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from retrainlib import backtest
from retrainlib.backtest import STRATEGIES
from retrainlib.registry import Registry
from tests.conftest import make_home

pytestmark = pytest.mark.slow  # one backtest of every strategy: 27 replayed steps

REPLAYED = 3  # weeks=5 with window_batches=2 and holdout_batches=1: the first step sees three batches


@pytest.fixture(scope="module")
def replay(tmp_path_factory) -> backtest.BacktestResult:
    root = tmp_path_factory.mktemp("strategies")
    home = make_home(root / "home", weeks=5, **{"training.window_batches": 2, "validation.minimum": {"roc_auc": 0.5}})
    # period_days=1: the weekly batches are each a week after the last fit, so periodic's schedule trigger fires
    return backtest.run_backtest(home / "params" / "demo.yaml", home=home, strategies=list(STRATEGIES), period_days=1,
                                 work_dir=root / "work", progress=False)


def _records(replay: backtest.BacktestResult, name: str) -> pd.DataFrame:
    return replay.records[replay.records["strategy"] == name].sort_values("step").reset_index(drop=True)


def _step_json(record: pd.Series, step: str) -> dict:
    return json.loads((Path(record["run_dir"]) / f"{step}.json").read_text())


def test_the_table_is_replayed_whole_in_its_order(replay):
    assert list(replay.summary.index) == list(STRATEGIES)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_a_strategy_replays_every_batch_and_its_records_are_what_its_steps_wrote(replay, name):
    rec = _records(replay, name)
    assert len(rec) == REPLAYED and rec["batch"].is_unique, rec[["step", "batch"]]
    for r in rec.to_dict("records"):
        r = pd.Series(r)
        assert _step_json(r, "10-analyze-drift")["decision"]["status"] == r["decision"]
        assert (_step_json(r, "20-retrain-model")["status"] == "trained") == r["trained"]
        assert _step_json(r, "40-promote-or-rollback")["action"] == r["action"]


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_a_strategy_bootstraps_its_first_champion_once_and_serves_it_until_a_promotion_replaces_it(replay, name):
    rec = _records(replay, name)
    first = rec.iloc[0]
    assert rec["bootstrap"].tolist() == [True] + [False] * (REPLAYED - 1), rec[["batch", "decision"]]
    assert first["champion"] is None and first["trained"] and first["promoted"] and first["champion_after"], first.to_dict()
    # every later batch is served by the champion the batch before left in place: none is lost or bootstrapped again
    assert rec["champion"].iloc[1:].tolist() == rec["champion_after"].iloc[:-1].tolist()
    assert rec["champion"].iloc[1] == first["champion_after"]
    registry = Registry(Path(first["run_dir"]).parents[1] / "models", "loan-default-demo")
    assert registry.versions()[0].name == first["champion_after"]  # the registry's first version is that champion


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_a_strategy_counts_its_retrains_by_its_own_rule(replay, name):
    strategy, rec = STRATEGIES[name], _records(replay, name)
    later = rec.iloc[1:]
    retrained = int(later["trained"].sum())
    assert replay.summary.loc[name, "retrains"] == retrained
    if strategy.retrain == "never":
        assert retrained == 0
    elif strategy.retrain == "always":
        assert retrained == REPLAYED - 1
    else:  # the profile's triggers decide: a retrain exactly when step 10's decision said so
        said = [_step_json(r, "10-analyze-drift")["decision"]["retrain"] for _, r in later.iterrows()]
        assert later["trained"].tolist() == said, later[["batch", "decision", "fired", "trained"]]
    if name == "periodic":  # a week after a fit with a one-day interval: the schedule trigger fires every time
        assert retrained == REPLAYED - 1
    if not strategy.gates:  # deployed without validation: every fit serves
        assert (later["promoted"] == later["trained"]).all(), later[["batch", "trained", "action"]]
