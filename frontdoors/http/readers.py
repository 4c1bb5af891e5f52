"""The server's segment readers: the runs it opened, read in their turn.

A ``POST /api/v1/exports/{id}/runs`` answers as soon as ``open_remote_run``
has recorded the run and taken its export's lock; reading the segment (a
million rows take seconds) and launching the chord happen here, one run per
``KLAVIYO_EXPORT_API_READERS`` slot, so that a burst of requests cannot
start a burst of readers: further runs wait their turn, ``pending``.

``klaviyo-export serve`` reads each run in a child process of its own
(``processes=True``): a segment's reading is CPU work (parsing, checks, JSON)
that would otherwise hold the server's interpreter lock for seconds and slow
every answer, the status polls of the other runs included. The child
(spawned, not forked: the server has threads and sockets) builds its own
``Context`` from the same environment; its start costs a second or so, which
a run's minutes hide. A child that dies mid-read (out of memory, killed)
costs its own run only, which is ended as failed here. Tests on one
in-memory Redis read in threads (``processes=False``).

Stopping the server (the app's lifespan ends: SIGTERM, Ctrl-C) lets the runs
being read finish their reading, and ends the runs still waiting for a
thread as ``failed`` (``producer.runner.interrupted``), which releases their
locks at once: nothing of theirs was read or sent, and a new run may start.

When the process is killed outright (SIGKILL, the machine lost), nothing here
runs: a run being read or waiting stays ``pending`` with its lock taken, and
the watchdog (``worker/watchdog.py``, ``clear_locks``) fails it once it has
made no progress for ``KLAVIYO_EXPORT_STALL_SECONDS``, releasing the lock, as
for a ``klaviyo-export run`` whose process died while reading.

Logs name run ids and error classes only: never a row, an email or a key.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from core.context import Context
from core.errors import Throttled, Unavailable
from producer.runner import RunRequest, interrupted, read_opened
from schemas.contracts import RunStatus

log = logging.getLogger(__name__)

_SPAWN = multiprocessing.get_context("spawn")


class ReaderDied(Exception):
    """Why a run is ended when its reader process exits without ending it."""


def _read_in_child(run_id: str, request: RunRequest) -> None:
    """A reader process: read the run with a Context of its own. An error has
    ended the run already (``read_opened``); the exit code says it failed."""
    read_opened(Context.from_env(), run_id, request)


class ServerStopped(Exception):
    """Why a run that waited for a reader is ended: the server stopped first."""


class Readers:
    def __init__(self, ctx: Context, threads: int, *, processes: bool = False) -> None:
        self.ctx = ctx
        self._slots = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kx-reader")
        self._processes = processes
        self._planning = threading.BoundedSemaphore(threads)
        self._lock = threading.Lock()
        self._waiting: dict[str, Future[None]] = {}
        self._stopping = False

    def submit(self, run_id: str, request: RunRequest) -> None:
        """Read the opened run ``run_id`` in a pool thread, in its turn."""
        with self._lock:
            if not self._stopping:
                self._waiting[run_id] = self._pool.submit(self._read, run_id, request)
                return
        interrupted(self.ctx, run_id, ServerStopped())
        raise Unavailable("the server is stopping: the run was ended before it started")

    @contextlib.contextmanager
    def planning(self) -> Iterator[None]:
        """A slot for a dry run, which reads a whole segment inside its request:
        as many at once as there are readers; one more is ``Throttled``, at
        once, rather than queued behind them with its caller waiting."""
        if not self._planning.acquire(blocking=False):
            raise Throttled("as many dry runs as the server reads at once are in progress", 5)
        try:
            yield
        finally:
            self._planning.release()

    def waiting(self) -> list[str]:
        """The runs not yet being read."""
        with self._lock:
            return [run_id for run_id, future in self._waiting.items() if not future.running()]

    def _read(self, run_id: str, request: RunRequest) -> None:
        with self._lock:
            self._waiting.pop(run_id, None)
        try:
            if self._processes:
                self._read_in_a_child(run_id, request)
            else:
                read_opened(self.ctx, run_id, request)
        except Exception as exc:  # noqa: BLE001 - the run has been ended; log the class
            log.warning("run %s: reading the segment failed (%s)", run_id, type(exc).__name__)

    def _read_in_a_child(self, run_id: str, request: RunRequest) -> None:
        child = _SPAWN.Process(
            target=_read_in_child, args=(run_id, request), name=f"kx-reader-{run_id}"
        )
        child.start()
        child.join()
        if child.exitcode == 0:
            return
        # An error ended the run already; a killed reader left it pending, unread.
        if self.ctx.runs.status(run_id) is RunStatus.PENDING:
            interrupted(self.ctx, run_id, ReaderDied(f"exit code {child.exitcode}"))
        raise ReaderDied(f"the reader of run {run_id} exited with {child.exitcode}")

    def stop(self) -> None:
        """End the runs still waiting, then wait for those being read."""
        with self._lock:
            self._stopping = True
            waiting = list(self._waiting.items())
            self._waiting.clear()
        for run_id, future in waiting:
            if future.cancel():  # it never started: it never will
                interrupted(self.ctx, run_id, ServerStopped())
                log.warning("run %s: ended unread, the server stopped", run_id)
        self._pool.shutdown(wait=True)
