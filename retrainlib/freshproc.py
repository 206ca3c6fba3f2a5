"""Load a model in a process that never held it: the one fresh-process runner.

Two checks need it: the smoke test after a promotion (:meth:`retrainlib.registry.Registry.promote_verified`)
and the reload gate of validation (:mod:`retrainlib.validation`). A process that has never held the
model loads its predictor folder strictly (same AutoGluon and Python as recorded), predicts some rows
and answers with one finite score per row, or with a one-line cause.

Where that process comes from (the answer is the same each way):

* **warm** (the default): a child forked from a fork server that imported NumPy, pandas, AutoGluon
  and retrainlib once (:mod:`multiprocessing`'s ``forkserver`` with ``set_forkserver_preload``). The
  server only imports and never loads a model; each check is a new child of it, so the guarantee
  holds without paying 3–4 s of interpreter start-up and imports per check.
* **cold** (``RETRAIN_FRESH=cold``, ``retrain backtest --cold``): a new interpreter per check,
  ``python -m retrainlib.freshproc check <predictor dir> <rows.parquet> <answer dir>``.
* **cached** (only when ``RETRAIN_CHECK_CACHE`` names a folder; backtests set it): a check whose
  model files (sha256 of each), rows (:func:`retrainlib.data.frame_fingerprint`) and running
  software are byte-identical to an earlier *passed* check returns that check's answer (scores
  included) without loading anything — the answer a new process would give. Failures are never cached.

The settings are environment variables, so papermill kernels and other children inherit them.

Every fresh process starts through one launcher, :func:`launch`: a *kind* of work (``check``, or
``fit`` for the training child of :mod:`retrainlib.training`; :data:`ENTRIES` names the function of
each) with its arguments, the caller's environment (threads pinned) and a log file. Warm, the child of
the fork server runs :func:`_child_main`; cold, a new interpreter runs ``python -m retrainlib.freshproc
KIND ARGS...`` (:func:`main`). Both call the same function for the kind. The fit never shares the
caller's process, and its guard, memory kill and resource sampling act on the child's pid either way.

``kill_tree`` and ``stop_processes`` end a process and its descendants (the training guard, the
runner's clean-up and a check that overruns its timeout use them).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

__all__ = ["CheckResult", "Check", "start", "check", "cache_key", "mode", "use", "settings", "restore_environ", "stop_warm_server", "kill_tree", "stop_processes",
           "Child", "launch", "ENTRIES", "folder_digest", "cache_folder", "warm_server_pids", "MODE_VARIABLE", "CACHE_VARIABLE"]

MODE_VARIABLE = "RETRAIN_FRESH"  # "warm" (default) or "cold"
CACHE_VARIABLE = "RETRAIN_CHECK_CACHE"  # a folder of passed checks; unset: no cache
#: fault tests set this to a file path: a check started with ``hold=True`` (the registry's smoke test)
#: writes it, then waits while it exists, so a test can kill a promotion exactly while the new champion
#: awaits its smoke test, or remove the file to let the check go on (read when the check starts, so a
#: warm fork server started before it was set holds too)
HOLD_VARIABLE = "RETRAIN_SMOKE_HOLD"
#: what the fork server imports once, before it forks any check
PRELOAD = ("numpy", "pandas", "pyarrow.parquet", "autogluon.tabular", "retrainlib.automl", "retrainlib.freshproc",
           "retrainlib.training", "retrainlib.warmup")
_ANSWER, _SCORES, _LOG = "answer.json", "scores.npy", "check.log"
#: the kinds of fresh process: the function (``module:function``) each runs, warm or cold; it takes the
#: arguments after the kind and returns the exit code
ENTRIES = {"check": "retrainlib.freshproc:check_entry", "fit": "retrainlib.training:fit_entry"}


@dataclass(frozen=True)
class CheckResult:
    """A check's answer: passed or not, one line saying why, the scores, and where it came from."""

    ok: bool
    detail: str  # failed: the one-line cause; passed: the child's summary as one JSON line
    scores: "np.ndarray | None" = None
    seconds: float = 0.0
    mode: str = "warm"  # warm, cold or cached
    info: dict[str, Any] = field(default_factory=dict)  # pid, rows, problem_type, software, timings


def mode() -> str:
    """``'cold'`` when ``RETRAIN_FRESH=cold``, else ``'warm'``."""
    return "cold" if os.environ.get(MODE_VARIABLE, "warm").strip().lower() == "cold" else "warm"


def use(*, cold: bool = False, cache_dir: str | os.PathLike | None = None) -> Callable[[], None]:
    """From now on (in this process and children it starts): cold or warm checks, the check cache or none.

    Returns a function that puts the previous settings back.
    """
    saved = {k: os.environ.get(k) for k in (MODE_VARIABLE, CACHE_VARIABLE)}
    os.environ[MODE_VARIABLE] = "cold" if cold else "warm"
    if cache_dir is None:
        os.environ.pop(CACHE_VARIABLE, None)
    else:
        os.environ[CACHE_VARIABLE] = str(cache_dir)

    return lambda: restore_environ(saved)


def restore_environ(saved: dict[str, str | None]) -> None:
    """Put environment variables back as ``saved`` holds them (None: the variable was not set)."""
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextlib.contextmanager
def settings(*, cold: bool = False, cache_dir: str | os.PathLike | None = None) -> Iterator[None]:
    """:func:`use` for the duration of a ``with`` block."""
    restore = use(cold=cold, cache_dir=cache_dir)
    try:
        yield
    finally:
        restore()


# --------------------------------------------------------------------------- the check itself (in the child)
def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ").rstrip() or type(exc).__name__


def _load_and_predict(predictor_dir: str, rows_path: str, answer_dir: str, num_cpus: int) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    from . import automl

    t0 = time.monotonic()
    automl.pin_threads(num_cpus)
    rows = pd.read_parquet(rows_path)
    if len(rows) == 0:
        raise RuntimeError(f"the rows file {rows_path} has no rows; pass a few rows of recent data")
    predictor = automl.load_predictor(predictor_dir, strict=True)
    loaded = time.monotonic()
    scores = np.asarray(automl.predict_scores(predictor, rows))
    if scores.shape[0] != len(rows):
        raise RuntimeError(f"predicted {scores.shape[0]} scores for {len(rows)} rows; expected one per row")
    if scores.dtype.kind in "fc" and not np.all(np.isfinite(scores)):
        raise RuntimeError(f"{int((~np.isfinite(scores)).sum())} of the predicted scores are not finite")
    np.save(Path(answer_dir) / _SCORES, scores)
    return {"pid": os.getpid(), "predictor": str(predictor_dir), "rows": int(len(rows)),
            "problem_type": predictor.problem_type, "software": automl.software_versions(),
            "load_seconds": round(loaded - t0, 3), "predict_seconds": round(time.monotonic() - loaded, 3)}


def _hold_for_fault_tests(marker: str) -> None:
    Path(marker).write_text(f"{os.getpid()}\n")
    while Path(marker).exists():
        time.sleep(0.01)


def _answer(predictor_dir: str, rows_path: str, answer_dir: str, num_cpus: int = 1, hold: str = "") -> int:
    """Run the check and write ``answer.json`` into ``answer_dir``; 0 passed, 1 failed (never raises).

    ``hold``: the hold file's path (:data:`HOLD_VARIABLE`) for fault tests, or ""."""
    from .durable import write_json_atomic

    if hold:
        _hold_for_fault_tests(hold)
    try:
        if not Path(predictor_dir).is_dir():
            raise FileNotFoundError(f"the predictor folder {predictor_dir} does not exist")
        answer = {"ok": True, **_load_and_predict(predictor_dir, rows_path, answer_dir, num_cpus)}
    except Exception as exc:  # the boundary of a process: one line says what failed
        answer = {"ok": False, "error": _one_line(exc), "pid": os.getpid()}
    write_json_atomic(Path(answer_dir) / _ANSWER, answer)
    return 0 if answer["ok"] else 1


def check_entry(argv: Sequence[str]) -> int:
    """The ``check`` kind of fresh process: ``PREDICTOR_DIR ROWS ANSWER_DIR [--num-cpus N] [--hold FILE]``.

    Writes the answer into ANSWER_DIR and prints it as one JSON line, or the cause as one line on
    stderr; 0 passed, 1 failed.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m retrainlib.freshproc check",
                                     description="Load a predictor in this fresh process and predict some rows.")
    parser.add_argument("predictor_dir", help="AutoGluon predictor folder")
    parser.add_argument("rows", help="Parquet file of feature rows")
    parser.add_argument("answer_dir", help="folder for answer.json and scores.npy")
    parser.add_argument("--num-cpus", type=int, default=1, help="threads for prediction (default 1)")
    parser.add_argument("--hold", default="", metavar="FILE",
                        help=f"write FILE and pause before loading while it exists (fault tests: ${HOLD_VARIABLE})")
    args = parser.parse_args(list(argv))
    code = _answer(args.predictor_dir, args.rows, args.answer_dir, args.num_cpus, args.hold)
    answer = json.loads((Path(args.answer_dir) / _ANSWER).read_text())
    if code:
        print(f"fresh-process check failed: {answer['error']}", file=sys.stderr)
    else:
        print(json.dumps(answer, sort_keys=True))
    return code


# --------------------------------------------------------------------------- the warm pool
_context_lock = threading.Lock()
_context = None


def _forkserver():
    """multiprocessing's forkserver context, preloaded with AutoGluon (started on first use)."""
    global _context
    with _context_lock:
        if _context is None:
            import multiprocessing as mp

            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(list(PRELOAD))
            _context = ctx
        return _context


def stop_warm_server() -> None:
    """Stop the fork server (if this process started one) and wait for it; the next check starts another."""
    global _context
    with _context_lock:
        if _context is None:
            return
        from multiprocessing import forkserver

        forkserver._forkserver._stop()  # the stdlib's own stop: close its "alive" pipe, wait for its exit
        _context = None


# --------------------------------------------------------------------------- the cache
def folder_digest(predictor_dir: str | os.PathLike, num_cpus: int = 1) -> str:
    """sha256 of every file of a predictor folder (path and content) and the running software."""
    from . import automl
    from .durable import sha256_file, sha256_parts

    root = Path(predictor_dir)
    files = sorted(q for q in root.rglob("*") if q.is_file())
    return sha256_parts((f"{p.relative_to(root).as_posix()}\0{sha256_file(p)}\n" for p in files),
                        json.dumps({"software": automl.software_versions(), "num_cpus": num_cpus}, sort_keys=True))


def cache_key(predictor_dir: str | os.PathLike, rows: "pd.DataFrame", num_cpus: int = 1) -> str:
    """sha256 of every file of the predictor (path and content), the rows and the running software."""
    from .data import frame_fingerprint
    from .durable import sha256_parts

    return sha256_parts(f"{folder_digest(predictor_dir, num_cpus)}\n{frame_fingerprint(rows)}")


def cache_folder() -> Path | None:
    """The check cache's folder (``RETRAIN_CHECK_CACHE``), or None when the cache is off."""
    value = os.environ.get(CACHE_VARIABLE, "").strip()
    return Path(value) if value else None


def _cache_get(key: str) -> CheckResult | None:
    import numpy as np

    root = cache_folder()
    entry = root / key if root is not None else None
    if entry is None or not (entry / _ANSWER).is_file():
        return None
    info = json.loads((entry / _ANSWER).read_text())
    scores = np.load(entry / _SCORES, allow_pickle=False)
    info.pop("ok", None)
    return CheckResult(True, json.dumps(info, sort_keys=True), scores, 0.0, "cached", info)


def _cache_put(key: str, answer_dir: Path) -> None:
    from .durable import publish_dir, staging

    root = cache_folder()
    if root is None:
        return
    try:
        with staging(root / key) as stage:
            for name in (_ANSWER, _SCORES):
                shutil.copy2(answer_dir / name, stage / name)
            publish_dir(stage, root / key)  # False: a concurrent writer of the same key stored the same answer
    except OSError:  # the cache is an optimisation: a check that could not be kept is computed again next time
        pass


# --------------------------------------------------------------------------- the caller's side
class Check:
    """One started check (a ``check`` child of :func:`launch`); :meth:`result` waits for its answer (at most
    ``timeout`` s from the start)."""

    def __init__(self, predictor_dir: str | os.PathLike, rows: "pd.DataFrame", *, timeout: float = 600.0,
                 num_cpus: int = 1, cold: bool | None = None, hold: bool = False):
        self.hold = os.environ.get(HOLD_VARIABLE, "") if hold else ""  # the hold file of fault tests, or ""
        self.predictor_dir, self.timeout, self.num_cpus = Path(predictor_dir), float(timeout), int(num_cpus)
        self.mode = ("cold" if cold else "warm") if cold is not None else mode()
        self.started = time.monotonic()
        self._result: CheckResult | None = None
        self._proc: Child | None = None
        self._launch_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="retrain-fresh-")
        self._dir = Path(self._tmp.name)
        if len(rows) == 0:
            self._result = CheckResult(False, "the rows to predict are empty; pass a few rows of recent data", mode=self.mode)
            return
        self._key = None
        if cache_folder() is not None and self.predictor_dir.is_dir() and not self.hold:
            self._key = cache_key(self.predictor_dir, rows, self.num_cpus)
            hit = _cache_get(self._key)
            if hit is not None:
                self._result = hit
                return
        rows_path = self._dir / "rows.parquet"
        rows.reset_index(drop=True).to_parquet(rows_path, index=False)
        args = [str(self.predictor_dir), str(rows_path), str(self._dir), "--num-cpus", str(self.num_cpus),
                *(["--hold", self.hold] if self.hold else [])]
        # starting a warm child may wait for the fork server's imports: do it beside the caller's work
        self._thread = threading.Thread(target=self._launch, args=(args,), daemon=True)
        self._thread.start()

    def _launch(self, args: list[str]) -> None:
        try:
            self._proc = launch("check", args, log=self._dir / _LOG, num_cpus=self.num_cpus, cold=self.mode == "cold")
        except BaseException as exc:  # reported by result()
            self._launch_error = exc

    def _remaining(self) -> float:
        return max(0.001, self.timeout - (time.monotonic() - self.started))

    def result(self) -> CheckResult:
        """Wait for the answer; a child that overruns the timeout is killed with its descendants."""
        if self._result is not None:
            return self._result
        try:
            self._result = self._wait()
        finally:
            self.close()
        return self._result

    def _timed_out(self) -> CheckResult:
        return CheckResult(False, f"no answer within {self.timeout:g} s", seconds=time.monotonic() - self.started, mode=self.mode)

    def _wait(self) -> CheckResult:
        self._thread.join(self._remaining())
        if self._launch_error is not None:
            return CheckResult(False, f"could not start a fresh process ({_one_line(self._launch_error)})", mode=self.mode)
        if self._proc is None:  # still starting the fork server
            return self._timed_out()
        try:
            code = self._proc.wait(self._remaining())
        except subprocess.TimeoutExpired:
            self._proc.kill()
            return self._timed_out()
        seconds = time.monotonic() - self.started
        answer_file = self._dir / _ANSWER
        if not answer_file.is_file():
            log = self._dir / _LOG
            lines = [ln for ln in (log.read_text(errors="replace") if log.is_file() else "").strip().splitlines() if ln.strip()]
            said = f": {lines[-1]}" if lines else ""
            return CheckResult(False, f"the fresh process exited with code {code} without answering{said}", seconds=seconds, mode=self.mode)
        answer = json.loads(answer_file.read_text())
        if not answer.pop("ok"):
            return CheckResult(False, answer["error"], seconds=seconds, mode=self.mode, info=answer)
        import numpy as np

        scores = np.load(self._dir / _SCORES, allow_pickle=False)
        if self._key is not None:
            _cache_put(self._key, self._dir)
        return CheckResult(True, json.dumps(answer, sort_keys=True), scores, seconds, self.mode, answer)

    def close(self) -> None:
        """Stop the child if it still runs and remove its files (safe to call twice)."""
        if self._thread is not None:
            self._thread.join()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "Check":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start(predictor_dir: str | os.PathLike, rows: "pd.DataFrame", *, timeout: float = 600.0, num_cpus: int = 1,
          cold: bool | None = None, hold: bool = False) -> Check:
    """Start loading ``predictor_dir`` in a fresh process to predict ``rows``; collect with ``.result()``.

    ``cold`` overrides ``RETRAIN_FRESH`` (None: take the setting). ``hold`` marks the registry's smoke
    test, which fault tests pause with ``RETRAIN_SMOKE_HOLD``.
    """
    return Check(predictor_dir, rows, timeout=timeout, num_cpus=num_cpus, cold=cold, hold=hold)


def check(predictor_dir: str | os.PathLike, rows: "pd.DataFrame", **kwargs: Any) -> CheckResult:
    """:func:`start` and wait: the answer of a process that never held the model."""
    return start(predictor_dir, rows, **kwargs).result()


# --------------------------------------------------------------------------- the one launcher
class Child:
    """A started fresh process, warm (forked from the fork server) or cold (a new interpreter).

    ``pid`` for the resource monitor and :func:`kill_tree`; :meth:`wait` as :meth:`subprocess.Popen.wait`
    (raises :class:`subprocess.TimeoutExpired`; a child killed by a signal returns minus its number).
    """

    def __init__(self, proc, warm: bool):
        self._proc, self.warm = proc, warm

    @property
    def pid(self) -> int:
        return self._proc.pid

    def poll(self) -> int | None:
        """The exit code, or None while it runs."""
        return self._proc.exitcode if self.warm else self._proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        if not self.warm:
            return self._proc.wait(timeout)
        self._proc.join(timeout)
        if self._proc.exitcode is None:
            raise subprocess.TimeoutExpired(f"forked child {self._proc.pid}", timeout)
        return self._proc.exitcode

    def kill(self) -> None:
        """End it and its descendants (:func:`kill_tree`) and wait for it."""
        kill_tree(self.pid)
        self.wait()


def _entry(kind: str) -> Callable[[Sequence[str]], int]:
    if kind not in ENTRIES:
        raise ValueError(f"unknown kind of fresh process {kind!r}; expected one of {', '.join(sorted(ENTRIES))}")
    module, name = ENTRIES[kind].split(":")
    return getattr(importlib.import_module(module), name)


def _child_main(kind: str, argv: list[str], env: dict[str, str], log: str) -> None:
    """The one warm child: the caller's environment, stdout and stderr into ``log``, threads pinned, then
    the kind's entry (as :func:`main` runs it cold), ending the process with its exit code."""
    os.environ.clear()
    os.environ.update(env)  # the fork server's environment is the one it started with, not the caller's now
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
    sys.path[:0] = extra  # as a new interpreter would read PYTHONPATH
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    from . import automl

    automl.pin_threads(int(env.get("OMP_NUM_THREADS", "1") or 1))
    sys.exit(_entry(kind)(argv))


def launch(kind: str, args: Sequence[str], *, log: str | os.PathLike, num_cpus: int = 1, cold: bool | None = None) -> Child:
    """Start a fresh process that runs the ``kind`` of work (:data:`ENTRIES`) on ``args``: the one launcher.

    The child gets this process's environment with the thread variables set to ``num_cpus``, and writes
    its stdout and stderr to ``log``. Warm (the default): a child of the fork server, which imported
    AutoGluon once, so it skips interpreter start-up and imports. Cold (``RETRAIN_FRESH=cold`` or
    ``cold=True``): ``python -m retrainlib.freshproc KIND ARGS...`` in a new interpreter. Either way the
    kind's function runs in a new process that never held the caller's state, in the caller's process
    group (a runner's kernel guard ends it with the kernel), and :meth:`Child.kill` ends its tree.
    """
    from . import automl

    _entry(kind)  # an unknown kind fails here, in the caller
    args = [str(a) for a in args]
    env = {**os.environ, **{v: str(num_cpus) for v in automl.THREAD_VARIABLES}}
    warm = not cold if cold is not None else mode() == "warm"
    if not warm:
        pkg_parent = str(Path(__file__).resolve().parent.parent)  # so the new interpreter finds this retrainlib
        env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(log, "w") as out:  # the child keeps its own copy of the descriptor
            return Child(subprocess.Popen([sys.executable, "-m", "retrainlib.freshproc", kind, *args],
                                          stdout=out, stderr=subprocess.STDOUT, env=env), False)
    proc = _forkserver().Process(target=_child_main, args=(kind, args, env, str(log)), name=f"retrain-{kind}")
    proc.start()
    return Child(proc, True)


# --------------------------------------------------------------------------- ending process trees
def stop_processes(procs: Iterable, *, grace: float = 0.0, wait: bool = True) -> None:
    """End ``procs`` (psutil processes): SIGTERM and up to ``grace`` s to exit first when grace > 0, then SIGKILL.

    ``wait=False`` returns after the SIGKILL (a watchdog thread whose caller waits for the process itself).
    """
    import psutil

    procs = list(procs)
    if grace > 0:
        for p in procs:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        _, procs = psutil.wait_procs(procs, timeout=grace)
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    if wait:
        psutil.wait_procs(procs, timeout=max(grace, 10))


def kill_tree(pid: int, *, grace: float = 0.0, wait: bool = True, include_root: bool = True,
              started_after: float | None = None) -> None:
    """End process ``pid`` and every descendant of it (see :func:`stop_processes`).

    ``include_root=False`` ends the descendants only (a runner cleaning up after itself);
    ``started_after`` (seconds since the epoch) spares processes created before it.
    """
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), *([root] if include_root else [])]
    except psutil.Error:
        return
    if started_after is not None:
        procs = [p for p in procs if _created_since(p, started_after)]
    stop_processes(procs, grace=grace, wait=wait)


def _created_since(proc, when: float) -> bool:
    import psutil

    try:
        return proc.create_time() >= when
    except psutil.Error:  # gone already
        return False


def warm_server_pids() -> set[int]:
    """The fork server's pid and that of multiprocessing's resource tracker beside it, while they run.

    They outlive each check and fit by design (until :func:`stop_warm_server` or exit); a test that
    counts processes left behind leaves these two out.
    """
    if _context is None:
        return set()
    from multiprocessing import forkserver, resource_tracker

    pids = (getattr(forkserver._forkserver, "_forkserver_pid", None), getattr(resource_tracker._resource_tracker, "_pid", None))
    return {p for p in pids if p}


# --------------------------------------------------------------------------- the one cold entry point
def main(argv: list[str] | None = None) -> int:
    """``python -m retrainlib.freshproc KIND ARGS...``: run the kind's entry (:data:`ENTRIES`) in this process."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ENTRIES:
        said = f"unknown kind {argv[0]!r}" if argv else "no kind given"
        print(f"python -m retrainlib.freshproc: {said}; expected one of {', '.join(sorted(ENTRIES))} "
              "followed by its arguments (e.g. check PREDICTOR_DIR ROWS ANSWER_DIR)", file=sys.stderr)
        return 2
    return _entry(argv[0])(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
