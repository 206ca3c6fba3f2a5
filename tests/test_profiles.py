from pathlib import Path

import pytest
import yaml

from retrainlib.errors import ProfileError
from retrainlib.profiles import Profile, load_profile

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "params").glob("*.yaml"))
ROWS = {  # the guide's table: (performance, drift, interval days, max time s, improvement) ranges per system type
    "critical": ((0.95, 0.99), (0.05, 0.10), (1, 3), (3600, 7200), (0.01, 0.02)),
    "high-load": ((0.90, 0.94), (0.10, 0.15), (3, 7), (3600, 14400), (0.02, 0.05)),
    "standard-business": ((0.80, 0.89), (0.15, 0.25), (7, 14), (7200, 14400), (0.02, 0.05)),
    "experimental": ((0.70, 0.79), (0.20, 0.30), (14, 30), (14400, 28800), (0.05, 0.10)),
    "research": ((0.60, 0.69), (0.25, 0.40), (30, 90), (28800, 10**9), (0.10, 1.0)),
}
TABLE_KEYS = ("performance_threshold", "drift_threshold", "retraining_interval", "max_retraining_time", "improvement_threshold")
WORKED = {  # the guide's three worked profiles
    "financial": {"performance_threshold": 0.95, "drift_threshold": 0.08, "retraining_interval": 1, "max_retraining_time": 3600,
                  "improvement_threshold": 0.01, "stability_threshold": 0.99, "cpu_threshold": 0.95,
                  "memory_threshold": 0.90, "disk_threshold": 0.85},
    "recommendation": {"performance_threshold": 0.85, "drift_threshold": 0.15, "retraining_interval": 7,
                       "max_retraining_time": 7200, "improvement_threshold": 0.02, "stability_threshold": 0.95,
                       "cpu_threshold": 0.90, "memory_threshold": 0.85, "disk_threshold": 0.80},
    "research": {"performance_threshold": 0.70, "drift_threshold": 0.30, "retraining_interval": 30,
                 "max_retraining_time": 14400, "improvement_threshold": 0.05, "stability_threshold": 0.90,
                 "cpu_threshold": 0.80, "memory_threshold": 0.75, "disk_threshold": 0.70},
}
RECOMMENDED = {  # the guide's other parameters and the values it names for them
    "stability_threshold": {0.99, 0.95, 0.90, 0.85},
    "data_quality_threshold": {0.9, 0.8, 0.7, 0.6},
    "cpu_threshold": {0.95, 0.90, 0.80, 0.70},
    "memory_threshold": {0.95, 0.90, 0.80, 0.70},
    "disk_threshold": {0.95, 0.90, 0.80, 0.70},
    "max_versions": {5, 10, 20, 50},
    "backup_retention_days": {7, 30, 90, 365},
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


@pytest.mark.parametrize("path", PROFILES, ids=[p.stem for p in PROFILES])
def test_every_value_of_a_shipped_profile_is_the_guides_or_says_why_it_departs(path):
    prof = load_profile(path)
    assert prof.guide.row, f"{path.name}: guide.row names no row of the guide's table"
    departures = prof.guide.departures
    wrong = []
    for key, (low, high) in zip(TABLE_KEYS, ROWS[prof.guide.row]):
        if not low <= getattr(prof, key) <= high and key not in departures:
            wrong.append(f"{key} {getattr(prof, key)} outside the {prof.guide.row} row's {low}-{high}")
    worked = WORKED.get(prof.guide.worked_example or "", {})
    for key, value in worked.items():
        if getattr(prof, key) != value and key not in departures:
            wrong.append(f"{key} {getattr(prof, key)} differs from the worked {prof.guide.worked_example} profile's {value}")
    for key, allowed in RECOMMENDED.items():
        if key not in worked and getattr(prof, key) not in allowed and key not in departures:
            wrong.append(f"{key} {getattr(prof, key)} is none of the guide's {sorted(allowed)}")
    assert not wrong, f"{path.name}: " + "; ".join(wrong) + " (or give the reason under guide.departures)"
    assert set(departures) <= set(Profile.model_fields), f"{path.name}: departures name unknown settings"


def test_the_research_profile_says_why_it_departs_from_the_worked_example():
    prof = load_profile(REPO / "params" / "research.yaml")
    assert {"max_retraining_time", "improvement_threshold"} <= set(prof.guide.departures)


@pytest.mark.parametrize("path", PROFILES, ids=[p.stem for p in PROFILES])
def test_a_freshly_promoted_champion_cannot_fire_the_performance_trigger_at_once(path):
    prof = load_profile(path)
    floor = prof.validation.minimum.get(prof.training.eval_metric)
    assert floor is not None, f"{path.name}: validation.minimum has no floor for eval_metric {prof.training.eval_metric}"
    from retrainlib.profiles import METRIC_RANGES

    lower_is_better = METRIC_RANGES.get(prof.training.eval_metric, (None, None))[1] is None
    assert (floor <= prof.performance_threshold) if lower_is_better else (floor >= prof.performance_threshold)


def test_an_rmse_threshold_is_given_in_rmse_and_fires_above_it(tmp_path):
    from retrainlib.triggers import performance_trigger

    raw = base()
    raw["performance_threshold"] = 2.0
    raw["training"].update(eval_metric="root_mean_squared_error", problem_type="regression")
    raw["validation"] = {"metrics": ["root_mean_squared_error"], "minimum": {"root_mean_squared_error": 2.0}}
    prof = load_profile(write(tmp_path, yaml.safe_dump(raw)))
    assert prof.performance_threshold == 2.0
    assert performance_trigger(2.4, threshold=prof.performance_threshold, metric="rmse", greater_is_better=False).fired
    assert not performance_trigger(1.7, threshold=prof.performance_threshold, metric="rmse", greater_is_better=False).fired


@pytest.mark.parametrize("metric, value, allowed", [
    ("root_mean_squared_error", -1.0, "at least 0"), ("roc_auc", 1.5, "from 0 to 1"), ("r2", 1.2, "at most 1"),
])
def test_a_threshold_outside_its_metrics_range_is_refused_naming_the_range(tmp_path, metric, value, allowed):
    raw = base()
    raw["performance_threshold"] = value
    raw["training"]["eval_metric"] = metric
    raw["validation"] = {"metrics": [metric]}
    with pytest.raises(ProfileError, match=f"performance_threshold = {value}.*{metric} \\({allowed}\\)"):
        load_profile(write(tmp_path, yaml.safe_dump(raw)))


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


def test_the_drift_package_owns_its_settings_and_never_imports_profiles():
    """No import upward: profiles embeds the drift package's DriftSettings, the drift modules never import profiles."""
    import subprocess
    import sys

    from retrainlib import profiles
    from retrainlib.drift.settings import DriftSettings

    assert profiles.DriftSettings is DriftSettings and Profile.model_fields["drift"].annotation is DriftSettings
    import ast

    upward = []
    for path in sorted((REPO / "retrainlib" / "drift").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [("." * node.level) + (node.module or "")] if isinstance(node, ast.ImportFrom) else [])
            upward += [f"{path.name}: {n}" for n in names if n in ("..profiles", "retrainlib.profiles")
                       or (n == ".." and any(a.name == "profiles" for a in node.names))]
    assert upward == []
    light = "import sys, retrainlib.profiles; print(sorted(m for m in ('numpy', 'pandas', 'scipy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", light], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
