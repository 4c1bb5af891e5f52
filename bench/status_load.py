"""The load generator of ``bench.api_status``: ``python -m bench.status_load -c N``.

Its own process, so that its CPU is not the server's: ``N`` threads, each
with one keep-alive ``http.client`` connection, send ``GET URL`` back to back
with the bearer token in ``KX_BENCH_TOKEN`` (on no command line). The first
line of standard input is the URL; each further line starts the next phase;
the end of the input stops it, and it prints one JSON object: per phase, its
seconds, requests, errors (anything but a 200), answers a second and latency
percentiles.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from demo.services import stop

BEARER_ENV = "KX_BENCH_TOKEN"
PHASES = ("reading", "uploads")  # what bench.api_status names the phases


def _percentiles(latencies: list[float]) -> dict[str, float | None]:
    if len(latencies) < 2:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    ms = {"p50_ms": cuts[49], "p90_ms": cuts[89], "p99_ms": cuts[98], "max_ms": max(latencies)}
    return {name: round(value * 1000, 2) for name, value in ms.items()}


def hammer(connections: int) -> dict[str, Any]:
    """Read a URL from stdin, GET it from ``connections`` threads until stdin
    ends; each further line starts the next phase. Returns figures per phase."""
    url = urlsplit(sys.stdin.readline().strip())
    headers = {"Authorization": f"Bearer {os.environ[BEARER_ENV]}"}
    phase, done = [0], threading.Event()
    samples: list[list[tuple[int, float, bool]]] = [[] for _ in range(connections)]

    def loop(out: list[tuple[int, float, bool]]) -> None:
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
        while not done.is_set():
            began = time.perf_counter()
            try:
                conn.request("GET", url.path, headers=headers)
                answer = conn.getresponse()
                answer.read()
                ok = answer.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()  # reconnects on the next request
                ok = False
            out.append((phase[0], time.perf_counter() - began, ok))
        conn.close()

    # Daemons: an error here ends the process without waiting for requests in flight.
    threads = [threading.Thread(target=loop, args=(out,), daemon=True) for out in samples]
    marks = [time.perf_counter()]
    for thread in threads:
        thread.start()
    for _line in sys.stdin:
        marks.append(time.perf_counter())
        phase[0] += 1
    marks.append(time.perf_counter())
    done.set()
    for thread in threads:
        thread.join()
    phases = []
    for number in range(len(marks) - 1):
        taken = [(s, ok) for out in samples for p, s, ok in out if p == number]
        seconds = marks[number + 1] - marks[number]
        answered = [s for s, ok in taken if ok]
        rate = round(len(answered) / seconds, 1) if seconds > 0 else None
        counted = {"requests": len(taken), "errors": len(taken) - len(answered)}
        phases.append({"seconds": round(seconds, 2), "requests_per_s": rate, **counted})
        phases[-1] |= _percentiles(answered)
    return {"connections": connections, "cpu_s": round(time.process_time(), 2), "phases": phases}


@contextmanager
def load_generator(env: dict[str, str], connections: int) -> Iterator[subprocess.Popen[str]]:
    """A load generator process, started before its run so that its start-up is
    not in the measured window; stopped whatever happens."""
    command = [sys.executable, "-m", "bench.status_load", "-c", str(connections)]
    proc = subprocess.Popen(
        command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            stop(proc)  # type: ignore[arg-type]


def tell(load: subprocess.Popen[str], line: str) -> None:
    assert load.stdin is not None
    load.stdin.write(line + "\n")
    load.stdin.flush()


def load_results(load: subprocess.Popen[str]) -> dict[str, Any]:
    """Ends the load (its stdin) and returns its figures."""
    out, _ = load.communicate(timeout=120)
    if load.returncode != 0:
        raise RuntimeError(f"the load generator exited {load.returncode}")
    answer: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    answer["phases"] = dict(zip(PHASES, answer["phases"], strict=False))
    return answer


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.status_load")
    parser.add_argument("-c", "--connections", type=int, default=8)
    print(json.dumps(hammer(parser.parse_args().connections)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
