"""The playbook end to end: real papermill execution of the real notebooks, real AutoGluon fits."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from retrainlib.demo import week_end
from retrainlib.manifest import RunManifest
from retrainlib.playbook import NOTEBOOK_NAMES
from retrainlib.pipeline import run_playbook
from retrainlib.registry import Registry
from tests.conftest import make_home

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Bootstrap at week 10, then a run at week 22 — after the covariate shift and the concept change."""
    home = make_home(tmp_path_factory.mktemp("e2e") / "home")
    first = run_playbook("params/demo.yaml", home=home, as_of=week_end(10).isoformat(), progress=False)
    second = run_playbook("params/demo.yaml", home=home, as_of=week_end(22).isoformat(), progress=False)
    return home, first, second


def test_the_first_run_bootstraps_a_champion_and_leaves_four_executed_notebooks(two_runs):
    home, (manifest, run_dir), _ = two_runs
    assert manifest.status == "succeeded", manifest.error
    assert manifest.outcome == "bootstrapped" and manifest.exit_code == 0
    assert manifest.champion_before is None and manifest.champion_after == "v0001"
    for step in NOTEBOOK_NAMES:
        nb = nbformat.read(run_dir / f"{step}.ipynb", as_version=4)
        assert nb.metadata["papermill"]["exception"] is None
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert (run_dir / "10-training-window.png").exists()


def test_the_second_run_detects_the_drift_retrains_validates_and_promotes(two_runs):
    home, _, (manifest, run_dir) = two_runs
    assert manifest.status == "succeeded", manifest.error
    assert manifest.outcome == "promoted", manifest.outputs
    assert manifest.champion_before == "v0001" and manifest.champion_after == "v0002"
    decision = json.loads((run_dir / "10-analyze-drift.json").read_text())["decision"]
    fired = {t["name"] for t in decision["triggers"] if t["fired"]}
    assert {"drift", "performance"} <= fired
    assert manifest.metrics["challenger"]["roc_auc"] > manifest.metrics["champion"]["roc_auc"] + 0.01
    for png in ("10-drift-per-feature", "10-distributions", "20-resources", "30-validation", "40-champion-timeline"):
        assert (run_dir / f"{png}.png").exists(), png


def test_the_manifest_records_profile_software_data_and_a_checksum_of_every_file(two_runs):
    home, _, (manifest, run_dir) = two_runs
    m = RunManifest.load(run_dir)
    assert m.profile.sha256 == hashlib.sha256((home / "params/demo.yaml").read_bytes()).hexdigest()
    assert m.profile.resolved["drift_threshold"] == 0.25
    assert {"python", "autogluon", "pandas"} <= set(m.software)
    assert m.analysis.window("holdout")[0]["sha256"]
    assert [s.status for s in m.steps] == ["succeeded"] * 4
    on_disk = {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file() and p.name != "manifest.json"}
    assert set(m.files) == on_disk
    # the step outputs are referred to by file and sha256, not copied into the record
    assert {k: (r.file, r.sha256) for k, r in m.outputs.items()} == {
        n: (f"{n}.json", m.files[f"{n}.json"]) for n in ("10-analyze-drift", "20-retrain-model", "30-validate-challenger",
                                                         "40-promote-or-rollback")}
    raw = json.loads((run_dir / "manifest.json").read_text())
    assert all(set(ref) == {"file", "sha256"} for ref in raw["outputs"].values()) and "data" not in raw
    for rel, sha in m.files.items():
        assert hashlib.sha256((run_dir / rel).read_bytes()).hexdigest() == sha


def test_the_registry_records_the_challengers_slices_and_the_promotion(two_runs):
    home, _, (manifest, run_dir) = two_runs
    reg = Registry(home / "models", "loan-default-demo")
    meta = reg.version("v0002").metadata
    assert meta["parent"] == "v0001" and meta["strategy"] == "sliding_window"
    assert [Path(s["path"]).name for s in meta["slices"]] == [f"{week_end(w)}.parquet" for w in range(16, 22)]
    assert [e.event for e in reg.history()] == ["promote", "promote"]
    assert reg.history()[-1].run_id == run_dir.name


def test_a_failing_step_leaves_its_partial_notebook_a_failed_manifest_and_the_champion(tmp_path):
    home = make_home(tmp_path / "home")
    first, _ = run_playbook("params/demo.yaml", home=home, as_of=week_end(8).isoformat(), progress=False)
    assert first.champion_after == "v0001"
    broken = home / f"data/demo/batches/{week_end(12)}.parquet"
    pd.read_parquet(broken).drop(columns=["credit_score"]).to_parquet(broken)

    manifest, run_dir = run_playbook("params/demo.yaml", home=home, as_of=week_end(14).isoformat(), progress=False)
    assert manifest.status == "failed" and manifest.exit_code == 2  # a broken data contract (README's table)
    assert manifest.error.step == "10-analyze-drift"
    assert "credit_score" in manifest.error.message and f"{week_end(12)}.parquet" in manifest.error.message
    assert [s.status for s in manifest.steps] == ["failed", "not-run", "not-run", "not-run"]
    nb = nbformat.read(run_dir / "10-analyze-drift.ipynb", as_version=4)
    assert nb.metadata["papermill"]["exception"] is True
    assert manifest.champion_after == "v0001"
    assert Registry(home / "models", "loan-default-demo").champion() == "v0001"


def test_the_playbooks_kernel_keeps_its_own_and_tornados_log_out_of_the_runs_stderr(tmp_path):
    """A kernel shut down after its last cell sometimes logs tornado's "Uncaught exception in ZMQStream
    callback" traceback to the run's stderr (seen on a loaded machine): the kernel starts with it silenced."""
    from retrainlib.pipeline import execute_notebook

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("import logging\n"
                                          "print(logging.getLogger('tornado.general').getEffectiveLevel(), sorted(k for k in dir() if not k.startswith('_')))")]
    src = tmp_path / "probe.ipynb"
    nbformat.write(nb, src)
    execute_notebook(src, tmp_path / "out.ipynb", {}, cwd=tmp_path, progress=False)
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    level, names = out.cells[-1].outputs[0]["text"].split(" ", 1)
    assert int(level) == 50  # CRITICAL: its error-level tracebacks are not printed
    assert "logging" in names and "x" in names and "__import__" not in names  # the user's namespace holds only the cells' names
    assert [c.execution_count for c in out.cells if c.cell_type == "code"] == [1, 2]


def test_a_step_kernels_channels_are_ipc_sockets_in_a_private_folder_removed_after_it(tmp_path):
    """Kernels of concurrent runs once picked the same TCP port (``ZMQError: Address already in use``): a step's
    kernel binds its five channels as IPC sockets in a folder of its own that only its user can enter."""
    import os

    from retrainlib.pipeline import execute_notebook

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import json, os\n"
        "from ipykernel.connect import get_connection_info\n"
        "info = json.loads(get_connection_info())\n"
        "folder = os.path.dirname(info['ip'])\n"
        "print(json.dumps({'transport': info['transport'], 'folder': folder, 'mode': os.stat(folder).st_mode & 0o777,\n"
        "                  'channels': [f\"{info['ip']}-{info[k]}\" for k in info if k.endswith('_port')]}))")]
    src = tmp_path / "probe.ipynb"
    nbformat.write(nb, src)
    execute_notebook(src, tmp_path / "out.ipynb", {}, cwd=tmp_path, progress=False)
    seen = json.loads(nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[-1].outputs[0]["text"])
    assert seen["transport"] == "ipc" and seen["mode"] == 0o700
    assert len(seen["channels"]) == 5 and all(os.path.dirname(c) == seen["folder"] for c in seen["channels"])
    assert not os.path.exists(seen["folder"])  # its sockets and connection file went with the kernel
