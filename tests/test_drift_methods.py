"""Contract tests over every method of the drift registry (as river tests every detector).

Each registered method: its statistic function for each kind it applies to returns exactly the
keys it declares, identical windows are not drift, a planted shift of its kind is, its threshold
key is a profile setting that reaches the verdict, and a profile naming a method that does not
exist (or does not fit the column kind) fails with one line naming the key. A method added as one
entry of the registry is computed, decided and shown with no other change.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from retrainlib import drift
from retrainlib.drift import methods
from retrainlib.errors import ProfileError
from retrainlib.drift.measures import Merged
from retrainlib.profiles import DriftSettings, load_profile

CASES = [(name, kind) for name, m in sorted(methods.METHODS.items()) for kind in m.kinds]
N = 20_000  # above large_sample: auto would pick an effect size, so a p-value method is chosen by name only


def _windows(kind: str, *, shifted: bool, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A numeric and a categorical column; ``shifted`` plants a shift in the column of ``kind``."""
    rng = np.random.default_rng(seed)

    def frame(shift: bool) -> pd.DataFrame:
        x = rng.normal(1.0 if shift and kind == "numeric" else 0.0, 1.0, N)
        p = [0.1, 0.2, 0.3, 0.4] if shift and kind == "categorical" else [0.4, 0.3, 0.2, 0.1]
        return pd.DataFrame({"x": x, "c": rng.choice(["n", "s", "e", "w"], N, p=p)})

    ref = frame(False)
    return ref, (frame(True) if shifted else ref.copy())


def _settings(name: str, kind: str, **extra) -> DriftSettings:
    return DriftSettings(multivariate=False, **{f"{kind}_test": name}, **extra)


def _column(report, kind: str):
    return next(f for f in report.features if f.column == ("x" if kind == "numeric" else "c"))


def _profile(tmp_path, drift_section: dict):
    raw = {"name": "p", "model_name": "m", "data": {"batches": "b", "label": "y", "time_column": "t"},
           "drift": drift_section}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("name, kind", CASES)
def test_identical_windows_are_not_drift_for_every_method(name, kind):
    ref, cur = _windows(kind, shifted=False)
    f = _column(drift.compare(ref, cur, settings=_settings(name, kind)), kind)
    assert f.test == name and not f.drifted, f


@pytest.mark.parametrize("name, kind", CASES)
def test_a_planted_shift_of_its_kind_is_drift_for_every_method(name, kind):
    ref, cur = _windows(kind, shifted=True)
    f = _column(drift.compare(ref, cur, settings=_settings(name, kind)), kind)
    assert f.test == name and f.drifted, f
    assert methods.METHODS[name].decides_on in f.stats


@pytest.mark.parametrize("name, kind", CASES)
def test_every_methods_threshold_key_is_a_profile_setting_that_reaches_the_verdict(tmp_path, name, kind):
    key = methods.METHODS[name].threshold_key
    value = getattr(DriftSettings(), key) / 2
    prof = load_profile(_profile(tmp_path, {f"{kind}_test": name, key: value, "multivariate": False}))
    assert getattr(prof.drift, key) == value
    ref, cur = _windows(kind, shifted=True)
    assert _column(drift.compare(ref, cur, settings=prof.drift), kind).threshold == value


@pytest.mark.parametrize("kind", methods.KINDS)
def test_an_unknown_method_in_a_profile_is_one_line_naming_the_key(tmp_path, kind):
    with pytest.raises(ProfileError) as err:
        load_profile(_profile(tmp_path, {f"{kind}_test": "kl"}))
    message = str(err.value)
    assert "\n" not in message
    expected = ", ".join(repr(n) for n in ("auto", *methods.method_names(kind)))
    assert f"p.yaml: drift.{kind}_test = 'kl': 'kl' is not a drift method for {kind} columns; expected one of {expected}" \
        in message


def test_an_unknown_method_for_one_column_is_one_line_naming_the_column_key(tmp_path):
    with pytest.raises(ProfileError) as err:
        load_profile(_profile(tmp_path, {"per_column": {"age": {"test": "kl"}}}))
    assert "\n" not in str(err.value)
    assert "per_column.age.test = 'kl'; expected one of " + ", ".join(
        repr(n) for n in ("auto", *methods.method_names())) in str(err.value)


@pytest.mark.parametrize("name, kind", [(n, k) for n, m in sorted(methods.METHODS.items())
                                        for k in methods.KINDS if k not in m.kinds])
def test_a_method_of_the_other_kind_in_a_profile_is_refused_naming_the_key(tmp_path, name, kind):
    with pytest.raises(ProfileError, match=rf"drift\.{kind}_test = '{name}': '{name}' is not a drift method for {kind}"):
        load_profile(_profile(tmp_path, {f"{kind}_test": name}))


def test_a_method_added_to_the_registry_is_accepted_by_profiles_without_a_second_list(monkeypatch):
    extra = methods.DriftMethod("kl", ("numeric",), "kl", "psi_threshold", "effect size")
    with pytest.raises(ValueError, match="'kl' is not a drift method"):
        DriftSettings(numeric_test="kl")
    monkeypatch.setitem(methods.METHODS, "kl", extra)
    assert DriftSettings(numeric_test="kl").numeric_test == "kl"
    assert DriftSettings(per_column={"x": {"test": "kl"}}).per_column == {"x": {"test": "kl"}}


def test_auto_has_exactly_one_method_for_every_shape_and_size():
    for shape in methods.SHAPES:
        for size in methods.SIZES:
            chosen = [m.name for m in methods.METHODS.values() if (shape, size) in m.auto]
            assert len(chosen) == 1, (shape, size, chosen)
    assert methods.significance_of("continuous").name == "ks"
    assert methods.significance_of("discrete").name == "chi2"
    for shape in methods.SHAPES:
        assert not methods.significance_of(shape).is_effect_size


@pytest.mark.parametrize("name", sorted(methods.METHODS))
def test_every_method_reads_a_statistic_the_kernels_compute_and_a_threshold_profiles_have(name):
    m = methods.METHODS[name]
    assert m.threshold_key in DriftSettings.model_fields
    assert m.measures in ("effect size", "p-value") and (m.p_value is None) == m.is_effect_size
    rng = np.random.default_rng(0)
    produced = {"numeric": drift.numeric_statistics(rng.normal(size=500), rng.normal(size=500)),
                "categorical": drift.categorical_statistics(rng.choice(list("ab"), 500), rng.choice(list("ab"), 500))}
    for kind in m.kinds:
        assert m.statistic in produced[kind] and m.decides_on in produced[kind], (kind, sorted(produced[kind]))


def _merged(a, b, psi_bins: int = 10) -> Merged:
    """Two samples merged as the kernels merge them (sorted, the gap between the CDFs, runs of ties)."""
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    merged = np.sort(np.concatenate([a, b]), kind="stable")
    gap = np.abs(np.searchsorted(a, merged, side="right") / len(a) - np.searchsorted(b, merged, side="right") / len(b))
    last = np.append(merged[1:] != merged[:-1], True)
    return Merged(a, b, merged, gap, last, np.diff(merged), psi_bins)


@pytest.mark.parametrize("name, kind", CASES)
def test_every_methods_statistic_function_returns_exactly_the_keys_it_declares_and_the_kernels_carry_them(name, kind):
    m = methods.METHODS[name]
    function = getattr(m, kind)
    assert callable(function), f"{name} applies to {kind} columns but has no {kind} statistic function"
    rng = np.random.default_rng(3)
    if kind == "numeric":
        a, b = rng.normal(size=400), rng.normal(0.3, 1.0, size=300)
        produced, kernels = function(_merged(a, b)), drift.numeric_statistics(a, b)
    else:
        ref, cur = np.array([50.0, 30.0, 20.0, 0.0]), np.array([20.0, 30.0, 40.0, 10.0])
        produced = function(ref, cur)
        kernels = drift.categorical_statistics(np.repeat(list("abcd"), ref.astype(int)),
                                               np.repeat(list("abcd"), cur.astype(int)))
    assert tuple(sorted(produced)) == tuple(sorted(m.produces)), (name, kind, sorted(produced))
    assert all(np.isfinite(v) for v in produced.values()), produced
    for key in m.produces:
        assert kernels[key] == pytest.approx(produced[key], rel=1e-12), (name, kind, key)


def _mean_shift(merged: Merged) -> dict[str, float]:
    std = float(np.std(merged.a))
    return {"mean_shift": abs(float(np.mean(merged.b)) - float(np.mean(merged.a))) / std}


def test_a_method_added_as_one_registry_entry_is_computed_decided_and_shown(monkeypatch):
    """Adding a method is one entry: no kernel, profile or report code lists it."""
    entry = methods.DriftMethod("mean_shift", ("numeric",), "mean_shift", "wasserstein_threshold", "effect size",
                                description="mean difference / reference std", numeric=_mean_shift)
    monkeypatch.setitem(methods.METHODS, "mean_shift", entry)
    ref, cur = _windows("numeric", shifted=True)
    report = drift.compare(ref, cur, settings=DriftSettings(multivariate=False, numeric_test="mean_shift"))
    f = _column(report, "numeric")
    expected = abs(cur["x"].mean() - ref["x"].mean()) / ref["x"].std(ddof=0)
    assert f.test == "mean_shift" and f.statistic == pytest.approx(expected, rel=1e-9) and f.drifted, f
    assert f.threshold == DriftSettings().wasserstein_threshold and f.stats["mean_shift"] == f.statistic
    assert report.to_frame().set_index("feature").loc["x", "mean_shift"] == f.statistic
    still = _column(drift.compare(ref, ref.copy(), settings=DriftSettings(multivariate=False,
                                                                           numeric_test="mean_shift")), "numeric")
    assert still.test == "mean_shift" and still.statistic == 0.0 and not still.drifted
