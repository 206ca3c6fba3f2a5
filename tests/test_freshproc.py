"""The one fresh-process launcher: warm (forked from a pre-imported server) or cold, for checks and fits, and the check cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest

from retrainlib import automl, freshproc

from .conftest import REPO, tiny_clone, tiny_rows
from .hold_points import wait_until


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    return tiny_clone(tmp_path_factory)


@pytest.fixture(scope="module")
def rows():
    return tiny_rows(40, seed=1).drop(columns="default")


def broken(clone: Path, tmp_path: Path) -> Path:
    bad = tmp_path / "broken"
    shutil.copytree(clone, bad)
    (bad / "learner.pkl").write_bytes(b"garbage, not a pickle")
    return bad


@pytest.mark.parametrize("cold", [False, True], ids=["warm", "cold"])
def test_a_failed_load_is_a_failure_with_its_one_line_cause(clone, rows, tmp_path, cold):
    result = freshproc.check(broken(clone, tmp_path), rows, timeout=300, cold=cold)
    assert not result.ok and result.scores is None and result.mode == ("cold" if cold else "warm")
    assert result.detail.startswith("UnpicklingError") and "\n" not in result.detail


@pytest.mark.parametrize("cold", [False, True], ids=["warm", "cold"])
def test_a_missing_predictor_folder_is_named_in_the_cause(rows, tmp_path, cold):
    result = freshproc.check(tmp_path / "gone", rows, timeout=300, cold=cold)
    assert not result.ok
    assert result.detail == f"FileNotFoundError: the predictor folder {tmp_path / 'gone'} does not exist"


def test_a_warm_check_gives_the_same_scores_as_a_cold_one_from_a_process_that_never_held_the_model(clone, rows):
    warm = freshproc.check(clone, rows, timeout=300, cold=False)
    cold = freshproc.check(clone, rows, timeout=300, cold=True)
    assert warm.ok and cold.ok, (warm.detail, cold.detail)
    assert (warm.mode, cold.mode) == ("warm", "cold")
    assert np.array_equal(warm.scores, cold.scores) and len(warm.scores) == len(rows)
    in_memory = automl.predict_scores(automl.load_predictor(clone, strict=True), rows)
    assert np.array_equal(warm.scores, np.asarray(in_memory))
    # neither answer came from this process, and the warm one came from a new child each time
    again = freshproc.check(clone, rows, timeout=300, cold=False)
    pids = {warm.info["pid"], cold.info["pid"], again.info["pid"]}
    assert os.getpid() not in pids and len(pids) == 3


@pytest.mark.parametrize("cold", [True, False], ids=["cold", "warm"])
def test_a_check_that_overruns_its_timeout_is_killed_and_says_so(clone, rows, held_checks, cold):
    result = freshproc.check(clone, rows, timeout=0.05, cold=cold, hold=True)  # held: it cannot answer in time
    assert (result.ok, result.detail) == (False, "no answer within 0.05 s")
    if held_checks.exists():  # it had reached the hold before the timeout: that process is gone
        assert not psutil.pid_exists(int(held_checks.read_text()))


def test_the_cache_answers_only_byte_identical_model_files_and_rows(clone, rows, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(clone, copy)
    with freshproc.settings(cache_dir=tmp_path / "cache"):
        first = freshproc.check(clone, rows, timeout=300)
        same_bytes_elsewhere = freshproc.check(copy, rows, timeout=300)
        other_rows = freshproc.check(clone, rows.iloc[:-1], timeout=300)
        (copy / "note.txt").write_text("one more file")  # the model files differ now
        changed_files = freshproc.check(copy, rows, timeout=300)
        moved_value = rows.copy()
        moved_value.iloc[0, 0] += 1e-9
        changed_rows = freshproc.check(clone, moved_value, timeout=300)
    assert [r.ok for r in (first, same_bytes_elsewhere, other_rows, changed_files, changed_rows)] == [True] * 5
    assert first.mode == "warm" and same_bytes_elsewhere.mode == "cached"
    assert np.array_equal(first.scores, same_bytes_elsewhere.scores)
    assert [r.mode for r in (other_rows, changed_files, changed_rows)] == ["warm", "warm", "warm"]


def test_a_failed_check_is_never_cached(clone, rows, tmp_path):
    bad = broken(clone, tmp_path)
    with freshproc.settings(cache_dir=tmp_path / "cache"):
        assert not freshproc.check(bad, rows, timeout=300).ok
        again = freshproc.check(bad, rows, timeout=300)
    assert not again.ok and again.mode == "warm"
    assert not any((tmp_path / "cache").glob("*/answer.json"))


def test_the_cold_module_prints_one_line_and_exits_1_on_a_failed_load(clone, rows, tmp_path):
    rows_path = tmp_path / "rows.parquet"
    rows.to_parquet(rows_path)
    proc = subprocess.run([sys.executable, "-m", "retrainlib.freshproc", "check", str(tmp_path / "gone"), str(rows_path), str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"fresh-process check failed: FileNotFoundError: the predictor folder {tmp_path / 'gone'} does not exist")


def entry_said(kind: str, work: Path) -> list[str]:
    """What the kind's entry left in ``work`` when its input was missing (the folder's name written as <work>)."""
    said = [json.loads((work / "answer.json").read_text())["error"], (work / "child.log").read_text().strip().splitlines()[-1]] \
        if kind == "check" else [(work / "error.txt").read_text().splitlines()[0]]
    return [line.replace(str(work), "<work>") for line in said]


@pytest.mark.parametrize("kind", sorted(freshproc.ENTRIES))
def test_a_check_and_a_fit_start_warm_or_cold_through_the_one_launcher_and_run_the_same_entry_point(kind, tmp_path):
    """Each kind's entry, given a missing input, fails at once: a warm child and a cold interpreter say the same."""
    said, pids = {}, set()
    for cold in (False, True):
        work = tmp_path / ("cold" if cold else "warm")
        work.mkdir()
        args = {"check": [work / "gone", work / "rows.parquet", work], "fit": [work]}[kind]
        child = freshproc.launch(kind, args, log=work / "child.log", cold=cold)
        assert child.warm is not cold
        assert child.wait(300) == 1
        said[cold], pids = entry_said(kind, work), pids | {child.pid}
    assert said[False] == said[True], said
    assert {"check": "FileNotFoundError: the predictor folder <work>/gone does not exist",
            "fit": "FileNotFoundError: [Errno 2] No such file or directory: '<work>/spec.json'"}[kind] == said[False][0]
    assert len(pids) == 2 and os.getpid() not in pids


def test_an_unknown_kind_of_fresh_process_is_refused_in_one_line_naming_the_kinds(tmp_path):
    with pytest.raises(ValueError, match=r"^unknown kind of fresh process 'train'; expected one of check, fit$"):
        freshproc.launch("train", [tmp_path], log=tmp_path / "log")
    proc = subprocess.run([sys.executable, "-m", "retrainlib.freshproc", "train", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["python -m retrainlib.freshproc: unknown kind 'train'; expected one of check, fit "
                                                "followed by its arguments (e.g. check PREDICTOR_DIR ROWS ANSWER_DIR)"]


@pytest.mark.parametrize("cold", [False, True], ids=["warm", "cold"])
def test_a_held_check_runs_as_a_fork_server_child_warm_and_as_python_m_retrainlib_freshproc_check_cold(
        clone, rows, held_checks, cold):
    started = freshproc.start(clone, rows, timeout=300, cold=cold, hold=True)
    try:
        wait_until(lambda: held_checks.exists() and held_checks.read_text().strip(), "the check did not reach its hold", limit=300)
        child = psutil.Process(int(held_checks.read_text()))
        if cold:
            assert child.cmdline()[1:4] == ["-m", "retrainlib.freshproc", "check"]
        else:
            assert child.ppid() in freshproc.warm_server_pids()
        held_checks.unlink()
        result = started.result()
    finally:
        started.close()
    assert result.ok and result.mode == ("cold" if cold else "warm") and result.info["pid"] == child.pid, result.detail


def test_kill_tree_ends_a_process_and_its_children():
    import psutil

    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                               "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); time.sleep(300)"])
    try:
        root = psutil.Process(parent.pid)
        wait_until(root.children, "the process did not start its child", limit=300, procs=[parent])
        child = root.children()[0]
        freshproc.kill_tree(parent.pid)
        assert not child.is_running() and not root.is_running()
    finally:
        if parent.poll() is None:
            parent.kill()
