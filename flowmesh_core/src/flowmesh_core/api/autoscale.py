"""``/v1/autoscale``: the autoscaler's recommendation for KEDA and Prometheus.

``GET /v1/autoscale`` answers JSON in the shape KEDA's ``metrics-api`` scaler reads
(``valueLocation: pools.NAME.desired``, ``targetValue: 1``); ``GET /v1/autoscale/metrics``
answers the same as Prometheus gauges. Both need an admin token (KEDA sends it with a
TriggerAuthentication, ``authModes: bearer``): a pool's backlog is a cluster-wide view.
The decision is ``flowmesh_core.autoscale`` (docs/autoscaling.md); this module only reads
and renders it, and never changes the fleet.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from flowmesh_core.api.deps import CurrentTenant, State
from flowmesh_core.autoscale.observe import Recommendation, observe_and_recommend
from flowmesh_core.errors import PermissionDeniedError

__all__ = ["router"]

router = APIRouter(prefix="/v1")


async def _recommend(tenant: CurrentTenant, state: State) -> Recommendation:
    if not tenant.admin:
        raise PermissionDeniedError(
            "the autoscaler's view is cluster-wide: use an admin token "
            "(`flowmesh tenant create NAME --admin`)"
        )
    control = state.control
    return await observe_and_recommend(
        control.store, control.settings, time.time(), control.registry
    )


@router.get("/autoscale", summary="Replicas each worker pool should have (admin)")
async def autoscale(tenant: CurrentTenant, state: State) -> dict[str, Any]:
    """Each pool's desired replicas and why, for KEDA's metrics-api scaler."""
    return (await _recommend(tenant, state)).to_json()


@router.get("/autoscale/metrics", summary="The recommendation as Prometheus gauges (admin)")
async def autoscale_metrics(tenant: CurrentTenant, state: State) -> Response:
    """``flowmesh_pool_*`` gauges, one series per pool declared in settings."""
    rec = await _recommend(tenant, state)
    registry = CollectorRegistry(auto_describe=True)
    gauges = {
        "desired": Gauge(
            "flowmesh_pool_desired_replicas",
            "Replicas the autoscaler wants.",
            ["pool"],
            registry=registry,
        ),
        "replicas": Gauge(
            "flowmesh_pool_replicas", "Live registered replicas.", ["pool"], registry=registry
        ),
        "idle": Gauge(
            "flowmesh_pool_idle_replicas", "Replicas with no batch.", ["pool"], registry=registry
        ),
        "backlog": Gauge(
            "flowmesh_pool_backlog_seconds",
            "Waiting work placed on the pool, in seconds of its accelerator.",
            ["pool"],
            registry=registry,
        ),
        "ahead": Gauge(
            "flowmesh_pool_ahead_seconds",
            "The next wave placed on the pool (work running workflows reach next), in "
            "seconds of its accelerator.",
            ["pool"],
            registry=registry,
        ),
    }
    for name, d in rec.decisions.items():
        view = rec.views[name]
        gauges["desired"].labels(name).set(d.desired)
        gauges["replicas"].labels(name).set(view.replicas)
        gauges["idle"].labels(name).set(view.idle)
        gauges["backlog"].labels(name).set(view.backlog_s)
        gauges["ahead"].labels(name).set(view.ahead_s)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
