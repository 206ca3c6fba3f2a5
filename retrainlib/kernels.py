"""The kernels the runner starts for papermill: they die with the runner and never share a port.

Two guarantees, both about processes rather than notebooks:

* **A kernel dies with its runner.** jupyter_client starts every kernel in a session of its own
  (so an interrupt reaches the kernel's whole process group), which also means a SIGKILL of the
  runner, or of the runner's process group, leaves the kernel working: it once finished a smoke
  test and confirmed a promotion after its run had been marked abandoned. :class:`RunKernelManager`
  therefore launches each kernel through a guard, this file run as a script. The guard is the
  leader of the kernel's process group; it asks Linux for a parent-death signal
  (``prctl(PR_SET_PDEATHSIG)``) and, when its runner is gone, SIGKILLs its whole group: the
  kernel and whatever the kernel started (the fork server, a smoke-test process, a training
  child). Where that signal is not available, or fired because the thread that started the guard
  ended while the runner lives on, the guard notices the new parent by polling instead. Otherwise
  the guard only waits: interrupts and shutdowns sent to the group reach the kernel as before, and
  the guard exits as its kernel did.
* **Concurrent kernels never collide.** Kernels talk to the runner over ZeroMQ IPC sockets in a
  private folder (mode 0700) per kernel, not over TCP ports picked by one process and bound by
  another (two kernels once picked the same port: ``ZMQError: Address already in use``).

The guard imports only the standard library (it runs as ``python -I -S kernels.py``): starting it
adds about 50 ms per step (52.7 ms, best of five, with ``true`` as the kernel on a busy 2-core machine).
"""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["RunKernelManager", "GUARD_POLL_SECONDS"]

#: how often the guard checks its parent when the parent-death signal cannot tell it
GUARD_POLL_SECONDS = 0.25
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_DEATH_SIGNAL = signal.SIGHUP  # the kernel's session has no terminal: nothing else sends it


def _socket_folder() -> str:
    """Where the private folders go: the temp folder, unless its path leaves too little of a socket path's 107 bytes."""
    import tempfile

    base = tempfile.gettempdir()
    return base if len(base) <= 60 else "/tmp"


def _manager_class():
    from jupyter_client import AsyncKernelManager

    class RunKernelManager(AsyncKernelManager):
        """papermill's kernel manager for the runner: IPC sockets in a private folder, a guarded kernel.

        Pass the class as papermill's ``kernel_manager_class``; each notebook gets its own instance.
        """

        def __init__(self, **kwargs):
            import shutil
            import tempfile
            import weakref

            private = tempfile.mkdtemp(prefix="retrain-kernel-", dir=_socket_folder())  # mode 0700
            kwargs.update(transport="ipc", ip=os.path.join(private, "k"), connection_file=os.path.join(private, "kernel.json"))
            super().__init__(**kwargs)
            self.private_folder = private
            self._remove_folder = weakref.finalize(self, shutil.rmtree, private, True)

        def format_kernel_cmd(self, extra_arguments=None):
            cmd = super().format_kernel_cmd(extra_arguments)
            return [sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid()), self.private_folder, "--", *cmd]

        async def cleanup_resources(self, restart: bool = False) -> None:
            await super().cleanup_resources(restart=restart)
            if not restart:
                self._remove_folder()

    return RunKernelManager


def __getattr__(name: str):
    if name == "RunKernelManager":  # built on first use: jupyter_client is imported only by runs
        cls = globals()["RunKernelManager"] = _manager_class()
        return cls
    raise AttributeError(name)


# ---- the guard (this file run as a script; standard library only) -----------------------------


def _set_parent_death_signal(signum: int) -> bool:
    """Ask Linux to send ``signum`` to this process when the thread that started it ends; False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def guard(parent: int, private: str, cmd: list[str]) -> int:
    """Run the kernel ``cmd`` as a child; SIGKILL this process group as soon as ``parent`` (the runner) is gone."""
    import shutil
    import subprocess
    import threading
    import time

    def end_all() -> None:
        shutil.rmtree(private, ignore_errors=True)  # its sockets and connection file; the runner cannot any more
        os.killpg(0, signal.SIGKILL)  # the kernel and all it started, this guard included

    def on_death_signal(signum, frame) -> None:
        if os.getppid() != parent:  # (the signal also fires when only the starting thread of the runner ended)
            end_all()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(GUARD_POLL_SECONDS)
        end_all()

    if os.getpgrp() != os.getpid():  # jupyter_client starts it in a session of its own; never kill the runner's group
        os.setpgid(0, 0)
    signal.signal(_DEATH_SIGNAL, on_death_signal)
    for signum in (signal.SIGINT, signal.SIGTERM):  # sent to the whole group: the kernel acts on them, the guard waits
        signal.signal(signum, lambda *_: None)  # a handler, not SIG_IGN, so the kernel does not inherit the ignoring
    _set_parent_death_signal(_DEATH_SIGNAL)
    if os.getppid() != parent:  # the runner died before the request above
        end_all()
    kernel = subprocess.Popen(cmd, env={**os.environ, "JPY_PARENT_PID": str(os.getpid())})  # ipykernel polls its parent
    threading.Thread(target=watch, daemon=True).start()
    code = kernel.wait()
    if code < 0:  # end as the kernel ended, so its manager sees the same signal
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        sys.exit("usage: kernels.py <runner pid> <private folder> -- <kernel command ...>")
    sys.exit(guard(int(sys.argv[1]), sys.argv[2], sys.argv[4:]))
