"""Dagster integration for FlowMesh: a resource that runs FlowMesh work, an IO manager.

``FlowMeshResource`` submits operators and workflows from assets and ops (re-attaching
on step retries), waits, and returns a ``FlowMeshResult``: the value loaded from the
CAS, with FlowMesh's lineage, dedup status and cost as Dagster metadata.
``FlowMeshIOManager`` stores asset values in FlowMesh's CAS and reports their content
digest as the data version, so Dagster's staleness follows content. ``CASRef`` is an
input annotation that hands over a stored asset by digest instead of loading it.
"""

from flowmesh_dagster._values import CASRef
from flowmesh_dagster.io_manager import FlowMeshIOManager
from flowmesh_dagster.resource import FlowMeshResource
from flowmesh_dagster.results import FlowMeshResult, FlowMeshSubmission

__all__ = [
    "CASRef",
    "FlowMeshIOManager",
    "FlowMeshResource",
    "FlowMeshResult",
    "FlowMeshSubmission",
]
__version__ = "0.1.0"
