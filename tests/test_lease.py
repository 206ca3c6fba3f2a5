"""The run lease: the model's run lock carried across the separate processes of a step-by-step run."""

from __future__ import annotations

import json

import pytest

from retrainlib import lease
from retrainlib.errors import RunLocked
from retrainlib.paths import Paths
from retrainlib.pipeline import begin_run, finish_run, run_playbook, run_step
from retrainlib.profiles import load_profile
from retrainlib.registry import Registry


def _registry(home) -> Registry:
    prof = load_profile(home / "params" / "demo.yaml")
    return Registry(Paths.discover(home).resolve(prof.registry), prof.model_name)


def test_a_leased_model_refuses_a_retrain_run_before_it_writes_anything(fast_home):
    lease.take(_registry(fast_home), run_id="20240101T000000Z-demo", owner="retrain_demo/run-1")
    with pytest.raises(RunLocked, match=r"holds its lease: run 20240101T000000Z-demo \(owner retrain_demo/run-1\)"):
        run_playbook("params/demo.yaml", home=fast_home, progress=False)
    assert not list(fast_home.glob("runs/*"))


def test_a_second_run_cannot_begin_while_the_first_holds_the_lease_and_the_first_gets_its_folder_back(fast_home):
    manifest, run_dir = begin_run("params/demo.yaml", owner="retrain_demo/run-1", home=fast_home, as_of="2024-03-10")
    with pytest.raises(RunLocked, match="owner retrain_demo/run-1"):
        begin_run("params/demo.yaml", owner="retrain_demo/run-2", home=fast_home)
    again, same_dir = begin_run("params/demo.yaml", owner="retrain_demo/run-1", home=fast_home, as_of="2024-03-10")
    assert same_dir == run_dir and again.run_id == manifest.run_id
    assert [s.status for s in manifest.steps] == ["pending"] * 4
    assert lease.read(_registry(fast_home))["run_id"] == run_dir.name


def test_a_stale_lease_is_broken_by_the_next_run(fast_home):
    reg = _registry(fast_home)
    lease.take(reg, run_id="20240101T000000Z-demo", owner="retrain_demo/dead-run", ttl=0)
    manifest, run_dir = begin_run("params/demo.yaml", owner="retrain_demo/run-2", home=fast_home)
    assert lease.read(reg)["owner"] == "retrain_demo/run-2" and lease.read(reg)["run_id"] == run_dir.name


def test_a_step_refuses_to_run_once_its_lease_was_taken_over(fast_home):
    _, run_dir = begin_run("params/demo.yaml", owner="retrain_demo/run-1", home=fast_home, lease_ttl=0)
    begin_run("params/demo.yaml", owner="retrain_demo/run-2", home=fast_home)  # breaks the stale lease
    with pytest.raises(RunLocked, match=f"run {run_dir.name} does not hold the lease"):
        run_step(run_dir, "10", home=fast_home, progress=False)
    assert not (run_dir / "10-analyze-drift.ipynb").exists()


def test_finishing_a_run_whose_steps_never_ran_records_a_failure_and_frees_the_model(fast_home):
    _, run_dir = begin_run("params/demo.yaml", owner="retrain_demo/run-1", home=fast_home)
    manifest = finish_run(run_dir, home=fast_home)
    assert manifest.status == "failed" and manifest.outcome == "failed" and manifest.exit_code == 1
    assert [s.status for s in manifest.steps] == ["not-run"] * 4
    assert json.loads((run_dir / "manifest.json").read_text())["finished"] is not None
    assert lease.read(_registry(fast_home)) is None
