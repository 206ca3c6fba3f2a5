"""Shared fixtures: a small project home with the demo loan book and a fast profile."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
# Child processes (fits, smoke tests, papermill kernels) import this repository's ``tests`` package
# (e.g. tests.sleeping_model). It is a namespace package, so a regular ``tests`` package installed into
# site-packages would still hide it: tests/test_environment.py checks that none is.
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]])
TINY_ROWS = 400


def tiny_profile(**overrides) -> dict:
    """The demo profile with a tiny, fast, bounded model config."""
    prof = yaml.safe_load((REPO / "params" / "demo.yaml").read_text())
    prof["training"]["hyperparameters"] = {"GBM": [{"num_boost_round": 40, "learning_rate": 0.1}]}
    prof["training"]["min_train_rows"] = 100
    prof["validation"]["bootstrap_samples"] = 100
    prof["max_retraining_time"] = 60
    prof["training"]["refit_full"] = False  # one fit per challenger; tests of the refit turn it on
    for key, value in overrides.items():
        target = prof
        *parents, last = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[last] = value
    return prof


def make_home(root: Path, *, weeks: int = 24, rows: int = TINY_ROWS, name: str = "demo", **overrides) -> Path:
    """A project home under ``root``: params/<name>.yaml (tiny demo profile) and the demo batches."""
    from retrainlib.demo import DEMO_BATCHES, write_batches

    root.mkdir(parents=True, exist_ok=True)
    (root / "params").mkdir(exist_ok=True)
    prof = tiny_profile(**overrides)
    prof["name"] = name
    (root / "params" / f"{name}.yaml").write_text(yaml.safe_dump(prof, sort_keys=False))
    if not (root / DEMO_BATCHES).exists():
        write_batches(root / DEMO_BATCHES, weeks=weeks, rows=rows)
    return root


def bootstrap_champion(home: Path, week: int = 10, profile: str = "params/demo.yaml") -> Path:
    """Bootstrap the champion v0001 of ``home`` on the weeks before ``week`` (holdout ``week``), by the steps
    in-process, as the notebooks call them."""
    from retrainlib import steps
    from retrainlib.demo import week_end

    ctx = steps.open_step(profile, str(home / "runs" / "boot"), str(home), week_end(week).isoformat())
    assert steps.analyze_drift(ctx).decision.status == "bootstrap"
    assert steps.retrain_model(ctx).status == "trained"
    steps.validate_challenger(ctx)
    assert steps.promote_or_rollback(ctx).champion_after == "v0001"
    return home


@pytest.fixture(scope="module")
def champion_home(tmp_path_factory) -> Path:
    """A tiny home whose champion v0001 was bootstrapped on weeks 1-9 (holdout week 10), once per test module."""
    return bootstrap_champion(make_home(tmp_path_factory.mktemp("champion") / "home"))


@pytest.fixture
def qhome(champion_home: Path, tmp_path: Path) -> Path:
    """A copy of ``champion_home`` a test may change (its batches, its registry)."""
    home = tmp_path / "home"
    shutil.copytree(champion_home, home)
    return home


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh tiny project home."""
    return make_home(tmp_path / "home")


@pytest.fixture(scope="session")
def demo_batches(tmp_path_factory) -> Path:
    """Tiny demo batches written once per session (copy them, do not edit them)."""
    from retrainlib.demo import write_batches

    folder = tmp_path_factory.mktemp("demo") / "batches"
    write_batches(folder, weeks=24, rows=TINY_ROWS)
    return folder


RELEASE_HELD_CHECKS_AFTER = 300  # seconds


@pytest.fixture
def held_checks(tmp_path: Path, monkeypatch):
    """A file while which fresh-process checks started with ``hold=True`` (the registry's smoke test) stop before
    loading (``RETRAIN_SMOKE_HOLD``): they cannot answer, so any timeout fires, on any machine. After
    ``RELEASE_HELD_CHECKS_AFTER`` s the file is removed (and again whenever a check re-creates it), letting them go
    on: a check whose timeout is broken then passes, and its test fails, never hangs."""
    from retrainlib.freshproc import HOLD_VARIABLE

    held = tmp_path / "check-held"
    monkeypatch.setenv(HOLD_VARIABLE, str(held))
    done = threading.Event()

    def release() -> None:  # from then on, also a check that reaches its hold later goes on at once
        if not done.wait(RELEASE_HELD_CHECKS_AFTER):
            while not done.wait(0.05):
                held.unlink(missing_ok=True)

    threading.Thread(target=release, daemon=True).start()
    yield held
    done.set()


@pytest.fixture
def fast_home(tmp_path: Path, demo_batches: Path) -> Path:
    """Like ``home`` but copies the session's batches instead of generating them."""
    root = tmp_path / "home"
    shutil.copytree(demo_batches.parent, root / "data" / "demo")
    return make_home(root)


# ---- one real tiny predictor per test session (registry tests) ----------------------------------


def tiny_rows(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "income": rng.normal(50, 10, n),
            "debt": rng.normal(10, 3, n),
            "region": rng.choice(["north", "south", "east"], n),
        }
    )
    df["default"] = ((df.debt / df.income + rng.normal(0, 0.05, n)) > 0.2).astype(int)
    return df


def tiny_clone(tmp_path_factory) -> Path:
    """A deployment clone of one small LightGBM, fitted once per session (shared by the registry tests)."""
    from retrainlib import automl

    base = tmp_path_factory.getbasetemp() / "tiny-predictor"
    clone, done = base / "clone", base / "DONE"
    if not done.exists():
        base.mkdir(exist_ok=True)
        predictor = automl.fit_predictor(
            tiny_rows(),
            label="default",
            path=base / f"fit-{os.getpid()}",
            eval_metric="log_loss",
            problem_type="binary",
            presets="medium_quality",
            time_limit=60,
            num_cpus=1,
            seed=0,
            hyperparameters={"GBM": {"num_boost_round": 20}},
        )
        automl.deploy_clone(predictor, clone)
        done.write_text("ok\n")
    return clone


@pytest.fixture(scope="session")
def clone(tmp_path_factory) -> Path:
    return tiny_clone(tmp_path_factory)


@pytest.fixture(scope="session")
def sample() -> pd.DataFrame:
    return tiny_rows(40, seed=1).drop(columns="default")
