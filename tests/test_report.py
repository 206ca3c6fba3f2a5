"""Reports: HTML of a real run's executed notebooks and runs/index.html, incremental over hundreds of runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from retrainlib import cli
from retrainlib.durable import sha256_file
from retrainlib.outputs import Analysis
from retrainlib.playbook import NOTEBOOK_NAMES
from retrainlib.triggers import Decision
from retrainlib.report import INDEX, build_report, champion_plot
from tests.shared_runs import bootstrapped_home


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    boot = bootstrapped_home(tmp_path_factory, "report")
    first = build_report(boot.home / "runs")
    second = build_report(boot.home / "runs")
    return boot, first, second


def _row(index_html: str, run_id: str) -> str:
    m = re.search(rf'<tr id="{re.escape(run_id)}">(.*?)</tr>', index_html, re.S)
    assert m, f"no row for {run_id}"
    return m.group(1)


def test_each_executed_notebook_is_rendered_to_static_html_beside_it(reported):
    boot, first, _ = reported
    assert first.rendered == 4 and first.runs == 1
    for step in NOTEBOOK_NAMES:
        page = (boot.run_dir / f"{step}.html").read_text()
        assert "jp-Notebook" in page and "jp-OutputArea-output" in page
        assert not re.search(r'<script[^>]+src="https?://', page), "the page loads a script from the network"
    drift_page = (boot.run_dir / "10-analyze-drift.html").read_text()
    assert "no champion yet: train the first model" in drift_page and "data:image/png;base64," in drift_page


def test_the_index_has_one_row_per_run_with_reasons_decision_metrics_status_duration_and_links(reported):
    boot, first, _ = reported
    m = json.loads((boot.run_dir / "manifest.json").read_text())
    page = first.index.read_text()
    row = _row(page, m["run_id"])
    assert "no champion yet: train the first model" in row
    assert "bootstrapped" in row and "succeeded" in row and f"{m['seconds']:.0f}&nbsp;s" in row
    assert f"roc_auc&nbsp;{m['metrics']['challenger']['roc_auc']:.4f}" in row
    for step in NOTEBOOK_NAMES:
        assert f'href="{boot.run_dir.name}/{step}.html"' in row
    assert f'href="{boot.run_dir.name}/manifest.json"' in row
    assert "<svg" in page and "promotion" in page  # the plot marks the bootstrap as a promotion
    assert "<script" not in page


def test_a_second_report_renders_nothing_again(reported):
    _, _, second = reported
    assert second.rendered == 0 and second.skipped == 4


def test_retrain_report_prints_what_it_did(reported, capsys):
    boot, _, _ = reported
    assert cli.main(["report", "--home", str(boot.home)]) == 0
    assert "1 runs listed, 0 notebooks rendered (4 already)" in capsys.readouterr().out


def _fake_runs(runs: Path, source: Path, n: int) -> None:
    """``n`` run folders whose notebooks are links to a real run's files, with their own manifest and step-10 result."""
    m = json.loads((source / "manifest.json").read_text())
    outcomes = ["no-retrain-needed"] * 6 + ["promoted", "rejected", "rolled-back", "failed"]
    for i in range(n):
        run_id = f"2025{1 + i // 28 % 12:02d}{1 + i % 28:02d}T{i % 24:02d}0000Z-demo"
        d = runs / run_id
        d.mkdir()
        for f in source.iterdir():
            if f.suffix in (".ipynb", ".html"):
                (d / f.name).symlink_to(f)
        outcome = outcomes[i % len(outcomes)]
        m.update(run_id=run_id, started=f"{run_id[:4]}-{run_id[4:6]}-{run_id[6:8]}T{run_id[9:11]}:00:00+00:00", as_of=None,
                 outcome=outcome, status="failed" if outcome == "failed" else "succeeded",
                 reasons=[f"drift score {0.3 + i % 7 / 100:.2f} > drift_threshold 0.25"] if outcome != "no-retrain-needed" else [])
        analysis = Analysis(None, Decision(False, "no-retrain", "any", ()), {"score": 1.0},
                            performance={"metric": "roc_auc", "value": 0.7 + (i % 9) / 100})
        (d / "10-analyze-drift.json").write_text(json.dumps(analysis.to_dict()))
        m["outputs"] = {"10-analyze-drift": {"file": "10-analyze-drift.json", "sha256": sha256_file(d / "10-analyze-drift.json")}}
        (d / "manifest.json").write_text(json.dumps(m))


def test_the_index_of_three_hundred_runs_is_small_and_a_rebuild_reads_only_the_manifests_that_changed(reported, tmp_path):
    boot, _, _ = reported
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(boot.run_dir, runs / boot.run_dir.name)
    _fake_runs(runs, runs / boot.run_dir.name, 300)
    cold = build_report(runs)
    page = (runs / INDEX).read_text()
    assert cold.runs == 301 and page.count("<tr id=") == 301
    assert len(page.encode()) < 1_500_000, len(page.encode())
    assert page.count('fill="#d62728"') == 30  # every rollback is marked
    # newest first
    ids = re.findall(r'<tr id="([^"]+)"', page)
    assert ids[0] == boot.run_dir.name and ids[1:] == sorted(ids[1:], reverse=True)
    # The cache, not a clock, is what makes a rebuild cheap: every promotion is now rewritten as a
    # rollback, but only the manifest whose modification time moved is read again.
    promoted = [f for f in sorted(runs.glob("2025*/manifest.json")) if json.loads(f.read_text())["outcome"] == "promoted"]
    assert len(promoted) == 30
    for f in promoted:
        st = f.stat()
        f.write_text(f.read_text().replace('"outcome": "promoted"', '"outcome": "rolled-back"'))
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    st = promoted[0].stat()
    os.utime(promoted[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    warm = build_report(runs)
    assert warm.runs == 301 and warm.rendered == 0
    assert (runs / INDEX).read_text().count('fill="#d62728"') == 31


def test_a_run_in_progress_is_listed_and_links_to_its_notebooks_until_it_is_rendered(reported, tmp_path):
    boot, _, _ = reported
    runs = tmp_path / "runs"
    run = runs / "20990101T000000Z-demo"
    shutil.copytree(boot.run_dir, run, ignore=shutil.ignore_patterns("*.html"))
    m = json.loads((run / "manifest.json").read_text())
    m.update(run_id=run.name, status="running", outcome=None)
    (run / "manifest.json").write_text(json.dumps(m))
    result = build_report(runs)
    assert result.rendered == 0 and not list(run.glob("*.html"))
    assert f'href="{run.name}/10-analyze-drift.ipynb"' in (runs / INDEX).read_text()


def test_the_plot_marks_promotions_with_green_and_rollbacks_with_red_triangles():
    rows = [
        {"run_id": "a", "model": "m", "time": "2024-01-07", "metric": "roc_auc", "champion_metric": None,
         "outcome": "bootstrapped", "new_champion_metric": 0.80},
        {"run_id": "b", "model": "m", "time": "2024-01-14", "metric": "roc_auc", "champion_metric": 0.78, "outcome": "no-retrain-needed"},
        {"run_id": "c", "model": "m", "time": "2024-01-21", "metric": "roc_auc", "champion_metric": 0.70,
         "outcome": "promoted", "new_champion_metric": 0.83},
        {"run_id": "d", "model": "m", "time": "2024-01-28", "metric": "roc_auc", "champion_metric": 0.65, "outcome": "rolled-back"},
    ]
    svg = champion_plot(rows)
    assert svg.count('fill="#2ca02c"') == 2 and svg.count('fill="#d62728"') == 1
    assert "d: rollback roc_auc=0.6500 (rolled-back)" in svg
    assert svg.count("<circle") == 3
    assert champion_plot([]).startswith("<svg") and "no champion measurements yet" in champion_plot([])


def test_the_plot_marks_a_shadow_trial_that_starts_or_is_dropped_and_counts_a_promotion_from_it():
    rows = [{"run_id": "a", "model": "m", "time": "2024-01-07", "metric": "roc_auc", "champion_metric": 0.78,
             "outcome": "shadow-started"},
            {"run_id": "b", "model": "m", "time": "2024-01-14", "metric": "roc_auc", "champion_metric": 0.77,
             "outcome": "shadow-dropped"},
            {"run_id": "c", "model": "m", "time": "2024-01-21", "metric": "roc_auc", "champion_metric": 0.76,
             "outcome": "promoted-from-shadow", "new_champion_metric": 0.82}]
    svg = champion_plot(rows)
    assert svg.count('stroke="#9467bd" stroke-width="1.5"><title>') == 2  # ◇ for the start and the drop
    assert "a: shadow roc_auc=0.7800 (shadow-started)" in svg and svg.count('fill="#2ca02c"') == 1


def _run_on_a_terminal(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Run ``argv`` with a 120-column pseudo-terminal as stdin, stdout and stderr; return (exit code, output)."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import termios

    from tests.shared_runs import child_env

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(argv, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=child_env())
    os.close(slave)
    out, deadline = b"", time.monotonic() + 600
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=30), out.decode(errors="replace")


def test_a_run_on_a_terminal_shows_papermills_progress_bar_instead_of_step_log_lines(tmp_path, demo_batches):
    import sys

    from tests.conftest import make_home

    home = tmp_path / "home"
    shutil.copytree(demo_batches.parent, home / "data" / "demo")
    make_home(home)
    # a run that fails fast in step 10 (no batch is visible before 2000): still one notebook executed
    code, out = _run_on_a_terminal([sys.executable, "-m", "retrainlib.cli", "run", "--home", str(home),
                                    "--as-of", "2000-01-01"], home)
    assert code == 2, out[-2000:]  # no batch before 2000: a broken data contract, found by step 10
    assert re.search(r"Executing: +\d+%\|", out), out[-2000:]
    assert ": running 10-analyze-drift" not in out


DAMAGED_MANIFESTS = {
    "torn": ('{"run_id": "x", "status": "succ', "is not JSON"),
    "not-utf8": (b"\xff\xfe{}", "is not JSON"),
    "a-list": ("[1, 2]", "holds an array instead of a JSON object"),
    "steps-a-string": ('{"run_id": "x", "status": "succeeded", "steps": "all of them"}', "has a field of an unexpected type"),
}


def test_a_run_whose_manifest_is_damaged_is_listed_as_damaged_naming_the_file_and_the_rest_still_index(reported, tmp_path,
                                                                                                       caplog):
    boot, _, _ = reported
    runs = tmp_path / "runs"
    shutil.copytree(boot.run_dir, runs / boot.run_dir.name)
    for i, (name, (content, _)) in enumerate(sorted(DAMAGED_MANIFESTS.items())):
        d = runs / f"2026010{i + 1}T000000Z-{name}"
        shutil.copytree(boot.run_dir, d, ignore=shutil.ignore_patterns("*.html", "manifest.json"))
        (d / "manifest.json").write_bytes(content if isinstance(content, bytes) else content.encode())
    with caplog.at_level("WARNING", logger="retrainlib.report"):
        result = build_report(runs)
    assert result.runs == 1 + len(DAMAGED_MANIFESTS) and result.rendered == 0  # the good run was rendered already
    page = (runs / INDEX).read_text()
    assert "damaged" in page.split("<table")[0]  # said above the table, not only in a row
    for folder in sorted(runs.glob("2026010*")):
        name = folder.name.split("-", 1)[1]
        line = next(d for d in result.damaged if f"runs/{folder.name}/manifest.json" in d)
        assert DAMAGED_MANIFESTS[name][1] in line and "restore the file" in line
        row = _row(page, folder.name)
        assert 'class="damaged"' in row and f"runs/{folder.name}/manifest.json" in row
        assert f'href="{folder.name}/10-analyze-drift.ipynb"' in row  # its notebooks stay reachable
        assert any(f"runs/{folder.name}/manifest.json" in r.getMessage() for r in caplog.records)
    assert 'class="succeeded"' in _row(page, boot.run_dir.name)

    # repaired: the next report lists it as the run it is
    repaired = sorted(runs.glob("2026010*"))[0]
    m = json.loads((boot.run_dir / "manifest.json").read_text())
    (repaired / "manifest.json").write_text(json.dumps({**m, "run_id": repaired.name}))
    again = build_report(runs)
    assert len(again.damaged) == len(DAMAGED_MANIFESTS) - 1 and not any(repaired.name in d for d in again.damaged)
    assert 'class="damaged"' not in _row((runs / INDEX).read_text(), repaired.name)
