"""The benchmark's sampler finds a whole process tree and charges its CPU to it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from bench.procstat import Tree, descendants, read

# A child that starts a grandchild which burns CPU, then both wait to be killed.
TREE = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time\\nend = time.process_time() + 0.4\\n"
                  "while time.process_time() < end: pass\\ntime.sleep(60)"])
print("up", flush=True)
time.sleep(60)
"""


@pytest.fixture
def parent() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "up"
    yield proc
    for pid in descendants(proc.pid):
        subprocess.run(["kill", str(pid)], check=False)
    proc.kill()
    proc.wait()


def _wait_for_grandchild(pid: int) -> list[int]:
    deadline = time.monotonic() + 10
    while len(found := descendants(pid)) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_descendants_reach_the_grandchild(parent: subprocess.Popen[str]) -> None:
    found = _wait_for_grandchild(parent.pid)
    assert len(found) == 1
    grandchild = read(found[0])
    assert grandchild is not None
    assert grandchild.ppid == parent.pid


def test_tree_charges_the_grandchilds_cpu_and_memory(parent: subprocess.Popen[str]) -> None:
    _wait_for_grandchild(parent.pid)
    tree = Tree("t", parent.pid, rescan_every=0.0)
    tree.start()
    time.sleep(0.8)  # the grandchild burns its 0.4 s of CPU
    tree.sample()
    assert tree.cpu_since_start() > 0.1
    assert tree.peak_mb() > 1  # the parent's VmHWM, in MB
    assert len(tree.child_peaks_mb()) == 1


def test_a_gone_process_reads_as_none() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert read(proc.pid) is None
