import time

import pandas as pd
import psutil
import pytest

from retrainlib import automl, freshproc
from retrainlib.demo import generate_week
from retrainlib.errors import TrainingError, TrainingTimeout
from retrainlib.profiles import Profile
from tests.conftest import tiny_profile

FEATURES = ["age", "income", "loan_amount", "debt_to_income", "credit_score", "employment_years", "open_accounts",
            "region", "purpose", "term", "employment"]


def train_frame(weeks=(1, 2, 3), rows=300) -> pd.DataFrame:
    return pd.concat([generate_week(w, rows=rows) for w in weeks])[FEATURES + ["default"]].reset_index(drop=True)


def profile(**over) -> Profile:
    return Profile.model_validate(tiny_profile(**over))


def test_a_challenger_is_fitted_in_a_child_process_and_its_deployment_clone_loads(tmp_path):
    result = train_challenger_ok(tmp_path)
    predictor = automl.load_predictor(result.predictor_dir)
    scores = automl.predict_scores(predictor, train_frame((5,), rows=50))
    assert scores.shape == (50,) and ((scores >= 0) & (scores <= 1)).all()
    assert set(result.features) == set(FEATURES)
    assert "LightGBM" in set(result.leaderboard["model"])
    assert result.cpu_seconds > 0 and result.fit_seconds < result.wall_seconds
    assert len(result.resources.samples) >= 1 and result.resources.peak_rss_bytes > 10 * 2**20
    assert abs(sum(result.importance.values()) - 1) < 1e-6
    # whether the fit came near its limit depends on the machine; the flag must say which it was
    assert result.time_limit_binding is (result.fit_seconds >= 0.9 * result.time_limit)


def train_challenger_ok(tmp_path):
    from retrainlib.training import train_challenger

    return train_challenger(train_frame(), profile=profile(), work_dir=tmp_path / "fit", disk_path=tmp_path, sample_interval=0.2)


def test_a_fit_that_overruns_the_wall_clock_guard_is_killed_with_its_workers(tmp_path, monkeypatch):
    """A real AutoGluon custom model whose fit sleeps far beyond its time limit: the overrun is certain, on any load."""
    from retrainlib.training import train_challenger
    from tests.conftest import REPO
    from tests.sleeping_model import SLEEP_SECONDS

    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the fit's child process imports tests.sleeping_model
    marker = tmp_path / "fit-started"
    monkeypatch.setenv("SLEEPING_MODEL_MARKER", str(marker))
    sleeping = profile(max_retraining_time=5, **{"training.hyperparameters": {"tests.sleeping_model:SleepingModel": {}}})
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    t0 = time.monotonic()
    with pytest.raises(TrainingTimeout, match=r"overran its wall-clock guard of 6 s .* champion is untouched"):
        train_challenger(train_frame(), profile=sleeping, work_dir=tmp_path / "fit", disk_path=tmp_path, grace_seconds=0.5)
    assert time.monotonic() - t0 < SLEEP_SECONDS  # the model sleeps 600 s: it was stopped, not waited for
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before - freshproc.warm_server_pids()
    assert not left, f"processes left behind: {left}"  # the fork server stays, by design; the fit and its workers do not
    if marker.exists():  # the fit had begun (on a very busy machine the guard may fire while AutoGluon imports)
        assert not psutil.pid_exists(int(marker.read_text()))


def test_too_little_free_disk_refuses_to_start_training(tmp_path):
    from retrainlib.training import train_challenger

    with pytest.raises(TrainingError, match=r"not enough free disk .*\(disk_threshold 1%\); free space"):
        train_challenger(train_frame(), profile=profile(disk_threshold=0.01), work_dir=tmp_path / "fit", disk_path=tmp_path)
    assert not (tmp_path / "fit").exists()


def test_too_few_rows_refuses_to_train_and_says_how_to_fix_it(tmp_path):
    from retrainlib.training import train_challenger

    with pytest.raises(TrainingError, match=r"has 50 rows, fewer than training.min_train_rows=100; widen window_batches"):
        train_challenger(train_frame(rows=50)[:50], profile=profile(), work_dir=tmp_path / "fit", disk_path=tmp_path)


@pytest.mark.parametrize("cold", [False, True], ids=["warm", "cold"])
def test_a_fit_that_fails_reports_autogluons_error(tmp_path, cold):
    """Warm (a fork-server child) or cold (``python -m retrainlib.freshproc fit``): the same entry, the same report."""
    from retrainlib.training import train_challenger

    bad = train_frame()
    bad["default"] = 1  # a single class cannot be fitted as binary
    with freshproc.settings(cold=cold), pytest.raises(TrainingError, match=r"AutoGluon fit failed \(exit code 1\)"):
        train_challenger(bad, profile=profile(), work_dir=tmp_path / "fit", disk_path=tmp_path)


def test_a_training_result_survives_its_json_record(tmp_path):
    import json

    from retrainlib.training import TrainingResult

    result = train_challenger_ok(tmp_path)
    record = json.loads(json.dumps(result.to_dict(), default=str))
    record.pop("leaderboard")
    again = TrainingResult.from_dict(record, predictor_dir=result.predictor_dir, leaderboard=result.leaderboard)
    assert again.to_dict() == json.loads(json.dumps(result.to_dict(), default=str))
