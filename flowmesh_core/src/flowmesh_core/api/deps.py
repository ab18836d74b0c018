"""What every route depends on: the app's state and the calling tenant.

Authentication is the control plane's (``ControlPlane.authenticate``); this module only
hands it the ``Authorization`` header. The ``HTTPBearer`` scheme is declared so that the
OpenAPI document says how to authenticate; it never rejects a request by itself, so a
missing or wrong token gets the FlowMesh error shape with ``WWW-Authenticate: Bearer``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from flowmesh_core.api.draining import Drain
from flowmesh_core.api.metrics import ApiMetrics
from flowmesh_core.control import ControlPlane, Tenant

__all__ = ["ApiState", "CurrentTenant", "State", "api_state", "current_tenant"]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="tenant token",
    description="A tenant's token, from `flowmesh tenant create NAME`.",
)


@dataclass
class ApiState:
    """One app's control plane, metrics, the background loops it runs (if any), and the
    drain that ends its long polls on shutdown."""

    control: ControlPlane
    metrics: ApiMetrics
    run_scheduler: bool
    background: asyncio.Task[None] | None = None
    drain: Drain = field(default_factory=Drain)


def api_state(request: Request) -> ApiState:
    """The state ``create_app`` attached to the app."""
    state: ApiState = request.app.state.flowmesh
    return state


async def current_tenant(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Tenant:
    """The tenant whose bearer token the request carries (AuthenticationError: 401)."""
    control = api_state(request).control
    return await control.authenticate(request.headers.get("authorization"))


CurrentTenant = Annotated[Tenant, Depends(current_tenant)]
State = Annotated[ApiState, Depends(api_state)]
