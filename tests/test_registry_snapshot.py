"""The registry as it stood before a run (what replay runs against), built from a real registry.

A real tiny predictor is stored as versions; a "run" (``run-b``) then adds a version, promotes it,
records evaluations and attempts, and retention deletes a version. The snapshot taken at the run's
start must hold exactly what was there before.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone

import pytest

from retrainlib.errors import RegistryError
from retrainlib.registry import Registry
from retrainlib.registry.snapshot import Snapshot, snapshot

MODEL = "loan-default"


def _tick(after: datetime) -> datetime:
    """The first clock reading after ``after`` (so what follows is strictly later; no sleeping)."""
    while (t := datetime.now(timezone.utc)) <= after:
        pass
    return t


@pytest.fixture
def lived(tmp_path, clone):
    """A registry before and during run ``run-b``: (registry, the run's start)."""
    reg = Registry(tmp_path / "models", MODEL)
    for i in (1, 2):
        reg.add_version(clone, {"note": f"before {i}"}, run_id=f"run-a{i}")
    reg.promote("v0001", run_id="run-a1", reason="first")
    reg.promote("v0002", run_id="run-a2", reason="second")
    reg.keep("v0001")
    reg.record_evaluations([{"version": "v0002", "batch": "w1", "metric": "log_loss", "value": 0.4, "run_id": "run-a2"}])
    reg.record_attempt(version="v0002", run_id="run-a2", data_end="2024-01-07")
    reg.record_estimates([{"version": "v0002", "batch": "w1", "metric": "log_loss", "value": 0.41, "run_id": "run-a2"}])
    started = _tick(datetime.now(timezone.utc))  # after every write above
    _tick(started)
    reg.add_version(clone, {"note": "the run's challenger"}, run_id="run-b")
    reg.record_evaluations([{"version": "v0002", "batch": "w2", "metric": "log_loss", "value": 0.5, "run_id": "run-b"}])
    reg.record_attempt(version="v0003", run_id="run-b", data_end="2024-01-14")
    reg.promote("v0003", run_id="run-b", reason="better")
    with open(reg.path / "history.jsonl", "ab") as f:
        f.write(b'{"event": "promo')  # a line a kill cut short
    return reg, started


def test_the_snapshot_holds_the_versions_logs_pins_and_champion_from_before_the_run(lived, tmp_path):
    reg, started = lived
    snap = snapshot(reg.path, tmp_path / "scratch" / MODEL, before=started, run_id="run-b", champion="v0002")

    assert isinstance(snap, Snapshot)
    assert snap.versions == ("v0001", "v0002") and snap.champion == "v0002" and snap.missing == ()
    assert snap.history_rows == 2 and snap.evaluation_rows == 1
    assert snap.to_dict()["versions"] == ["v0001", "v0002"] and snap.to_dict()["path"] == str(tmp_path / "scratch" / MODEL)
    copy = Registry(tmp_path / "scratch", MODEL)
    assert copy.champion() == "v0002" and copy.pointer_problem() is None
    assert copy.champion_record()["previous"] == "v0001"
    assert [(e.event, e.version) for e in copy.history()] == [("promote", "v0001"), ("promote", "v0002")]
    assert [r["batch"] for r in copy.evaluations()] == ["w1"]
    assert [a["data_end"] for a in copy.attempts()] == ["2024-01-07"]
    assert [r["value"] for r in copy.estimates()] == [0.41]
    assert copy.pins() == {"v0001"}
    copy.verify("v0001")
    copy.verify("v0002")
    original = reg.path / "v0002" / "predictor" / "predictor.pkl"
    assert os.stat(copy.path / "v0002" / "predictor" / "predictor.pkl").st_ino == os.stat(original).st_ino, "hard links"
    assert copy.recover() == [] and copy.roll_back(run_id="replay", reason="the copy is a working registry").version == "v0001"
    assert reg.champion() == "v0003", "the live registry is untouched"


def test_a_snapshot_before_the_first_promotion_has_no_champion(lived, tmp_path):
    reg, _ = lived
    first = datetime.fromisoformat(reg.version("v0001").created)
    snap = snapshot(reg.path, tmp_path / "empty" / MODEL, before=first, run_id="run-a1", champion=None)
    assert snap.versions == () and snap.champion is None and snap.history_rows == 0
    assert Registry(tmp_path / "empty", MODEL).champion() is None


def test_a_champion_history_does_not_name_gets_a_fresh_pointer_that_continues_nothing(lived, tmp_path):
    reg, started = lived
    snap = snapshot(reg.path, tmp_path / "s" / MODEL, before=started, run_id="run-b", champion="v0001",
                    since="2024-01-01T00:00:00+00:00")
    rec = Registry(tmp_path / "s", MODEL).champion_record()
    assert snap.champion == "v0001"
    assert rec == {"version": "v0001", "previous": None, "since": "2024-01-01T00:00:00+00:00", "run_id": None,
                   "event": "promote", "replaced": None, "reason": "rebuilt for replay"}


def test_a_champion_deleted_since_is_refused_naming_it_and_a_deleted_version_is_reported_missing(lived, tmp_path):
    reg, started = lived
    shutil.rmtree(reg.path / "v0001")  # a person removed it by hand
    with pytest.raises(RegistryError, match=r"its champion before the run, v0001, is no longer in .*Restore the version"):
        snapshot(reg.path, tmp_path / "a" / MODEL, before=started, run_id="run-b", champion="v0001")
    snap = snapshot(reg.path, tmp_path / "b" / MODEL, before=started, run_id="run-b", champion="v0002")
    assert snap.versions == ("v0002",) and snap.missing == ("v0001",)


def test_a_snapshot_never_overwrites_an_existing_folder(lived, tmp_path):
    reg, started = lived
    (tmp_path / "taken" / MODEL).mkdir(parents=True)
    with pytest.raises(FileExistsError):
        snapshot(reg.path, tmp_path / "taken" / MODEL, before=started, run_id="run-b", champion="v0002")


def test_what_the_run_wrote_is_left_out_even_when_written_before_the_cut(lived, tmp_path):
    """A run's recorded start is cut to the second (replay adds one): its own rows are told apart by run_id."""
    reg, _ = lived
    late = _tick(datetime.now(timezone.utc))  # after everything run-b wrote
    snap = snapshot(reg.path, tmp_path / "late" / MODEL, before=late, run_id="run-b", champion="v0002")
    copy = Registry(tmp_path / "late", MODEL)
    assert snap.versions == ("v0001", "v0002") and snap.history_rows == 2 and snap.evaluation_rows == 1
    assert all(r.get("run_id") != "run-b" for r in copy.evaluations() + copy.attempts() + copy.estimates())
    assert copy.champion() == "v0002" and copy.pointer_problem() is None
