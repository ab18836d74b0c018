"""Turning an item's typed inputs into plain values: only typed references read the CAS.

A literal is handed over as it is, whatever its shape: ``{"blob": digest}`` inside a
literal is data, never a reference. A blob input is the JSON (or text) of one blob: an
uploaded dataset, another node's whole output, or one element of a split node's output.
A manifest input (a split node's output) becomes the list of the values of the blobs it
names. The control plane typed those inputs after checking, against the requester's
rights, every digest they make this worker read; this module must never read a digest
that is not typed as a reference, nor follow a manifest found inside a plain blob.

Every read is verified by the blob store; a missing or corrupt blob is an error for the
item that needed it, never a value. That error reaches the tenant's lineage, so it names
the digest and never the blob store's location (a server directory, a bucket).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol, assert_never

from flowmesh_core.errors import BlobNotFoundError, InvalidInputError
from flowmesh_core.manifest import read_manifest
from flowmesh_core.models import ItemBlob, ItemInput, ItemLiteral, ItemManifest

__all__ = ["ByteSource", "resolve_inputs"]


class ByteSource(Protocol):
    """Where referenced bytes come from: the blob store, or ``flowmesh_core.results.
    Prefetched`` (small results fetched from Redis ahead, then the blob store)."""

    def get_bytes(self, digest: str) -> bytes: ...


def resolve_inputs(inputs: Mapping[str, ItemInput], blobs: ByteSource) -> dict[str, Any]:
    """Each input as a plain JSON value (raises FlowMeshError for a blob it cannot use)."""
    return {name: _resolve(name, value, blobs) for name, value in inputs.items()}


def _resolve(name: str, value: ItemInput, blobs: ByteSource) -> Any:
    if isinstance(value, ItemLiteral):
        return value.value
    if isinstance(value, ItemBlob):
        return _load(name, value.digest, blobs)
    if isinstance(value, ItemManifest):
        try:
            digests = read_manifest(_bytes(name, value.digest, blobs))
        except InvalidInputError as exc:
            raise InvalidInputError(f"input {name!r}: blob {value.digest}: {exc}") from exc
        return [_load(name, digest, blobs) for digest in digests]
    assert_never(value)  # an untyped value is a bug upstream: fail, never guess a reference


def _bytes(name: str, digest: str, blobs: ByteSource) -> bytes:
    try:
        return blobs.get_bytes(digest)
    except BlobNotFoundError:
        raise BlobNotFoundError(f"input {name!r}: blob {digest} is not in the CAS") from None


def _load(name: str, digest: str, blobs: ByteSource) -> Any:
    raw = _bytes(name, digest, blobs)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        pass
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"input {name!r}: blob {digest} is neither JSON nor UTF-8 text; executors take "
            "JSON values (a list of texts, records, ...)"
        ) from None
