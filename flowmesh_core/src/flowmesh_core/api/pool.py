"""Routes for the fabric's shared work as a tenant may see it: the ready pool and a batch.

``GET /v1/pool`` is scoped like ``/v1/stats``: an admin sees every tenant's share of each
group, any other tenant its own share only. ``GET /v1/batches/{batch_id}`` shows which
items shared a batch, on which worker, and the utility terms of the decision; a tenant
sees only its own items in it. The scoping is the control plane's (``control/views.py``);
this module only authenticates and answers.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from flowmesh_core.api.deps import CurrentTenant, State
from flowmesh_core.api.errors import error_responses as _errors
from flowmesh_core.models.api import BatchReport, PoolReport

__all__ = ["router"]


router = APIRouter(prefix="/v1", responses=_errors(400, 401, 500, 503))

BatchId = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9_.-]{1,128}$",
        description="A batch id, as a lineage record's `batch_id` names it.",
    ),
]


@router.get("/pool", response_model=PoolReport, summary="The ready pool by batch signature")
async def ready_pool(tenant: CurrentTenant, state: State) -> PoolReport:
    """Items waiting to be batched, by batch signature: size, oldest wait, tenants' shares.

    An admin sees every group and every tenant's share. A tenant sees the groups it has
    items in, with its own share only; under the ``tenant`` dedup domain the groups'
    sizes (which count other tenants' items) are left out too.
    """
    return await state.control.views.pool(tenant)


@router.get(
    "/batches/{batch_id}",
    response_model=BatchReport,
    responses=_errors(404),
    summary="One batch: its items, its worker, and why that worker",
)
async def batch(batch_id: BatchId, tenant: CurrentTenant, state: State) -> BatchReport:
    """Which items shared the batch, on which worker, and the utility terms of the
    decision. A tenant sees its own items only, and a batch that ran none of them is
    reported as not found. Batches are kept for a week after they were assigned."""
    return await state.control.views.batch(tenant, batch_id)
