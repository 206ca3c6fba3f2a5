"""Registry behaviour on a real tiny AutoGluon predictor: versions, integrity, promotion, rollback,
retention, history, evaluations, locks. The fault and concurrency tests are in test_registry_faults.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from retrainlib import automl
from retrainlib.errors import IntegrityError, RegistryError, RunLocked
from retrainlib.registry import HistoryEvent, PromotionResult, Registry, VersionInfo

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parent.parent


# ---- fixtures: one real tiny predictor per test session ---------------------------------------


@pytest.fixture
def reg(tmp_path) -> Registry:
    return Registry(tmp_path / "models", "loan-default")


def add(reg: Registry, clone: Path, n: int = 1, **meta) -> list[str]:
    return [reg.add_version(clone, {"note": f"test {i}", **meta}, run_id=f"run-{i}").name for i in range(n)]


def model_file(reg: Registry, name: str) -> Path:
    return reg.path / name / "predictor" / "models" / "LightGBM" / "model.pkl"


# ---- versions --------------------------------------------------------------------------------


def test_added_version_holds_the_predictor_metadata_extra_files_and_a_checksum_of_every_file(reg, clone, tmp_path):
    lb = tmp_path / "lb.csv"
    lb.write_text("model,score_val\nLightGBM,0.9\n")
    info = reg.add_version(clone, {"metrics": {"log_loss": 0.3}}, run_id="r1", extra_files={"leaderboard.csv": lb})

    assert isinstance(info, VersionInfo) and info.name == "v0001" and info.path == reg.path / "v0001"
    assert info.metadata["version"] == "v0001" and info.metadata["run_id"] == "r1"
    assert info.metadata["metrics"] == {"log_loss": 0.3}
    assert datetime.fromisoformat(info.metadata["created"]).tzinfo is not None
    assert (info.path / "predictor" / "predictor.pkl").is_file()
    assert (info.path / "leaderboard.csv").read_text() == lb.read_text()
    sums = json.loads((info.path / "checksums.json").read_text())
    on_disk = {p.relative_to(info.path).as_posix() for p in info.path.rglob("*") if p.is_file()} - {"checksums.json"}
    assert set(sums) == on_disk and "metadata.json" in sums and "leaderboard.csv" in sums
    assert info.size_bytes > 0 and reg.total_size_bytes() >= info.size_bytes
    assert info.to_dict()["name"] == "v0001"
    assert not any((reg.path / ".staging").iterdir())


def test_versions_are_numbered_in_order_and_listed_oldest_first(reg, clone):
    assert add(reg, clone, 3) == ["v0001", "v0002", "v0003"]
    assert [v.name for v in reg.versions()] == ["v0001", "v0002", "v0003"]


def test_a_deleted_version_name_is_never_reused(reg, clone):
    add(reg, clone, 3)
    reg.promote("v0001", run_id="r", reason="first")
    future = datetime.now(timezone.utc) + timedelta(days=10)
    assert reg.apply_retention(max_versions=5, retention_days=1, now=future) == ["v0002", "v0003"]
    assert add(reg, clone) == ["v0004"]


@pytest.mark.parametrize("bad", ["../x", "/tmp/v0001", "v1", "v00001", "v0001/../v0002", "", "V0001", None])
def test_names_that_are_not_version_names_are_refused_listing_the_existing_ones(reg, clone, bad):
    add(reg, clone, 2)
    with pytest.raises(RegistryError, match=r"is not a version name .*expected one of v0001, v0002"):
        reg.version(bad)
    if bad is not None:  # roll_back(to=None) means "to the previous champion"
        with pytest.raises(RegistryError, match="is not a version name"):
            reg.roll_back(to=bad, run_id=None, reason="bad name")
    with pytest.raises(RegistryError, match="is not a version name"):
        reg.promote(bad, run_id=None, reason="bad name")


def test_an_unknown_version_is_refused_listing_the_existing_ones(reg, clone):
    add(reg, clone, 2)
    with pytest.raises(RegistryError, match=r"'v0007' is not in models/loan-default; expected one of v0001, v0002"):
        reg.version("v0007")


def test_a_model_name_that_is_a_path_is_refused():
    with pytest.raises(RegistryError, match=r"model name '\.\./other' is not a folder name"):
        Registry(Path("/tmp/models"), "../other")


def test_a_folder_that_is_not_a_predictor_is_refused_as_a_version(reg, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match="has no predictor.pkl"):
        reg.add_version(tmp_path / "empty", {})
    with pytest.raises(RegistryError, match="missing or not a folder"):
        reg.add_version(tmp_path / "nowhere", {})
    assert reg.versions() == []


@pytest.mark.parametrize("fname", ["../escape.csv", "predictor", "checksums.json", "metadata.json", "sub/x.csv", ".hidden"])
def test_extra_file_names_that_could_overwrite_or_escape_the_version_are_refused(reg, clone, tmp_path, fname):
    src = tmp_path / "x.csv"
    src.write_text("a\n1\n")
    with pytest.raises(RegistryError, match="is not allowed; expected a plain file name"):
        reg.add_version(clone, {}, extra_files={fname: src})


# ---- integrity -------------------------------------------------------------------------------


def test_flipping_one_byte_of_a_model_file_is_refused_naming_the_file(reg, clone):
    add(reg, clone, 2)
    reg.promote("v0001", run_id="r", reason="first")
    target = model_file(reg, "v0002")
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))

    named = r"version v0002 .* predictor/models/LightGBM/model\.pkl changed"
    with pytest.raises(IntegrityError, match=named):
        reg.verify("v0002")
    with pytest.raises(IntegrityError, match=named):
        reg.load("v0002")
    with pytest.raises(IntegrityError, match=named):
        reg.predictor_path("v0002")
    with pytest.raises(IntegrityError, match=named):
        reg.promote("v0002", run_id="r", reason="should be refused")
    assert reg.champion() == "v0001"
    reg.verify("v0001")  # the other version is untouched
    assert reg.predictor_path("v0002", verify=False) == reg.path / "v0002" / "predictor"


def test_a_missing_or_an_extra_file_is_refused_naming_it(reg, clone):
    add(reg, clone, 2)
    (reg.path / "v0001" / "predictor" / "learner.pkl").unlink()
    with pytest.raises(IntegrityError, match=r"predictor/learner\.pkl is missing"):
        reg.verify("v0001")
    (reg.path / "v0002" / "predictor" / "sneaked-in.pkl").write_bytes(b"x")
    with pytest.raises(IntegrityError, match=r"predictor/sneaked-in\.pkl is extra"):
        reg.verify("v0002")


# ---- promotion and rollback ------------------------------------------------------------------


def test_the_promoted_champion_loads_strictly_and_predicts(reg, clone, sample):
    add(reg, clone)
    ev = reg.promote("v0001", run_id="run-a", reason="bootstrap")
    assert isinstance(ev, HistoryEvent) and (ev.event, ev.version, ev.previous) == ("promote", "v0001", None)
    rec = reg.champion_record()
    assert (rec["version"], rec["previous"], rec["run_id"]) == ("v0001", None, "run-a")
    assert rec["since"] == ev.time
    scores = automl.predict_scores(reg.load(), sample)
    assert scores.shape == (len(sample),) and np.isfinite(scores).all()


def test_loading_with_no_champion_says_to_promote_first(reg, clone):
    add(reg, clone)
    with pytest.raises(RegistryError, match="has no champion yet.*promote a version first"):
        reg.load()


def test_promotions_are_recorded_in_history_with_time_run_id_and_reason(reg, clone):
    add(reg, clone, 2)
    reg.promote("v0001", run_id="run-a", reason="bootstrap")
    reg.promote("v0002", run_id="run-b", reason="log_loss improved by 0.02")
    hist = reg.history()
    assert [(e.event, e.version, e.previous, e.run_id, e.reason) for e in hist] == [
        ("promote", "v0001", None, "run-a", "bootstrap"),
        ("promote", "v0002", "v0001", "run-b", "log_loss improved by 0.02"),
    ]
    assert hist[0].time <= hist[1].time
    assert reg.champion_record()["previous"] == "v0001"
    assert Registry(reg.root, reg.model_name).history() == hist  # it is on disk, not in memory


def test_promoting_the_current_champion_is_refused(reg, clone):
    add(reg, clone)
    reg.promote("v0001", run_id=None, reason="first")
    with pytest.raises(RegistryError, match="v0001 is already the champion"):
        reg.promote("v0001", run_id=None, reason="again")


def test_rollback_restores_the_previous_champion_and_keeps_both_versions(reg, clone, sample):
    add(reg, clone, 2)
    reg.promote("v0001", run_id="a", reason="first")
    reg.promote("v0002", run_id="b", reason="better")
    ev = reg.roll_back(run_id="c", reason="v0002 misbehaves in production")
    assert (ev.event, ev.version, ev.previous, ev.run_id) == ("rollback", "v0001", "v0002", "c")
    assert reg.champion() == "v0001"
    assert [v.name for v in reg.versions()] == ["v0001", "v0002"]
    assert np.isfinite(automl.predict_scores(reg.load(), sample)).all()
    assert [e.event for e in reg.history()] == ["promote", "promote", "rollback"]


def test_rolling_back_twice_goes_two_steps_back_along_the_promotions(reg, clone):
    add(reg, clone, 3)
    for name in ("v0001", "v0002", "v0003"):
        reg.promote(name, run_id=None, reason="next")
    reg.roll_back(run_id=None, reason="one back")
    assert reg.champion_record()["version"] == "v0002" and reg.champion_record()["previous"] == "v0001"
    reg.roll_back(run_id=None, reason="two back")
    assert reg.champion() == "v0001"
    with pytest.raises(RegistryError, match=r"nothing to roll back to: .* champion v0001 and no previous champion; "
                       r"name a version with `retrain rollback --to vNNNN` \(versions: v0001, v0002, v0003\)"):
        reg.roll_back(run_id=None, reason="three back")


def test_rollback_to_a_named_version(reg, clone):
    add(reg, clone, 3)
    reg.promote("v0001", run_id=None, reason="first")
    reg.promote("v0003", run_id=None, reason="third")
    ev = reg.roll_back(to="v0002", run_id="ops", reason="pinned by hand")
    assert (ev.version, ev.previous) == ("v0002", "v0003") and reg.champion() == "v0002"
    with pytest.raises(RegistryError, match="v0002 is already the champion"):
        reg.roll_back(to="v0002", run_id=None, reason="again")
    with pytest.raises(RegistryError, match=r"'v0009' is not in models/loan-default; expected one of v0001, v0002, v0003"):
        reg.roll_back(to="v0009", run_id=None, reason="unknown")


def test_rollback_on_an_empty_registry_is_refused_saying_how_to_fix(reg):
    with pytest.raises(RegistryError, match=r"nothing to roll back to: .* champion none"):
        reg.roll_back(run_id=None, reason="nothing there")


def test_rollback_to_a_corrupted_version_is_refused_and_the_champion_stays(reg, clone):
    add(reg, clone, 2)
    reg.promote("v0001", run_id=None, reason="first")
    reg.promote("v0002", run_id=None, reason="second")
    model_file(reg, "v0001").write_bytes(b"not a model")
    with pytest.raises(IntegrityError, match="model.pkl changed"):
        reg.roll_back(run_id=None, reason="back")
    assert reg.champion() == "v0002"


# ---- promote_verified (fresh-process smoke test) ---------------------------------------------


def test_promote_verified_keeps_a_champion_that_loads_and_predicts_in_a_fresh_process(reg, clone, sample):
    add(reg, clone, 2)
    reg.promote("v0001", run_id=None, reason="first")
    result = reg.promote_verified("v0002", sample, run_id="run-v", reason="better")
    assert isinstance(result, PromotionResult)
    assert (result.promoted, result.smoke_passed, result.champion, result.previous) == (True, True, "v0002", "v0001")
    assert json.loads(result.detail)["rows"] == len(sample)
    assert reg.champion() == "v0002" and [e.event for e in result.events] == ["promote"]
    assert result.to_dict()["events"][0]["version"] == "v0002"


def broken_clone(clone: Path, tmp_path: Path) -> Path:
    """A predictor folder whose model file is garbage (stored with matching checksums: it passes
    verification, so only loading it in a fresh process can find the fault)."""
    bad = tmp_path / "broken-clone"
    import shutil

    shutil.copytree(clone, bad)
    (bad / "learner.pkl").write_bytes(b"garbage, not a pickle")
    return bad


def test_promote_verified_rolls_back_by_itself_when_the_new_champion_fails_to_load(reg, clone, sample, tmp_path):
    add(reg, clone)
    reg.promote("v0001", run_id="r0", reason="first")
    bad = reg.add_version(broken_clone(clone, tmp_path), {"note": "broken"}).name
    reg.verify(bad)  # its checksums match: the fault shows only when loading

    result = reg.promote_verified(bad, sample, run_id="r1", reason="looked better")
    assert (result.promoted, result.smoke_passed, result.champion) == (False, False, "v0001")
    assert "smoke test failed" in result.detail and "UnpicklingError" in result.detail
    assert reg.champion() == "v0001"
    events = [(e.event, e.version, e.previous, e.run_id) for e in reg.history()]
    assert events[-2:] == [("promote", bad, "v0001", "r1"), ("auto-rollback", "v0001", bad, "r1")]
    assert "smoke test of v0002 failed" in reg.history()[-1].reason
    assert reg.champion_record()["previous"] is None  # the failed version is not protected by retention


def test_promote_verified_of_a_broken_first_version_leaves_no_champion(reg, clone, sample, tmp_path):
    bad = reg.add_version(broken_clone(clone, tmp_path), {}).name
    result = reg.promote_verified(bad, sample, run_id="r", reason="bootstrap")
    assert not result.promoted and result.champion is None and reg.champion() is None
    assert [(e.event, e.version, e.previous) for e in reg.history()] == [("promote", bad, None), ("auto-rollback", None, bad)]
    with pytest.raises(RegistryError, match="has no champion yet"):
        reg.load()


def test_promote_verified_rolls_back_when_the_smoke_test_overruns_its_timeout(reg, clone, sample, held_checks):
    add(reg, clone, 2)
    reg.promote("v0001", run_id=None, reason="first")
    result = reg.promote_verified("v0002", sample, run_id="r", reason="better", timeout=0.05)  # held: cannot answer
    assert (result.promoted, result.detail, reg.champion()) == (False, "no answer within 0.05 s", "v0001")
    assert reg.history()[-1].event == "auto-rollback" and "smoke_pending" not in reg.champion_record()


def test_promote_verified_refuses_an_empty_sample(reg, clone, sample):
    add(reg, clone)
    with pytest.raises(RegistryError, match="sample is empty"):
        reg.promote_verified("v0001", sample.iloc[:0], run_id=None, reason="x")
    assert reg.champion() is None


# ---- retention -------------------------------------------------------------------------------


def test_retention_keeps_the_champion_the_previous_champion_and_kept_versions(reg, clone):
    add(reg, clone, 6)
    reg.promote("v0002", run_id=None, reason="a")
    reg.promote("v0004", run_id=None, reason="b")  # champion v0004, previous v0002
    reg.keep("v0001")
    deleted = reg.apply_retention(max_versions=1, retention_days=365)
    assert deleted == ["v0003", "v0005", "v0006"]
    assert [v.name for v in reg.versions()] == ["v0001", "v0002", "v0004"]
    assert reg.champion() == "v0004"


def test_retention_keeps_the_model_the_champion_was_validated_as(reg, clone):
    """The next challenger on the champion's own rows is judged against it (step 30's stand-in); deleting it
    made every other challenger the champion's twin, scored an improvement of exactly 0 and rejected."""
    add(reg, clone, 4)                                   # v0001..v0004 rejected or served before
    validated, = add(reg, clone)                         # v0005: the challenger that passed the gates
    refit, = add(reg, clone, validated_version=validated, refit_of=validated)  # v0006: its refit, deployed
    reg.promote("v0001", run_id=None, reason="a")
    reg.promote(refit, run_id=None, reason="b")
    deleted = reg.apply_retention(max_versions=2, retention_days=365)
    assert validated not in deleted and {"v0002", "v0003", "v0004"} <= set(deleted)
    assert [v.name for v in reg.versions()] == ["v0001", validated, refit]


def test_retention_keeps_the_newest_versions_within_max_versions(reg, clone):
    add(reg, clone, 5)
    reg.promote("v0001", run_id=None, reason="a")
    assert reg.apply_retention(max_versions=3, retention_days=365) == ["v0002", "v0003"]
    assert [v.name for v in reg.versions()] == ["v0001", "v0004", "v0005"]


def test_retention_removes_rejected_challengers_before_former_champions(reg, clone):
    add(reg, clone, 7)
    for name in ("v0001", "v0003", "v0006"):  # v0002, v0004, v0005 and v0007 were rejected challengers
        reg.promote(name, run_id=None, reason="passed")
    deleted = reg.apply_retention(max_versions=3, retention_days=365)
    assert deleted == ["v0002", "v0004", "v0005", "v0007"]
    assert [v.name for v in reg.versions()] == ["v0001", "v0003", "v0006"]  # every champion stays a rollback target
    assert "never champion" in reg.history()[-1].reason


def test_retention_removes_the_oldest_former_champion_once_no_rejected_challenger_is_left(reg, clone):
    add(reg, clone, 4)
    for name in ("v0001", "v0002", "v0003", "v0004"):
        reg.promote(name, run_id=None, reason="passed")
    assert reg.apply_retention(max_versions=3, retention_days=365) == ["v0001"]


def test_retention_deletes_versions_older_than_retention_days_except_protected_ones(reg, clone):
    add(reg, clone, 4)
    reg.promote("v0001", run_id=None, reason="a")
    reg.promote("v0002", run_id=None, reason="b")
    assert reg.apply_retention(max_versions=10, retention_days=1) == []  # all are fresh
    later = datetime.now(timezone.utc) + timedelta(days=2)
    assert reg.apply_retention(max_versions=10, retention_days=1, now=later) == ["v0003", "v0004"]
    assert [v.name for v in reg.versions()] == ["v0001", "v0002"]


def test_retention_records_each_deletion_in_the_history(reg, clone):
    add(reg, clone, 3)
    reg.promote("v0003", run_id=None, reason="a")
    reg.apply_retention(max_versions=1, retention_days=30)
    gone = [(e.event, e.version) for e in reg.history() if e.event == "retention"]
    assert gone == [("retention", "v0001"), ("retention", "v0002")]
    assert "max_versions=1" in reg.history()[-1].reason


def test_an_unpinned_version_can_be_deleted_again(reg, clone):
    add(reg, clone, 3)
    reg.promote("v0003", run_id=None, reason="a")
    reg.keep("v0001")
    assert reg.pins() == {"v0001"}
    reg.keep("v0001", keep=False)
    assert reg.pins() == set()
    assert reg.apply_retention(max_versions=1, retention_days=30) == ["v0001", "v0002"]


def test_keeping_an_unknown_version_is_refused(reg, clone):
    add(reg, clone)
    with pytest.raises(RegistryError, match=r"'v0002' is not in .*expected one of v0001"):
        reg.keep("v0002")


@pytest.mark.parametrize("kwargs, match", [
    ({"max_versions": 0, "retention_days": 1}, "max_versions must be an integer >= 1; got 0"),
    ({"max_versions": 3, "retention_days": 0}, "retention_days must be a number of days > 0; got 0"),
    ({"max_versions": 3, "retention_days": float("nan")}, "retention_days must be a number of days > 0; got nan"),
])
def test_retention_settings_out_of_range_are_refused(reg, kwargs, match):
    with pytest.raises(RegistryError, match=match):
        reg.apply_retention(**kwargs)


def test_leftovers_of_killed_writers_are_cleared_by_the_next_writer(reg, clone):
    add(reg, clone, 2)
    reg.promote("v0001", run_id=None, reason="a")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = reg.path / ".staging" / f"{dead_pid}.abc"
    (stale / "predictor").mkdir(parents=True)
    live = reg.path / ".staging" / f"{os.getpid()}.def"  # a build still in progress in a live process
    live.mkdir()
    (reg.path / ".trash" / "v0009.xyz").mkdir(parents=True)
    (reg.path / ".CHAMPION.123.tmp").write_text("{")

    reg.apply_retention(max_versions=10, retention_days=30)
    assert not stale.exists() and live.exists()
    assert list((reg.path / ".trash").iterdir()) == []
    assert not list(reg.path.glob(".*.tmp"))
    assert reg.champion() == "v0001"


# ---- history and evaluations on disk ---------------------------------------------------------


def test_a_torn_last_history_line_is_ignored_and_cut_off_by_the_next_writer(reg, clone):
    add(reg, clone, 2)
    reg.promote("v0001", run_id=None, reason="a")
    with open(reg.path / "history.jsonl", "a") as f:
        f.write('{"time": "2026-01-01T00:00:00+00:00", "event": "prom')  # a write cut short by a kill
    assert [e.version for e in reg.history()] == ["v0001"]
    reg.promote("v0002", run_id=None, reason="b")
    assert [e.version for e in reg.history()] == ["v0001", "v0002"]
    assert all(json.loads(line) for line in (reg.path / "history.jsonl").read_text().splitlines())


def test_a_broken_history_line_before_the_last_is_an_error_naming_the_line(reg, clone):
    add(reg, clone, 2)
    reg.promote("v0001", run_id=None, reason="a")
    reg.promote("v0002", run_id=None, reason="b")
    lines = (reg.path / "history.jsonl").read_text().splitlines()
    (reg.path / "history.jsonl").write_text("{oops\n" + "\n".join(lines[1:]) + "\n")
    with pytest.raises(RegistryError, match=r"line 1 of .*history\.jsonl is not JSON"):
        reg.history()


def test_a_pointer_swap_whose_history_line_was_lost_is_recorded_by_the_next_writer(reg, clone):
    add(reg, clone, 2)
    reg.promote("v0001", run_id="a", reason="first")
    reg.promote("v0002", run_id="b", reason="second")
    hist_file = reg.path / "history.jsonl"
    hist_file.write_text(hist_file.read_text().splitlines(keepends=True)[0])  # as if killed before the append
    assert [e.version for e in reg.history()] == ["v0001"]
    assert reg.recover() == ["restored the history line of the promote to v0002"]
    last = reg.history()[-1]
    assert (last.event, last.version, last.previous, last.run_id, last.reason) == ("promote", "v0002", "v0001", "b", "second")
    assert last.time == reg.champion_record()["since"]
    assert reg.recover() == []


def test_evaluations_persist_across_registry_instances(reg, clone):
    add(reg, clone)
    reg.record_evaluations([
        {"run_id": "r1", "version": "v0001", "batch": "data/2024-05.parquet", "metric": "log_loss", "value": 0.31, "n_rows": 500},
        {"run_id": "r1", "version": "v0001", "batch": "data/2024-06.parquet", "metric": "log_loss", "value": 0.35, "n_rows": 480},
    ])
    reg.record_evaluations([{"version": "v0002", "batch": "data/2024-07.parquet", "metric": "log_loss", "value": 0.4}])
    again = Registry(reg.root, "loan-default")
    rows = again.evaluations()
    assert [r["value"] for r in rows] == [0.31, 0.35, 0.4]
    assert [r["batch"] for r in again.evaluations("v0001")] == ["data/2024-05.parquet", "data/2024-06.parquet"]
    assert rows[2]["run_id"] is None and rows[2]["n_rows"] is None and datetime.fromisoformat(rows[2]["time"])


def test_an_evaluation_row_without_its_keys_is_refused_naming_them(reg):
    with pytest.raises(RegistryError, match="evaluation row 0 lacks batch, value; expected keys"):
        reg.record_evaluations([{"version": "v0001", "metric": "log_loss"}])
    with pytest.raises(RegistryError, match="evaluation row 0 has value 'high'; expected a number"):
        reg.record_evaluations([{"version": "v0001", "batch": "b", "metric": "m", "value": "high"}])
    assert reg.evaluations() == []


# ---- locks -----------------------------------------------------------------------------------


HOLD_RUN_LOCK = """
import sys, time
from pathlib import Path
from retrainlib.registry import Registry
with Registry(Path(sys.argv[1]), sys.argv[2]).run_lock():
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def test_a_second_run_is_refused_while_another_process_holds_the_run_lock(reg):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_RUN_LOCK, str(reg.root), reg.model_name, "3600"],  # until killed
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=r"another run of model 'loan-default' holds .*models/loan-default/\.run\.lock"):
            with reg.run_lock(timeout=0.2):
                pass
    finally:
        holder.kill()
        holder.wait()
    with reg.run_lock(timeout=5) as lock_file:  # a killed holder releases it
        assert lock_file == reg.path / ".run.lock"


def test_the_write_lock_is_reentrant_within_one_registry(reg, clone):
    add(reg, clone, 2)
    with reg.write_lock():
        reg.promote("v0001", run_id=None, reason="inside the lock")
        with reg.write_lock():
            assert reg.champion() == "v0001"
    assert not reg.write_lock().is_locked
