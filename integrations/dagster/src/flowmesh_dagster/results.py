"""What ``FlowMeshResource`` hands back: a submission handle and a finished result.

Both carry their Dagster metadata ready to attach. A result turns into what an asset or
op returns: ``output()`` (the value goes to the IO manager, e.g. ``FlowMeshIOManager``)
or ``materialize_result()`` (the value stays in FlowMesh; the asset records where).
Either way its data version is the content digest of the value, so Dagster's staleness
follows what FlowMesh computed, not when it ran.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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
        with _data_version_is_intended():
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
        with _data_version_is_intended():
            return dg.MaterializeResult(
                asset_key=asset_key, metadata=dict(self.metadata), data_version=self.data_version
            )


@contextmanager
def _data_version_is_intended() -> Iterator[None]:
    """Silence exactly Dagster 1.13's beta notice for ``data_version=``, which it repeats
    at every output: the data version (the content digest) is how Dagster's staleness
    follows FlowMesh's content (docs/dagster.md), so the adapter passes it on purpose and
    a user should not see one warning per asset. Any other warning still shows."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"Parameter `data_version` of initializer `(Output|MaterializeResult)",
            category=dg.BetaWarning,
        )
        yield
