from pathlib import Path

import pytest
import yaml

from retrainlib.errors import ProfileError
from retrainlib.profiles import Profile, load_profile

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "params").glob("*.yaml"))
GUIDE = {  # the guide's table: (performance, drift, interval days, max time s, improvement) ranges
    "financial": ((0.95, 0.99), (0.05, 0.10), (1, 3), (3600, 7200), (0.01, 0.02)),
    "recommendation": ((0.90, 0.94), (0.10, 0.15), (3, 7), (3600, 14400), (0.02, 0.05)),
    "standard-business": ((0.80, 0.89), (0.15, 0.25), (7, 14), (7200, 14400), (0.02, 0.05)),
    "experimental": ((0.70, 0.79), (0.20, 0.30), (14, 30), (14400, 28800), (0.05, 0.10)),
    "research": ((0.60, 0.69), (0.25, 0.40), (30, 90), (28800, 10**6), (0.10, 1.0)),
}


def write(tmp_path, text: str) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(text)
    return p


def base() -> dict:
    return yaml.safe_load((REPO / "params" / "demo.yaml").read_text())


@pytest.mark.parametrize("path", PROFILES, ids=[p.stem for p in PROFILES])
def test_every_shipped_profile_loads_into_a_frozen_profile(path):
    prof = load_profile(path)
    assert isinstance(prof, Profile)
    with pytest.raises(Exception):
        prof.drift_threshold = 0.5  # frozen


@pytest.mark.parametrize("name", sorted(GUIDE))
def test_system_type_profiles_hold_the_guides_values(name):
    prof = load_profile(REPO / "params" / f"{name}.yaml")
    perf, drift, interval, max_time, improvement = GUIDE[name]
    assert perf[0] <= prof.performance_threshold <= perf[1]
    assert drift[0] <= prof.drift_threshold <= drift[1]
    assert interval[0] <= prof.retraining_interval <= interval[1]
    assert max_time[0] <= prof.max_retraining_time <= max_time[1]
    assert improvement[0] <= prof.improvement_threshold <= improvement[1]


def test_an_out_of_range_threshold_names_the_file_key_value_and_the_allowed_range(tmp_path):
    d = base()
    d["drift_threshold"] = 1.7
    p = write(tmp_path, yaml.safe_dump(d))
    with pytest.raises(ProfileError, match=r"p\.yaml: drift_threshold = 1\.7: .*less than or equal to 1"):
        load_profile(p)


def test_an_unknown_key_lists_the_valid_keys(tmp_path):
    d = base()
    d["drift_treshold"] = 0.2
    p = write(tmp_path, yaml.safe_dump(d))
    with pytest.raises(ProfileError, match=r"drift_treshold = 0\.2: expected one of .*'drift_threshold'"):
        load_profile(p)


def test_an_unknown_nested_key_lists_the_sections_keys(tmp_path):
    d = base()
    d["training"]["stratgy"] = "full"
    p = write(tmp_path, yaml.safe_dump(d))
    with pytest.raises(ProfileError, match=r"training\.stratgy = 'full': expected one of .*'strategy'"):
        load_profile(p)


def test_a_wrong_type_is_reported_with_its_value(tmp_path):
    d = base()
    d["max_versions"] = "many"
    p = write(tmp_path, yaml.safe_dump(d))
    with pytest.raises(ProfileError, match=r"max_versions = 'many'"):
        load_profile(p)


def test_an_unknown_strategy_lists_the_strategies(tmp_path):
    d = base()
    d["training"]["strategy"] = "online"
    p = write(tmp_path, yaml.safe_dump(d))
    with pytest.raises(ProfileError, match=r"'full', 'incremental' or 'sliding_window'"):
        load_profile(p)


def test_a_missing_profile_file_names_it_and_lists_the_profiles_beside_it(tmp_path):
    (tmp_path / "demo.yaml").write_text("x: 1")
    with pytest.raises(ProfileError, match=r"missing\.yaml does not exist; profiles there: demo\.yaml"):
        load_profile(tmp_path / "missing.yaml")


def test_broken_yaml_names_the_file(tmp_path):
    p = write(tmp_path, "name: [unclosed\n")
    with pytest.raises(ProfileError, match=r"p\.yaml:2:1: not valid YAML: while parsing a flow sequence expected .*; fix the syntax there$"):
        load_profile(p)


def test_a_token_in_place_of_an_environment_variable_name_is_refused(tmp_path):
    d = base()
    d["notify"] = {"webhook_url": "http://localhost:1/hook", "token_env": "sk-live-123:abc"}
    p = write(tmp_path, yaml.safe_dump(d))
    with pytest.raises(ProfileError, match=r"notify\.token_env .*NAME of an environment variable"):
        load_profile(p)


def test_yaml_dates_are_kept_as_strings(tmp_path):
    d = base()
    d["description"] = None
    text = yaml.safe_dump(d).replace("description: null", "description: 2024-06-01")
    prof = load_profile(write(tmp_path, text))
    assert prof.description == "2024-06-01"


def test_a_preset_policy_expands_to_its_triggers():
    prof = load_profile(REPO / "params" / "research.yaml")
    assert prof.triggers.resolved() == ("any", ("performance", "degradation"))
