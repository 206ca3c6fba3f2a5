"""Where a model's registry keeps what: folder and file names, version names, the model-name rule.

Every module of the registry package (and :mod:`retrainlib.registry.snapshot`, which replay uses)
names files through this one module; nothing else in retrainlib knows the layout.

>>> is_version_name("v0003"), is_version_name("../x"), is_version_name("/tmp/v0001")
(True, False, False)
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from ..errors import RegistryError

__all__ = ["VERSION_PATTERN", "is_version_name", "check_model_name", "version_names", "listing", "now",
           "CHAMPION", "HISTORY", "EVALUATIONS", "ESTIMATES", "ESTIMATORS", "ATTEMPTS", "PINS", "STAGING", "TRASH",
           "LOCK", "RUN_LOCK", "LOGS", "SHADOWS", "parse_time"]

#: what a version folder is called: ``v`` and four digits
VERSION_PATTERN = re.compile(r"^v\d{4}$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

CHAMPION = "CHAMPION"  # the pointer, replaced atomically
HISTORY = "history.jsonl"  # promotions, rollbacks, retention deletions
EVALUATIONS = "evaluations.jsonl"  # the champion's measured metric per batch
ESTIMATES = "estimates.jsonl"  # label-free estimates per batch
ESTIMATORS = "estimators.jsonl"  # a version's estimator recalibrated as labels arrived (revisions; the version stays as registered)
ATTEMPTS = "attempts.jsonl"  # retraining attempts (the schedule's clock) and their outcomes
SHADOWS = "shadows.jsonl"  # the shadow role: trials started, paired batch scores, ends
PINS = "pins.json"  # versions marked keep
STAGING = ".staging"  # where versions are built
TRASH = ".trash"  # where deleted versions disappear
LOCK = ".lock"  # the writer lock
RUN_LOCK = ".run.lock"  # one run at a time
#: the append-only JSON-lines logs, in the order a snapshot copies them
LOGS = (HISTORY, EVALUATIONS, ATTEMPTS, ESTIMATES, ESTIMATORS, SHADOWS)


def is_version_name(name: object) -> bool:
    """Whether ``name`` is a version name (``v`` and four digits)."""
    return isinstance(name, str) and VERSION_PATTERN.fullmatch(name) is not None


def check_model_name(model_name: object) -> str:
    """``model_name`` when it is a folder name; :class:`RegistryError` saying how to fix it otherwise."""
    if not isinstance(model_name, str) or not _MODEL_NAME.fullmatch(model_name):
        raise RegistryError(
            f"model name {model_name!r} is not a folder name; expected letters, digits, '.', '_' or '-' "
            f"(e.g. 'loan-default'); fix data.model_name in the profile"
        )
    return model_name


def version_names(path: Path) -> list[str]:
    """The finished versions' folder names under a model's registry folder, oldest first."""
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir() if is_version_name(p.name) and p.is_dir())


def listing(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none yet"


def now() -> str:
    """The current UTC time as ISO text: every time stamp the registry writes."""
    return datetime.now(timezone.utc).isoformat()


def parse_time(text: object) -> datetime | None:
    """A time stamp the registry wrote, as an aware datetime (UTC when it carries no zone); None when unreadable."""
    if not text:
        return None
    try:
        t = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
