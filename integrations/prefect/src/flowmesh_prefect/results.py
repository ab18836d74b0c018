"""What a FlowMesh task returns: the result loaded from the CAS, or a small reference to it.

``FlowMeshRef`` is the reference (``returns="reference"``): the result's digest, the op
key, the workflow id and how the work was satisfied. Passed as an argument to another
FlowMesh task it becomes a ``{blob: digest}`` input, so a chain of tasks moves digests,
not data. ``load_value`` / ``aload_value`` read a result as the value mode returns it: a
list operator's manifest becomes the list of its items' results.

This module must never hand out bytes the client has not verified (it reads only through
``Client.result``, which checks every blob against its digest).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from flowmesh_core.client import AsyncClient, Client
from flowmesh_core.models import BlobInput, LineageRecord
from flowmesh_prefect.credentials import (
    CredentialsSource,
    aresolve_credentials,
    resolve_credentials,
)

__all__ = ["FlowMeshRef", "Satisfied", "aload_value", "load_value", "make_ref"]

Satisfied = Literal["executed", "cache_hit", "joined", "mixed"]
_WAYS: tuple[Satisfied, ...] = ("executed", "cache_hit", "joined")


class FlowMeshRef(BaseModel):
    """A FlowMesh result by reference, with how this request for it was satisfied.

    ``digest`` addresses the result in the CAS (for a list operator, a manifest of its
    items' digests). ``satisfied_by`` is ``executed`` (the work ran for this request),
    ``cache_hit`` (the action cache held it: no work), ``joined`` (it attached to the same
    work already in flight), or ``mixed`` when a list operator's items differ; the counts
    say how many items went each way. ``cost_usd`` is this request's attributed share.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    digest: str
    op_key: str
    workflow_id: str
    satisfied_by: Satisfied
    items: int
    executed: int = 0
    cache_hits: int = 0
    joined: int = 0
    cost_usd: float = 0.0

    def as_input(self) -> BlobInput:
        """This result as an operator input (``{blob: digest}``)."""
        return BlobInput(blob=self.digest)

    def load(self, credentials: CredentialsSource = None) -> Any:
        """This result as a value, read with ``credentials`` (a block, a block's name, or
        None for the FLOWMESH_* settings), exactly as a task in value mode returns it."""
        with resolve_credentials(credentials).get_client() as client:
            return load_value(client, self.digest)

    async def aload(self, credentials: CredentialsSource = None) -> Any:
        """Like ``load``, for async code."""
        async with (await aresolve_credentials(credentials)).get_async_client() as client:
            return await aload_value(client, self.digest)


def make_ref(status: Any, name: str | None = None) -> FlowMeshRef:
    """The reference for node ``name`` (default: the first) of a finished workflow (a
    ``WorkflowStatus`` with lineage)."""
    node = next(n for n in status.nodes if n.node == name) if name else status.nodes[0]
    lineage: list[LineageRecord] = node.lineage
    counts = Counter(str(record.satisfied_by) for record in lineage)
    ways = [way for way in _WAYS if counts[way]]
    satisfied: Satisfied = ways[0] if len(ways) == 1 else "mixed" if ways else "executed"
    return FlowMeshRef(
        digest=node.result_digest,
        op_key=node.op_key,
        workflow_id=status.workflow_id,
        satisfied_by=satisfied,
        items=len(lineage),
        executed=counts["executed"],
        cache_hits=counts["cache_hit"],
        joined=counts["joined"],
        cost_usd=sum(record.cost_usd for record in lineage),
    )


def load_value(client: Client, digest: str) -> Any:
    """The result at ``digest`` as a value (``Client.result_value``): decoded JSON, a
    manifest resolved to the list of its items' values."""
    return client.result_value(digest)


async def aload_value(client: AsyncClient, digest: str) -> Any:
    """Like ``load_value``, for async tasks."""
    return await client.result_value(digest)
