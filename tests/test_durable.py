"""The one durable write and the one sha256: a kill mid-write never leaves a torn file.

Each kill lands at a named point of a write (the writer stops there and waits for it), so what the
file holds afterwards does not depend on the machine's speed.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys

import pytest

from retrainlib import durable

from .conftest import REPO

# writes the old file whole, then the new one, stopping at a named point of that second write (a hold
# point): says "held", then waits there until it is SIGKILLed; "finished" if it never got there
WRITER = r"""
import builtins, json, os, sys, time
from retrainlib.durable import write_json_atomic
path, mode, point = sys.argv[1], sys.argv[2], sys.argv[3]
payloads = [{"which": w, "rows": [[w, i, "x" * 40] for i in range(40_000)]} for w in ("a", "b")]  # 2 MB each
def plain_write(p, obj):
    with open(p, "w") as f:
        json.dump(obj, f)
write = write_json_atomic if mode == "durable" else plain_write
write(path, payloads[0])

def hold():
    print("held", flush=True)
    while True:
        time.sleep(3600)

class HalfWritten:  # a file object that stops after its first MiB has reached the disk
    def __init__(self, f):
        self.f, self.written = f, 0
    def write(self, data):
        room = 2**20 - self.written
        if len(data) >= room:
            self.f.write(data[:room])
            self.f.flush()
            hold()
        self.written += len(data)
        return self.f.write(data)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.f.__exit__(*exc)
    def __getattr__(self, name):
        return getattr(self.f, name)

real_open, real_fsync, real_replace = builtins.open, os.fsync, os.replace
if point == "mid-write":
    builtins.open = lambda *a, **k: HalfWritten(real_open(*a, **k))
elif point == "before fsync":  # the new bytes written, not yet flushed to disk
    os.fsync = lambda fd: hold()
elif point == "before replace":  # the temporary file complete and fsynced
    os.replace = lambda *a: hold()
elif point == "after replace":  # before the folder's fsync
    os.replace = lambda *a: (real_replace(*a), hold())
print("ready", flush=True)
write(path, payloads[1])
print("finished", flush=True)
"""


def kill_writer_at(tmp_path, mode: str, point: str) -> str:
    """Write the file twice, SIGKILL the writer at ``point`` of the second write; what the file holds then."""
    target = tmp_path / f"{mode}-{point.replace(' ', '-')}.json"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), mode, point], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "ready"
        said = proc.stdout.readline().strip()
        assert said == "held", f"the {mode} writer did not stop at {point!r}: it said {said!r}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    try:
        return json.loads(target.read_text())["which"]
    except ValueError:
        return "torn"


def test_a_durable_write_killed_at_each_step_leaves_the_old_or_the_new_file_never_a_torn_one(tmp_path):
    seen = {point: kill_writer_at(tmp_path, "durable", point)
            for point in ("mid-write", "before fsync", "before replace", "after replace")}
    assert seen == {"mid-write": "a", "before fsync": "a", "before replace": "a", "after replace": "b"}


def test_the_same_kill_mid_write_tears_a_plain_write(tmp_path):
    # the control: the hold point really is inside a write (a plain open-and-write is torn there)
    assert kill_writer_at(tmp_path, "plain", "mid-write") == "torn"


def test_sha256_file_agrees_with_hashlib_for_files_larger_than_a_block(tmp_path):
    data = bytes(range(256)) * 9000  # 2.3 MB, more than one 1 MB block
    (tmp_path / "f").write_bytes(data)
    assert durable.sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest() == durable.sha256_bytes(data)


def test_sha256_parts_is_the_sha256_of_the_parts_joined_whether_text_bytes_or_a_stream_of_them():
    assert durable.sha256_parts("ab", b"c", (p for p in ["d", b"\0e"])) == hashlib.sha256(b"abcd\0e").hexdigest()
    assert durable.sha256_parts() == hashlib.sha256(b"").hexdigest()


def test_a_published_folder_appears_whole_and_a_second_publisher_is_told_it_was_first_beaten(tmp_path):
    final = tmp_path / "cache" / "key"
    with durable.staging(final) as stage:
        (stage / "sub").mkdir()
        (stage / "sub" / "a.txt").write_text("first")
        assert not final.exists()  # nothing is in place while it is built
        assert durable.publish_dir(stage, final) is True
    with durable.staging(final) as again:
        (again / "b.txt").write_text("second")
        assert durable.publish_dir(again, final) is False
    assert (final / "sub" / "a.txt").read_text() == "first" and not (final / "b.txt").exists()
    assert [p.name for p in final.parent.iterdir()] == ["key"]  # both staging folders are gone


def test_a_folder_whose_building_fails_is_never_published_and_leaves_no_staging_folder(tmp_path):
    final = tmp_path / "key"
    with pytest.raises(RuntimeError, match="the build failed"):
        with durable.staging(final) as stage:
            (stage / "half.txt").write_text("half")
            raise RuntimeError("the build failed")
    assert list(tmp_path.iterdir()) == []
