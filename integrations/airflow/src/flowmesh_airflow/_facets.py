"""The ``flowmesh`` OpenLineage run facet (imported only when the OpenLineage provider is).

Field names follow OpenLineage's camelCase, as the spec's own facets do.
"""

from __future__ import annotations

import attrs
from openlineage.client.facet_v2 import RunFacet

__all__ = ["FlowMeshRunFacet"]

SCHEMA_URL = "https://flowmesh.dev/spec/facets/1-0-0/FlowMeshRunFacet.json"


@attrs.define
class FlowMeshRunFacet(RunFacet):
    """How FlowMesh satisfied a task's work: its workflow and node, the result's digest
    and op key, ``satisfiedBy`` (executed / cache_hit / joined / mixed), the item counts
    per way, and the workflow's dashboard page (docs/airflow.md, "Lineage")."""

    workflowId: str
    node: str
    opKey: str | None
    resultDigest: str | None
    satisfiedBy: str | None
    items: dict[str, int]
    url: str

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_URL
