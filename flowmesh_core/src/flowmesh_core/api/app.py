"""The HTTP API as an app factory: routes, error handling, metrics, and the background loops.

``create_app`` wires a ``ControlPlane`` into a FastAPI app. Its lifespan runs the control
plane's scheduler and completion applier as a background task (unless the replica is
API-only) and, on shutdown, ends the long polls still open (``begin_shutdown``; a server
calls it earlier, when shutdown starts), stops the loops and closes the control plane's
connections.

This module must never decide anything about workflows or tenants (that is the control
plane's), and never open connections at import or construction time: the lifespan runs
the loops, the first request opens Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from flowmesh_core import __version__
from flowmesh_core.api import autoscale, blobs, pool, routes, system
from flowmesh_core.api.deps import ApiState
from flowmesh_core.api.errors import UnhandledErrorMiddleware, install_error_handlers, redact
from flowmesh_core.api.metrics import ApiMetrics, MetricsMiddleware
from flowmesh_core.api.schema import add_body_schemas
from flowmesh_core.control import ControlPlane
from flowmesh_core.ui import mount_ui

__all__ = ["begin_shutdown", "create_app"]

log = logging.getLogger("flowmesh.api")

_STOP_TIMEOUT_S = 15.0
"""How long shutdown waits for the loops to notice ``stop`` before cancelling them."""

_SETTLE_TIMEOUT_S = 10.0
"""How long shutdown waits for the waits that drained long polls left (one slice each)."""

_DESCRIPTION = """\
FlowMesh's control plane: submit operators and workflows, wait for them, read their
lineage and results. Identical work from every tenant runs once; a tenant sees only its
own workflows, lineage and results.

Every `/v1` route needs `Authorization: Bearer <token>` (`flowmesh tenant create NAME`).
Errors are `{"error": {"type": ..., "message": ...}}` with a message that says what to fix.
"""


class _FlowMeshAPI(FastAPI):
    """FastAPI, with the schemas of the documents the submit routes read in the OpenAPI."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            state: ApiState = self.state.flowmesh
            add_body_schemas(super().openapi(), state.control.registry)
        assert self.openapi_schema is not None
        return self.openapi_schema


def create_app(control: ControlPlane, *, run_scheduler: bool = True) -> FastAPI:
    """The HTTP API over ``control``.

    With ``run_scheduler`` the app's lifespan runs ``control.run`` (the scheduler and the
    completion applier) in the background; API-only replicas pass False. Either way the
    lifespan closes ``control`` on shutdown.
    """
    state = ApiState(control=control, metrics=ApiMetrics(), run_scheduler=run_scheduler)
    app = _FlowMeshAPI(
        title="FlowMesh",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=_lifespan(state),
    )
    app.state.flowmesh = state
    install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(blobs.router)
    app.include_router(blobs.grants_router)
    app.include_router(pool.router)  # the ready pool and batches (docs/ui.md)
    app.include_router(system.router)
    mount_ui(app)  # the dashboard at /ui (docs/ui.md)
    app.include_router(autoscale.router)
    # Added last is outermost: metrics see the 500 that the error middleware answers.
    app.add_middleware(UnhandledErrorMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    return app


def begin_shutdown(app: FastAPI) -> None:
    """End the app's long polls now: each answers with the status as it stands.

    Servers call this when shutdown starts, before their grace period for requests in
    flight runs out (``flowmesh serve`` does); the lifespan's shutdown calls it too.
    """
    state: ApiState = app.state.flowmesh
    state.drain.start()


def _lifespan(state: ApiState) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        if state.run_scheduler:
            task = asyncio.create_task(state.control.run(stop), name="flowmesh-control-loops")
            task.add_done_callback(lambda done: _report_exit(done, stop))
            state.background = task
        try:
            yield
        finally:
            state.drain.start()
            stop.set()
            ending = [state.drain.settle(_SETTLE_TIMEOUT_S)]
            if state.background is not None:
                ending.append(_stop(state.background))
            await asyncio.gather(*ending)
            await state.control.aclose()

    return lifespan


def _report_exit(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """Log loops that end on their own: /healthz then answers 503 until a restart."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error(
            "the scheduler and completion loops stopped: %s; this replica no longer "
            "schedules (restart it)",
            redact(str(exc)),
            exc_info=exc,
        )
    elif not stop.is_set():
        log.error("the scheduler and completion loops returned before shutdown")


async def _stop(task: asyncio.Task[None]) -> None:
    await asyncio.wait({task}, timeout=_STOP_TIMEOUT_S)
    if not task.done():
        log.warning("background loops did not stop within %.0f s; cancelling", _STOP_TIMEOUT_S)
        task.cancel()
        await asyncio.wait({task})
