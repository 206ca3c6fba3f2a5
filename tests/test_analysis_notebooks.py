"""The analysis notebooks (50: backtest, 60: tune) run as is through papermill, with a real kernel and real tiny fits,
on a small demo home: what a user opening them in Lab, or scheduling them, gets."""

from __future__ import annotations

import re

import nbformat
import papermill as pm
import pytest

from tests.conftest import REPO, make_home


def _run(name: str, out, home, **parameters) -> str:
    """Execute ``notebooks/<name>`` with ``parameters``; every output's text, joined."""
    pm.execute_notebook(str(REPO / "notebooks" / name), str(out), parameters={"home": str(home), **parameters},
                        cwd=str(home), kernel_name="python3", progress_bar=False)
    nb = nbformat.read(out, as_version=4)
    texts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            assert o.output_type != "error", f"{name}: {o.get('ename')}: {o.get('evalue')}"
            texts.append(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(texts)


@pytest.mark.slow
def test_notebook_60_tunes_a_stream_and_shows_the_pick_every_candidate_the_plot_and_the_tuned_profile(tmp_path):
    home = make_home(tmp_path / "home", weeks=10, **{"training.window_batches": 2})
    work = tmp_path / "tune"
    text = _run("60-tune-policy.ipynb", tmp_path / "60.ipynb", home, families=["static", "performance"], windows=["2"],
                run_dir=str(work))

    pick = re.search(r"^pick: (.+?) — ", text, re.M)
    assert pick, text[-3000:]
    assert pick.group(1) in text.split("pick:")[1]  # the candidates' table lists it
    assert (work / "tune.md").is_file() and (work / "tune.png").is_file()
    assert f"**Pick: {pick.group(1)}**" in (work / "tune.md").read_text()  # the same pick as the report the CLI writes
    tuned = home / "params" / "demo.tuned.yaml"
    assert tuned.is_file() and "# retrain tune:" in text  # the tuned profile, printed with its reasons
    nb = nbformat.read(tmp_path / "60.ipynb", as_version=4)
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))  # the cost-quality plot


@pytest.mark.slow
def test_notebook_50_backtests_two_strategies_and_shows_the_summary_and_the_recorded_streams(tmp_path):
    home = make_home(tmp_path / "home", weeks=8, **{"training.window_batches": 2})
    text = _run("50-backtest-strategies.ipynb", tmp_path / "50.ipynb", home, strategies="static,every-batch",
                max_batches=8, run_dir=str(tmp_path / "bt"), recorded=str(REPO / "docs" / "backtest-demo.json"))

    assert re.search(r"demo: roc_auc per batch; 8 batches", text), text[-3000:]
    assert "every-batch" in text and "static" in text
    assert (tmp_path / "bt").is_dir()
