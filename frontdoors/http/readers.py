"""The server's segment readers: the runs it opened, read in their turn.

A ``POST /api/v1/exports/{id}/runs`` answers as soon as ``open_remote_run``
has recorded the run and taken its export's lock; reading the segment (a
million rows take seconds) and launching the chord happen here, one run per
``KLAVIYO_EXPORT_API_READERS`` slot, so that a burst of requests cannot
start a burst of readers: further runs wait their turn, ``pending``.

``klaviyo-export serve`` reads in child processes (``processes=True``): a
segment's reading is CPU work (parsing, checks, JSON) that would otherwise
hold the server's interpreter lock for seconds and slow every answer, the
status polls of the other runs included. Each child builds its own
``Context`` from the same environment and keeps it for its next run. A
child that dies mid-read (out of memory) ends its run as failed here. Tests
on one in-memory Redis read in threads (``processes=False``).

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

import logging
import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from core.context import Context
from core.errors import Unavailable
from producer.runner import RunRequest, interrupted, read_opened

log = logging.getLogger(__name__)

_child_context: Context | None = None


def _read_in_child(run_id: str, request: RunRequest) -> None:
    """In a reader process: read the run with this process's own Context."""
    global _child_context  # one Context (one Redis pool) per reader process
    if _child_context is None:
        _child_context = Context.from_env()
    read_opened(_child_context, run_id, request)


class ServerStopped(Exception):
    """Why a run that waited for a reader is ended: the server stopped first."""


class Readers:
    def __init__(self, ctx: Context, threads: int, *, processes: bool = False) -> None:
        self.ctx = ctx
        self._slots = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kx-reader")
        self._children: ProcessPoolExecutor | None = self._new_children() if processes else None
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

    def waiting(self) -> list[str]:
        """The runs not yet being read."""
        with self._lock:
            return [run_id for run_id, future in self._waiting.items() if not future.running()]

    def _read(self, run_id: str, request: RunRequest) -> None:
        with self._lock:
            self._waiting.pop(run_id, None)
        try:
            if self._children is None:
                read_opened(self.ctx, run_id, request)
            else:
                self._children.submit(_read_in_child, run_id, request).result()
        except BrokenProcessPool as exc:  # the child died: nothing of it ended the run
            log.warning("run %s: its reader process died", run_id)
            interrupted(self.ctx, run_id, exc)
            with self._lock:
                if not self._stopping:
                    self._children = self._new_children()
        except Exception as exc:  # noqa: BLE001 - read_opened has ended the run; log the class
            log.warning("run %s: reading the segment failed (%s)", run_id, type(exc).__name__)

    def _new_children(self) -> ProcessPoolExecutor:
        # spawn: a fork of a server with threads and open sockets is not safe
        return ProcessPoolExecutor(self._slots, mp_context=multiprocessing.get_context("spawn"))

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
        if self._children is not None:
            self._children.shutdown(wait=True)
