"""``FlowMeshIOManager``: asset values in FlowMesh's CAS, their digest as the data version.

Storing writes the value's bytes (canonical JSON, or raw bytes) to the blob store under
their sha256 digest, records the digest in the materialization's metadata and reports
it as the asset's data version: equal content, equal version, whatever run made it, so
Dagster's staleness follows content. Loading finds the digest in the latest
materialization of the upstream asset (partition) in the Dagster instance and reads the
blob back verified; an input annotated ``CASRef`` gets the reference, not the bytes.

It writes through the blob store directly (``flowmesh_core.blobs``, the client-side CAS
library, configured by ``blob_url``): the HTTP API has no upload endpoint. Blobs it
writes are uploaded data to FlowMesh, usable as ``{"blob": digest}`` operator inputs
when ``blob_url`` is the cluster's own store.

This module must never hand out bytes the store has not verified, and never pickle.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from flowmesh_core.blobs import BlobStore, open_blob_store
from flowmesh_core.errors import InvalidInputError, NotFoundError
from flowmesh_core.settings import load_settings
from flowmesh_dagster._values import CASRef, Encoding, decode, encode

__all__ = ["DIGEST_KEY", "ENCODING_KEY", "SIZE_KEY", "FlowMeshIOManager"]

DIGEST_KEY = "flowmesh/digest"
SIZE_KEY = "flowmesh/size"
ENCODING_KEY = "flowmesh/encoding"


class FlowMeshIOManager(dg.ConfigurableIOManager):
    """Store asset outputs in FlowMesh's CAS; their content digest is their data version.

    ``blob_url`` defaults to FlowMesh's setting (FLOWMESH_BLOB_URL, flowmesh.toml). Point
    it at the cluster's blob store so that stored assets can feed FlowMesh operators by
    digest. Assets only (an op's output has no asset key to find it by again).
    """

    blob_url: str | None = Field(
        default=None,
        description="file:///path or s3://bucket/prefix: FlowMesh's blob store "
        "(default: FLOWMESH_BLOB_URL or flowmesh.toml).",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 API endpoint for s3:// blob URLs (MinIO, ...)."
    )
    s3_region: str | None = Field(default=None, description="S3 region for s3:// blob URLs.")

    _store: BlobStore | None = PrivateAttr(default=None)

    def _blobs(self) -> BlobStore:
        if self._store is None:
            if self.blob_url is None:
                fm = load_settings()
                url, endpoint, region = fm.blob_url, fm.s3_endpoint_url, fm.s3_region
            else:
                url, endpoint, region = self.blob_url, self.s3_endpoint_url, self.s3_region
            self._store = open_blob_store(url, s3_endpoint_url=endpoint, s3_region=region)
        return self._store

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        """Store ``obj`` and make its digest the materialization's data version."""
        key = _asset_key(context)
        if context.has_asset_partitions and len(context.asset_partition_keys) > 1:
            raise InvalidInputError(
                f"asset {key.to_user_string()}: FlowMeshIOManager stores one partition per "
                f"output, not {len(context.asset_partition_keys)}; run one partition per run"
            )
        data, encoding = encode(obj)
        put = self._blobs().put_bytes(data)
        context.add_output_metadata(
            {
                DIGEST_KEY: dg.MetadataValue.text(put.digest),
                SIZE_KEY: dg.MetadataValue.int(put.size),
                ENCODING_KEY: dg.MetadataValue.text(encoding.value),
            }
        )
        _report_data_version(key, put.digest)
        context.log.debug(
            f"{key.to_user_string()} stored in {self._blobs().url} as {put.digest} "
            f"({put.size:,} bytes, {'new' if put.created else 'already there'})"
        )

    def load_input(self, context: dg.InputContext) -> Any:
        """The upstream asset's stored value (a dict by partition for several partitions).

        An input annotated ``CASRef`` gets ``CASRef(digest, size)`` and no bytes are read.
        """
        key = _asset_key(context)
        partitions: list[str | None] = (
            list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        )
        wants_ref = context.dagster_type.typing_type is CASRef
        values = {
            partition: self._load(context.instance, key, partition, wants_ref)
            for partition in partitions
        }
        if len(values) == 1:
            return next(iter(values.values()))
        return values

    def _load(
        self, instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None, ref: bool
    ) -> Any:
        digest, size, encoding = _stored(instance, key, partition)
        if ref:
            return CASRef(digest, size)
        return decode(self._blobs().get_bytes(digest), encoding)


def _asset_key(context: dg.OutputContext | dg.InputContext) -> dg.AssetKey:
    if not context.has_asset_key:
        raise InvalidInputError(
            "FlowMeshIOManager stores asset values only (an op's output has no asset key to "
            "find it by again); give this op another io_manager_key"
        )
    return context.asset_key


def _report_data_version(key: dg.AssetKey, digest: str) -> None:
    """Make ``digest`` the data version Dagster records for this materialization.

    Dagster has no IO manager API for it (dagster-io/dagster#15584). The step's own
    context has ``set_data_version``, for code that cannot return an Output carrying one;
    the step applies it after ``handle_output`` unless the Output names a version itself.
    Outside a step (``handle_output`` called by hand) there is nothing to report to.
    """
    try:
        context = dg.OpExecutionContext.get()
    except dg.DagsterInvariantViolationError:
        return
    context.set_data_version(key, dg.DataVersion(digest))


def _stored(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None
) -> tuple[str, int | None, Encoding]:
    """Digest, size and encoding recorded by the latest materialization of ``key``."""
    where = key.to_user_string() + (f" (partition {partition!r})" if partition else "")
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None),
        limit=1,
    ).records
    if not records or records[0].asset_materialization is None:
        raise NotFoundError(f"asset {where} has not been materialized yet: materialize it first")
    metadata = records[0].asset_materialization.metadata
    digest = metadata.get(DIGEST_KEY)
    if not isinstance(digest, dg.TextMetadataValue) or not digest.value:
        raise NotFoundError(
            f"the latest materialization of asset {where} has no {DIGEST_KEY}: it was not "
            "stored by FlowMeshIOManager; re-materialize it with this IO manager"
        )
    size = metadata.get(SIZE_KEY)
    encoding = metadata.get(ENCODING_KEY)
    return (
        digest.value,
        size.value if isinstance(size, dg.IntMetadataValue) else None,
        Encoding(encoding.value) if isinstance(encoding, dg.TextMetadataValue) else Encoding.JSON,
    )
