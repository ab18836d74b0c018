"""What ``FlowMeshResource`` hands back: a submission handle and a finished result.

Both carry their Dagster metadata ready to attach. A result turns into what an asset or
op returns: ``output()`` (the value goes to the IO manager, e.g. ``FlowMeshIOManager``)
or ``materialize_result()`` (the value stays in FlowMesh; the asset records where).
Either way its data version is the content digest of the value, so Dagster's staleness
follows what FlowMesh computed, not when it ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from flowmesh_core.models import LineageRecord
from flowmesh_dagster._values import CASRef

__all__ = ["FlowMeshResult", "FlowMeshSubmission"]


@dataclass(frozen=True)
class FlowMeshSubmission:
    """A submitted workflow, not waited for: pass it to ``FlowMeshResource.wait``.

    ``node`` is the node whose result ``wait`` returns (``op`` for a single operator);
    ``op_key`` is its key when known at submission (None while it waits for inputs).
    ``reattached`` is True when the idempotency key named an earlier submission (a step
    retry), so nothing new was created. ``idempotency_key`` is None for an asset or op
    invoked directly, outside a run.
    """

    workflow_id: str
    node: str
    op_key: str | None
    idempotency_key: str | None
    reattached: bool
    metadata: Mapping[str, dg.MetadataValue] = field(repr=False)

    def materialize_result(
        self, asset_key: dg.AssetKey | str | None = None
    ) -> dg.MaterializeResult[Any]:
        """A materialization that records the submission only (fire and forget)."""
        return dg.MaterializeResult(asset_key=asset_key, metadata=dict(self.metadata))


@dataclass(frozen=True)
class FlowMeshResult:
    """A finished FlowMesh workflow: the result node's value, its digests and lineage.

    ``value`` is the result loaded from the CAS and verified (a split node's items put
    back into one list). ``digest`` is the content digest of ``value``, the bytes
    ``FlowMeshIOManager`` stores it as, and the data version Dagster records.
    ``result_digest`` is FlowMesh's own result (for a split node, the manifest of item
    digests); ``ref`` names it as an input to later FlowMesh operators of this tenant.
    """

    workflow_id: str
    node: str
    op_key: str | None
    result_digest: str
    value: Any = field(repr=False)
    digest: str
    lineage: tuple[LineageRecord, ...] = field(repr=False)
    metadata: Mapping[str, dg.MetadataValue] = field(repr=False)

    @property
    def data_version(self) -> dg.DataVersion:
        """The content digest as a Dagster data version."""
        return dg.DataVersion(self.digest)

    @property
    def ref(self) -> CASRef:
        """FlowMesh's result blob, for ``{"blob": ...}`` inputs of this tenant's operators."""
        return CASRef(self.result_digest)

    def output(self, output_name: str = "result") -> dg.Output[Any]:
        """An Output with the value, the metadata and the data version (assets and ops)."""
        return dg.Output(
            self.value,
            output_name=output_name,
            metadata=dict(self.metadata),
            data_version=self.data_version,
        )

    def materialize_result(
        self, asset_key: dg.AssetKey | str | None = None
    ) -> dg.MaterializeResult[Any]:
        """A materialization with the metadata and data version, the value left in FlowMesh.

        No IO manager runs: the asset's data is FlowMesh's result, named by
        ``flowmesh/result_digest`` (``flowmesh cas get`` reads it back).
        """
        return dg.MaterializeResult(
            asset_key=asset_key, metadata=dict(self.metadata), data_version=self.data_version
        )
