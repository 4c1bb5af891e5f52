"""CPU time and peak memory of running processes and their children, from ``/proc``.

Linux only. A process tree is sampled while it runs: CPU is ``utime + stime``
of every live process in it, plus ``cutime + cstime`` (children it already
reaped); peak memory is each process's ``VmHWM`` (its resident high-water
mark), so one sample near the end finds the peak even if it was reached early.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcSample:
    pid: int
    ppid: int
    name: str
    cpu_s: float  # utime + stime + cutime + cstime
    peak_rss_kb: int


def read(pid: int) -> ProcSample | None:
    """One process's figures, or None if it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        status = (PROC / str(pid) / "status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 of proc(5) (state): field n is fields[n - 3].
    ticks = sum(int(fields[n - 3]) for n in (14, 15, 16, 17))
    hwm = 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
            break
    return ProcSample(pid, int(fields[1]), name, ticks / CLOCK_TICKS, hwm)


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process (one pass over ``/proc``)."""
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    return parents


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    return [child for child, parent in _parents().items() if parent == pid]


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid``, from one pass over ``/proc`` however deep the tree."""
    by_parent: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        by_parent.setdefault(parent, []).append(child)
    out: list[int] = []
    stack = [pid]
    while stack:
        for child in by_parent.get(stack.pop(), ()):
            out.append(child)
            stack.append(child)
    return out


@dataclass
class Tree:
    """A process and its descendants, sampled repeatedly.

    Finding descendants reads every process's ``stat``, so it is done at the
    start and then every ``rescan_every`` seconds; a sample in between reads
    two small files per known process (sampling must not eat the CPU it measures).
    """

    label: str
    root: int
    rescan_every: float = 5.0
    peak_kb: dict[int, int] = field(default_factory=dict)
    last_cpu: dict[int, float] = field(default_factory=dict)
    baseline_cpu: float = 0.0
    _pids: list[int] = field(default_factory=list)
    _scanned: float = float("-inf")

    def sample(self) -> float:
        """Sample every live member; returns the tree's CPU seconds so far."""
        now = time.monotonic()
        if now - self._scanned >= self.rescan_every:
            self._pids = [self.root, *descendants(self.root)]
            self._scanned = now
        live: dict[int, float] = {}
        for pid in self._pids:
            got = read(pid)
            if got is None:
                continue
            live[pid] = got.cpu_s
            self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), got.peak_rss_kb)
        self.last_cpu = live
        return sum(live.values())

    def start(self) -> None:
        """Mark the start of the measured interval (start-up CPU is left out)."""
        self.baseline_cpu = self.sample()

    def cpu_since_start(self) -> float:
        return max(0.0, sum(self.last_cpu.values()) - self.baseline_cpu)

    def peak_mb(self, pid: int | None = None) -> float:
        return round(self.peak_kb.get(self.root if pid is None else pid, 0) / 1024, 1)

    def child_peaks_mb(self) -> list[float]:
        return [round(kb / 1024, 1) for pid, kb in sorted(self.peak_kb.items()) if pid != self.root]
