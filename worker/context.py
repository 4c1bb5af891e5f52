"""The worker's per-process ``Context``, made on first use in each process.

A prefork child gets its own (its own Redis pool and HTTP session), and
importing the worker package needs no Redis.
"""

from __future__ import annotations

import os
from functools import lru_cache

from core.context import Context


@lru_cache(maxsize=4)
def _context(pid: int) -> Context:
    return Context.from_env()


def context() -> Context:
    return _context(os.getpid())
