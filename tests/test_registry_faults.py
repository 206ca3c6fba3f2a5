"""Crash and concurrency tests of the registry, with real processes and a real tiny predictor.

A child process runs registry operations and is SIGKILLed; after each kill the champion must load
and predict, the history must parse, and every finished version must still be there whole (or be
recorded as deleted by retention). Two kinds of kill:

* at every step of each operation, deterministically: the child stops after its k-th file-system
  call inside the operation (an open for writing, fsync, rename/replace, link, unlink, rmdir, mkdir),
  says so in its log and waits there until it is SIGKILLed; k runs from 1 until the operation
  finishes without stopping, so every step of every operation is killed once, on any machine speed;
* at random instants while the child loops over random operations (seeded: set RETRAIN_FAULT_SEED
  to replay a sequence of kills), for what lies between those steps.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrainlib import automl
from retrainlib.freshproc import HOLD_VARIABLE
from retrainlib.registry import Registry

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parent.parent
SEED = int(os.environ.get("RETRAIN_FAULT_SEED", "20261128"))
KILLS = 60  # kills during promote / rollback / retention / add / keep
VERIFIED_KILLS = 4  # kills during promote_verified (pointer swapped, smoke test running)


# ---- the same tiny predictor as test_registry.py (fitted once per session, shared on disk) ----


def seeded_registry(tmp_path: Path, clone: Path, n: int = 4) -> Registry:
    reg = Registry(tmp_path / "models", "loan-default")
    for i in range(n):
        reg.add_version(clone, {"note": f"seed {i}"}, run_id="setup")
    reg.promote("v0001", run_id="setup", reason="bootstrap")
    reg.promote("v0002", run_id="setup", reason="second")
    return reg


# ---- the children that get killed -------------------------------------------------------------
# A fork server imports the registry once; each worker is a fresh process forked from it (in its
# own session, so a kill of its group also takes a smoke-test grandchild). Forking from a small,
# single-threaded server keeps a worker's start at milliseconds, so 60 kills fit in seconds.

FORK_SERVER = r"""
import os, random, sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
from retrainlib.errors import RegistryError
from retrainlib.registry import Registry


import builtins, shutil, time

# the file-system calls a registry operation is stopped after, in hold mode
STEPS = [(os, "replace"), (os, "rename"), (os, "fsync"), (os, "link"), (os, "unlink"), (os, "rmdir"), (os, "mkdir"),
         (builtins, "open")]


def stop_after_step(k, op, out):
    # from now on, stop after the k-th file-system call: say where in the log, then wait to be SIGKILLed;
    # returns the running count of calls made
    count = [0]

    def wrap(module, name):
        real = getattr(module, name)

        def call(*args, **kwargs):
            result = real(*args, **kwargs)
            mode = args[1] if len(args) > 1 else kwargs.get("mode", "r")
            if name == "open" and not any(c in str(mode) for c in "wax+"):
                return result  # reading changes nothing on disk
            count[0] += 1
            if count[0] == k:
                out.write(f"held {op} {k} {name} {os.path.basename(str(args[0])) if args else ''}\n")
                while True:  # the hold point: only the SIGKILL ends it
                    time.sleep(3600)
            return result

        setattr(module, name, call)

    for module, name in STEPS:
        wrap(module, name)
    return count


def held_operation(reg, op, clone, seed):
    # one operation on the seeded registry (champion v0002, previous v0001, versions v0001-v0004)
    if op == "promote":
        return reg.promote("v0003", run_id=f"kill-{seed}", reason="fault test").version
    if op == "rollback":
        return reg.roll_back(run_id=f"kill-{seed}", reason="fault test").version
    if op == "retention":
        return ",".join(reg.apply_retention(max_versions=2, retention_days=2))
    if op == "add":
        return reg.add_version(Path(clone), {"note": "fault test"}, run_id=f"kill-{seed}").name
    if op == "keep":
        return reg.keep("v0003") or ""
    raise ValueError(op)


def work(root, model, clone, seed, log, mode, sample_path):
    rng = random.Random(int(seed))
    reg = Registry(Path(root), model)
    sample = pd.read_parquet(sample_path) if mode == "verified" else None
    out = open(log, "a", buffering=1)
    out.write("ready\n")
    if mode.startswith("hold:"):  # hold:<operation>:<k>
        _, op, k = mode.split(":")
        out.write(f"start {op}\n")
        steps = stop_after_step(int(k), op, out)
        detail = held_operation(reg, op, clone, seed)
        out.write(f"done {op} {detail}\n")
        out.write(f"complete {op} {steps[0]}\n")  # fewer than k steps: every step of it has been held
        while True:
            time.sleep(3600)
    while True:
        names = [v.name for v in reg.versions()]
        champ = reg.champion()
        others = [n for n in names if n != champ]
        if mode == "verified":
            op = "promote_verified"
        else:
            op = rng.choices(["promote", "rollback", "retention", "add", "keep"], weights=[25, 25, 25, 15, 10])[0]
        out.write(f"start {op}\n")
        detail = ""
        try:
            if op == "promote_verified":
                detail = reg.promote_verified(rng.choice(others), sample, run_id=f"kill-{seed}", reason="fault test").version
            elif op == "promote":
                detail = reg.promote(rng.choice(others), run_id=f"kill-{seed}", reason="fault test").version
            elif op == "rollback" and rng.random() < 0.6:
                detail = reg.roll_back(run_id=f"kill-{seed}", reason="fault test").version
            elif op == "rollback":
                detail = reg.roll_back(to=rng.choice(others), run_id=f"kill-{seed}", reason="fault test").version
            elif op == "retention":
                later = datetime.now(timezone.utc) + timedelta(days=rng.choice([0, 0, 3]))
                detail = ",".join(reg.apply_retention(max_versions=rng.randint(2, 5), retention_days=2, now=later))
            elif op == "add":
                detail = reg.add_version(Path(clone), {"note": "fault test"}, run_id=f"kill-{seed}").name
            elif op == "keep":
                reg.keep(rng.choice(names), rng.random() < 0.4)
        except (RegistryError, IndexError) as exc:  # e.g. nothing to roll back to: a refusal, not a fault
            out.write(f"refused {op} {type(exc).__name__}\n")
            continue
        out.write(f"done {op} {detail}\n")


print("ready", flush=True)
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "run":
        pid = os.fork()
        if pid == 0:
            os.setsid()
            try:
                work(*args)
            finally:
                os._exit(1)
        print(pid, flush=True)
    elif cmd == "wait":
        _, status = os.waitpid(int(args[0]), 0)
        print(os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status), flush=True)
"""


@pytest.fixture
def fork_server():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    server = subprocess.Popen(
        [sys.executable, "-c", FORK_SERVER], cwd=REPO, env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    assert server.stdout.readline().strip() == "ready"
    yield server
    server.stdin.close()
    server.wait(timeout=30)


def ask(server: subprocess.Popen, *words) -> int:
    server.stdin.write(" ".join(str(w) for w in words) + "\n")
    server.stdin.flush()
    return int(server.stdout.readline())


def start_worker(server, reg: Registry, clone: Path, seed: int, log: Path, *, mode: str = "plain",
                 sample_path: Path | None = None) -> int:
    pid = ask(server, "run", reg.root, reg.model_name, clone, seed, log, mode, sample_path)
    deadline = time.monotonic() + 60
    while not (log.exists() and "ready" in log.read_text()):
        if time.monotonic() > deadline:
            pytest.fail(f"worker {pid} not ready within 60 s")
        time.sleep(0.002)
    return pid


def wait_for_hold(pid: int, log: Path, limit: float = 120) -> list[str]:
    """Wait until the worker in hold mode says ``held`` (stopped at its step) or ``complete`` (no such step)."""
    deadline = time.monotonic() + limit
    while True:
        words = log.read_text().splitlines()[-1].split()
        if words[0] in ("held", "complete"):
            return words
        if time.monotonic() > deadline:
            pytest.fail(f"worker {pid} neither stopped at its step nor finished within {limit:g} s; see {log}")
        time.sleep(0.005)


def kill(server, pid: int, log: Path) -> str:
    """SIGKILL the worker (and its process group); return the operation it was in the middle of."""
    os.killpg(pid, signal.SIGKILL)
    ended_by = ask(server, "wait", pid)
    assert ended_by == signal.SIGKILL, f"worker {pid} ended by itself (status {ended_by}) before the kill; see {log}"
    lines = log.read_text().splitlines()
    last = lines[-1].split() if lines else []
    return last[1] if last and last[0] == "start" else "between operations"


def finished_versions(log: Path) -> set[str]:
    return {ln.split()[2] for ln in log.read_text().splitlines() if ln.startswith("done add ")}


def check_after_kill(reg: Registry, finished: set[str], sample: pd.DataFrame, context: str) -> list[str]:
    """What a process coming after the kill must find; returns what recovery tidied up."""
    history = reg.history()  # parses (a torn last line is tolerated)
    names = {v.name for v in reg.versions()}
    for name in names:  # nothing half-visible: every visible version is whole
        reg.verify(name)
    deleted = {e.version for e in history if e.event == "retention"}
    lost = finished - names - deleted
    assert not lost, f"{context}: finished versions lost without a retention record: {sorted(lost)}"

    champion = reg.champion()
    assert champion in names, f"{context}: champion {champion!r} is not a stored version ({sorted(names)})"
    scores = automl.predict_scores(reg.load(), sample)  # verifies checksums, loads strictly
    assert scores.shape == (len(sample),) and np.isfinite(scores).all(), context
    assert reg.pins() <= names, f"{context}: a kept version vanished"

    # the next writer tidies up, and then the record is consistent again
    tidied = reg.recover()
    assert not any((reg.path / ".staging").iterdir()) if (reg.path / ".staging").exists() else True
    assert not any((reg.path / ".trash").iterdir()) if (reg.path / ".trash").exists() else True
    assert not list(reg.path.glob(".*.tmp"))
    assert (reg.path / "history.jsonl").read_bytes().endswith(b"\n")
    rec = reg.champion_record()
    assert not rec.get("smoke_pending")
    last_move = [e for e in reg.history() if e.event != "retention"][-1]
    assert (last_move.version, last_move.time) == (rec["version"], rec["since"]), f"{context}: history and pointer disagree"
    if rec["version"] != champion:  # recovery rolled back an unverified promotion: that one must load too
        assert np.isfinite(automl.predict_scores(reg.load(), sample)).all(), context
    return tidied


def test_sigkill_at_random_instants_in_promotion_rollback_and_retention_leaves_a_loadable_champion(
    tmp_path, clone, sample, fork_server
):
    reg = seeded_registry(tmp_path, clone)
    rng = random.Random(SEED)
    finished = {"v0001", "v0002", "v0003", "v0004"}
    interrupted: collections.Counter[str] = collections.Counter()
    tidied: collections.Counter[str] = collections.Counter()
    timing = collections.Counter()
    for i in range(KILLS):
        log = tmp_path / f"kill-{i:02d}.log"
        t0 = time.monotonic()
        pid = start_worker(fork_server, reg, clone, SEED + i, log)
        t1 = time.monotonic()
        time.sleep(rng.uniform(0.005, 0.25))
        interrupted[kill(fork_server, pid, log)] += 1
        finished |= finished_versions(log)
        t2 = time.monotonic()
        for phrase in check_after_kill(reg, finished, sample, f"kill {i} (seed {SEED + i})"):
            tidied[re.sub(r"/\S+| to \S+$| \S+\.tmp$", "", phrase)] += 1
        timing.update(start=t1 - t0, run=t2 - t1, check=time.monotonic() - t2)

    events = collections.Counter(e.event for e in reg.history())
    # where the random instants landed depends on the machine's speed, so it is printed, not asserted:
    # the kills at every step of each operation are the test below
    print(f"\n{KILLS} kills (seed {SEED}); interrupted in: {dict(interrupted)}; recovery did: {dict(tidied)}; "
          f"history: {dict(events)}; versions now: {[v.name for v in reg.versions()]}; "
          f"seconds spent: { {k: round(v, 1) for k, v in timing.items()} }")
    assert sum(interrupted.values()) == KILLS


HELD_OPERATIONS = ("promote", "rollback", "retention", "add", "keep")


def test_sigkill_after_each_file_system_step_of_every_operation_leaves_a_loadable_champion(
    tmp_path, clone, sample, fork_server
):
    pristine = seeded_registry(tmp_path / "pristine", clone)
    held: dict[str, list[str]] = {op: [] for op in HELD_OPERATIONS}
    steps: dict[str, int] = {}
    tidied: collections.Counter[str] = collections.Counter()
    attempt = 0
    for op in HELD_OPERATIONS:
        k = 1
        while True:
            attempt += 1
            # each kill starts from the same seeded registry, so step k is the same step every time
            shutil.copytree(pristine.root, tmp_path / f"a{attempt:03d}" / "models")
            reg = Registry(tmp_path / f"a{attempt:03d}" / "models", pristine.model_name)
            log = tmp_path / f"hold-{op}-{k:03d}.log"
            pid = start_worker(fork_server, reg, clone, SEED + attempt, log, mode=f"hold:{op}:{k}")
            words = wait_for_hold(pid, log)
            kill(fork_server, pid, log)
            finished = {"v0001", "v0002", "v0003", "v0004"} | finished_versions(log)
            for phrase in check_after_kill(reg, finished, sample, f"{op} killed after step {k} ({' '.join(words[3:])})"):
                tidied[re.sub(r"/\S+| to \S+$| \S+\.tmp$", "", phrase)] += 1
            if words[0] == "complete":
                steps[op] = int(words[2])
                break
            held[op].append(f"{words[3]} {' '.join(words[4:])}".strip())
            k += 1
    print(f"\nkilled after each step: { {op: len(v) for op, v in held.items()} }; recovery did: {dict(tidied)}")
    for op in HELD_OPERATIONS:
        # every step was held once, and the same steps each time: the operation finished after the last one
        assert len(held[op]) == steps[op] >= 1, (op, held[op], steps[op])
    # the moves that matter were among the kill points
    # the moves that matter were among the kill points, and recovery met what each leaves behind
    assert any(s.startswith("replace .CHAMPION.") for s in held["promote"]), held["promote"]
    assert any(s.startswith("rename v0003") for s in held["retention"]) and any(s.startswith("rename") for s in held["add"])
    for phrase in ("restored the history line of the promote", "restored the history line of the rollback",
                   "cleared .trash", "cleared .staging", "removed temp file"):
        assert tidied[phrase] >= 1, (phrase, dict(tidied))


def test_sigkill_while_promote_verified_waits_for_its_smoke_test_rolls_back_the_unverified_champion(
    tmp_path, clone, sample, fork_server
):
    reg = seeded_registry(tmp_path, clone)
    sample_path = tmp_path / "sample.parquet"
    sample.to_parquet(sample_path, index=False)
    rng = random.Random(SEED + 1000)
    finished = {"v0001", "v0002", "v0003", "v0004"}
    rolled_back = 0
    for i in range(VERIFIED_KILLS):
        log = tmp_path / f"verified-{i}.log"
        pid = start_worker(fork_server, reg, clone, SEED + 1000 + i, log, mode="verified", sample_path=sample_path)
        time.sleep(rng.uniform(0.1, 2.5))
        kill(fork_server, pid, log)
        tidied = check_after_kill(reg, finished, sample, f"verified kill {i}")
        rolled_back += any(t.startswith("rolled back the unverified promotion") for t in tidied)
    autos = [e for e in reg.history() if e.event == "auto-rollback"]
    assert len(autos) == rolled_back and all("never answered" in e.reason for e in autos)
    print(f"\n{VERIFIED_KILLS} kills during promote_verified; {rolled_back} left an unverified champion that recovery rolled back")


# ---- two writers at once ----------------------------------------------------------------------

PROMOTER = r"""
import json, logging, sys, time
from pathlib import Path
import pandas as pd
from retrainlib.registry import Registry

root, model, go, who, versions, verified, sample_path = sys.argv[1:]
# filelock's own log says when this process tried the writer lock and found it held
lock_log = logging.getLogger("filelock")
lock_log.setLevel(logging.DEBUG)
lock_log.addHandler(logging.FileHandler(Path(go).parent / f"{who}-filelock.log"))
reg = Registry(Path(root), model)
sample = pd.read_parquet(sample_path) if verified == "1" else None
print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.001)
for name in versions.split(","):
    if verified == "1":
        r = reg.promote_verified(name, sample, run_id=who, reason=f"promoted by {who}")
        assert r.promoted, r.detail
    else:
        reg.promote(name, run_id=who, reason=f"promoted by {who}")
        time.sleep(0.01)  # outside the lock: gives the other process its turns
    print(json.dumps({"who": who, "version": name}), flush=True)
"""


def start_promoters(reg: Registry, tmp_path: Path, plans: dict[str, list[str]], *, verified: bool, sample: pd.DataFrame,
                    env: dict[str, dict[str, str]] = {}) -> dict[str, subprocess.Popen]:
    """One process per plan, each ready and waiting for its file ``tmp_path/go-<who>``."""
    sample_path = tmp_path / "sample.parquet"
    sample.to_parquet(sample_path, index=False)
    base = {k: v for k, v in os.environ.items() if k != HOLD_VARIABLE}
    procs = {
        who: subprocess.Popen(
            [sys.executable, "-c", PROMOTER, str(reg.root), reg.model_name, str(tmp_path / f"go-{who}"), who,
             ",".join(names), "1" if verified else "0", str(sample_path)],
            cwd=REPO, env={**base, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **env.get(who, {})},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for who, names in plans.items()
    }
    for p in procs.values():
        assert p.stdout.readline().strip() == "ready"
    return procs


def finish_promoters(procs: dict[str, subprocess.Popen]) -> dict[str, list[dict]]:
    results = {}
    for who, p in procs.items():
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, f"{who} failed: {err[-2000:]}"
        results[who] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return results


def run_promoters(reg: Registry, tmp_path: Path, plans: dict[str, list[str]], *, verified: bool, sample: pd.DataFrame):
    procs = start_promoters(reg, tmp_path, plans, verified=verified, sample=sample)
    for who in plans:  # all start at once
        (tmp_path / f"go-{who}").touch()
    return finish_promoters(procs)


def wait_until(condition, what: str, procs: dict[str, subprocess.Popen], limit: float = 120) -> None:
    """Wait for ``condition()``; fail at once (naming it) when a process ends first, or after ``limit`` s."""
    deadline = time.monotonic() + limit
    while not condition():
        for who, p in procs.items():
            if p.poll() is not None:
                out, err = p.communicate()
                pytest.fail(f"{who} ended (exit {p.returncode}, said {out.strip()!r}) before {what}: {err[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"not within {limit:g} s: {what}")
        time.sleep(0.01)


def test_two_processes_promoting_at_once_both_finish_one_after_the_other_and_history_records_both(tmp_path, clone, sample):
    reg = Registry(tmp_path / "models", "loan-default")
    for i in range(3):
        reg.add_version(clone, {}, run_id="setup")
    reg.promote("v0001", run_id="setup", reason="bootstrap")
    held = tmp_path / "A-smoke-held"  # A's smoke test stops here until the file is removed
    procs = start_promoters(reg, tmp_path, {"A": ["v0002"], "B": ["v0003"]}, verified=True, sample=sample,
                            env={"A": {HOLD_VARIABLE: str(held)}})
    try:
        (tmp_path / "go-A").touch()
        wait_until(lambda: held.exists() and reg.champion() == "v0002", "A promoted v0002 and its smoke test started", procs)
        assert reg.champion_record()["smoke_pending"]
        (tmp_path / "go-B").touch()
        b_log = tmp_path / "B-filelock.log"
        wait_until(lambda: b_log.exists() and f"not acquired on {reg.path / '.lock'}" in b_log.read_text(),
                   "B found the writer lock held", procs)
        # B waits on the writer lock while A's smoke test runs: nothing of B's is in the record
        assert [(e.event, e.version) for e in reg.history()] == [("promote", "v0001"), ("promote", "v0002")]
        assert reg.champion_record()["smoke_pending"]
        held.unlink()  # A's smoke test goes on
        results = finish_promoters(procs)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()

    assert results == {"A": [{"who": "A", "version": "v0002"}], "B": [{"who": "B", "version": "v0003"}]}
    promotes = [e for e in reg.history() if e.event == "promote"][1:]
    assert [(e.version, e.run_id, e.previous) for e in promotes] == [("v0002", "A", "v0001"), ("v0003", "B", "v0002")]
    rec = reg.champion_record()
    assert (rec["version"], rec["previous"]) == ("v0003", "v0002") and "smoke_pending" not in rec
    reg.load()


def test_many_concurrent_promotions_from_two_processes_lose_no_update(tmp_path, clone, sample):
    reg = Registry(tmp_path / "models", "loan-default")
    for i in range(4):
        reg.add_version(clone, {}, run_id="setup")
    rounds = 15
    plans = {"A": ["v0001", "v0002"] * rounds, "B": ["v0003", "v0004"] * rounds}

    run_promoters(reg, tmp_path, plans, verified=False, sample=sample)

    history = reg.history()
    assert len(history) == 4 * rounds
    assert collections.Counter(e.run_id for e in history) == {"A": 2 * rounds, "B": 2 * rounds}
    # each promotion saw the one before it: the writes were serialised, none overwrote another unseen
    for before, after in zip(history, history[1:]):
        assert after.previous == before.version
    assert reg.champion() == history[-1].version
    assert len({(e.run_id, i) for i, e in enumerate(history)}) == len(history)
    switches = sum(1 for x, y in zip(history, history[1:]) if x.run_id != y.run_id)
    print(f"\n{len(history)} promotions from two processes, interleaved {switches} times")
