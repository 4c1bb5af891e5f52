"""The HTTP front door: one ASGI app, the REST API under ``/api/v1`` and the console at ``/``.

FastAPI on Starlette, served by uvicorn (``klaviyo-export serve``): FastAPI
writes the OpenAPI document (``/api/v1/openapi.json``, browsable at
``/api/v1/docs``) from the same typed models that check the requests.
Endpoints are plain ``def``: the domain speaks sync redis-py, and FastAPI
runs each in its thread pool; the status poll (``api_runs.get_run``), the
request an orchestrator repeats, reads its token and its run in one hop.

The app is stateless: one ``Context`` (settings, one Redis pool) per process,
built at startup; tokens, sessions and idempotency keys live in Redis, so any
number of servers can stand behind a load balancer. The only thing a process
holds is its segment readers (``frontdoors.http.readers``), stopped with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles

from core import __version__
from core.context import Context
from frontdoors.http import api_connections, api_exports, api_runs, console, errors
from frontdoors.http.auth import AppContext
from frontdoors.http.limits import BodyLimit
from frontdoors.http.models import ERROR_RESPONSES, Health
from frontdoors.http.readers import Readers

API_PREFIX = "/api/v1"
STATIC = Path(console.__file__).resolve().parent / "static"
DESCRIPTION = """Export customer segments into Klaviyo lists.

Every call but `/healthz` needs `Authorization: Bearer TOKEN` (a token from
`klaviyo-export token add`). Errors answer `{"error": {"type", "message", "fields"}}`.
Start a run with `POST /api/v1/exports/{export_id}/runs` (202, `Location` names the
run) and poll `GET /api/v1/runs/{run_id}` until its status is final."""


def _operation_id(route: APIRoute) -> str:
    """The endpoint function's name: ``start_run``, ``list_connections``, ..."""
    return route.name


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        yield
    finally:
        readers: Readers = app.state.readers
        await run_in_threadpool(readers.stop)


def health(ctx: AppContext) -> Health:
    """Whether this server reaches Redis (no token needed): 503 when it does not."""
    ctx.redis.ping()
    return Health(ok=True)


def create_app(
    ctx: Context, *, readers: int | None = None, reader_processes: bool = False
) -> FastAPI:
    """The app on ``ctx``; ``readers`` at a time read the segments of the runs it
    starts (default ``KLAVIYO_EXPORT_API_READERS``), in child processes built from
    the environment when ``reader_processes`` (what ``serve`` does), else in threads
    on ``ctx`` (tests on an in-memory Redis)."""
    app = FastAPI(
        title="klaviyo-export",
        version=__version__,
        description=DESCRIPTION,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=_lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.ctx = ctx
    app.state.readers = Readers(
        ctx, readers or ctx.settings.api_readers, processes=reader_processes
    )
    for router in (
        api_connections.router,
        api_exports.router,
        api_runs.router,
        api_runs.audit_router,
    ):
        app.include_router(router, prefix=API_PREFIX)
    app.add_api_route(
        "/healthz",
        health,
        methods=["GET"],
        response_model=Health,
        tags=["health"],
        responses={503: ERROR_RESPONSES[503]},
        name="health",
    )
    app.include_router(console.router, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    errors.install(app)
    app.add_middleware(BodyLimit)  # the outermost: before anything reads a body
    return app


def app_from_env() -> FastAPI:
    """The app of ``klaviyo-export serve`` (a uvicorn factory: one per worker process)."""
    return create_app(Context.from_env(), reader_processes=True)
