"""The web console: server-rendered pages for admins and contributors.

Plain HTML forms (Jinja2 templates, no JavaScript build step; one small
script moves a run's progress), calling the same ``core.queries``,
``core.operations`` and ``producer`` functions as the CLI and the API. The
app (``frontdoors.http.app``) includes ``router`` at ``/``, serves
``STATIC_DIR`` at ``/static``, and sets ``app.state.ctx`` and
``app.state.readers``.
"""

from __future__ import annotations

from fastapi import APIRouter

from frontdoors.http.console import connections, exports, overview, runs, signin
from frontdoors.http.console.rendering import STATIC_DIR

router = APIRouter()
for _module in (signin, overview, connections, exports, runs):
    router.include_router(_module.router)

__all__ = ["STATIC_DIR", "router"]
