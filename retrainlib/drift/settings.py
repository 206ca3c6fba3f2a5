"""The ``drift:`` section of a profile, owned by the drift package: :class:`DriftSettings`.

:mod:`retrainlib.profiles` embeds it as ``Profile.drift`` and re-exports it
(``from retrainlib.profiles import DriftSettings`` still works); the drift modules import it from
here, so nothing of the drift package imports ``profiles``.

Method names are checked against the registry (:data:`retrainlib.drift.methods.METHODS`) when a
value is validated, not when this module is imported: the registry holds each method's statistic
(NumPy), and importing ``profiles`` stays light.

>>> DriftSettings(numeric_test="psi").numeric_test
'psi'
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["DriftSettings"]


def _registry() -> Any:
    """:mod:`retrainlib.drift.methods`, imported when a value is first checked (it imports NumPy)."""
    from . import methods  # here, not at the top: importing profiles loads no NumPy

    return methods


class DriftSettings(BaseModel):
    """How drift is measured (see :mod:`retrainlib.drift.methods` for the methods and how ``auto`` chooses).

    ``numeric_test``/``categorical_test`` name a method of the registry
    (:data:`retrainlib.drift.methods.METHODS`) for that kind of column, or ``auto``; each method's
    threshold is the field its ``threshold_key`` names. ``per_column`` overrides any column:
    ``{"income": {"test": "psi", "threshold": 0.2}}``; its keys are ``test`` (a method name or
    ``auto``), ``threshold`` (for that method), ``kind`` (``numeric`` or ``categorical``) and
    ``missing_threshold``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    numeric_test: str = Field(default="auto", description="a drift method for numeric columns, or auto")
    categorical_test: str = Field(default="auto", description="a drift method for categorical columns, or auto")
    large_sample: int = Field(default=1000, ge=10, description="above this n, decide on effect size")
    p_value: float = Field(default=0.05, gt=0.0, lt=1.0)
    psi_threshold: float = Field(default=0.1, gt=0.0)
    psi_bins: int = Field(default=10, ge=2, le=1000, description="PSI bins for numbers, at reference quantiles")
    wasserstein_threshold: float = Field(
        default=0.05, gt=0.0, description="Wasserstein / reference std; a 0.1 sd mean shift scores 0.1"
    )
    jensenshannon_threshold: float = Field(default=0.1, gt=0.0)
    missing_threshold: float = Field(default=0.05, gt=0.0, le=1.0, description="change of a column's missing share")
    per_column: dict[str, dict[str, Any]] = Field(default_factory=dict)
    weight_by_importance: bool = False
    multivariate: bool = True
    multivariate_auc: float = Field(default=0.55, gt=0.5, lt=1.0, description="domain classifier AUC that is drift")
    multivariate_rows: int = Field(default=2_000, ge=50, description="rows per window for the domain classifier")
    max_rows: int | None = Field(default=100_000, ge=100, description="rows sampled per window (None: all)")

    @field_validator("numeric_test", "categorical_test", mode="before")
    @classmethod
    def _registered_method(cls, v: Any, info: Any) -> str:
        return _registry().check_method_name(v, info.field_name.removesuffix("_test"))

    @field_validator("per_column")
    @classmethod
    def _known_overrides(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        registry = _registry()
        allowed = {"test": ("auto", *registry.method_names()), "threshold": None, "kind": registry.KINDS,
                   "missing_threshold": None}
        for column, over in v.items():
            if not isinstance(over, dict):
                raise ValueError(f"per_column.{column} must be a mapping such as {{test: psi, threshold: 0.2}}")
            for key, value in over.items():
                if key not in allowed:
                    raise ValueError(f"per_column.{column}.{key} is not a setting; expected one of "
                                     + ", ".join(repr(k) for k in allowed))
                choices = allowed[key]
                if choices is not None and value not in choices:
                    raise ValueError(f"per_column.{column}.{key} = {value!r}; expected one of "
                                     + ", ".join(repr(c) for c in choices))
                if choices is None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                    raise ValueError(f"per_column.{column}.{key} = {value!r}; expected a number above 0")
        return v
