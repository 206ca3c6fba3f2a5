"""Issue 23: a scheduled run between batches. After a run whose refit champion trained on the newest batch,
the next run sees no new batch: it exits 3 (no-retrain-needed) with a calm reason, never 2 with an ERROR."""

from __future__ import annotations

import json

from tests.conftest import make_home
from tests.test_hostile_registry import retrain


def test_two_runs_with_no_batch_between_them_the_second_exits_3_and_notifies_nothing_as_a_failure(tmp_path):
    from retrainlib.demo import week_end

    home = make_home(tmp_path / "home", **{"training.refit_full": True})  # the champion trains on the newest batch
    as_of = week_end(10).isoformat()
    first = retrain(home, "run", "--profile", "params/demo.yaml", "--as-of", as_of, "--json")
    assert json.loads(first.stdout)["outcome"] == "bootstrapped", first.stderr[-3000:]

    second = retrain(home, "run", "--profile", "params/demo.yaml", "--as-of", as_of, "--json")
    assert second.returncode == 3, second.stderr[-3000:]
    assert "Traceback" not in second.stderr and " ERROR " not in second.stderr
    summary = json.loads(second.stdout)
    assert summary["outcome"] == "no-retrain-needed" and summary["challenger"] is None
    (reason,) = summary["reasons"]
    assert reason.startswith("no new batch: the champion v0002 was trained on every visible batch up to")
    run_dir = sorted((home / "runs").iterdir())[-1]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] != "failed" and manifest["outcome"] == "no-retrain-needed"
    assert not [n for n in manifest["notifications"] if n.get("event") == "failed"]
