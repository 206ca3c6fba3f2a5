"""The one durable write and the one sha256: a kill mid-write never leaves a torn file."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import time

from retrainlib import durable

from .conftest import REPO

# rewrites one file over and over with two large, different payloads; says "ready" after the first
WRITER = r"""
import sys
from retrainlib.durable import write_json_atomic
path, mode = sys.argv[1], sys.argv[2]
payloads = [{"which": w, "rows": [[w, i, "x" * 40] for i in range(60_000)]} for w in ("a", "b")]
def plain_write(p, obj):
    import json
    with open(p, "w") as f:
        json.dump(obj, f)
write = write_json_atomic if mode == "durable" else plain_write
write(path, payloads[0])
print("ready", flush=True)
i = 0
while True:
    i += 1
    write(path, payloads[i % 2])
"""


def kill_writers(tmp_path, mode: str, kills: int) -> list[str]:
    """Start the writer ``kills`` times, SIGKILL it at a random moment, and read the file each time."""
    target = tmp_path / f"{mode}.json"
    rng = random.Random(7)
    seen = []
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), mode], stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        try:
            seen.append(json.loads(target.read_text())["which"])
        except ValueError:
            seen.append("torn")
    return seen


def test_a_durable_write_killed_mid_write_leaves_the_old_or_the_new_file_never_a_torn_one(tmp_path):
    seen = kill_writers(tmp_path, "durable", 8)
    assert set(seen) <= {"a", "b"}, seen


def test_the_same_kills_tear_a_plain_write(tmp_path):
    # the control: the kills above do land inside writes (a plain open-and-write is torn by them)
    seen = kill_writers(tmp_path, "plain", 8)
    assert "torn" in seen, seen


def test_sha256_file_agrees_with_hashlib_for_files_larger_than_a_block(tmp_path):
    data = bytes(range(256)) * 9000  # 2.3 MB, more than one 1 MB block
    (tmp_path / "f").write_bytes(data)
    assert durable.sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest() == durable.sha256_bytes(data)
