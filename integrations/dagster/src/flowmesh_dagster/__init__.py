"""Dagster integration for FlowMesh: a resource that runs FlowMesh work, an IO manager.

``FlowMeshResource`` submits operators and workflows from assets and ops (re-attaching
on step retries), waits, and returns a ``FlowMeshResult``: the value loaded from the
CAS, with FlowMesh's lineage, dedup status and cost as Dagster metadata.
``FlowMeshIOManager`` stores asset values in FlowMesh's CAS and reports their content
digest as the data version, so Dagster's staleness follows content. ``CASRef`` is an
input annotation that hands over a stored asset by digest instead of loading it.
``code_version`` derives an asset's code version from its operator (kind, version, model,
params); ``digest_check`` is an asset check that the stored result verifies. Every FlowMesh
error a step meets surfaces as ``dagster.Failure`` with FlowMesh's message.
"""

from flowmesh_dagster._values import CASRef
from flowmesh_dagster.io_manager import FlowMeshIOManager
from flowmesh_dagster.resource import FlowMeshResource
from flowmesh_dagster.results import FlowMeshResult, FlowMeshSubmission
from flowmesh_dagster.versions import code_version, digest_check

__all__ = [
    "CASRef",
    "FlowMeshIOManager",
    "FlowMeshResource",
    "FlowMeshResult",
    "FlowMeshSubmission",
    "code_version",
    "digest_check",
]
__version__ = "0.1.0"
