"""Profiles: every threshold of a retraining playbook in one validated, frozen object.

A profile is one YAML file in ``params/``. :func:`load_profile` reads it into a :class:`Profile`;
unknown keys, wrong types and out-of-range values fail with one :class:`ProfileError` that names
the file, the key, the value and what is allowed. Secrets never live here: a webhook token is read
from the environment variable the profile names.

The flat top-level thresholds keep the names of the practitioner's guide (``performance_threshold``,
``drift_threshold``, ...); the sections group the rest (data source, training, validation, ...).

>>> from retrainlib.profiles import Profile
>>> p = Profile.model_validate({"name": "x", "model_name": "m",
...     "data": {"batches": "data/b", "label": "y", "time_column": "t"}})
>>> p.drift_threshold, p.training.strategy
(0.1, 'full')
"""

from __future__ import annotations

import datetime as dt
import os
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .drift.settings import DriftSettings  # the drift package owns its settings; re-exported here
from .durable import sha256_file
from .errors import ProfileError

__all__ = [
    "Profile",
    "DataSource",
    "TrainingSettings",
    "ValidationSettings",
    "TriggerSettings",
    "DriftSettings",
    "ScheduleSettings",
    "NotifySettings",
    "MlflowSettings",
    "load_profile",
    "profile_sha256",
    "STRATEGIES",
    "TRIGGERS",
    "POLICY_PRESETS",
    "METRIC_RANGES",
    "GuideSettings",
    "GUIDE_ROWS",
]

Fraction = Field(ge=0.0, le=1.0)

#: training strategies a profile can name
STRATEGIES = ("full", "incremental", "sliding_window")
#: triggers a policy can combine
TRIGGERS = ("schedule", "drift", "performance", "degradation")
#: named policies per system type: which triggers, combined how
POLICY_PRESETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "periodic": ("any", ("schedule",)),
    "drift-triggered": ("any", ("drift",)),
    "adaptive": ("any", ("performance", "degradation")),
    "hybrid": ("any", ("schedule", "drift", "performance", "degradation")),
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSource(_Section):
    """Where the labelled batches come from: a folder of Parquet or CSV files, one per period."""

    batches: str = Field(description="folder of batch files, relative to the project home")
    label: str = Field(description="name of the target column")
    time_column: str = Field(description="timestamp column that orders rows")
    key: str | None = Field(default=None, description="row id used to deduplicate")
    ignore_columns: tuple[str, ...] = Field(default=(), description="columns never used as features")
    pattern: str = Field(default="*.parquet", description="glob of batch files inside the folder")
    label_delay_batches: int = Field(
        default=0, ge=0, description="newest batches that arrive without labels (labels come later)"
    )
    constraints: tuple[str, ...] = Field(
        default=(), description="rules every row keeps, e.g. 'age >= 0' (<column> <op> <number or quoted text>, op one of "
                                ">=, <=, >, <, ==, !=); a row breaking one is broken data and blocks retraining"
    )

    @field_validator("constraints")
    @classmethod
    def _parsable_constraints(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from .quality import parse_constraint

        for rule in v:
            parse_constraint(rule)
        return v


class TrainingSettings(_Section):
    """How a challenger is trained."""

    strategy: Literal["full", "incremental", "sliding_window"] = "full"
    window_batches: int = Field(default=6, ge=1, description="sliding_window: newest batches used")
    window_days: float | None = Field(
        default=None, gt=0, description="sliding_window: use the batches of the last N days instead of a batch count"
    )
    max_rows: int | None = Field(default=None, ge=100, description="cap on training rows (newest kept)")
    holdout_batches: int = Field(default=1, ge=1, description="newest labelled batches kept out of training")
    eval_metric: str = "roc_auc"
    problem_type: Literal["binary", "multiclass", "regression"] | None = None
    presets: str = "medium_quality"
    hyperparameters: dict[str, Any] | None = Field(
        default=None, description="AutoGluon hyperparameters; bounds the fit by configuration"
    )
    included_model_types: tuple[str, ...] | None = None
    excluded_model_types: tuple[str, ...] | None = None
    num_bag_folds: int = Field(default=0, ge=0)
    num_cpus: int = Field(default=1, ge=1, description="threads given to AutoGluon and OMP")
    seed: int = 0
    min_train_rows: int = Field(default=200, ge=10)
    refit_full: bool = Field(
        default=True, description="after validation, refit the validated configuration on train + holdout rows and deploy that"
    )


class ValidationSettings(_Section):
    """The gates a challenger must pass before it replaces the champion."""

    metrics: tuple[str, ...] = ("roc_auc",)
    minimum: dict[str, float] = Field(default_factory=dict, description="floor per metric")
    require_significance: bool = False
    bootstrap_samples: int = Field(default=500, ge=50)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    noise_fraction: float = Field(default=0.01, ge=0.0, le=0.5)
    max_flip_share: float | None = Field(
        default=None, ge=0.0, le=1.0, description="absolute cap on the share of predictions flipping under noise"
    )
    fresher_challenger: Literal["not_worse", "improve"] = Field(
        default="not_worse",
        description="a challenger trained on rows its champion never saw passes the improvement gate when it is not "
                    "significantly worse (the paired bootstrap interval of its gain reaches zero); 'improve' asks it for "
                    "improvement_threshold like a challenger on the champion's own rows",
    )
    allow_schema_change: bool = False
    max_churn: float | None = Field(default=None, ge=0.0, le=1.0)
    max_latency_ratio: float | None = Field(default=None, gt=0.0)
    stuck_after: int = Field(
        default=3, ge=1, description="rejections in a row, with the champion below performance_threshold, that make a run 'stuck'"
    )
    shadow_batches: int = Field(
        default=0, ge=0, le=100,
        description="0: a challenger that passes every gate serves at once; N: it becomes the shadow, scored beside the "
                    "champion on the next N labelled batches (sooner where the paired sequential test decides), then "
                    "promoted if not worse by the improvement gate's rule over the pooled rows, else dropped "
                    "(retrainlib.shadow)",
    )
    shadow_when: Literal["uncertain", "always"] = Field(
        default="uncertain",
        description="with shadow_batches: 'uncertain' puts on trial only a challenger whose holdout could not show it "
                    "better; one whose paired bootstrap interval of its gain in the first metric lies above zero at the "
                    "level of the trial's early looks (1 - (1 - confidence) / shadow_batches) serves at once. 'always': "
                    "every passing challenger goes on trial",
    )


class TriggerSettings(_Section):
    """Which triggers fire a retraining and how they combine."""

    policy: Literal["any", "all", "periodic", "drift-triggered", "adaptive", "hybrid"] = "hybrid"
    use: tuple[Literal["schedule", "drift", "performance", "degradation"], ...] = TRIGGERS
    degradation_delta: float = Field(default=0.005, ge=0.0, description="Page-Hinkley tolerance")
    degradation_lambda: float = Field(default=0.05, gt=0.0, description="Page-Hinkley alarm level")
    min_history: int = Field(default=5, ge=2)
    degradation_detector: str = Field(
        default="metric",
        description="'metric': Page-Hinkley on the champion's metric per batch (degradation_delta, degradation_lambda); "
                    "'adwin', 'kswin', 'page-hinkley': river's detector on the champion's per-row losses on labelled rows, "
                    "in the order they arrived (retrainlib.detectors), whatever performance_source says",
    )
    detector_level: float | None = Field(
        default=None, gt=0, description="the river detector's level: ADWIN's delta, KSWIN's alpha, Page-Hinkley's "
                                        "threshold (retrainlib.detectors.DETECTORS); None: its default",
    )
    quality: Literal["retrain", "report"] = Field(
        default="retrain",
        description="changed data (a changed-data score below data_quality_threshold): 'retrain' makes it a "
                    "data_quality trigger reason, as the guide's monitor_data_quality does; 'report' only reports it",
    )
    performance_source: Literal["measured", "estimated", "both"] = Field(
        default="measured",
        description="what the performance and degradation triggers read: metrics measured on labels, "
                    "label-free estimates (retrainlib.estimate), or both (either fires)",
    )

    @field_validator("degradation_detector")
    @classmethod
    def _known_detector(cls, v: str) -> str:
        from .detectors import check_detector

        return v if v == "metric" else check_detector(v).name

    def resolved(self) -> tuple[str, tuple[str, ...]]:
        """(combine, triggers): a preset expands to its own combination."""
        if self.policy in POLICY_PRESETS:
            return POLICY_PRESETS[self.policy]
        return self.policy, tuple(self.use)


class ScheduleSettings(_Section):
    """When the scheduler runs the playbook: a cron expression or an interval."""

    cron: str | None = None
    every_minutes: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_of(self) -> "ScheduleSettings":
        if self.cron and self.every_minutes:
            raise ValueError("give either cron or every_minutes, not both")
        return self


class NotifySettings(_Section):
    """Where events are sent. The token comes from the environment, never from the file."""

    webhook_url: str | None = None
    token_env: str | None = Field(default=None, description="environment variable holding the token")
    timeout_seconds: float = Field(default=5.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10)
    report_base_url: str | None = None

    @field_validator("token_env")
    @classmethod
    def _looks_like_env_name(cls, v: str | None) -> str | None:
        if v is not None and not v.replace("_", "").isalnum():
            raise ValueError("must be the NAME of an environment variable (letters, digits, _), not the token")
        return v


#: the range of each metric's values, for thresholds given in its own units (None: unbounded)
METRIC_RANGES: dict[str, tuple[float | None, float | None]] = {
    **dict.fromkeys(
        ("roc_auc", "roc_auc_ovo", "roc_auc_ovo_macro", "roc_auc_ovr", "roc_auc_ovr_macro", "roc_auc_ovr_micro",
         "roc_auc_ovr_weighted", "accuracy", "acc", "balanced_accuracy", "f1", "f1_macro", "f1_micro", "f1_weighted",
         "precision", "precision_macro", "precision_micro", "precision_weighted", "recall", "recall_macro",
         "recall_micro", "recall_weighted", "average_precision"),
        (0.0, 1.0),
    ),
    **dict.fromkeys(("mcc", "quadratic_kappa", "pearsonr", "spearmanr"), (-1.0, 1.0)),
    "r2": (None, 1.0),
    **dict.fromkeys(
        ("log_loss", "nll", "root_mean_squared_error", "rmse", "mean_squared_error", "mse", "mean_absolute_error",
         "mae", "median_absolute_error", "mean_absolute_percentage_error", "mape",
         "symmetric_mean_absolute_percentage_error", "smape", "root_mean_squared_log_error", "rmsle", "pinball_loss"),
        (0.0, None),
    ),
}

#: the rows of the guide's table of thresholds by system type
GUIDE_ROWS = ("critical", "high-load", "standard-business", "experimental", "research")


class GuideSettings(_Section):
    """Which row of the guide's table a profile follows, and why any value departs from it."""

    row: Literal["critical", "high-load", "standard-business", "experimental", "research"] | None = None
    worked_example: Literal["financial", "recommendation", "research"] | None = Field(
        default=None, description="the guide's worked profile this one follows"
    )
    departures: dict[str, str] = Field(default_factory=dict, description="setting -> why it differs from the guide")

    @field_validator("departures")
    @classmethod
    def _reasons_given(cls, v: dict[str, str]) -> dict[str, str]:
        for key, why in v.items():
            if not str(why).strip():
                raise ValueError(f"departures.{key} is empty; say why the value differs from the guide")
        return v


class MlflowSettings(_Section):
    """Where runs and versions are mirrored in MLflow (:mod:`retrainlib.mlflow_mirror`); off when absent.

    Credentials come only from MLflow's environment variables (``MLFLOW_TRACKING_TOKEN``, or
    ``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD``), never from the file.
    """

    tracking_uri: str = Field(description="the MLflow tracking server, http(s)://host[:port][/path]")
    experiment: str | None = Field(default=None, description="experiment the runs go to (default: model_name)")
    registered_model: str | None = Field(default=None, description="registered model of the versions (default: model_name)")
    timeout_seconds: float = Field(default=10.0, gt=0, le=600, description="per request")
    retries: int = Field(default=1, ge=0, le=10, description="retries per request")

    @field_validator("tracking_uri")
    @classmethod
    def _server_without_credentials(cls, v: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected the http(s) URL of an MLflow tracking server such as http://127.0.0.1:5000; got {v!r}")
        if parts.username or parts.password or parts.query:
            raise ValueError("must not hold credentials or a query; set MLFLOW_TRACKING_TOKEN (or MLFLOW_TRACKING_USERNAME "
                             "and MLFLOW_TRACKING_PASSWORD) in the environment instead")
        return v.rstrip("/")


class Profile(_Section):
    """Every threshold and setting of one retraining playbook."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="the profile's name (run folders are named after it)")
    description: str = Field(default="", description="one line saying what the profile is for")
    model_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="the registry's model folder, models/<model_name>/")
    registry: str = Field(default="models", description="registry root, relative to the project home")

    # the guide's thresholds
    performance_threshold: float = Field(
        default=0.8, description="in training.eval_metric's own units and direction (RMSE 2.0: fires above 2.0)"
    )
    drift_threshold: float = Field(default=0.1, ge=0.0, le=1.0, description="share of features allowed to drift before the drift trigger fires")
    data_quality_threshold: float = Field(
        default=0.8, ge=0.0, le=1.0,
        description="changed-data score below which the data_quality trigger fires (broken data blocks whatever the score)")
    retraining_interval: float = Field(default=7, gt=0, le=366, description="days")
    max_retraining_time: float = Field(default=7200, gt=0, le=7 * 86400, description="seconds")
    improvement_threshold: float = Field(default=0.01, ge=0.0, le=1.0,
                                         description="gain a challenger needs over the champion on every listed metric")
    stability_threshold: float = Field(default=0.95, ge=0.0, le=1.0,
                                       description="share of predictions that must stay put under 1 % input noise")
    cpu_threshold: float = Field(default=0.9, gt=0.0, le=1.0, description="CPU share while training above which a warning is recorded")
    memory_threshold: float = Field(default=0.9, gt=0.0, le=1.0, description="share of this machine's memory above which a running fit is stopped")
    disk_threshold: float = Field(default=0.9, gt=0.0, le=1.0, description="disk share a fit may not push the disk past")
    max_versions: int = Field(default=10, ge=2, le=1000, description="versions the registry keeps (never the champion or the one before it)")
    backup_retention_days: float = Field(default=30, gt=0, le=3650, description="days a replaced version is kept")

    data: DataSource
    training: TrainingSettings = TrainingSettings()
    validation: ValidationSettings = ValidationSettings()
    triggers: TriggerSettings = TriggerSettings()
    drift: DriftSettings = DriftSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    notify: NotifySettings = NotifySettings()
    mlflow: MlflowSettings | None = None

    guide: GuideSettings = GuideSettings()

    @model_validator(mode="after")
    def _thresholds_in_metric_units(self) -> "Profile":
        checks = [("performance_threshold", self.training.eval_metric, self.performance_threshold)]
        checks += [(f"validation.minimum.{m}", m, v) for m, v in self.validation.minimum.items()]
        for key, metric, value in checks:
            low, high = METRIC_RANGES.get(metric, (None, None))
            if (low is not None and value < low) or (high is not None and value > high):
                span = f"from {low:g} to {high:g}" if low is not None and high is not None else (
                    f"at least {low:g}" if low is not None else f"at most {high:g}")
                raise ValueError(f"{key} = {value!r} is outside the range of {metric} ({span}); give it in {metric}'s own units")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def profile_sha256(path: str | os.PathLike) -> str:
    return sha256_file(path)


#: keys whose bad value is not repeated in the error (a URL may carry a password)
_NOT_ECHOED = {("mlflow", "tracking_uri")}


def _allowed(error: dict[str, Any], model: type[BaseModel]) -> str:
    """Describe what a field allows, for an error message."""
    loc = [p for p in error["loc"] if isinstance(p, str)]
    kind = error["type"]
    if kind == "extra_forbidden":
        fields = _fields_at(model, loc[:-1])
        return "expected one of " + ", ".join(repr(f) for f in fields)
    if kind == "missing":
        return "this key is required"
    return error["msg"].replace("Value error, ", "").replace("Input ", "value ")


def _fields_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    for part in loc:
        field = model.model_fields.get(part)
        ann = getattr(field, "annotation", None)
        ann = next((a for a in typing.get_args(ann) if a is not type(None)), ann)  # Section | None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            break
    return sorted(model.model_fields)


def load_profile(path: str | os.PathLike) -> Profile:
    """Read and validate one profile YAML.

    Raises
    ------
    ProfileError
        naming the file, the key, the value and what is allowed.
    """
    path = Path(path)
    if not path.is_file():
        near = sorted(p.name for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        hint = f"; profiles there: {', '.join(near)}" if near else ""
        raise ProfileError(f"profile file {path} does not exist{hint}")
    raw = read_yaml(path, ProfileError)
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: expected a mapping of keys to values, got {type(raw).__name__}")
    raw = _dates_to_strings(raw)
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            value = err.get("input")
            if not err["loc"] and err["type"] == "value_error":  # a check across keys names its own key and value
                problems.append(_allowed(err, Profile))
                continue
            hidden = err["type"] == "missing" or tuple(err["loc"][:2]) in _NOT_ECHOED  # may hold a password
            shown = "" if hidden else f" = {value!r}"
            problems.append(f"{key}{shown}: {_allowed(err, Profile)}")
        raise ProfileError(f"{path}: " + "; ".join(problems)) from None


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping (YAML itself lets the last one win)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping (first at line {seen[key].line + 1}); "
                    "keep one", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path, error: type[Exception]) -> Any:
    """Parse a YAML file strictly (UTF-8, no duplicate keys); any problem is one line ``file:line:col: what``."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte 0x{path.read_bytes()[exc.start]:02x} at offset {exc.start}); "
                    "save the file as UTF-8") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise error(f"{where}: not valid YAML: {' '.join(what.split())}; fix the syntax there") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None


def _dates_to_strings(value: Any) -> Any:
    """YAML turns 2024-06-01 into a date; papermill and JSON want strings. Parse explicitly later."""
    if isinstance(value, dict):
        return {k: _dates_to_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates_to_strings(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value
