"""The table of backtest strategies (:data:`STRATEGIES`): when each retrains, and which the checks compare.

Touches no file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import ProfileError


@dataclass(frozen=True)
class Strategy:
    """When to retrain: a trigger policy of the profile, or always / never (:class:`~retrainlib.steps.RetrainPolicy`)."""

    name: str
    description: str
    policy: str | None = None  # a TriggerSettings policy; None keeps the profile's own
    retrain: str = "profile"  # 'profile': the triggers decide; 'always': every batch; 'never': never after the first champion
    performance_source: str | None = None  # triggers.performance_source; None keeps the profile's own
    gates: bool = True  # False: train on the newest window, holdout included, and deploy without validation

    def to_dict(self) -> dict[str, Any]:
        # "force" is the name written backtests (docs/backtest-*.json) carry for ``retrain``
        force = {"always": True, "never": False}.get(self.retrain)
        return {"name": self.name, "description": self.description, "policy": self.policy, "force": force,
                "performance_source": self.performance_source, "gates": self.gates}


#: the strategies a backtest can replay, in the order tables show them
STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("static", "train once (the first champion), never retrain", retrain="never"),
        Strategy("periodic", "retrain every retraining_interval days (schedule trigger)", policy="periodic"),
        Strategy("drift", "retrain when the drift score exceeds drift_threshold", policy="drift-triggered"),
        Strategy("performance", "retrain when the champion's metric falls below performance_threshold "
                 "or declines (Page-Hinkley)", policy="adaptive"),
        Strategy("performance-estimated", "like performance, but the triggers also read the label-free estimate of the "
                 "newest batch (performance_source: both) — for labels that arrive late", policy="adaptive",
                 performance_source="both"),
        Strategy("hybrid", "the profile's own trigger policy"),
        Strategy("every-batch", "retrain on every new batch (the costly reference)", retrain="always"),
        Strategy("shadow", "every-batch, but a passing challenger serves only after a shadow trial beside the champion "
                 "(validation.shadow_batches, default 2; a newer passing challenger replaces the shadow)", retrain="always"),
        Strategy("refit", "retrain before every batch on the newest window, the newest batch included, and "
                 "deploy without gates (the plain reference)", retrain="always", gates=False),
    )
}
REFERENCE = "every-batch"
#: every-batch with a shadow trial before a challenger serves, and its trial length unless the profile sets one
SHADOW, SHADOW_BATCHES = "shadow", 2
#: the plain reference the acceptance check measures against
PLAIN = "refit"
#: strategies that decide from the data (the target applies to them)
TRIGGERED = ("drift", "performance", "performance-estimated", "hybrid")


def parse_strategies(text: str | Sequence[str] | None) -> list[Strategy]:
    """``"static,drift"`` → strategies; an unknown name lists the known ones.

    >>> [s.name for s in parse_strategies("drift, static")]
    ['drift', 'static']
    """
    if text is None or text == "" or text == "all":
        return list(STRATEGIES.values())
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    out = []
    for n in names:
        if n not in STRATEGIES:
            raise ProfileError(f"unknown backtest strategy {n!r}; expected one of " + ", ".join(repr(k) for k in STRATEGIES))
        if STRATEGIES[n] not in out:
            out.append(STRATEGIES[n])
    return out

