"""``FlowMeshIOManager``: asset values in FlowMesh's CAS, their digest as the data version.

Storing uploads the value's bytes (canonical JSON, or raw bytes) through FlowMesh's API
(``PUT /v1/blobs/{digest}``, ``Client.put_blob``) as the configured tenant, records the
digest in the materialization's metadata and reports it as the asset's data version:
equal content, equal version, whatever run made it, so Dagster's staleness follows
content. Loading finds the digest in the latest materialization of the upstream asset
(partition) in the Dagster instance and downloads the blob, verified; an input annotated
``CASRef`` gets the reference, not the bytes.

The tenant that uploads becomes an owner of the blob, so its operators can take the
asset as a ``{"blob": digest}`` input; no other tenant can read it (docs/isolation.md).

This module must never open the blob store or Redis itself (the client speaks HTTP),
never hand out bytes the client has not verified, and never pickle.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field

from flowmesh_core.client import Client
from flowmesh_core.errors import InvalidInputError, NotFoundError
from flowmesh_dagster._values import CASRef, Encoding, decode, encode

__all__ = ["DIGEST_KEY", "ENCODING_KEY", "SIZE_KEY", "FlowMeshIOManager"]

DIGEST_KEY = "flowmesh/digest"
SIZE_KEY = "flowmesh/size"
ENCODING_KEY = "flowmesh/encoding"

_MEDIA_TYPES = {Encoding.JSON: "application/json", Encoding.BYTES: "application/octet-stream"}


class FlowMeshIOManager(dg.ConfigurableIOManager):
    """Store asset outputs in FlowMesh's CAS; their content digest is their data version.

    ``server_url`` and ``token`` default to FlowMesh's own settings (FLOWMESH_SERVER_URL,
    FLOWMESH_TOKEN, flowmesh.toml); use the same tenant as ``FlowMeshResource`` so that
    stored assets can feed that tenant's operators by digest. Assets only (an op's output
    has no asset key to find it by again).
    """

    server_url: str | None = Field(
        default=None,
        description="The FlowMesh control plane, e.g. http://127.0.0.1:8470 "
        "(default: FLOWMESH_SERVER_URL or flowmesh.toml).",
    )
    token: str | None = Field(
        default=None,
        repr=False,
        description="The tenant's token, which owns what is stored; use "
        "EnvVar('FLOWMESH_TOKEN') so the UI never shows it (default: FLOWMESH_TOKEN).",
    )
    request_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="Longest wait for one upload or download step, in seconds.",
    )

    def _client(self) -> Client:
        return Client(self.server_url, self.token, timeout=self.request_timeout_s)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        """Store ``obj`` and make its digest the materialization's data version."""
        key = _asset_key(context)
        if context.has_asset_partitions and len(context.asset_partition_keys) > 1:
            raise InvalidInputError(
                f"asset {key.to_user_string()}: FlowMeshIOManager stores one partition per "
                f"output, not {len(context.asset_partition_keys)}; run one partition per run"
            )
        data, encoding = encode(obj)
        with self._client() as client:
            digest = client.put_blob(data, media_type=_MEDIA_TYPES[encoding])
            url = client.url
        context.add_output_metadata(
            {
                DIGEST_KEY: dg.MetadataValue.text(digest),
                SIZE_KEY: dg.MetadataValue.int(len(data)),
                ENCODING_KEY: dg.MetadataValue.text(encoding.value),
            }
        )
        _report_data_version(key, digest)
        context.log.debug(
            f"{key.to_user_string()} uploaded to {url} as {digest} ({len(data):,} bytes)"
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
        with self._client() as client:
            values = {
                partition: _load(client, context.instance, key, partition, wants_ref)
                for partition in partitions
            }
        if len(values) == 1:
            return next(iter(values.values()))
        return values


def _load(
    client: Client,
    instance: dg.DagsterInstance,
    key: dg.AssetKey,
    partition: str | None,
    ref: bool,
) -> Any:
    digest, size, encoding = _stored(instance, key, partition)
    if ref:
        return CASRef(digest, size)
    return decode(client.get_blob(digest), encoding)


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
