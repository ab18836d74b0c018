"""``flowmesh up --demo``: the demo's workload submitted to the cluster ``up`` started.

Three tenants (the demo's teams, docs/ui.md) each submit the demo's five-node workflow
over overlapping windows of the shipped prompts, through the HTTP API like any client,
so the dashboard at ``/ui`` shows real work from several tenants while it runs: the
overlap executed once, batches shared, each team seeing only its own workflow. Each
team's token is kept in the state directory like the local tenant's, and its submission
carries an idempotency key, so a second ``up --demo`` re-attaches instead of piling up.

This module must never create an admin tenant, nor submit anything but through the API.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from flowmesh_core.client import AsyncClient
from flowmesh_core.errors import ConflictError
from flowmesh_core.settings import Settings
from flowmesh_core.store import Store
from flowmesh_worker.cluster._state import ClusterState
from flowmesh_worker.cluster._up import UpOptions, tenant_token
from flowmesh_worker.demo.workload import plan_tenants, workflow_for

__all__ = ["DEMO_PROMPTS", "DemoRun", "submit_demo"]

DEMO_PROMPTS = 12
"""Records per team: half of them shared with the next team (demo/workload.py)."""


@dataclass(frozen=True)
class DemoRun:
    """One team's demo workflow on the cluster."""

    tenant: str
    token: str
    workflow_id: str
    replayed: bool


def submit_demo(settings: Settings, options: UpOptions, state: ClusterState) -> list[DemoRun]:
    """Create (or reuse) the demo's team tenants and submit each team's workflow.

    Raises ConflictError when a team tenant exists on this store but its token was not
    kept in this state directory (the error says what to do).
    """
    settings = settings.model_copy(update={"state_dir": options.state_dir.resolve()})
    return asyncio.run(_submit(settings, options, state))


async def _submit(settings: Settings, options: UpOptions, state: ClusterState) -> list[DemoRun]:
    store = Store.from_settings(settings)
    try:
        tokens: dict[str, str] = {}
        for plan in plan_tenants(DEMO_PROMPTS):
            token = await tenant_token(store, options, store.shown_url, name=plan.name, admin=False)
            if token is None:
                raise ConflictError(
                    f"tenant {plan.name!r} exists on this store, but its token is not kept "
                    f"in {options.state_dir}; `flowmesh tenant rotate {plan.name}` gives it "
                    "a new one, or start `up --demo` with another state directory"
                )
            tokens[plan.name] = token
    finally:
        await store.aclose()
    runs = []
    for plan in plan_tenants(DEMO_PROMPTS):
        async with AsyncClient(state.url, tokens[plan.name]) as client:
            result = await client.submit_workflow(
                workflow_for(plan), idempotency_key=f"flowmesh-up-demo-{plan.name}"
            )
        runs.append(DemoRun(plan.name, tokens[plan.name], result.workflow_id, result.replayed))
    return runs
