"""Champion-vs-challenger gates on real, tiny AutoGluon fits.

The loan book has an old concept (default driven by income alone) and a new one (income and
debt). A champion trained on the old concept is clearly worse on a new-concept holdout than a
challenger trained on the new one; a challenger trained on a third of the rows is slightly worse.
Every validate() here reloads the challenger in a fresh Python process (about 3 s each).
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd
import pytest

from retrainlib import automl
from retrainlib.errors import DataContractError, ProfileError
from retrainlib.profiles import Profile
from retrainlib.validation import (
    BOOTSTRAP_METRICS, Verdict, bootstrap_scores, flip_excess, plot_bootstrap, plot_scores, validate,
)

LABEL = "default"
TINY = {"GBM": {"num_boost_round": 30}}


def loan_book(n: int, concept: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "income": rng.normal(50, 15, n),
            "debt": rng.normal(10, 4, n),
            "age": rng.integers(20, 70, n),
            "region": rng.choice(["north", "south", "east"], n),
            "noise": rng.normal(size=n),
        }
    )
    z, d = (x.income - 50) / 15, (x.debt - 10) / 4
    logit = 2.5 * z - (2.0 * d if concept == "new" else 0.0) + 0.8 * (x.region == "south")
    return x.assign(**{LABEL: (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)})


def make_profile(improvement_threshold: float = 0.01, label: str = LABEL, **validation) -> Profile:
    return Profile.model_validate(
        {
            "name": "test",
            "model_name": "loans",
            "improvement_threshold": improvement_threshold,
            "data": {"batches": "data/batches", "label": label, "time_column": "week"},
            "training": {"num_cpus": 1},
            "validation": {"bootstrap_samples": 300, **validation},
        }
    )


class Model:
    def __init__(self, predictor, path):
        self.predictor, self.path = predictor, path
        self.meta = {"software": automl.software_versions(), "features": list(predictor.original_features)}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")

    def fit(name: str, data: pd.DataFrame) -> Model:
        path = root / name
        p = automl.fit_predictor(
            data, label=LABEL, path=path, eval_metric="roc_auc", problem_type="binary", presets="medium_quality",
            time_limit=60, num_cpus=1, seed=0, hyperparameters=TINY,
        )
        return Model(p, path)

    new_rows = loan_book(1500, "new", 2)
    return {
        "old": fit("old", loan_book(1500, "old", 1)),
        "new": fit("new", new_rows),
        "small": fit("small", loan_book(1500, "new", 3).iloc[:500]),
        "no_noise_column": fit("no_noise_column", new_rows.drop(columns="noise")),
    }


@pytest.fixture(scope="module")
def holdout():
    return loan_book(2000, "new", 9)


def run(models, holdout, challenger, champion=None, **profile_kw) -> Verdict:
    chal = models[challenger]
    champ = models[champion] if champion else None
    return validate(
        chal.predictor, holdout, profile=make_profile(**profile_kw), champion=champ.predictor if champ else None,
        challenger_dir=chal.path, champion_dir=champ.path if champ else None,
        challenger_meta=chal.meta, champion_meta=champ.meta if champ else None,
    )


@pytest.fixture(scope="module")
def promoted(models, holdout):
    """New-concept challenger against the old-concept champion, judged on AUC and log loss."""
    return run(models, holdout, "new", "old", metrics=["roc_auc", "log_loss"], require_significance=True)


# ------------------------------------------------------------------ improvement, both directions


def test_challenger_better_by_more_than_the_threshold_is_promoted(promoted):
    gate = promoted.gate("improvement", "roc_auc")
    assert promoted.scores["challenger"]["roc_auc"] - promoted.scores["champion"]["roc_auc"] > 0.05
    assert gate.passed and gate.value > gate.threshold == 0.01
    assert promoted.decision == "promote" and promoted.reasons == ()


def test_challenger_worse_by_less_than_the_threshold_is_rejected(models, holdout):
    verdict = run(models, holdout, "small", "new", metrics=["roc_auc"])
    gap = verdict.scores["challenger"]["roc_auc"] - verdict.scores["champion"]["roc_auc"]
    assert -0.01 < gap < 0  # worse, but by less than the threshold
    assert verdict.decision == "reject"
    assert not verdict.gate("improvement", "roc_auc").passed
    assert verdict.reasons == (verdict.gate("improvement", "roc_auc").reason,)
    assert "below improvement_threshold 0.01" in verdict.reasons[0]


def test_log_loss_counts_a_lower_loss_as_the_improvement(promoted, models, holdout):
    gate = promoted.gate("improvement", "log_loss")
    champ, chal = promoted.scores["champion"]["log_loss"], promoted.scores["challenger"]["log_loss"]
    assert chal < champ  # the better model has the smaller loss
    assert gate.value == pytest.approx(champ - chal) and gate.passed
    assert "lower is better" in gate.reason

    swapped = run(models, holdout, "old", "new", metrics=["log_loss"])
    assert swapped.gate("improvement", "log_loss").value == pytest.approx(chal - champ)
    assert swapped.decision == "reject"
    assert swapped.bootstrap["metric"] == "log_loss" and swapped.bootstrap["ci_high"] < 0


# ------------------------------------------------------------------ minimum requirements, bootstrap mode


def test_a_challenger_under_the_floor_that_beats_a_champion_further_under_it_is_not_held_back_by_the_minimum(models, holdout):
    verdict = run(models, holdout, "new", "old", minimum={"roc_auc": 0.99})
    gate = verdict.gate("minimum", "roc_auc")
    assert verdict.scores["champion"]["roc_auc"] < verdict.scores["challenger"]["roc_auc"] < 0.99
    assert gate.passed and "is not at or above the minimum 0.99" in gate.reason and "further from it" in gate.reason
    assert verdict.decision == "promote"


def test_minimum_requirement_failure_rejects_a_challenger_under_the_floor_that_does_not_beat_the_champion(models, holdout):
    verdict = run(models, holdout, "small", "new", metrics=["roc_auc"], minimum={"roc_auc": 0.99}, improvement_threshold=0.0)
    assert not verdict.gate("minimum", "roc_auc").passed and "further" not in verdict.gate("minimum", "roc_auc").reason
    assert verdict.decision == "reject"
    assert "is not at or above the minimum 0.99" in " ".join(verdict.reasons)


def test_first_model_without_champion_is_bootstrapped_on_minimum_stability_and_compatibility(models, holdout):
    verdict = run(models, holdout, "new", minimum={"roc_auc": 0.85})
    assert verdict.decision == "bootstrap"
    assert [g.name for g in verdict.gates] == ["minimum", "stability_reload", "stability_noise", "versions", "latency"]
    assert verdict.scores["champion"] == {} and verdict.scores["challenger"]["roc_auc"] > 0.85
    assert verdict.bootstrap["kind"] == "score"
    assert verdict.bootstrap["ci_low"] < verdict.scores["challenger"]["roc_auc"] < verdict.bootstrap["ci_high"]


def test_bootstrap_mode_rejects_a_loss_above_its_floor(models, holdout):
    verdict = run(models, holdout, "new", metrics=["roc_auc"], minimum={"roc_auc": 0.85, "log_loss": 0.30})
    assert verdict.decision == "reject"
    assert verdict.gate("minimum", "roc_auc").passed
    failed = verdict.gate("minimum", "log_loss")
    assert not failed.passed and failed.value > 0.30
    assert verdict.reasons == ("challenger log_loss 0.3979 is not at or below the minimum 0.3 (validation.minimum)",)


# ------------------------------------------------------------------ significance


def test_required_significance_is_blocking_and_rejects_a_challenger_no_better_than_the_champion(promoted, models, holdout):
    assert promoted.gate("significance").blocking and promoted.gate("significance").passed
    assert promoted.bootstrap["ci_low"] > 0 and promoted.bootstrap["samples"] == 300

    same = run(models, holdout, "new", "new", improvement_threshold=0.0, require_significance=True)
    assert same.gate("improvement", "roc_auc").passed  # 0 >= 0
    assert not same.gate("significance").passed
    assert same.decision == "reject"
    assert same.reasons == (same.gate("significance").reason,)
    assert "does not clear zero" in same.reasons[0]


# ------------------------------------------------------------------ stability


def test_fresh_process_reload_really_runs_in_another_process(promoted):
    gate = promoted.gate("stability_reload")
    assert gate.passed and gate.value == 0.0
    assert gate.details["pid"] != os.getpid()
    assert gate.details["rows"] == 2000 and gate.details["rows_changed"] == 0
    assert gate.details["software"]["autogluon"] == automl.software_versions()["autogluon"]


def test_reload_from_a_folder_holding_another_model_fails_stability(models, holdout):
    new = models["new"]
    verdict = validate(
        new.predictor, holdout, profile=make_profile(), champion=models["old"].predictor,
        challenger_dir=models["small"].path, challenger_meta=new.meta,
    )
    gate = verdict.gate("stability_reload")
    assert not gate.passed and gate.details["rows_changed"] > 0
    assert verdict.decision == "reject"


def test_reload_of_a_folder_that_does_not_load_fails_with_the_error(models, holdout, tmp_path):
    (tmp_path / "predictor.pkl").write_bytes(b"not a pickle")
    new = models["new"]
    verdict = validate(new.predictor, holdout, profile=make_profile(), challenger_dir=tmp_path, challenger_meta=new.meta)
    gate = verdict.gate("stability_reload")
    assert not gate.passed and verdict.decision == "reject"
    assert "failed to load or predict in a fresh process: UnpicklingError:" in gate.reason


def test_noise_flips_are_measured_against_the_champions_on_the_same_rows_plus_one_minus_stability_threshold(promoted):
    gate = promoted.gate("stability_noise")
    assert gate.details["champion_share"] is not None and gate.details["tolerance"] == pytest.approx(0.05)
    # the limit on the challenger's share: the champion's, the tolerance and the sampling allowance of the bound
    excess, bound = gate.details["excess"], gate.details["excess_bound"]
    assert excess == pytest.approx(gate.value - gate.details["champion_share"]) and bound <= excess
    assert gate.threshold == pytest.approx(gate.details["champion_share"] + 0.05 + (excess - bound))
    assert f"lower {gate.details['confidence']:.0%} bound {bound:+.2%}" in gate.reason and f"n={gate.details['rows']}" in gate.reason
    assert 0 < gate.value <= gate.threshold and gate.passed and gate.blocking
    assert set(gate.details["features"]) == {"income", "debt", "age", "noise"}


def test_a_challenger_as_stable_as_the_champion_passes_even_when_both_flip_more_than_one_minus_stability_threshold(models, holdout):
    verdict = run(models, holdout, "new", "new", noise_fraction=0.5)  # heavy noise: many predictions flip
    gate = verdict.gate("stability_noise")
    assert gate.value > 0.05 and gate.value == pytest.approx(gate.details["champion_share"])
    assert gate.passed, gate.reason
    assert "stability_noise" not in [g.name for g in verdict.gates if g.blocking and not g.passed]


def test_a_challenger_flipping_more_than_the_tolerance_above_the_champion_passes_when_that_is_within_sampling_noise():
    # 40 holdout rows: the challenger flips 25 %, the champion 15 % -- 10 points apart, twice the 5 % tolerance,
    # but only 6 rows flip for one model and not the other (5 against 1), which a coin does often enough
    champion = np.zeros(40, bool)
    champion[:6] = True
    challenger = np.zeros(40, bool)
    challenger[1:11] = True
    verdict = flip_excess(challenger, champion, tolerance=0.05, confidence=0.95)
    assert verdict["excess"] == pytest.approx(0.10) and verdict["discordant"] == {"challenger_only": 5, "champion_only": 1}
    assert verdict["excess_bound"] < 0.05 and verdict["passed"]


def test_a_challenger_clearly_less_stable_than_the_champion_on_many_rows_is_rejected():
    # 1,000 rows: the challenger flips 300, the champion 50 of those same rows and no others
    champion = np.zeros(1000, bool)
    champion[:50] = True
    challenger = np.zeros(1000, bool)
    challenger[:300] = True
    verdict = flip_excess(challenger, champion, tolerance=0.05, confidence=0.95)
    assert verdict["excess"] == pytest.approx(0.25) and 0.20 < verdict["excess_bound"] < 0.25
    assert not verdict["passed"]
    # as stable as the champion however many flip: passes; no discordant rows at all: excess and bound are zero
    assert flip_excess(champion, champion, tolerance=0.0, confidence=0.95) == {
        "excess": 0.0, "excess_bound": 0.0, "n": 1000, "discordant": {"challenger_only": 0, "champion_only": 0}, "passed": True,
    }


def test_an_absolute_flip_cap_applies_only_where_the_profile_sets_one(models, holdout):
    capped = run(models, holdout, "new", "new", noise_fraction=0.5, max_flip_share=0.05)
    gate = capped.gate("stability_noise")
    assert not gate.passed and "above validation.max_flip_share 5.00%" in gate.reason
    assert gate.reason in capped.reasons
    first = run(models, holdout, "new", noise_fraction=0.5)  # no champion, no cap: reported only
    assert not first.gate("stability_noise").blocking and first.decision == "bootstrap"


# ------------------------------------------------------------------ compatibility, churn, latency


def test_schema_change_is_rejected_unless_the_profile_allows_it(models, holdout):
    refused = run(models, holdout, "no_noise_column", "old")
    gate = refused.gate("schema")
    assert not gate.passed and gate.details == {"added": [], "removed": ["noise"]}
    assert refused.decision == "reject"
    assert refused.reasons == (
        "the challenger's input contract differs from the champion's (removed noise); "
        "set validation.allow_schema_change to accept it",
    )

    allowed = run(models, holdout, "no_noise_column", "old", allow_schema_change=True)
    assert allowed.gate("schema").passed and "allowed by validation.allow_schema_change" in allowed.gate("schema").reason
    assert allowed.decision == "promote"


def test_the_schema_gate_judges_the_input_contract_not_the_features_autogluon_kept(models, holdout):
    # the champion was given 'noise' too but kept no use for it (as AutoGluon drops a column constant in its window)
    chal, champ = models["new"], models["no_noise_column"]
    contract = {c: "numeric" for c in ("income", "debt", "age", "noise")} | {"region": "categorical"}
    assert "noise" not in champ.meta["features"] and "noise" in chal.meta["features"]
    verdict = validate(chal.predictor, holdout, profile=make_profile(), champion=champ.predictor, challenger_dir=chal.path,
                       challenger_meta={**chal.meta, "inputs": contract}, champion_meta={**champ.meta, "inputs": contract})
    assert verdict.gate("schema").passed, verdict.gate("schema").reason
    retyped = validate(chal.predictor, holdout, profile=make_profile(), champion=champ.predictor, challenger_dir=chal.path,
                       challenger_meta={**chal.meta, "inputs": {**contract, "age": "categorical"}},
                       champion_meta={**champ.meta, "inputs": contract})
    assert not retyped.gate("schema").passed and "changed kind of age numeric→categorical" in retyped.gate("schema").reason


def test_other_recorded_software_and_churn_over_its_limit_both_reject(models, holdout):
    new = models["new"]
    meta = {**new.meta, "software": {**new.meta["software"], "autogluon": "0.8.2", "python": "3.10.4"}}
    verdict = validate(
        new.predictor, holdout, profile=make_profile(max_churn=0.05), champion=models["old"].predictor,
        challenger_dir=new.path, challenger_meta=meta,
    )
    assert verdict.decision == "reject"
    assert verdict.gate("versions").reason == (
        "the challenger was trained with other software (AutoGluon 0.8.2 recorded, 1.6.3 running; "
        f"Python 3.10.4 recorded, {automl.software_versions()['python']} running); retrain it in this environment"
    )
    churn = verdict.gate("churn")
    assert churn.blocking and not churn.passed and churn.value > 0.05
    assert len(verdict.reasons) == 2


def test_churn_and_latency_are_reported_but_not_blocking_without_limits(promoted):
    churn, latency = promoted.gate("churn"), promoted.gate("latency")
    assert not churn.blocking and churn.threshold is None and 0 < churn.value < 1
    assert not latency.blocking and latency.value > 0
    assert latency.details["challenger_p95_seconds"] > 0 and latency.details["rows"] == 1000


# ------------------------------------------------------------------ results and plots


def test_latency_of_byte_identical_models_on_the_same_rows_is_timed_once_while_the_check_cache_is_on(models, holdout, tmp_path):
    from retrainlib import freshproc

    def p95s(verdict):
        d = verdict.gate("latency").details
        return d["challenger_p95_seconds"], d["champion_p95_seconds"]

    with freshproc.settings(cache_dir=None):
        assert p95s(run(models, holdout, "new", "old")) != p95s(run(models, holdout, "new", "old"))  # timed each time
    with freshproc.settings(cache_dir=tmp_path / "cache"):
        first = p95s(run(models, holdout, "new", "old"))
        assert p95s(run(models, holdout, "new", "old")) == first  # the earlier timing of the same files and rows
        assert p95s(run(models, holdout, "old", "new")) == first[::-1]
        assert len(list((tmp_path / "cache" / "latency").glob("*.json"))) == 2


def test_verdict_is_json_ready_and_its_gate_table_has_one_row_per_gate(promoted):
    data = json.loads(json.dumps(promoted.to_dict(), allow_nan=False))
    assert data["decision"] == "promote" and data["n_holdout"] == 2000
    assert len(data["bootstrap"]["values"]) == 300
    frame = promoted.to_frame()
    assert list(frame.columns) == ["name", "metric", "value", "threshold", "passed", "blocking", "reason"]
    assert len(frame) == len(promoted.gates)
    with pytest.raises(KeyError, match="no gate 'speed'; this verdict has 'churn'"):
        promoted.gate("speed")


def test_plots_draw_the_bootstrap_distribution_and_both_scores(promoted):
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_bootstrap(promoted)
    assert 0.0 in [line.get_xdata()[0] for line in ax.get_lines()]
    ax = plot_scores(promoted)
    assert len(ax.patches) == 4  # two metrics x two models


# ------------------------------------------------------------------ bad input


def test_holdout_without_the_label_is_refused(models, holdout):
    with pytest.raises(DataContractError, match="label column 'default' \\(data.label\\) is missing from the holdout"):
        validate(models["new"].predictor, holdout.drop(columns=LABEL), profile=make_profile())


def test_holdout_missing_a_feature_is_refused(models, holdout):
    with pytest.raises(DataContractError, match="the champion takes feature column\\(s\\) 'noise' that the holdout lacks"):
        validate(models["no_noise_column"].predictor, holdout.drop(columns="noise"), profile=make_profile(), champion=models["old"].predictor)


def test_unlabelled_holdout_rows_are_refused(models, holdout):
    broken = holdout.assign(**{LABEL: holdout[LABEL].astype(float).where(holdout.index > 2)})
    with pytest.raises(DataContractError, match="3 holdout rows have no label in 'default'"):
        validate(models["new"].predictor, broken, profile=make_profile())


def test_metric_unknown_for_the_problem_type_is_a_profile_error(models, holdout):
    with pytest.raises(ProfileError, match="validation metric 'rmse' is not an AutoGluon metric for a binary problem"):
        validate(models["new"].predictor, holdout, profile=make_profile(metrics=["rmse"]))


def test_empty_metric_list_is_a_profile_error(models, holdout):
    with pytest.raises(ProfileError, match="validation.metrics is empty; list at least one metric"):
        validate(models["new"].predictor, holdout, profile=make_profile(metrics=[]))


# ------------------------------------------------------------------ regression


def test_regression_model_floors_read_rmse_as_a_loss_and_r2_as_a_score(tmp_path):
    rows = loan_book(1200, "new", 4)
    rows["loss_given_default"] = 2 * rows.income - 3 * rows.debt + np.random.default_rng(4).normal(0, 5, len(rows))
    rows = rows.drop(columns=LABEL)
    train, hold = rows.iloc[:800], rows.iloc[800:]
    predictor = automl.fit_predictor(
        train, label="loss_given_default", path=tmp_path / "reg", eval_metric="root_mean_squared_error",
        problem_type="regression", presets="medium_quality", time_limit=60, num_cpus=1, seed=0, hyperparameters=TINY,
    )
    verdict = validate(
        predictor, hold, profile=make_profile(label="loss_given_default", metrics=["rmse"], minimum={"rmse": 50.0, "r2": 0.999}),
        challenger_meta={"software": automl.software_versions()},
    )
    assert verdict.gate("minimum", "rmse").passed  # a small error is under its ceiling
    assert not verdict.gate("minimum", "r2").passed
    assert verdict.decision == "reject" and verdict.gate("minimum", "r2").reason in verdict.reasons
    assert verdict.gate("stability_reload").passed
    noise = verdict.gate("stability_noise")  # moves within 5% of the label's spread do not count as flips
    assert noise.details["regression_tolerance"] == pytest.approx(0.05 * hold.loss_given_default.std(ddof=0))
    assert 0 < noise.value < 0.10

    # a regression challenger as stable as its champion passes however many of its predictions move
    profile = make_profile(label="loss_given_default", metrics=["rmse"], noise_fraction=0.5)
    against = validate(predictor, hold, profile=profile, champion=predictor,
                       challenger_meta={"software": automl.software_versions()})
    gate = against.gate("stability_noise")
    assert gate.value > 0.05 and gate.value == pytest.approx(gate.details["champion_share"]) and gate.passed


# ------------------------------------------------------------------ the vectorised bootstrap metrics (contract)


def _synthetic(problem_type: str, n: int = 300):
    rng = np.random.default_rng(5)
    if problem_type == "regression":
        y = rng.normal(size=n)
        return y, y + rng.normal(scale=0.5, size=n), None
    if problem_type == "binary":
        y = rng.choice(["no", "yes"], n)
        s = np.clip((y == "yes") * 0.3 + rng.random(n) * 0.7, 0, 1).round(2)  # ties on purpose
        s[:3] = [0.0, 1.0, 1.0]  # extreme probabilities hit log loss clipping
        return y, s, ["no", "yes"]
    y = rng.choice(["a", "b", "c"], n)
    raw = rng.random((n, 3)) + np.eye(3)[pd.Series(y).map({"a": 0, "b": 1, "c": 2})] * 0.5
    return y, raw / raw.sum(axis=1, keepdims=True), ["a", "b", "c"]


@pytest.mark.parametrize(
    "metric,problem_type", [(m, pt) for m, (types, _) in BOOTSTRAP_METRICS.items() for pt in types]
)
def test_every_vectorised_bootstrap_metric_equals_autogluons_score_on_a_resample(metric, problem_type):
    y, s, classes = _synthetic(problem_type)
    rng = np.random.default_rng(11)
    idx = rng.integers(0, len(y), len(y))
    counts = np.bincount(idx, minlength=len(y)).astype(float)[None, :]
    fast = BOOTSTRAP_METRICS[metric][1](y, s, classes, counts)[0]
    assert fast == pytest.approx(automl.score(metric, problem_type, y[idx], s[idx], classes), rel=1e-9, abs=1e-12)
    assert BOOTSTRAP_METRICS[metric][1](y, s, classes, np.ones((1, len(y))))[0] == pytest.approx(
        automl.score(metric, problem_type, y, s, classes), rel=1e-9, abs=1e-12
    )


def test_bootstrap_falls_back_to_autogluon_for_metrics_without_a_vectorised_form():
    y, s, classes = _synthetic("binary", n=120)
    fast = bootstrap_scores("accuracy", "binary", y, [s], classes, samples=60, seed=3)
    slow = bootstrap_scores("balanced_accuracy", "binary", y, [s], classes, samples=60, seed=3)
    assert fast.shape == slow.shape == (1, 60)
    assert np.all((slow > 0) & (slow < 1))


def test_bootstrap_resamples_are_paired_and_reproducible():
    y, s, classes = _synthetic("binary")
    a = bootstrap_scores("roc_auc", "binary", y, [s, s], classes, samples=200, seed=7, chunk_cells=5000)
    b = bootstrap_scores("roc_auc", "binary", y, [s, s], classes, samples=200, seed=7, chunk_cells=5000)
    assert np.array_equal(a[0], a[1]) and np.array_equal(a, b)


# ------------------------------------------------------------------ a challenger that knows a new class
def test_a_challenger_that_knows_a_class_its_champion_never_saw_is_judged_on_every_metric_with_its_own_classes(tmp_path):
    """Seattle's weather gained a class (fog) the champion never saw: its champion scores three columns, the
    challenger four. Scoring the champion's resamples with the challenger's classes indexed past its columns."""
    rng = np.random.default_rng(5)

    def weather(n: int, kinds: list[str]) -> pd.DataFrame:
        x = pd.DataFrame({"temp": rng.normal(10, 5, n), "wind": rng.normal(3, 1, n)})
        return x.assign(sky=rng.choice(kinds, n))

    def fit(name: str, rows: pd.DataFrame):
        return automl.fit_predictor(rows, label="sky", path=tmp_path / name, eval_metric="accuracy", problem_type="multiclass",
                                    presets="medium_quality", time_limit=60, num_cpus=1, seed=0, hyperparameters=TINY)

    three, four = ["sun", "rain", "drizzle"], ["sun", "rain", "drizzle", "fog"]
    champion, challenger = fit("champion", weather(400, three)), fit("challenger", weather(400, four))
    profile = Profile.model_validate({"name": "t", "model_name": "sky", "data": {"batches": "b", "label": "sky", "time_column": "d"},
                                      "training": {"num_cpus": 1, "problem_type": "multiclass", "eval_metric": "accuracy"},
                                      "validation": {"metrics": ["accuracy", "log_loss"], "bootstrap_samples": 100}})
    verdict = validate(challenger, weather(300, four), profile=profile, champion=champion, challenger_new_rows=True)
    assert np.isfinite([verdict.bootstrap["ci_low"], verdict.bootstrap["ci_high"]]).all()
    for metric, sign in (("accuracy", 1), ("log_loss", -1)):
        gate = verdict.gate("improvement", metric)
        assert gate.value == pytest.approx(sign * (verdict.scores["challenger"][metric] - verdict.scores["champion"][metric]))
        assert gate.passed or "never saw" in gate.reason  # judged as a challenger on newer rows, with its interval


# ------------------------------------------------------------------ noise keeps a dry day dry
def test_noise_leaves_exact_zeros_at_zero_so_a_dry_day_is_not_counted_as_a_flip(tmp_path):
    """Seattle's precipitation is 0 on 82% of days, and LightGBM splits zero from non-zero at 1e-35: Gaussian
    noise on the zeros flipped 34% of a challenger's predicted weather, and the stability gate rejected it."""
    rng = np.random.default_rng(7)
    n = 600
    rain = np.where(rng.random(n) < 0.7, 0.0, rng.gamma(2.0, 3.0, n))
    rows = pd.DataFrame({"precipitation": rain, "temp": rng.normal(12, 6, n)})
    rows["sky"] = np.where(rows.precipitation > 0, "rain", "sun")
    model = automl.fit_predictor(rows.iloc[:400], label="sky", path=tmp_path / "m", eval_metric="accuracy", problem_type="binary",
                                 presets="medium_quality", time_limit=60, num_cpus=1, seed=0, hyperparameters=TINY)
    profile = Profile.model_validate({"name": "t", "model_name": "sky", "data": {"batches": "b", "label": "sky", "time_column": "d"},
                                      "training": {"num_cpus": 1, "problem_type": "binary", "eval_metric": "accuracy"},
                                      "validation": {"metrics": ["accuracy"], "bootstrap_samples": 100}})
    verdict = validate(model, rows.iloc[400:], profile=profile)
    gate = verdict.gate("stability_noise")
    assert gate.value < 0.02, gate.reason  # before: about half of the dry days turned rainy under the noise

    from retrainlib.validation import _perturb
    noisy, touched = _perturb(rows[["precipitation", "temp"]], 0.01, np.random.default_rng(0))
    dry = rows.precipitation == 0
    assert (noisy.loc[dry, "precipitation"] == 0).all() and (noisy.loc[~dry, "precipitation"] != rows.loc[~dry, "precipitation"]).all()
    assert touched == ["precipitation", "temp"]
