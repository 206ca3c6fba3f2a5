"""A real AutoGluon custom model that ignores its time limit: its fit sleeps (tests of the wall-clock guard).

A profile names it by import path: ``hyperparameters: {"tests.sleeping_model:SleepingModel": {}}``.
Its fit writes ``$SLEEPING_MODEL_MARKER`` (when set) as it starts, then sleeps far beyond any guard a test sets.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from autogluon.core.models import AbstractModel

SLEEP_SECONDS = 600


class SleepingModel(AbstractModel):
    ag_key = "SLEEPING"
    ag_name = "Sleeping"

    def _fit(self, X, y, **kwargs):
        marker = os.environ.get("SLEEPING_MODEL_MARKER")
        if marker:
            Path(marker).write_text(str(os.getpid()))
        time.sleep(SLEEP_SECONDS)
