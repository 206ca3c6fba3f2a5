"""One exception tree for retrainlib, and the exit codes of the ``retrain`` command.

Every error a user can cause is a leaf of :class:`RetrainError`; its message says what was
expected, what came, and how to fix it, naming the file, key or column. Each class carries the
exit code the command returns for it (:data:`EXIT_CODES` is the whole table, also in README).

>>> exit_code_of("TrainingTimeout"), exit_code_of("IntegrityError"), exit_code_of("KeyError")
(9, 8, 1)
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "ExitCode",
    "EXIT_CODES",
    "exit_code_of",
    "RetrainError",
    "ProfileError",
    "DataContractError",
    "DataQualityError",
    "RegistryError",
    "IntegrityError",
    "DamagedPointer",
    "TrainingError",
    "TrainingTimeout",
    "ResourceLimitExceeded",
    "RunLocked",
    "ReplayError",
]


class ExitCode(IntEnum):
    """What ``retrain run`` (and every other command) exits with; one place for the whole table."""

    PROMOTED = 0  # promoted a challenger or bootstrapped the first champion (other commands: success)
    FAILED = 1  # the run failed for another reason (the manifest's error says where and why)
    BAD_INPUT = 2  # bad input: profile, data contract, unknown version, arguments
    NO_RETRAIN = 3  # no retraining needed
    REJECTED = 4  # the challenger was rejected by validation
    BLOCKED = 5  # retraining blocked by data quality
    STUCK = 6  # the champion is stuck: below performance_threshold with N rejections or blocks in a row
    ROLLED_BACK = 7  # rolled back (automatically after a failed smoke test, or by hand)
    INTEGRITY = 8  # integrity failure: stored files do not match their checksums
    TRAINING = 9  # training failed: fit error, overran max_retraining_time, resource limit
    SHADOW_STARTED = 10  # the passing challenger became the shadow (validation.shadow_batches): it does not serve yet
    PROMOTED_FROM_SHADOW = 11  # the shadow's trial passed and it was promoted (smoke test and all)
    SHADOW_DROPPED = 12  # the shadow's trial failed: dropped, it never served
    LOCKED = 75  # another run holds the model's run lock (EX_TEMPFAIL: try again later)
    INTERRUPTED = 130  # Ctrl-C
    TERMINATED = 143  # SIGTERM


#: code -> meaning, for the README's table and ``retrain --help``
EXIT_CODES = {
    ExitCode.PROMOTED: "promoted a challenger or bootstrapped the first champion",
    ExitCode.NO_RETRAIN: "no retraining needed",
    ExitCode.REJECTED: "challenger rejected by validation",
    ExitCode.BLOCKED: "retraining blocked by data quality",
    ExitCode.STUCK: "champion stuck: below performance_threshold after N rejections or blocks in a row",
    ExitCode.ROLLED_BACK: "rolled back (automatically after a failed smoke test, or by hand)",
    ExitCode.SHADOW_STARTED: "the passing challenger became the shadow: on trial beside the champion, not serving yet",
    ExitCode.PROMOTED_FROM_SHADOW: "the shadow's trial passed: promoted from shadow",
    ExitCode.SHADOW_DROPPED: "the shadow's trial failed: dropped, it never served",
    ExitCode.FAILED: "the run failed (other)",
    ExitCode.BAD_INPUT: "bad input: profile, data contract, unknown version, arguments",
    ExitCode.INTEGRITY: "integrity failure: stored files do not match their checksums",
    ExitCode.TRAINING: "training failed: fit error, overran max_retraining_time, resource limit",
    ExitCode.LOCKED: "another run of the model holds its run lock",
    ExitCode.INTERRUPTED: "interrupted by Ctrl-C",
    ExitCode.TERMINATED: "stopped by SIGTERM",
}


def exit_code_of(error_name: str | None) -> int:
    """The exit code for an error by its class name (as a failed notebook reports it); 1 when not ours."""
    cls = globals().get(error_name or "")
    return int(cls.exit_code) if isinstance(cls, type) and issubclass(cls, RetrainError) else int(ExitCode.FAILED)


class RetrainError(Exception):
    """Base of every error retrainlib raises on purpose."""

    exit_code = ExitCode.BAD_INPUT


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

    exit_code = ExitCode.INTEGRITY


class DamagedPointer(IntegrityError):
    """The CHAMPION pointer is unreadable, names a version the registry lacks, or disagrees with its history."""


class TrainingError(RetrainError):
    """Training a challenger failed."""

    exit_code = ExitCode.TRAINING


class TrainingTimeout(TrainingError):
    """Training overran max_retraining_time and was stopped by the wall-clock guard."""


class ResourceLimitExceeded(TrainingError):
    """Training used more memory than the profile allows and was stopped to protect the host."""


class RunLocked(RetrainError):
    """Another run holds the model's run lock."""

    exit_code = ExitCode.LOCKED


class ReplayError(RetrainError):
    """A run folder cannot be replayed (an input changed, or the record is incomplete)."""


class EstimationError(RetrainError, ValueError):
    """Label-free performance estimation was asked for something it must not do (e.g. calibrate on training rows)."""
