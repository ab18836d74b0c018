"""Routes for operators of the service, not tenants: ``/healthz`` and ``/metrics``.

Neither needs a token, so neither may reveal anything about a tenant: health says which
backing service fails (credentials in URLs redacted), and metrics without a token carry
request counts and latency only. A scraper that sends an admin token also gets the
fabric's totals and the tenant count.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from flowmesh_core.api.deps import ApiState, State
from flowmesh_core.api.errors import redact
from flowmesh_core.control import StatsReport
from flowmesh_core.errors import FlowMeshError, PermissionDeniedError

__all__ = ["HealthReport", "router"]

log = logging.getLogger("flowmesh.api")

_CHECK_TIMEOUT_S = 5.0
_OK = "ok"
_DISABLED = "disabled (API-only replica)"

router = APIRouter()


class HealthReport(BaseModel):
    """Whether this replica can serve: each check is ``ok`` or says what is wrong."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str]


@router.get(
    "/healthz",
    response_model=HealthReport,
    responses={503: {"model": HealthReport, "description": "A check failed."}},
    summary="Health of this replica and its backing services",
)
async def healthz(state: State) -> HealthReport | JSONResponse:
    """Pings Redis and the blob store, and checks the background loops still run."""
    control = state.control
    store, blobs = await asyncio.gather(
        _probe(control.store.ping()), _probe(asyncio.to_thread(control.blobs.ping))
    )
    checks = {"store": store, "blobs": blobs, "scheduler": _scheduler_check(state)}
    failed = any(result not in (_OK, _DISABLED) for result in checks.values())
    report = HealthReport(status="unavailable" if failed else "ok", checks=checks)
    if failed:
        return JSONResponse(report.model_dump(), status_code=503)
    return report


async def _probe(check: Awaitable[None]) -> str:
    try:
        await asyncio.wait_for(check, _CHECK_TIMEOUT_S)
    except FlowMeshError as exc:
        return redact(str(exc))
    except TimeoutError:
        return f"no answer within {_CHECK_TIMEOUT_S:.0f} s"
    return _OK


def _scheduler_check(state: ApiState) -> str:
    task = state.background
    if not state.run_scheduler:
        return _DISABLED
    if task is None:
        return "not started"
    if task.done():
        exc = None if task.cancelled() else task.exception()
        return f"stopped: {redact(str(exc))}" if exc else "stopped"
    return _OK


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    summary="Prometheus metrics",
)
async def metrics(state: State, request: Request) -> Response:
    """Request counts and latency by route; with an admin token, also the fabric's totals
    and the tenant count (never a tenant label). A token that is not an admin's is 403."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        return Response(state.metrics.render(None, fabric=False), media_type=CONTENT_TYPE_LATEST)
    reader = await state.control.authenticate(authorization)
    if not reader.admin:
        raise PermissionDeniedError(
            "the fabric's metrics are a cluster-wide view: scrape with an admin token "
            "(`flowmesh tenant create NAME --admin`), or with none for request metrics only"
        )
    report: StatsReport | None
    try:
        report = await state.control.stats(reader)
    except FlowMeshError as exc:
        log.warning("metrics: cannot read the fabric's counters: %s", redact(str(exc)))
        report = None
    return Response(state.metrics.render(report), media_type=CONTENT_TYPE_LATEST)
