"""Resource monitoring on real processes: a child that holds memory, a tree of them, real disks."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from retrainlib.errors import TrainingError
from retrainlib.monitoring import ResourceMonitor, check_disk, check_free_disk, disk_needs

MiB = 2**20

# holds ~size MiB of touched memory, optionally in a grandchild too, then sleeps until killed
HOLDER = """
import subprocess, sys, time
size = int(sys.argv[1]); spawn = sys.argv[2] == "1"
block = bytearray(size * 2**20)
for i in range(0, len(block), 4096):
    block[i] = 1
if spawn:
    subprocess.Popen([sys.executable, "-c", "import time\\nb = bytearray(%d * 2**20)\\nfor i in range(0, len(b), 4096): b[i] = 1\\nprint('ready', flush=True)\\ntime.sleep(600)" % size])
print("ready", flush=True)
time.sleep(600)
"""


def holder(size_mib: int, *, grandchild: bool = False) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(size_mib), "1" if grandchild else "0"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def wait_for(predicate, seconds: float = 60.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_the_monitor_stops_a_tree_above_its_memory_limit_and_says_by_how_much(tmp_path):
    proc = holder(120)
    hits = []
    try:
        with ResourceMonitor(proc.pid, disk_path=tmp_path, interval=0.05, memory_threshold=0.5,
                             memory_limit_bytes=60 * MiB, on_limit=lambda why: (hits.append(why), proc.kill())) as mon:
            assert wait_for(lambda: proc.poll() is not None)
    finally:
        proc.kill()
        proc.wait()
    assert len(hits) == 1 and mon.limit_hit == hits[0]
    assert hits[0].startswith("training used ") and "above memory_threshold 0.5 (60 MiB)" in hits[0]
    used = float(hits[0].split("training used ")[1].split(" MiB")[0].replace(",", ""))
    assert used >= 120


def test_a_tree_within_its_limit_is_sampled_with_its_grandchildren_and_left_alone(tmp_path):
    proc = holder(80, grandchild=True)
    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
        assert wait_for(lambda: len(psutil.Process(proc.pid).children()) == 1 and
                        psutil.Process(proc.pid).children()[0].memory_info().rss > 80 * MiB)
        with ResourceMonitor(proc.pid, disk_path=tmp_path, interval=0.05, memory_limit_bytes=10**12,
                             on_limit=lambda why: pytest.fail(why)) as mon:
            assert wait_for(lambda: len(mon._samples) >= 2)  # sampled on its thread (and once more at the stop)
        report = mon.report()
        assert proc.poll() is None and mon.limit_hit is None
        assert report.peak_rss_bytes >= 160 * MiB  # the child's 80 MiB and the grandchild's 80 MiB
        assert len(report.samples) >= 2 and all(0 <= s["disk"] <= 1 for s in report.samples)
        assert report.warnings == ()
    finally:
        for p in [*psutil.Process(proc.pid).children(recursive=True), *kids]:
            p.kill()
        proc.kill()
        proc.wait()


def test_a_busy_process_above_cpu_threshold_is_reported_as_a_warning(tmp_path):
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # busy until killed
    try:
        with ResourceMonitor(busy.pid, disk_path=tmp_path, interval=0.2, cpu_threshold=0.0) as mon:
            assert wait_for(lambda: any(s["cpu"] > 0 for s in mon._samples), 120)
    finally:
        busy.kill()
        busy.wait()
    (warning,) = mon.report().warnings
    assert warning.startswith("cpu use reached ") and warning.endswith("above the profile's cpu_threshold 0%")


def test_two_folders_on_one_disk_add_up_and_the_refusal_names_both(tmp_path):
    import shutil

    free = shutil.disk_usage(tmp_path).free
    half = free // 2 + MiB  # each fits alone, together they do not
    check_disk({tmp_path / "work": half}, disk_threshold=1.0)
    with pytest.raises(TrainingError, match=r"not enough free disk for .*work \(.* MiB\) and .*registry \(.* MiB\): .* GiB free"):
        check_disk({tmp_path / "work": half, tmp_path / "registry": half}, disk_threshold=1.0)


def test_a_disk_threshold_below_todays_use_refuses_even_a_small_version(tmp_path):
    with pytest.raises(TrainingError, match=r"would take use to \d+% \(disk_threshold 0%\); free space"):
        check_free_disk(tmp_path, need_bytes=MiB, disk_threshold=0.0)
    check_free_disk(tmp_path, need_bytes=MiB, disk_threshold=1.0)


def test_without_a_champion_a_version_is_taken_as_four_times_the_rows_and_at_least_5_mib():
    assert disk_needs(MiB, work_dir="/w", registry="/r")[Path("/r")] == 5 * MiB
    assert disk_needs(10 * MiB, work_dir="/w", registry="/r")[Path("/w")] == 10 * MiB + 2 * 40 * MiB
