"""Prefect 3 integration for FlowMesh: a task decorator and a credentials block.

    from flowmesh_prefect import flowmesh_task

    @flowmesh_task(kind="embed", model="all-MiniLM-L6-v2")
    def embed(texts: list[str]) -> list[list[float]]:
        '''Embeddings of ``texts``, computed (or found) on FlowMesh.'''
        return computed_on_flowmesh()

See docs/prefect.md for configuration, what shows in the Prefect UI, and the limits.
"""

from flowmesh_prefect._cache import TenantCachePolicy
from flowmesh_prefect.credentials import FlowMeshCredentials
from flowmesh_prefect.errors import OperatorFailedError, OperatorTimeoutError
from flowmesh_prefect.results import FlowMeshRef
from flowmesh_prefect.tasks import FlowMeshTask, computed_on_flowmesh, flowmesh_task
from flowmesh_prefect.workflows import workflow_task

__all__ = [
    "FlowMeshCredentials",
    "FlowMeshRef",
    "FlowMeshTask",
    "OperatorFailedError",
    "OperatorTimeoutError",
    "TenantCachePolicy",
    "computed_on_flowmesh",
    "flowmesh_task",
    "workflow_task",
]
__version__ = "0.1.0"
