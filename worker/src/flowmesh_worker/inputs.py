"""Turning an item's inputs into plain values: blob references are read from the CAS.

An input ``{"blob": digest}`` is a JSON blob: an uploaded dataset, another node's whole
output, or one element of a split node's output. A blob holding a manifest
(``{"manifest": [digest, ...]}``, a split node's output) becomes the list of its
elements. Every read is verified by the blob store; a missing or corrupt blob is an error
for the item that needed it, never a value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flowmesh_core.blobs import BlobStore
from flowmesh_core.errors import InvalidInputError

__all__ = ["resolve_inputs"]


def resolve_inputs(inputs: Mapping[str, Any], blobs: BlobStore) -> dict[str, Any]:
    """Each input as a plain JSON value (raises FlowMeshError for a blob it cannot use)."""
    return {name: _resolve(name, value, blobs) for name, value in inputs.items()}


def _resolve(name: str, value: Any, blobs: BlobStore) -> Any:
    if not (isinstance(value, dict) and set(value) == {"blob"}):
        return value
    document = _load(name, value["blob"], blobs)
    if isinstance(document, dict) and set(document) == {"manifest"}:
        return [_load(name, digest, blobs) for digest in document["manifest"]]
    return document


def _load(name: str, digest: str, blobs: BlobStore) -> Any:
    raw = blobs.get_bytes(digest)
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
