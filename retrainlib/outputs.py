"""What each playbook step hands on: one frozen output type per step, as written to ``<step>.json``.

``to_dict()`` gives exactly the JSON the run folder holds (the keys and values earlier versions
wrote, so old run folders still read and replay); ``from_dict()`` reads it back. A step that had
nothing to do returns its type in an explicit *skipped* state (``status == "skipped"`` and a
``reason``) instead of ``None``. Readers (the steps, the runner, replay, report, backtest) use the
attributes and methods here, never string paths into the JSON.

Pattern: NannyML's calculator/result pairs. This module imports neither pandas nor AutoGluon:
the runner reads step outputs without loading the fitting stack. Nested records (quality checks,
drift per feature, gates, leaderboards) stay plain JSON values; the live report objects a
notebook shows are carried in ``detail`` (never written, not compared).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from .triggers import Decision, TriggerResult

__all__ = ["Analysis", "Training", "Validation", "Promotion", "SKIPPED"]

SKIPPED = "skipped"

JSON = dict[str, Any]


class _Output:
    """``to_dict``/``from_dict`` over the dataclass fields, in field order.

    Fields named in ``_optional`` are written only when set (keys some writers add); ``detail`` is
    never written. Keys the type does not know (from another version) are kept in ``extra`` and
    written back after the known ones.
    """

    _optional: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> JSON:
        if getattr(self, "status", None) == SKIPPED:
            out = {"status": SKIPPED, "reason": getattr(self, "reason")}
        else:
            out = {f.name: _json(getattr(self, f.name)) for f in fields(self)
                   if f.name not in ("detail", "extra") and not (f.name in self._optional and getattr(self, f.name) is None)}
        return {**out, **(getattr(self, "extra", None) or {})}

    @classmethod
    def from_dict(cls, d: JSON):
        known = {f.name for f in fields(cls)} - {"detail", "extra"}
        kw = {k: v for k, v in d.items() if k in known}
        extra = {k: v for k, v in d.items() if k not in known}
        return cls(**cls._convert(kw), extra=extra)

    @classmethod
    def _convert(cls, kw: JSON) -> JSON:
        return kw

    @property
    def skipped(self) -> bool:
        """The step had nothing to do (``reason`` says why)."""
        return getattr(self, "status", None) == SKIPPED


def _json(value: Any) -> Any:
    return value.to_dict() if hasattr(value, "to_dict") and not isinstance(value, type) else value


def decision_from_dict(d: JSON) -> Decision:
    """A :class:`~retrainlib.triggers.Decision` as step 10 wrote it."""
    return Decision(d["retrain"], d["status"], d["policy"], tuple(d["reasons"]),
                    tuple(TriggerResult(**t) for t in d.get("triggers", ())))


# --------------------------------------------------------------------------- step 10
@dataclass(frozen=True)
class Analysis(_Output):
    """Step 10: the data checked, drift measured, the champion scored, and the decision."""

    champion: str | None
    decision: Decision
    quality: JSON
    drift: JSON | None = None
    target_drift: JSON | None = None
    prediction_drift: JSON | None = None
    performance: JSON | None = None
    evaluations: list[JSON] = field(default_factory=list)
    estimates: list[JSON] = field(default_factory=list)
    windows: JSON = field(default_factory=dict)  # data.Windows.to_dict(): batch records per window
    batch_quality: list[JSON] = field(default_factory=list)
    holdout_check: JSON | None = None
    backtest_refit: str | None = None  # the backtest's ``refit`` strategy moved the training window
    shadow: JSON | None = None  # the shadow's trial (retrainlib.steps.shadow): paired batches and the verdict
    extra: JSON = field(default_factory=dict, compare=False, repr=False)
    detail: Any = field(default=None, compare=False, repr=False)  # AnalysisDetail: report objects and frames

    _optional: ClassVar[frozenset[str]] = frozenset({"backtest_refit", "shadow"})

    @classmethod
    def _convert(cls, kw: JSON) -> JSON:
        return {"champion": None, **kw, "decision": decision_from_dict(kw["decision"])}

    @property
    def bootstrap(self) -> bool:
        return self.decision.status == "bootstrap"

    def window(self, name: str) -> list[JSON]:
        """The batch records of one window (``train``, ``holdout``, ``reference`` or ``current``)."""
        return list(self.windows.get(name) or [])

    @property
    def strategy(self) -> str | None:
        return self.windows.get("strategy")

    @property
    def quality_score(self) -> float | None:
        return self.quality.get("score")

    @property
    def metric_value(self) -> float | None:
        """The champion's newest measured metric (``None`` without one)."""
        return (self.performance or {}).get("value")

    @property
    def metric(self) -> str | None:
        return (self.performance or {}).get("metric")

    def newest_estimate(self) -> JSON:
        """The label-free estimate of the newest batch (``{}`` without one)."""
        return (self.performance or {}).get("estimate") or {}

    def latest_metric(self) -> float | None:
        """The newest measured value, else the newest value of the trigger's history."""
        perf = self.performance or {}
        value = perf.get("value")
        if value is None and perf.get("history"):
            value = perf["history"][-1]
        return value

    def scored(self, batch: str, version: str | None) -> list[JSON]:
        """This run's evaluation rows of ``version`` on ``batch``."""
        return [e for e in self.evaluations if e["batch"] == batch and e["version"] == version]

    def with_train_window(self, train: list[JSON], note: str) -> "Analysis":
        """The same analysis with another training window (the backtest's ``refit``), saying so."""
        from dataclasses import replace

        return replace(self, windows={**self.windows, "train": train}, backtest_refit=note, detail=None)


# --------------------------------------------------------------------------- step 20
@dataclass(frozen=True)
class Training(_Output):
    """Step 20: a challenger trained and registered (``trained``), or why not (``skipped``)."""

    status: str  # 'trained' | 'skipped'
    reason: str | None = None
    challenger: str | None = None
    parent: str | None = None
    strategy: str | None = None
    n_rows: int | None = None
    slices: list[JSON] = field(default_factory=list)
    features: list[str] = field(default_factory=list)
    leaderboard: list[JSON] = field(default_factory=list)
    wall_seconds: float | None = None
    fit_seconds: float | None = None
    cpu_seconds: float | None = None
    time_limit: float | None = None
    time_limit_binding: bool | None = None
    settings: JSON = field(default_factory=dict)
    resources: JSON = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    version_bytes: int | None = None
    estimator: JSON | None = None
    fit_cache: str | None = None  # 'reused' | 'computed' when a fit cache was used
    extra: JSON = field(default_factory=dict, compare=False, repr=False)

    _optional: ClassVar[frozenset[str]] = frozenset({"reason", "fit_cache"})

    @classmethod
    def skip(cls, reason: str) -> "Training":
        return cls(SKIPPED, reason)

    @property
    def trained(self) -> bool:
        return self.status == "trained"

    def summary(self) -> JSON:
        """The fit's figures, for a one-column table."""
        keys = ("challenger", "strategy", "n_rows", "fit_seconds", "cpu_seconds", "time_limit", "time_limit_binding",
                "version_bytes")
        return {k: getattr(self, k) for k in keys}

    def headline(self) -> str:
        return f"{self.status} - {self.challenger if self.trained else self.reason}"


# --------------------------------------------------------------------------- step 30
@dataclass(frozen=True)
class Validation(_Output):
    """Step 30: the verdict on the challenger (``validated``), or why there was none (``skipped``).

    ``verdict`` is :meth:`retrainlib.validation.Verdict.to_dict` (decision, reasons, scores, gates,
    bootstrap); the JSON holds it flat beside ``challenger``, ``champion`` and ``holdout``.
    """

    status: str  # 'validated' | 'skipped'
    reason: str | None = None
    challenger: str | None = None
    champion: str | None = None
    holdout: list[JSON] = field(default_factory=list)
    verdict: JSON = field(default_factory=dict)
    detail: Any = field(default=None, compare=False, repr=False)  # the live validation.Verdict

    _head: ClassVar[tuple[str, ...]] = ("status", "challenger", "champion", "holdout")

    def to_dict(self) -> JSON:
        if self.skipped:
            return {"status": self.status, "reason": self.reason}
        return {"status": self.status, "challenger": self.challenger, "champion": self.champion,
                "holdout": self.holdout, **self.verdict}

    @classmethod
    def from_dict(cls, d: JSON) -> "Validation":
        if d.get("status") == SKIPPED:
            return cls.skip(d.get("reason") or "")
        return cls(d.get("status", "validated"), None, d.get("challenger"), d.get("champion"), list(d.get("holdout") or []),
                   {k: v for k, v in d.items() if k not in cls._head})

    @classmethod
    def skip(cls, reason: str) -> "Validation":
        return cls(SKIPPED, reason)

    @property
    def decision(self) -> str | None:
        """``promote``, ``bootstrap`` or ``reject``; ``None`` when skipped."""
        return self.verdict.get("decision")

    @property
    def passed(self) -> bool:
        return self.decision in ("promote", "bootstrap")

    @property
    def reasons(self) -> list[str]:
        return list(self.verdict.get("reasons") or [])

    @property
    def gates(self) -> list[JSON]:
        return list(self.verdict.get("gates") or [])

    @property
    def scores(self) -> JSON:
        return dict(self.verdict.get("scores") or {})

    @property
    def compared_with(self) -> str | None:
        """The version the challenger was judged against: the champion, or the model it was validated as."""
        return self.verdict.get("compared_with", self.champion)

    def failed_gates(self) -> list[str]:
        """Each failed blocking gate, named with its metric when it has one."""
        return [g["name"] + (f" ({g['metric']})" if g.get("metric") else "") for g in self.gates
                if g.get("blocking") and not g.get("passed")]

    def gate_details(self, name: str) -> list[JSON]:
        """The ``details`` of every gate called ``name``."""
        return [g.get("details") or {} for g in self.gates if g.get("name") == name]

    def headline(self) -> str:
        return f"verdict: {self.decision}" if not self.skipped else f"verdict: skipped ({self.reason})"


# --------------------------------------------------------------------------- step 40
@dataclass(frozen=True)
class Promotion(_Output):
    """Step 40: what happened to the champion (``promoted``, ``auto-rolled-back``, ``rejected``,
    ``rolled-back`` or ``none``; with ``validation.shadow_batches``: ``shadow-started``,
    ``promoted-from-shadow`` or ``shadow-dropped``), then retention. ``shadow``: what became of the
    shadow's trial in this run (``outcome``, ``version``, the verdict), written only when there was one."""

    action: str
    champion_before: str | None = None
    champion_after: str | None = None
    events: list[JSON] = field(default_factory=list)
    refit: JSON | None = None
    stuck: JSON | None = None
    retention_removed: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    registry_bytes: int | None = None
    shadow: JSON | None = None
    extra: JSON = field(default_factory=dict, compare=False, repr=False)

    _optional: ClassVar[frozenset[str]] = frozenset({"shadow"})

    @property
    def promoted(self) -> bool:
        """A new champion serves: promoted at once, or after its shadow trial."""
        return self.action in ("promoted", "promoted-from-shadow")

    @property
    def rolled_back(self) -> bool:
        return self.action in ("rolled-back", "auto-rolled-back")

    def rollback_reasons(self) -> list[str]:
        """The reason of every rollback event."""
        return [e["reason"] for e in self.events if e["event"] in ("rollback", "auto-rollback")]

    @property
    def stuck_reason(self) -> str | None:
        return (self.stuck or {}).get("reason")

    def lines(self) -> list[str]:
        """What a notebook prints: the action, the refit, a stuck champion, retention."""
        out = [f"action: {self.action}   champion: {self.champion_before} -> {self.champion_after}"]
        if self.refit:
            out.append(f"validated {self.refit['validated']}; deployed its refit on training + holdout rows: "
                       f"{self.refit['version']}")
        if self.stuck:
            out.append(self.stuck["reason"])
        if self.shadow:
            out.append(f"shadow {self.shadow.get('version')}: {self.shadow.get('outcome')} - {self.shadow.get('reason')}")
        out.append(f"removed by retention: {self.retention_removed or 'nothing'}")
        return out
