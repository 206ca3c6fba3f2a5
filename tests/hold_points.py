"""Hold points for tests that signal a real run while one of its steps is executing, and a patient wait.

A test that SIGTERMs a run "inside a step" must know the run is still inside it, with its kernel
started, whatever the machine's speed. :class:`KernelHold` holds the run there: the run's
environment (:meth:`KernelHold.env`) gives its notebook kernels an IPython folder (``IPYTHONDIR``)
whose start-up file registers a ``pre_run_cell`` callback. While the hold is not armed the callback
does nothing. Once it is armed (:meth:`KernelHold.arm`), the first kernel to start a cell writes
``held`` (its pid) and waits there while the hold stays armed: papermill's real kernel, started and
busy in a step, for as long as the test needs. Nothing of retrainlib is changed for it.

A held kernel lets go after :data:`RELEASE_AFTER` seconds, so a test whose signal never comes (or
does nothing) fails rather than hangs.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable

RELEASE_AFTER = 300  # seconds
FOLDER_VARIABLE = "RETRAIN_TEST_KERNEL_HOLD"

_STARTUP = f'''\
import os as _os, time as _time
from pathlib import Path as _Path


def _retrain_test_hold(*_args):
    folder = _Path(_os.environ["{FOLDER_VARIABLE}"])
    if not (folder / "armed").exists():
        return
    (folder / "held.tmp").write_text(f"{{_os.getpid()}}\\n")
    _os.replace(folder / "held.tmp", folder / "held")
    end = _time.monotonic() + {RELEASE_AFTER}
    while (folder / "armed").exists() and _time.monotonic() < end:
        _time.sleep(0.05)


get_ipython().events.register("pre_run_cell", _retrain_test_hold)
'''


class KernelHold:
    """A hold point before a cell of a run's notebook kernel (see the module's docstring)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        startup = self.folder / "ipython" / "profile_default" / "startup"
        startup.mkdir(parents=True, exist_ok=True)
        (startup / "00-retrain-test-hold.py").write_text(_STARTUP)

    def env(self) -> dict[str, str]:
        """What a run's environment needs for its kernels to reach the hold."""
        return {"IPYTHONDIR": str(self.folder / "ipython"), FOLDER_VARIABLE: str(self.folder)}

    def arm(self) -> None:
        """From now on, the next kernel to start a cell stops there."""
        (self.folder / "armed").touch()

    def release(self) -> None:
        (self.folder / "armed").unlink(missing_ok=True)

    def held_pid(self) -> int | None:
        """The pid of the kernel waiting at the hold, or None when none reached it yet."""
        try:
            return int((self.folder / "held").read_text())
        except (OSError, ValueError):
            return None


def wait_until(condition: Callable[[], object], what: str, *, limit: float = 600,
               procs: Iterable[subprocess.Popen] = ()) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` after ``limit`` seconds (generous: a busy
    machine only makes it later), or at once when one of ``procs`` has exited."""
    procs = list(procs)
    deadline = time.monotonic() + limit
    while not condition():
        for p in procs:
            assert p.poll() is None, f"{what}: process {p.pid} ({' '.join(map(str, p.args[:4]))} ...) exited with {p.returncode}"
        assert time.monotonic() < deadline, f"{what}: not within {limit:g} s"
        time.sleep(0.05)


__all__ = ["KernelHold", "wait_until", "RELEASE_AFTER", "FOLDER_VARIABLE"]
