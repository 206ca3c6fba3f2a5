"""One exception tree for retrainlib.

Every error a user can cause is a leaf of :class:`RetrainError`; its message says what was
expected, what came, and how to fix it, naming the file, key or column.
"""

from __future__ import annotations

__all__ = [
    "RetrainError",
    "ProfileError",
    "DataContractError",
    "DataQualityError",
    "RegistryError",
    "IntegrityError",
    "TrainingError",
    "TrainingTimeout",
    "RunLocked",
    "ReplayError",
]


class RetrainError(Exception):
    """Base of every error retrainlib raises on purpose."""


class ProfileError(RetrainError, ValueError):
    """A profile YAML is missing, unreadable, or holds a key or value that is not allowed."""


class DataContractError(RetrainError, ValueError):
    """Input data breaks the contract: a file, column or window is missing or of the wrong kind."""


class DataQualityError(DataContractError):
    """Data is present but too broken to train on (a hard quality break)."""


class RegistryError(RetrainError):
    """A model registry operation cannot be done (unknown version, nothing to roll back to, ...)."""


class IntegrityError(RegistryError):
    """A stored version's files do not match the checksums recorded when it was written."""


class TrainingError(RetrainError):
    """Training a challenger failed."""


class TrainingTimeout(TrainingError):
    """Training overran max_retraining_time and was stopped by the wall-clock guard."""


class RunLocked(RetrainError):
    """Another run holds the model's run lock."""


class ReplayError(RetrainError):
    """A run folder cannot be replayed (an input changed, or the record is incomplete)."""


class EstimationError(RetrainError, ValueError):
    """Label-free performance estimation was asked for something it must not do (e.g. calibrate on training rows)."""
