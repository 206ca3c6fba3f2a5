"""Label-free performance estimation (retrainlib.estimate) and how the playbook uses it."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrainlib import estimate
from retrainlib.errors import EstimationError


def _binary(n: int, shift: float, seed: int):
    """A logistic world; ``shift`` moves the feature (covariate shift), the link stays."""
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    p_true = 1 / (1 + np.exp(-(1.5 * x - 0.5)))
    y = (rng.random(n) < p_true).astype(int)
    p_model = 1 / (1 + np.exp(-(2.5 * x - 0.8)))  # over-confident: calibration must fix it
    return y, p_model


def _measured(metric: str, y, p) -> float:
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    return {"accuracy": lambda: accuracy_score(y, p >= 0.5), "roc_auc": lambda: roc_auc_score(y, p),
            "f1": lambda: f1_score(y, p >= 0.5), "log_loss": lambda: log_loss(y, np.clip(p, 1e-15, 1 - 1e-15))}[metric]()


@pytest.mark.parametrize("metric", ["accuracy", "roc_auc", "f1", "log_loss"])
def test_a_binary_estimate_follows_the_metric_through_a_covariate_shift(metric):
    y, p = _binary(2000, 0.0, seed=1)
    est = estimate.fit_estimator(problem_type="binary", metric=metric, y_true=y, scores=p, classes=[0, 1])
    assert est.usable, est.reason
    errors, covered = [], []
    for i, shift in enumerate([0.0, 0.5, 1.0, -0.8, 1.5]):
        yb, pb = _binary(1500, shift, seed=10 + i)
        e = est.estimate(pb)
        truth = _measured(metric, yb, pb)
        errors.append(abs(e.value - truth) / (truth if metric == "log_loss" else 1.0))  # log loss: relative
        covered.append(e.low <= truth <= e.high)
    # the realised metric moves by far more than this over the shifts; the estimate follows it. Log loss
    # hangs on the few rows at extreme scores, where an isotonic map has least data: 10% relative there
    assert np.mean(errors) < (0.1 if metric == "log_loss" else 0.02), errors
    assert sum(covered) >= 4, covered


def test_a_multiclass_estimate_follows_accuracy():
    rng = np.random.default_rng(3)

    def world(n, shift):
        x = rng.normal(shift, 1.5, n)
        logits = np.column_stack([-x, np.zeros(n), x])
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        y = np.array([rng.choice(3, p=row) for row in p])
        return y, p

    y, p = world(3000, 0.0)
    est = estimate.fit_estimator(problem_type="multiclass", metric="accuracy", y_true=y, scores=p, classes=[0, 1, 2])
    assert est.usable, est.reason
    for shift in (0.0, 1.0, 2.0):
        yb, pb = world(1500, shift)
        e = est.estimate(pb)
        assert abs(e.value - float((pb.argmax(1) == yb).mean())) < 0.03


def test_a_regression_loss_estimate_sees_errors_grow_where_the_features_moved():
    # within the range the loss model saw: a tree model does not extrapolate beyond it (neither does NannyML's DLE)
    rng = np.random.default_rng(5)

    def world(n, shift):
        x = rng.normal(shift, 1.0, n)
        y = 2 * x + rng.normal(0, 0.3 + 0.8 * np.abs(x), n)  # noisier far from 0
        return pd.DataFrame({"x": x, "kind": np.where(x > 0, "a", "b")}), y, 2 * x

    X, y, pred = world(2000, 0.0)
    for metric in ("mean_absolute_error", "root_mean_squared_error"):
        est = estimate.fit_estimator(problem_type="regression", metric=metric, y_true=y, scores=pred, features=X)
        assert est.usable
        seen = []
        for shift in (0.0, 0.6):
            Xb, yb, pb = world(1500, shift)
            e = est.estimate(pb, Xb)
            err = yb - pb
            truth = float(np.abs(err).mean()) if metric == "mean_absolute_error" else float(np.sqrt((err ** 2).mean()))
            assert abs(e.value - truth) / truth < 0.1, (metric, shift, e, truth)
            seen.append(e.value)
        assert seen[1] > seen[0] + 0.03, seen  # the estimated loss rose with the shift


def test_calibrating_on_a_batch_the_champion_trained_on_is_refused():
    y, p = _binary(500, 0.0, seed=1)
    with pytest.raises(EstimationError, match="data/b/2024-03.parquet.*training slices"):
        estimate.fit_estimator(problem_type="binary", metric="roc_auc", y_true=y, scores=p, classes=[0, 1],
                               calibration_batches=["data/b/2024-03.parquet"],
                               trained_batches=["data/b/2024-02.parquet", "data/b/2024-03.parquet"])


def test_scores_calibration_cannot_fix_are_reported_not_estimated():
    rng = np.random.default_rng(2)
    p = rng.uniform(0, 1, 2000)
    y = ((p > 0.3) & (p < 0.7)).astype(int)  # risk is not monotone in the score: no calibration map exists
    est = estimate.fit_estimator(problem_type="binary", metric="accuracy", y_true=y, scores=p, classes=[0, 1])
    assert not est.usable
    assert "miscalibrated" in est.reason
    e = est.estimate(p[:500], batch="b1")
    assert e.value is None and "miscalibrated" in e.reason and "not estimated" in e.describe()


def test_a_well_ordered_but_overconfident_score_is_calibrated_not_refused():
    y, p = _binary(2000, 0.0, seed=4)
    est = estimate.fit_estimator(problem_type="binary", metric="accuracy", y_true=y, scores=p, classes=[0, 1])
    assert est.usable, est.reason
    assert est.checks["ece_calibrated"] < est.checks["ece_raw"]
    assert est.checks["brier_calibrated"] < est.checks["brier_raw"] and est.checks["calibration"] == "isotonic"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_probabilities_already_calibrated_are_kept_where_the_held_out_map_predicts_the_labels_no_better(seed):
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 3, 4000)
    y = (rng.random(4000) < p).astype(int)  # the labels drawn from the scores themselves: calibrated
    est = estimate.fit_estimator(problem_type="binary", metric="accuracy", y_true=y, scores=p, classes=[0, 1],
                                 seed=seed)
    assert est.checks["brier_raw"] <= est.checks["brier_calibrated"]
    assert est.checks["calibration"].startswith("none"), est.checks


def test_only_unlabelled_calibration_rows_are_reported():
    _, p = _binary(800, 0.0, seed=1)
    est = estimate.fit_estimator(problem_type="binary", metric="roc_auc", y_true=np.full(800, np.nan), scores=p,
                                 classes=[0, 1])
    assert not est.usable and "0 labelled calibration rows" in est.reason
    assert est.estimate(p).value is None


def test_calibration_features_of_another_length_than_the_labels_are_refused_in_one_line_naming_both_counts():
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"x": rng.normal(size=300)})
    y = X["x"].to_numpy() + rng.normal(size=300)
    with pytest.raises(EstimationError, match=r"calibration features have 299 rows and the labels 300"):
        estimate.fit_estimator(problem_type="regression", metric="mean_absolute_error", y_true=y, scores=y * 0.9,
                               features=X.iloc[:299])


def test_a_label_check_of_features_of_another_length_than_the_labels_is_refused_in_one_line_naming_both_counts():
    rng = np.random.default_rng(5)
    X = pd.DataFrame({"x": rng.normal(size=300)})
    y = X["x"].to_numpy() + rng.normal(size=300)
    est = estimate.fit_estimator(problem_type="regression", metric="mean_absolute_error", y_true=y, scores=y * 0.9,
                                 features=X)
    with pytest.raises(EstimationError, match=r"the batch on b7 has 299 rows of features and 300 labels"):
        estimate.label_check(est, y * 0.9, y, X.iloc[:299], batch="b7")
    assert estimate.label_check(est, y * 0.9, y, X, batch="b7")["kind"] == "label mean and spread"


def test_a_regression_estimator_reads_its_calibration_rows_by_position_whatever_their_index():
    rng = np.random.default_rng(4)
    X = pd.DataFrame({"x": rng.normal(size=400), "z": rng.normal(size=400)})
    y = X["x"].to_numpy() + rng.normal(size=400) * (1 + X["z"].abs().to_numpy())
    y[::7] = np.nan  # unlabelled rows are dropped, the rest keep their order
    fit = lambda f: estimate.fit_estimator(problem_type="regression", metric="root_mean_squared_error",  # noqa: E731
                                           y_true=y, scores=X["x"].to_numpy(), features=f)
    shuffled_index = X.set_axis(rng.permutation(400) + 1000)
    a, b = fit(X), fit(shuffled_index)
    assert a.estimate(X["x"], X).value == b.estimate(X["x"], X).value
    assert a.checks == b.checks


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 12, 13])
def test_the_track_records_upper_quartile_is_numpys_to_the_last_bit(n):
    from retrainlib.estimate import track

    rng = np.random.default_rng(n)
    for s in (rng.exponential(size=n), np.full(n, 0.25), np.round(rng.random(n), 1)):
        assert track._upper_quartile(s) == float(np.quantile(s, 0.75))
    assert math.isnan(track._upper_quartile(np.array([0.1, np.nan, 0.3])))


def test_too_small_a_batch_is_reported():
    y, p = _binary(1000, 0.0, seed=1)
    est = estimate.fit_estimator(problem_type="binary", metric="roc_auc", y_true=y, scores=p, classes=[0, 1])
    e = est.estimate(p[:10])
    assert e.value is None and "10 rows" in e.reason


def test_an_estimator_saved_and_loaded_estimates_the_same(tmp_path):
    y, p = _binary(1000, 0.0, seed=1)
    est = estimate.fit_estimator(problem_type="binary", metric="roc_auc", y_true=y, scores=p, classes=[0, 1],
                                 calibration_batches=["b9"])
    back = estimate.Estimator.load(est.save(tmp_path / "estimator.json"))
    assert back.estimate(p[:400]) == est.estimate(p[:400])
    assert back.calibration_batches == ["b9"]


def test_a_regression_estimator_saved_and_loaded_estimates_the_same_from_its_loss_models_text(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, 1200)
    X = pd.DataFrame({"x": x, "n": pd.array(np.where(x > 1, None, np.round(x * 10)), dtype="Int64"),
                      "kind": np.where(x > 0, "a", "b")})
    y = 2 * x + rng.normal(0, 0.3 + 0.8 * np.abs(x), len(x))
    est = estimate.fit_estimator(problem_type="regression", metric="root_mean_squared_error", y_true=y[:800],
                                 scores=2 * x[:800], features=X.iloc[:800])
    path = est.save(tmp_path / "estimator.json")
    written = json.loads(path.read_text())["state"]["models"]
    assert len(written) == 1 and written[0].startswith("tree\n")  # one loss model, as LightGBM's model text
    back = estimate.Estimator.load(path)
    batch = X.iloc[800:].reset_index(drop=True)
    assert back.estimate(2 * x[800:], batch) == est.estimate(2 * x[800:], batch)


def test_an_estimator_written_with_four_cross_fitted_loss_models_still_estimates_with_their_own_band(tmp_path):
    import lightgbm as lgb

    from retrainlib.estimate import dle

    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, 1400)
    X = pd.DataFrame({"x": x})
    y = 2 * x + rng.normal(0, 0.3 + 0.8 * np.abs(x), len(x))
    loss = np.abs(y - 2 * x)[:800]
    M = dle._dle_matrix(X.iloc[:800], ["x"], 2 * x[:800], {})
    fold = np.arange(800) % 4
    boosters = [lgb.train({**dle._DLE_PARAMS, "seed": 0}, lgb.Dataset(M[fold != k], loss[fold != k]), 20)
                for k in range(4)]  # what the estimator wrote before one loss model per metric
    old = estimate.Estimator(problem_type="regression", metric="mean_absolute_error", method="dle", classes=None,
                             usable=True, reason="", calibration_rows=800, calibration_batches=[], seed=0,
                             checks={"loss": "absolute", "resid_sd": 0.5, "bias": 0.01, "mean_loss": float(loss.mean()),
                                     "label_bias": 0.0, "label_resid_sd": 1.0, "label_dependence": 0.0},
                             state={"models": [b.model_to_string() for b in boosters], "categories": {},
                                    "columns": ["x"], "kind": "absolute"})
    back = estimate.Estimator.load(old.save(tmp_path / "estimator.json"))
    batch, pred = X.iloc[800:].reset_index(drop=True), 2 * x[800:]
    e = back.estimate(pred, batch)
    each = np.array([b.predict(dle._dle_matrix(batch, ["x"], pred, {})) for b in boosters])
    assert e.value == pytest.approx(float(np.clip(each.mean(axis=0), 0, None).mean()), abs=1e-6)
    folds = each.mean(axis=1)
    jackknife = np.sqrt(3 / 4 * np.sum((folds - folds.mean()) ** 2))
    assert e.parts["calibration"] == pytest.approx(1.959963984540054 * jackknife + 0.01, abs=1e-5)
    assert e.parts["sampling"] == pytest.approx(1.959963984540054 * 0.5 / np.sqrt(600), abs=1e-5)


def test_a_loss_model_fitted_on_a_large_table_does_not_keep_its_training_rows_and_estimates_the_same(monkeypatch):
    from retrainlib.estimate import dle

    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, 1000)
    X = pd.DataFrame({"x": x, "z": rng.normal(0, 1, 1000)})
    y = 2 * x + rng.normal(0, 0.3 + 0.8 * np.abs(x), len(x))
    fit = lambda: estimate.fit_estimator(problem_type="regression", metric="mean_absolute_error",  # noqa: E731
                                         y_true=y[:700], scores=2 * x[:700], features=X.iloc[:700])
    small = fit()
    assert all(m.__dict__.get("train_set") is not None for m in small.state["models"])  # small: kept, no round trip
    monkeypatch.setattr(dle, "KEEP_BINNED_CELLS", 100)
    large = fit()
    assert all(m.__dict__.get("train_set") is None for m in large.state["models"])
    batch = X.iloc[700:].reset_index(drop=True)
    assert large.estimate(2 * x[700:], batch) == small.estimate(2 * x[700:], batch)


def test_an_estimate_round_trips_through_a_dict():
    y, p = _binary(1000, 0.0, seed=1)
    est = estimate.fit_estimator(problem_type="binary", metric="roc_auc", y_true=y, scores=p, classes=[0, 1])
    e = est.estimate(p[:400], batch="x")
    assert estimate.Estimate.from_dict(e.to_dict()) == e
    acc = estimate.compare(e, measured=e.value + 0.01)
    assert acc["error"] == pytest.approx(-0.01) and acc["in_band"] in (True, False)


# ---- in the playbook: the estimator is part of the version, estimates flow into triggers, JSON, manifest ----
@pytest.mark.slow
def test_the_estimator_is_stored_with_its_version_and_calibrated_only_on_rows_it_did_not_train_on(tmp_path):
    import json

    from retrainlib.demo import week_end
    from tests.conftest import make_home
    from tests.test_steps import run_steps

    home = make_home(tmp_path / "home", weeks=16, **{"triggers.policy": "any", "triggers.use": ["performance"],
                                                     "triggers.performance_source": "estimated"})
    ctx, analysis, trained, promoted = run_steps(home, week_end(8).isoformat(), "boot")
    validated, champion = trained.challenger, promoted.champion_after
    v = ctx.registry.version(validated)
    folder = ctx.registry.path / validated
    assert "estimator.json" in json.loads((folder / "checksums.json").read_text())  # checksummed with the version
    est = ctx.registry.estimator(validated)
    assert est.usable, est.reason
    trained_on = {s["path"] for s in v.metadata["slices"]}
    assert est.calibration_batches == [b["path"] for b in analysis.window("holdout")]
    assert not set(est.calibration_batches) & trained_on
    assert trained.estimator["usable"] and trained.estimator["calibration_rows"] == 400
    if champion != validated:  # refit_full: the refit trained on the holdout too, so it borrows and says so
        assert ctx.registry.estimator(champion).checks["borrowed_from"] == validated

    # four weeks later, the covariate shift has begun: every new batch is estimated with labels hidden
    ctx, analysis, *_ = run_steps(home, week_end(14).isoformat(), "second")
    perf = [t for t in analysis.decision.triggers if t.name == "performance"][0]
    assert perf.source == "estimated" and "estimated without labels, 95% band" in perf.reason
    first = 9 if champion != validated else 8  # the first batch the champion did not train on
    assert [e["batch"].rsplit("/", 1)[1] for e in analysis.estimates] == [f"{week_end(w)}.parquet" for w in range(first, 15)]
    assert all(e["value"] is not None and e["low"] <= e["value"] <= e["high"] for e in analysis.estimates)
    # the demo's labels arrive with the batch: the estimator's own accuracy is recorded beside each measurement
    judged = [r for r in ctx.registry.evaluations(champion) if "estimate" in r]
    assert len(judged) == 15 - first and all(abs(r["estimate"]["error"]) < 0.1 for r in judged)
    assert ctx.registry.estimates(champion)[-1]["batch"] == analysis.estimates[-1]["batch"]

    # the step JSON carries the estimates, and the run's record reads them from it (by file and sha256)
    from retrainlib.durable import sha256_file
    from retrainlib.manifest import RunManifest

    step = json.loads((ctx.run_dir / "10-analyze-drift.json").read_text())
    assert step["estimates"] == json.loads(json.dumps(analysis.estimates))
    assert estimate.Estimate.from_dict(step["performance"]["estimate"]).value == analysis.estimates[-1]["value"]
    m = RunManifest.from_dict({"run_id": ctx.run_id, "files": {"10-analyze-drift.json": sha256_file(ctx.run_dir / "10-analyze-drift.json")}},
                              path=ctx.run_dir / "manifest.json")
    assert m.analysis.newest_estimate() == step["performance"]["estimate"]
    assert m.analysis.decision.triggers[2].source == "estimated"


def test_the_performance_trigger_names_its_source_and_band():
    from retrainlib import triggers

    m = triggers.performance_trigger(0.70, threshold=0.75, metric="roc_auc")
    assert m.fired and "measured on labels" in m.reason and m.source == "measured"
    e = triggers.performance_trigger(0.74, threshold=0.75, metric="roc_auc", source="estimated", band=(0.71, 0.77),
                                     batch="b7")
    assert e.fired and "estimated without labels, 95% band 0.710–0.770" in e.reason and "b7" in e.reason
    both = triggers.performance_trigger(None, threshold=0.75, metric="roc_auc", source="both",
                                        estimated={"value": 0.7, "low": 0.68, "high": 0.72, "batch": "b9"})
    assert both.fired and both.source == "both" and "not measured" in both.reason and "estimated without labels" in both.reason
    none = triggers.performance_trigger(None, threshold=0.75, metric="roc_auc", source="both",
                                        estimated={"value": None, "reason": "miscalibrated: x"})
    assert not none.fired and "not estimated: miscalibrated" in none.reason
    d = triggers.degradation_trigger([0.8] * 6, delta=0.005, threshold=0.05, min_history=5, source="estimated")
    assert "estimated evaluations" in d.reason
    kept = triggers.decide([e], combine="any", use=("performance",), policy="any", quality_passed=True)
    assert kept.triggers[0].source == "estimated"


def test_the_report_timeline_shows_measured_and_estimated_performance_with_its_band():
    from retrainlib.report import champion_plot

    rows = [
        {"run_id": "a", "model": "m", "time": "2024-01-14", "metric": "roc_auc", "champion_metric": 0.78,
         "outcome": "no-retrain-needed", "estimated_metric": 0.77, "estimated_band": [0.74, 0.80]},
        {"run_id": "b", "model": "m", "time": "2024-01-21", "metric": "roc_auc", "champion_metric": None,
         "outcome": "no-retrain-needed", "estimated_metric": 0.71, "estimated_band": [0.68, 0.74]},
    ]
    svg = champion_plot(rows)
    assert "b: estimated roc_auc=0.7100 (95% band 0.6800–0.7400)" in svg
    assert "a: measured roc_auc=0.7800" in svg and "○ estimated without labels" in svg


def test_the_performance_figure_draws_measured_and_estimated_series():
    from retrainlib.steps import performance_figure

    perf = {"metric": "roc_auc", "threshold": 0.75, "source": "both",
            "measured_history": [{"batch": "w1", "batch_end": "2024-01-07", "value": 0.8}]}
    est = [{"batch": "w1", "batch_end": "2024-01-07", "value": 0.79, "low": 0.76, "high": 0.82},
           {"batch": "w2", "batch_end": "2024-01-14", "value": 0.72, "low": 0.69, "high": 0.75}]
    fig = performance_figure(perf, est)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["95% band", "estimated roc_auc (no labels)", "measured roc_auc (labels)", "performance_threshold"]


@pytest.mark.slow
def test_with_late_labels_the_trigger_reads_the_newest_batch_estimated_and_the_newest_labelled_one_measured(tmp_path):
    from retrainlib.demo import week_end
    from tests.conftest import make_home
    from tests.test_steps import run_steps

    home = make_home(tmp_path / "home", weeks=16, **{"data.label_delay_batches": 2, "triggers.policy": "any",
                                                     "triggers.use": ["performance"], "triggers.performance_source": "both"})
    _, _, trained, promoted = run_steps(home, week_end(8).isoformat(), "boot")  # validated on week 6 (7, 8 unlabelled)
    first = 7 if promoted.champion_after != trained.challenger else 6  # a refit_full also trained on week 6
    ctx, analysis, *_ = run_steps(home, week_end(14).isoformat(), "second")
    name = lambda path: path.rsplit("/", 1)[1]  # noqa: E731
    assert name(analysis.performance["batch"]) == f"{week_end(12)}.parquet"  # measured: the newest labelled batch
    assert name(analysis.performance["estimate"]["batch"]) == f"{week_end(14)}.parquet"  # estimated: the newest batch
    assert [name(e["batch"]) for e in analysis.estimates] == [f"{week_end(w)}.parquet" for w in range(first, 15)]
    perf = [t for t in analysis.decision.triggers if t.name == "performance"][0]
    assert perf.source == "both" and "measured on labels" in perf.reason and "estimated without labels" in perf.reason
    # weeks 13 and 14 wait for labels: estimated, not measured; the measured ones carry the estimator's error
    champion = analysis.champion
    measured = {name(r["batch"]) for r in ctx.registry.evaluations(champion)}
    assert f"{week_end(12)}.parquet" in measured and f"{week_end(13)}.parquet" not in measured
    assert all("estimate" in r for r in ctx.registry.evaluations(champion))


@pytest.mark.slow
def test_a_backtest_with_late_labels_scores_every_batch_and_its_estimated_strategy_reads_the_estimate(tmp_path):
    import json

    from retrainlib.backtest import run_backtest
    from tests.conftest import make_home

    home = make_home(tmp_path / "home", weeks=12)
    result = run_backtest("params/demo.yaml", home=home, strategies="performance-estimated", work_dir=tmp_path / "bt",
                          warmup=8, label_delay=2, progress=False)
    rec = result.records
    assert result.settings["label_delay"] == 2 and len(rec) == 5
    assert rec["bootstrap"].iloc[0] and rec["value"].iloc[1:].notna().all()  # each batch's serving champion scored
    # on that batch, whose labels the replayed run does not have yet
    last = json.loads((Path(rec["run_dir"].iloc[-1]) / "10-analyze-drift.json").read_text())
    perf = [t for t in last["decision"]["triggers"] if t["name"] == "performance"][0]
    assert perf["source"] == "both" and "estimated without labels" in perf["reason"]
    assert last["performance"]["estimate"]["batch"].endswith(rec["batch"].iloc[-1])
    # each batch's estimate, judged by the playbook when its labels arrived two batches later, is in the record; the
    # newest two batches' labels never arrived within the replay
    (log,) = (tmp_path / "bt" / "performance-estimated" / "models").glob("*/evaluations.jsonl")
    evaluations = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    judged = {}
    for r in evaluations:
        if r.get("estimate"):
            judged.setdefault((r["version"], Path(r["batch"]).name), r["estimate"])
    for r in rec.to_dict("records"):
        e = judged.get((r["champion"], r["batch"]))
        assert r["estimate_in_band"] == (None if e is None else e["in_band"]), r["batch"]
        if e is not None:
            assert r["estimated"] == pytest.approx(e["estimated"]) and r["estimate_low"] <= r["estimated"] <= r["estimate_high"]
    assert rec["estimate_in_band"].iloc[-2:].isna().all() and rec["estimate_in_band"].iloc[1:3].notna().all()
    s = result.summary.loc["performance-estimated"]
    assert s["estimates_judged"] == 0 and math.isnan(s["estimate_coverage"])  # 2 judged: still in the warm-up of 3
    written = json.loads(Path(result.write(tmp_path / "out")["json"]).read_text())
    assert written["summary"][0]["estimates_judged"] == 0 and written["records"][1]["estimate_in_band"] is not None


def test_a_backtest_records_the_band_coverage_of_its_judged_estimates_after_the_first_three(tmp_path, capsys):
    import argparse

    from retrainlib import backtest
    from retrainlib.cli import _report_backtest

    n = 9
    base = {"batch_start": pd.date_range("2024-01-01", periods=n, freq="7D"), "bootstrap": [True] + [False] * (n - 1),
            "trained": [True] + [False] * (n - 1), "promoted": [True] + [False] * (n - 1), "action": ["none"] * n,
            "cpu_seconds": [0.0] * n, "fit_cache": [None] * n, "value": [0.8] * n, "analyze_seconds": [0.0] * n,
            "retrain_seconds": [0.0] * n, "validate_seconds": [0.0] * n, "promote_seconds": [0.0] * n, "reasons": [""] * n}
    base["batch_end"] = base["batch_start"] + pd.Timedelta("6D")
    # judged in batch order: three warm-up misses (not counted), then 4 hits and 1 miss; the newest batch never judged
    in_band = [None, False, False, False, True, False, True, True, None]
    rows = pd.DataFrame({**base, "strategy": ["performance-estimated"] * n, "estimate_in_band": in_band})
    summary = backtest.summarize(rows.iloc[::-1])  # the records' order does not matter: batch time does
    assert summary.loc["performance-estimated", "estimates_judged"] == 4
    assert summary.loc["performance-estimated", "estimate_coverage"] == pytest.approx(3 / 4)
    older = backtest.summarize(rows.drop(columns="estimate_in_band"))  # records written before the column existed
    assert older.loc["performance-estimated", "estimates_judged"] == 0
    result = backtest.BacktestResult(profile="demo", metric="roc_auc", greater_is_better=True,
                                     strategies=[backtest.STRATEGIES["performance-estimated"]], records=rows,
                                     summary=summary, drift_points=[], fit_cache={"enabled": False}, seconds=1.0,
                                     work_dir=tmp_path, settings={"n_batches": n, "warmup": 1, "stuck_after": 3})
    assert _report_backtest(result, argparse.Namespace(out=tmp_path, json=None)) == 0
    table = capsys.readouterr().out
    assert "estimate_coverage" in table and "estimates_judged" in table and "0.7500" in table
    written = json.loads((tmp_path / "backtest.json").read_text())
    assert written["summary"][0]["estimate_coverage"] == pytest.approx(0.75) and written["summary"][0]["estimates_judged"] == 4


def _world(n: int, rng, *, shift: float = 0.0):
    """True risk logistic in a feature; the model's score is over-confident and biased (miscalibrated)."""
    z = rng.normal(shift, 1.3, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return y, 1 / (1 + np.exp(-(1.6 * z + 0.3)))


@pytest.mark.parametrize("metric", ["accuracy", "roc_auc"])
def test_the_band_covers_the_realized_metric_when_a_miscalibrated_model_is_calibrated_on_few_rows(metric):
    # 300 calibration rows: too few to tell the model's own probabilities from calibrated ones by the cross-fitted
    # comparison alone. Keeping them anyway, with a band of sampling only, covered about half the batches.
    rng = np.random.default_rng(7)
    covered, errors = [], []
    for rep in range(20):
        y, p = _world(300, rng)
        est = estimate.fit_estimator(problem_type="binary", metric=metric, y_true=y, scores=p, classes=[0, 1], seed=rep)
        for shift in (-0.8, 0.0, 0.8):
            yb, pb = _world(1000, rng, shift=shift)
            e = est.estimate(pb)
            if e.value is None:  # refused as miscalibrated: reported, not estimated
                continue
            truth = _measured(metric, yb, pb)
            covered.append(e.low <= truth <= e.high)
            errors.append(abs(e.value - truth))
    assert len(covered) >= 45
    assert np.mean(covered) >= 0.8, (np.mean(covered), np.mean(errors))
    assert np.mean(errors) < 0.035, np.mean(errors)


def _expected_one_map(metric: str, p: np.ndarray, q: np.ndarray) -> float:
    """The metric of the expected confusion counts under positive-class probabilities ``q``, written out."""
    yhat = p >= 0.5
    tp, fp, fn, tn = q[yhat].sum(), (1 - q[yhat]).sum(), q[~yhat].sum(), (1 - q[~yhat]).sum()
    if metric == "roc_auc":  # area under the expected ROC curve, rows by falling score
        qo = q[np.argsort(-p, kind="stable")]
        tpr = np.concatenate([[0.0], np.cumsum(qo) / (tp + fn)])
        fpr = np.concatenate([[0.0], np.cumsum(1 - qo) / (fp + tn)])
        return float(np.trapezoid(tpr, fpr))
    if metric == "log_loss":
        return float(-(q * np.log(p) + (1 - q) * np.log(1 - p)).mean())
    return {"accuracy": (tp + tn) / len(p), "f1": 2 * tp / (2 * tp + fp + fn), "precision": tp / (tp + fp),
            "recall": tp / (tp + fn), "balanced_accuracy": (tp / (tp + fn) + tn / (fp + tn)) / 2}[metric]


@pytest.mark.parametrize("metric", ["accuracy", "roc_auc", "f1", "log_loss", "balanced_accuracy", "precision", "recall"])
def test_the_binary_expectation_under_every_bootstrap_map_at_once_equals_one_map_at_a_time(metric):
    rng = np.random.default_rng(3)
    p = rng.uniform(0.01, 0.99, 500)
    Q1 = rng.uniform(0, 1, (4, 500))
    at_once = estimate._binary_metric(metric, p, Q1, order=np.argsort(-p, kind="stable"))
    assert np.allclose(at_once, [_expected_one_map(metric, p, q) for q in Q1], rtol=1e-10, atol=1e-12)


def _scores_with_ties_and_labels(k: int, seed: int, n: int = 900):
    """``rng, P, yi``: class probabilities of ``n`` rows (binary: scores rounded to 0.01, so many tie) and labels
    drawn from them."""
    from retrainlib.estimate.calibration import _as_matrix

    rng = np.random.default_rng(seed)
    P = _as_matrix(np.round(rng.uniform(0.01, 0.99, n), 2), 2) if k == 2 else rng.dirichlet([1, 2, 1], n)
    return rng, P, np.array([rng.choice(k, p=p) for p in P])


@pytest.mark.parametrize("k", [2, 3])
def test_maps_fitted_from_one_sort_of_the_scores_equal_maps_fitted_on_the_rows_themselves(k):
    from retrainlib.estimate.calibration import _fit_maps, _grids, _maps_on

    rng, P, yi = _scores_with_ties_and_labels(k, 5)
    grids = _grids(P)
    for take in (None, rng.permutation(900)[:450], rng.integers(0, 900, 900)):  # every row, a half, a bootstrap sample
        rows = np.arange(900) if take is None else take
        assert _maps_on(grids, k, yi, take) == _fit_maps(P[rows], yi[rows])


@pytest.mark.parametrize("k", [2, 3])
def test_a_folds_held_out_map_from_every_rows_counts_less_its_own_equals_the_map_fitted_on_the_other_folds(k):
    from retrainlib.estimate.calibration import (CALIBRATION_FOLDS, _codes, _counts, _fit_maps, _fold_counts, _grids,
                                                 _maps_of_counts)

    rng, P, yi = _scores_with_ties_and_labels(k, 6)
    grids = _grids(P)
    every_row = _counts(grids, k, yi)
    folds = np.array_split(rng.permutation(900), CALIBRATION_FOLDS)
    fold_of = np.empty(900, dtype=np.intp)
    for i, fold in enumerate(folds):
        fold_of[fold] = i
    by_fold = _fold_counts(grids, _codes(grids, k, yi), fold_of, len(folds))  # every fold counted at once
    for i, fold in enumerate(folds):
        others = np.concatenate([f for j, f in enumerate(folds) if j != i])
        assert all(np.array_equal(f[i], c) for f, c in zip(by_fold, _counts(grids, k, yi, fold)))
        held_out = _maps_of_counts(grids, [c - f[i] for c, f in zip(every_row, by_fold)])
        assert held_out == _fit_maps(P[others], yi[others])


@pytest.mark.parametrize("k", [2, 3])
def test_one_sort_of_the_scores_gives_the_same_distinct_scores_places_and_score_order_as_np_unique_and_argsort(k):
    from retrainlib.estimate.calibration import _as_matrix, _grids, _grids_and_order, _score_order

    rng = np.random.default_rng(7)
    tied = _as_matrix(np.round(rng.uniform(0.01, 0.99, 900), 2), 2) if k == 2 else np.round(rng.dirichlet([1, 2, 1], 900), 2)
    # scores of either sign, ties among them, 0.0 and -0.0 (equal, not alike in their bits): the sort of their bits,
    # which only scores without a sign bit take, must not be taken for them
    signed = np.round(rng.uniform(-1, 1, 300), 1)
    signed[:40:4], signed[1:40:4] = 0.0, -0.0
    signed = _as_matrix(signed, 2) if k == 2 else np.column_stack([signed, -signed, np.zeros(300)])
    zeros = np.zeros(200)
    zeros[::3] = 0.5
    zeros = _as_matrix(zeros, 2) if k == 2 else np.column_stack([zeros, 1 - zeros, np.zeros(200)])
    for P in (tied, _as_matrix(rng.uniform(0, 1, 50), 2) if k == 2 else rng.dirichlet([1, 1, 1], 50), signed, zeros,
              tied.astype(np.float32)):
        grids, order = _grids_and_order(P)
        for (xs, at), (xs0, at0) in zip(grids, _grids(P)):
            assert np.array_equal(xs, xs0) and np.array_equal(at, at0) and at.dtype == at0.dtype
        assert all(np.array_equal(o, o0) for o, o0 in zip(order, _score_order(P)))


@pytest.mark.parametrize("k", [3, 5])
def test_multiclass_label_draws_counted_a_class_column_at_a_time_equal_the_draws_of_one_comparison_table(k):
    from retrainlib.estimate.calibration import _draw_labels

    Q = np.random.default_rng(3).dirichlet(np.ones(k), 700)
    got = _draw_labels(Q, np.random.default_rng(9), 40)
    u = np.random.default_rng(9).random((40, 700), dtype=np.float32)  # the same uniforms
    cum = np.cumsum(Q, axis=1).astype(np.float32)
    assert np.array_equal(got, (u[:, :, None] > cum[None, :, :-1]).sum(axis=2))
    assert got.min() >= 0 and got.max() == k - 1


@pytest.mark.parametrize("k", [2, 3])
def test_maps_applied_along_each_class_columns_sorted_scores_give_the_same_probabilities_as_row_by_row(k):
    from retrainlib.estimate.calibration import IDENTITY, _calibrate, _fit_maps, _score_order, _sorted_columns

    rng, P, yi = _scores_with_ties_and_labels(k, 12)
    for maps in (_fit_maps(P, yi), [dict(IDENTITY) for _ in range(1 if k == 2 else k)]):
        row_by_row = _calibrate(maps, P)
        for cols in (_sorted_columns(P), _sorted_columns(P, _score_order(P))):
            assert np.array_equal(_calibrate(maps, P, cols), row_by_row)


def test_the_multiclass_calibration_error_counting_hits_as_whole_numbers_equals_adding_them_as_floats():
    from retrainlib.estimate.calibration import _bin_starts, _draw_labels, _ece, _score_order

    rng, P, yi = _scores_with_ties_and_labels(3, 4, n=1003)
    Q = rng.dirichlet([2, 2, 2], 1003) * 0.2 + P * 0.8
    Y = _draw_labels(Q, rng, 30)
    starts, idx = _bin_starts(1003, 10), _score_order(P)
    by_floats = sum(np.abs(np.add.reduceat(Q[o, j], starts)[None, :]
                           - np.add.reduceat(Y[:, o] == j, starts, axis=1, dtype=float)).sum(axis=1) / 1003
                    for j, o in enumerate(idx)) / 3
    assert np.array_equal(_ece(P, Q, Y, idx=idx), by_floats)


def test_the_binary_label_dependence_from_scores_in_their_order_equals_the_one_from_the_calibrated_table():
    from retrainlib.estimate.calibration import _as_matrix, _calibrate, _fit_maps, _label_dependence, _score_order
    from retrainlib.estimate.metrics import dependence

    rng = np.random.default_rng(11)
    s = np.round(rng.beta(2, 3, 3000), 3)
    y = (rng.random(3000) < np.repeat(rng.uniform(0.1, 0.9, 30), 100)).astype(int)  # runs of wet and dry spells
    P = _as_matrix(s, 2)
    for maps in (_fit_maps(P, y), [{"x": [0.0, 1.0], "y": [0.0, 1.0]}]):
        Q = _calibrate(maps, P)
        hit = np.column_stack([1 - y, y]).astype(float)
        by_table = round(dependence((hit - Q)[:, 1], float(np.mean(Q[:, 1] * (1 - Q[:, 1])))), 4)
        assert _label_dependence(maps, P, y, _score_order(P)) == by_table > 1


def test_the_metrics_sharing_a_calibration_share_one_label_check_and_another_batch_or_calibration_is_checked_anew():
    from retrainlib.estimate.track import _class_figures

    y, p = _binary(3000, 0.0, seed=4)
    acc, auc = (estimate.fit_estimator(problem_type="binary", metric=m, y_true=y, scores=p, classes=[0, 1])
                for m in ("accuracy", "roc_auc"))
    assert acc.state["maps"] is auc.state["maps"]  # one calibration for both metrics
    ya, pa = _binary(2000, 0.5, seed=5)
    yb, pb = _binary(2000, 1.0, seed=6)
    first = estimate.label_check(acc, pa, ya, batch="a")
    first["z"] = 99.0  # what a caller does with its copy does not reach the next caller
    assert estimate.label_check(auc, pa, ya, batch="a") == _class_figures(acc, pa, ya, " on a") != first
    other = estimate.label_check(auc, pb, yb, batch="b")
    assert other == _class_figures(auc, pb, yb, " on b") and other["realized"] != first["realized"]
    refit = estimate.fit_estimator(problem_type="binary", metric="accuracy", y_true=yb, scores=pb, classes=[0, 1])
    assert estimate.label_check(refit, pb, yb, batch="b") == _class_figures(refit, pb, yb, " on b") != other


def test_the_calibrated_probabilities_expect_the_class_shares_and_only_classification_has_them():
    y, p = _binary(3000, 0.0, seed=4)
    est = estimate.fit_estimator(problem_type="binary", metric="accuracy", y_true=y, scores=p, classes=[0, 1])
    yb, pb = _binary(3000, 1.0, seed=5)
    q = est.calibrated(pb)
    assert q.shape == (3000, 2) and np.allclose(q.sum(axis=1), 1)
    assert abs(q[:, 1].mean() - yb.mean()) < 0.02  # covariate shift: the expected share follows the realized one
    assert abs(q[:, 1].mean() - y.mean()) > 0.1  # ... which moved
    refused = estimate.fit_estimator(problem_type="binary", metric="accuracy", y_true=y[:50], scores=p[:50], classes=[0, 1])
    with pytest.raises(EstimationError, match="calibrated probabilities need a usable classification estimator"):
        refused.calibrated(pb)


@pytest.mark.slow
def test_as_labels_arrive_the_champions_estimator_is_recalibrated_in_a_revision_and_the_trigger_reads_one_revision(tmp_path):
    import json

    from retrainlib.demo import week_end
    from tests.conftest import make_home
    from tests.test_steps import run_steps

    home = make_home(tmp_path / "home", weeks=16, **{"data.label_delay_batches": 2, "triggers.policy": "any",
                                                     "triggers.use": ["performance"], "triggers.performance_source": "both"})
    run_steps(home, week_end(8).isoformat(), "boot")  # validated on week 6; weeks 7, 8 wait for labels
    ctx, analysis, *_ = run_steps(home, week_end(14).isoformat(), "second")  # labels up to week 12 now
    champion = analysis.champion
    folder = ctx.registry.path / champion
    registered = json.loads((folder / "estimator.json").read_text())
    est = ctx.registry.estimator(champion)
    name = lambda path: path.rsplit("/", 1)[1]  # noqa: E731
    # recalibrated on every labelled batch it did not train on (up to week 12), as a revision beside the version
    assert est.usable and est.revision == 1, est.reason
    trained_on = {name(s["path"]) for s in ctx.registry.version(champion).metadata["slices"]}
    first = 7 if f"{week_end(6)}.parquet" in trained_on else 6  # a refit_full also trained on week 6
    assert [name(b) for b in est.calibration_batches] == [f"{week_end(w)}.parquet" for w in range(first, 13)]
    assert registered["calibration_batches"] != est.calibration_batches and registered.get("revision", 0) == 0
    ctx.registry.verify(champion)  # the version folder is unchanged: its checksums still hold
    log = [json.loads(line) for line in (ctx.registry.path / "estimators.jsonl").read_text().splitlines()]
    assert [(r["version"], r["revision"], r["run_id"]) for r in log] == [(champion, 1, ctx.run_id)]
    # the trigger's series is one estimator's: every row the step returns comes from the revision
    assert analysis.estimates and {e["revision"] for e in analysis.estimates} == {1}
    # the estimates judged against labels are those made first, before the recalibration saw those batches
    judged = [r for r in ctx.registry.evaluations(champion) if "estimate" in r]
    first = {}
    for e in ctx.registry.estimates(champion):
        first.setdefault(e["batch"], e)
    assert judged and all(r["estimate"]["estimated"] == first[r["batch"]]["value"] for r in judged)
    assert all(first[r["batch"]]["revision"] == 0 for r in judged)
    # a run with no newer labelled batch keeps the revision and estimates nothing again
    from retrainlib import steps

    n_logged = len(ctx.registry.estimates(champion))
    ctx = steps.open_step("params/demo.yaml", str(home / "runs" / "third"), str(home), week_end(14).isoformat())
    steps.analyze_drift(ctx)
    assert ctx.registry.estimator(champion).revision == 1 and len(ctx.registry.estimates(champion)) == n_logged


@pytest.mark.parametrize("metric", ["accuracy", "roc_auc", "f1", "log_loss", "balanced_accuracy", "precision", "recall"])
def test_a_binary_batch_is_estimated_as_the_metric_of_its_expected_confusion_counts_whatever_the_row_order(metric):
    y, p = _binary(3000, 0.0, seed=11)
    est = estimate.fit_estimator(problem_type="binary", metric=metric, y_true=y, scores=p, classes=[0, 1])
    assert est.usable, est.reason
    _, pb = _binary(2000, 0.7, seed=12)
    pb = np.clip(np.round(pb, 3), 0.001, 0.999)  # ties: the ROC curve's expectation must not depend on how they are ordered
    e = est.estimate(pb)
    shuffled = est.estimate(np.random.default_rng(0).permutation(pb))
    assert e.value == pytest.approx(shuffled.value, abs=1e-9)
    band = 1e-9 if metric in ("accuracy", "roc_auc", "log_loss") else 0.005  # else label draws (Monte Carlo)
    assert (e.low, e.high) == pytest.approx((shuffled.low, shuffled.high), abs=band)
    if metric in ("accuracy", "roc_auc", "log_loss"):  # closed form: the point is the expectation itself
        assert e.value == pytest.approx(_expected_one_map(metric, pb, est.calibrated(pb)[:, 1]), abs=1e-6)
    assert e.low < e.value < e.high


@pytest.mark.parametrize("rows,draw_scores", [
    (1500, lambda rng, n: rng.uniform(0.02, 0.98, n)),
    (8000, lambda rng, n: rng.beta(0.6, 4.0, n)),  # most rows near 0: the low bins are drawn row by row
], ids=["uniform-1500", "skewed-8000"])
def test_the_binary_calibration_null_is_distributed_as_labels_drawn_row_by_row(rows, draw_scores):
    from retrainlib.estimate import calibration

    p = np.sort(draw_scores(np.random.default_rng(2), rows))
    P = np.column_stack([1 - p, p])
    idx = calibration._score_order(P)
    variance = np.add.reduceat(p * (1 - p), calibration._bin_starts(rows, 10))
    assert (variance >= calibration.CLT_MIN_VARIANCE).any() and (variance < calibration.CLT_MIN_VARIANCE).any()
    fast = calibration._ece_null(P, P, np.random.default_rng(0), 3000, idx)
    slow = calibration._ece(P, P, calibration._draw_labels(P, np.random.default_rng(1), 3000), idx=idx)
    assert abs(fast.mean() - slow.mean()) < 0.03 * slow.mean()
    for level in (0.5, 0.95, 0.99):
        assert abs(np.quantile(fast, level) - np.quantile(slow, level)) < 0.06 * np.quantile(slow, level), level


def test_a_subset_of_rows_and_each_fold_keep_the_score_order_of_the_whole_table():
    from retrainlib.estimate import calibration

    rng = np.random.default_rng(4)
    P = rng.dirichlet([1, 1, 1], 400)
    rows = rng.permutation(400)[:150]
    sub = calibration._sub_order(calibration._score_order(P), rows, 400)
    assert all(np.array_equal(a, b) for a, b in zip(sub, calibration._score_order(P[rows])))
    # every fold's at once, as the calibration's cross-fit reads them
    folds = np.array_split(rng.permutation(400), 5)
    fold_of = np.empty(400, dtype=np.intp)
    for b, fold in enumerate(folds):
        fold_of[fold] = b
    for fold, orders in zip(folds, calibration._fold_orders(calibration._score_order(P), folds, fold_of)):
        assert all(np.array_equal(a, b) for a, b in zip(orders, calibration._score_order(P[fold])))


def test_the_loss_model_reads_categories_by_their_index_and_unseen_or_missing_ones_as_missing():
    from retrainlib.estimate import dle

    frame = pd.DataFrame({"kind": ["b", "a", None, "z"], "n": pd.array([1, None, 3, 4], dtype="Int64"),
                          "x": [0.5, 1.5, np.nan, 2.0], "s": ["1", "2", "x", "4"]})
    X = dle._dle_matrix(frame, ["kind", "n", "x", "s"], np.array([9.0, 8, 7, 6]), {"kind": ["a", "b"]})
    expected = np.array([[1, 1, 0.5, 1, 9], [0, np.nan, 1.5, 2, 8], [np.nan, 3, np.nan, np.nan, 7], [np.nan, 4, 2, 4, 6]])
    assert np.array_equal(X, expected, equal_nan=True)


def test_a_regression_band_carries_the_loss_models_own_uncertainty_which_shrinks_with_more_calibration_rows():
    rng = np.random.default_rng(8)

    def world(n):
        x = rng.normal(0, 1.0, (n, 2))
        y = 2 * x[:, 0] + rng.normal(0, 0.3 + 0.8 * np.abs(x[:, 0]), n)
        return pd.DataFrame({"x": x[:, 0], "z": x[:, 1]}), y, 2 * x[:, 0]

    Xb, _, pb = world(2000)
    beyond = []
    for n in (200, 4000):
        X, y, pred = world(n)
        est = estimate.fit_estimator(problem_type="regression", metric="mean_absolute_error", y_true=y, scores=pred,
                                     features=X)
        assert len(est.state["models"]) == 1  # one loss model per metric
        e = est.estimate(pb, Xb)
        rows = 1.959963984540054 * est.checks["loss_sd"] / np.sqrt(len(pb))
        beyond.append((e.high - e.value) / rows)
    assert beyond[0] > 1.3 and beyond[1] < beyond[0], beyond  # a model fitted on 200 rows knows their level less well


# --------------------------------------------------------------------------- issue 26: track record, range, label shift
def _regression_world(n: int, rng, *, label_shift: float = 0.0, x_shift: float = 0.0):
    """y = 2x + noise; the champion predicts 2x (features fixed, so ``label_shift`` moves only the labels)."""
    x = rng.normal(x_shift, 1.0, n)
    y = 2 * x + rng.normal(0, 1.0, n) + label_shift
    return pd.DataFrame({"x": x}), y, 2 * x


def test_a_stream_whose_label_share_moves_while_the_features_do_not_is_flagged_with_its_figures():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.05, 0.6, 3000)  # the champion's scores: the same distribution on every batch
    y = (rng.random(3000) < p).astype(int)
    est = estimate.fit_estimator(problem_type="binary", metric="accuracy", y_true=y, scores=p, classes=[0, 1])
    pb = rng.uniform(0.05, 0.6, 800)
    steady = (rng.random(800) < pb).astype(int)
    moved = (rng.random(800) < np.clip(pb + 0.12, 0, 1)).astype(int)  # more positives than the scores say
    assert not estimate.label_check(est, pb, steady)["shifted"]
    flagged = estimate.label_check(est, pb, moved, batch="week 9")
    assert flagged["shifted"] and flagged["z"] > 3.29
    assert flagged["reason"].startswith("label shift on week 9: class 1 is") and "expected" in flagged["reason"]
    assert estimate.unreliable_reason(flagged).startswith("unreliable: label shift on week 9")
    # regression: the label's mean moves by half a residual sd while the features stay
    X, yr, pred = _regression_world(2000, rng)
    reg = estimate.fit_estimator(problem_type="regression", metric="mean_absolute_error", y_true=yr, scores=pred,
                                 features=X)
    Xb, yb, predb = _regression_world(600, rng, label_shift=0.5)
    check = estimate.label_check(reg, predb, yb, Xb)
    assert check["shifted"] and "(mean)" in check["reason"] and check["realized"]["mean"] > check["expected"]["mean"] + 0.3
    Xs, ys, preds = _regression_world(600, rng, x_shift=1.0)  # covariate shift only: the labels follow the features
    assert not estimate.label_check(reg, preds, ys, Xs)["shifted"]
    older = estimate.Estimator.from_dict(reg.to_dict())  # stored before it kept the calibration's residuals
    older.checks = {k: v for k, v in older.checks.items() if not k.startswith("label_")}
    assert estimate.label_check(older, predb, yb, Xb) is None  # says nothing rather than a false alarm


def test_a_stationary_stream_is_not_flagged_more_often_than_the_stated_false_alarm_rate():
    """Z_SHIFT (3.29 sampling errors) is a 0.1% two-sided test per batch; over 300 stationary batches of each kind
    at most 1% may be flagged (the estimator's calibration is itself estimated, so the test allows some slack)."""
    rng = np.random.default_rng(5)
    p = rng.beta(2, 3, 2000)
    y = (rng.random(2000) < p).astype(int)
    est = estimate.fit_estimator(problem_type="binary", metric="roc_auc", y_true=y, scores=p, classes=[0, 1])
    flags = []
    for _ in range(300):
        pb = rng.beta(2, 3, 500)
        flags.append(estimate.label_check(est, pb, (rng.random(500) < pb).astype(int))["shifted"])
    assert np.mean(flags) <= 0.01, np.mean(flags)
    X, yr, pred = _regression_world(1000, rng)
    reg = estimate.fit_estimator(problem_type="regression", metric="root_mean_squared_error", y_true=yr, scores=pred,
                                 features=X)
    rflags = []
    for _ in range(300):
        Xb, yb, pb = _regression_world(300, rng)
        rflags.append(estimate.label_check(reg, pb, yb, Xb)["shifted"])
    assert np.mean(rflags) <= 0.01, np.mean(rflags)


def test_bands_stay_within_the_metric_range_before_and_after_the_track_record_widens_them():
    rng = np.random.default_rng(7)
    p = np.clip(rng.beta(0.3, 0.3, 1500), 0.001, 0.999)  # a near-perfect ranker: ROC AUC close to 1
    y = (rng.random(1500) < p).astype(int)
    for metric in ("roc_auc", "accuracy"):
        est = estimate.fit_estimator(problem_type="binary", metric=metric, y_true=y, scores=p, classes=[0, 1])
        e = est.estimate(p[:40])
        assert 0 <= e.low <= e.value <= e.high <= 1
        bad = [{"estimated": 0.98, "measured": 0.55, "in_band": False}] * 6
        w = estimate.widen(e, bad)
        assert 0 <= w.low < e.low and w.high <= 1 and w.parts["track_record"] > 0
    X, yr, pred = _regression_world(400, rng)
    for metric in ("mean_absolute_error", "root_mean_squared_error"):
        est = estimate.fit_estimator(problem_type="regression", metric=metric, y_true=yr, scores=pred, features=X)
        e = est.estimate(pred[:30], X.iloc[:30])
        assert 0 < e.low < e.value < e.high, e  # a loss is positive: the lower end is not 0.0000
        bad = [{"estimated": e.value, "measured": e.value * 4, "in_band": False}] * 5
        w = estimate.widen(e, bad)
        assert 0 < w.low < e.low and w.high >= e.value * 4 - 1e-5, w  # errors of x4 on the log scale: both ways
        assert set(w.parts) >= {"sampling", "calibration", "track_record"}


def test_the_track_record_widening_uses_only_batches_whose_labels_had_arrived_at_the_time_of_the_estimate():
    rows = [{"batch": f"b{i}", "batch_end": f"2024-01-{i:02d}", "metric": "accuracy",
             "estimate": {"estimated": 0.80, "measured": 0.80 - (0.01 if i <= 5 else 0.30), "in_band": i <= 5}}
            for i in range(1, 9)]
    rows.append({"batch": "b9", "batch_end": "2024-01-09", "metric": "roc_auc",  # another metric: not this record
                 "estimate": {"estimated": 0.9, "measured": 0.1, "in_band": False}})
    cut = estimate.track_record(rows, metric="accuracy", labelled_end="2024-01-05")
    assert [r["batch"] for r in cut] == ["b1", "b2", "b3", "b4", "b5"]
    e = estimate.Estimate("accuracy", 0.8, 0.79, 0.81, 1000, "cbpe", parts={"sampling": 0.01, "calibration": 0.0})
    before = estimate.widen(e, cut)
    after = estimate.widen(e, estimate.track_record(rows, metric="accuracy"))
    assert before.low > 0.75 and before.high < 0.85  # errors of 0.01: a band a few hundredths wide
    assert after.low < 0.55 and after.parts["track_record"] > 0.2  # once the big misses are judged they count
    # warm-up: fewer than WARMUP judged estimates leave the model's band as it is, and say so
    warm = estimate.widen(e, estimate.track_record(rows[6:8], metric="accuracy"))
    assert (warm.low, warm.high) == (0.79, 0.81) and "warming up: 2 of 3" in warm.parts["track_record_note"]


def test_misses_raise_the_level_the_track_record_aims_at_and_hits_lower_it():
    from retrainlib.estimate import track

    errors = [0.02, 0.05, 0.03, 0.04, 0.06, 0.01, 0.05, 0.02]
    e = estimate.Estimate("accuracy", 0.8, 0.79, 0.81, 1000, "cbpe")
    hits = [{"estimated": 0.8, "measured": 0.8 - d, "in_band": True} for d in errors]
    misses = [dict(r, in_band=False) for r in hits]
    assert track._aci_alpha(misses, 0.05) < 0.05 < track._aci_alpha(hits, 0.05)
    # misses of the warm-up's bands (the model's alone) do not move the level the track record aims at
    assert track._aci_alpha([dict(r, band="model") for r in misses], 0.05) == 0.05
    judged = estimate.compare(estimate.widen(e, hits[:2]), 0.7)
    assert judged["band"] == "model" and estimate.compare(estimate.widen(e, hits), 0.7)["band"] == "track record"
    assert estimate.widen(e, misses).low < estimate.widen(e, hits).low


def test_an_unreliable_estimate_makes_the_estimated_trigger_fall_back_to_measured_and_both_fire_on_measured():
    from retrainlib import automl
    from retrainlib.profiles import load_profile
    from retrainlib.steps.analyze import _performance, _trigger_history

    info = automl.metric_info("roc_auc", "binary")
    newest = {"batch": "w9", "value": 0.80, "low": 0.78, "high": 0.82, "metric": "roc_auc",
              "unreliable": "unreliable: label shift on w8: class 1 is 41.0% of 800 labels, the calibrated champion "
                            "expected 12.0%"}
    scored = [{"batch": f"w{i}", "batch_end": f"2024-01-0{i}", "value": v} for i, v in ((7, 0.74), (8, 0.62))]
    estimates = [dict(newest, batch="w8", value=0.81), newest]
    demo = load_profile("params/demo.yaml")  # performance_threshold 0.70 on roc_auc
    as_source = lambda s: demo.model_copy(update={"triggers": demo.triggers.model_copy(update={"performance_source": s})})  # noqa: E731
    for source in ("estimated", "both"):
        prof = as_source(source)
        t = _performance(0.62, "w8", newest, source, prof, info)
        assert t.fired and t.value == pytest.approx(0.62), t  # the measured 0.62, not the estimated 0.80
        assert "label shift on w8" in t.reason and "measured on labels" in t.reason
    assert _trigger_history(scored, estimates, "estimated") == [0.74, 0.62]  # the measured series
    reliable = [dict(e, unreliable="") for e in estimates]
    assert _trigger_history(scored, reliable, "estimated") == [0.81, 0.80]
    assert not _performance(0.62, "w8", reliable[-1], "estimated", as_source("estimated"), info).fired  # the estimate alone: 0.80


@pytest.mark.slow
def test_in_the_playbook_a_label_share_that_moves_without_the_features_marks_the_estimate_and_the_trigger_reads_measured(tmp_path):
    from retrainlib import steps
    from retrainlib.demo import week_end
    from tests.conftest import make_home
    from tests.test_steps import run_steps

    settings = {"data.label_delay_batches": 2, "triggers.policy": "any", "triggers.use": ["performance"],
                "triggers.performance_source": "estimated"}
    shifted, steady = make_home(tmp_path / "shifted", weeks=14, **settings), make_home(tmp_path / "steady", weeks=14, **settings)
    rng = np.random.default_rng(0)
    for week in range(9, 15):  # more defaults than the applicants' features explain: the features are untouched
        path = shifted / f"data/demo/batches/{week_end(week)}.parquet"
        frame = pd.read_parquet(path)
        flip = (frame["default"] == 0).to_numpy() & (rng.random(len(frame)) < 0.4)
        frame.loc[flip, "default"] = 1
        frame.to_parquet(path)
    results = {}
    for name, home in (("shifted", shifted), ("steady", steady)):
        run_steps(home, week_end(8).isoformat(), "boot")
        ctx = steps.open_step("params/demo.yaml", str(home / "runs" / "second"), str(home), week_end(14).isoformat())
        results[name] = (ctx, steps.analyze_drift(ctx))
    ctx, analysis = results["shifted"]
    newest = analysis.performance["estimate"]
    assert newest["unreliable"].startswith("unreliable: label shift on ") and "expected" in newest["unreliable"], newest
    perf = [t for t in analysis.decision.triggers if t.name == "performance"][0]
    assert perf.source == "measured" and "measured instead" in perf.reason and "label shift" in perf.reason
    assert perf.value == pytest.approx(analysis.performance["value"], abs=1e-4)  # the newest measured value
    judged = [r for r in ctx.registry.evaluations(analysis.champion) if r.get("label_shift")]
    assert judged and judged[-1]["label_shift"]["shifted"]
    ctx, analysis = results["steady"]
    assert not analysis.performance["estimate"]["unreliable"], analysis.performance["estimate"]
    perf = [t for t in analysis.decision.triggers if t.name == "performance"][0]
    assert perf.source == "estimated"
    checks = [r["label_shift"] for r in ctx.registry.evaluations(analysis.champion) if r.get("label_shift")]
    assert checks and not any(c["shifted"] for c in checks), [c["reason"] for c in checks]
    # `retrain report` shows the flag in the run's row and on its estimate in the timeline; the steady run shows none
    from retrainlib.report import build_report

    pages = {}
    for name, home in (("shifted", shifted), ("steady", steady)):
        (home / "runs" / "second" / "manifest.json").write_text(json.dumps(
            {"run_id": "second", "status": "succeeded", "outcome": "no-retrain-needed", "started": week_end(14).isoformat(),
             "as_of": week_end(14).isoformat(), "profile": {"name": "demo", "resolved": {"model_name": "loan-default-demo"}},
             "outputs": {"10-analyze-drift": {"file": "10-analyze-drift.json"}}}))  # the record names step 10's output
        pages[name] = build_report(home / "runs").index.read_text()
    flag = results["shifted"][1].performance["estimate"]["unreliable"]
    assert f'<small class="unreliable">estimate {html.escape(flag)}</small>' in pages["shifted"]
    assert "second: estimated" in pages["shifted"] and f"; {html.escape(flag)}</title>" in pages["shifted"]
    assert "unreliable" not in pages["steady"].replace("small.unreliable", "")


def test_the_band_table_shows_each_part_the_label_check_and_the_unreliable_flag():
    rng = np.random.default_rng(2)
    p = rng.uniform(0.05, 0.6, 2000)
    est = estimate.fit_estimator(problem_type="binary", metric="accuracy", y_true=(rng.random(2000) < p).astype(int),
                                 scores=p, classes=[0, 1])
    record = [{"estimated": 0.8, "measured": 0.7, "in_band": False}] * 4
    e = estimate.widen(est.estimate(p[:500], batch="data/2024-01-07.parquet"), record)
    check = estimate.label_check(est, p[:500], (rng.random(500) < p[:500] + 0.15).astype(int), batch="w1")
    row = {**e.to_dict(), "unreliable": estimate.unreliable_reason(check), "label_check": check}
    table = estimate.band_table([row])
    assert list(table["batch"]) == ["2024-01-07.parquet"] and table["track_record"].iloc[0] > 0
    assert table["sampling"].iloc[0] > 0 and table["unreliable"].iloc[0].startswith("unreliable: label shift on w1")
    line = estimate.band_summary(row)
    assert "95% band" in line and "label shift on w1" in line and "4 judged estimates, 0 inside their band" in line
    assert estimate.band_summary({}) == "not estimated: no batch to estimate" and estimate.band_table([]).empty


@pytest.mark.parametrize("classes, y", [
    ([0, 1], [1, 0, 0, 1, 2, -1]),  # an unknown label either side
    ([1, 0], [1, 0, 0, 1]),  # the model's class order is not the sorted one
    ([3, -2, 7], [7, 7, -2, 3, 5]),
    ([False, True], [True, False, True]),
    ([0, 1], [True, False]),  # a boolean label equals a whole-number class
    (["no", "yes"], ["yes", "no", "maybe"]),  # text: pandas' lookup
    ([0.5, 1.5], [1.5, 0.5, 2.5]),  # floats: pandas' lookup
])
def test_each_labels_place_among_the_classes_is_the_one_pandas_finds(classes, y):
    from retrainlib.estimate.estimator import _class_places

    got = _class_places(classes, np.array(y))
    assert got.tolist() == pd.Index(list(classes)).get_indexer(np.array(y)).tolist()


def test_a_content_key_names_the_values_their_type_and_shape():
    from retrainlib.estimate.estimator import _content_key, _label_key

    a = np.arange(6, dtype=np.int64)
    assert _content_key(a) == _content_key(a.copy()) != _content_key(a.reshape(2, 3)) != _content_key(a.astype(np.int32))
    assert _label_key(np.array([0, 1, -1])).dtype == np.int8 and _label_key(np.array([0, 300])).dtype == np.int64


def test_maps_applied_along_sorted_float32_scores_keep_the_type_the_row_by_row_calibration_gives():
    from retrainlib.estimate.calibration import IDENTITY, _calibrate, _sorted_columns

    P = np.random.default_rng(5).dirichlet([1, 1, 1], 300).astype(np.float32)
    maps = [dict(IDENTITY) for _ in range(3)]
    row_by_row = _calibrate(maps, P)
    sorted_way = _calibrate(maps, P, _sorted_columns(P))
    assert sorted_way.dtype == row_by_row.dtype and np.array_equal(sorted_way, row_by_row)
