"""Item inputs as a worker receives them, and the blobs an operator's inputs make it read.

An item input says what it is, all the way from the API to the worker:

    {"kind": "literal", "value": ...}          # a JSON value, passed as it is
    {"kind": "blob", "digest": "sha256:..."}   # the JSON (or text) of one blob
    {"kind": "manifest", "digest": "sha256:..."}  # the list of the blobs a manifest names

A literal is never dereferenced, whatever its shape: ``{"blob": digest}`` inside a literal
is data. Only the control plane types an input as a blob or a manifest, and only after
checking every digest the worker will read against the requester's rights; this module
must never turn an untyped value into a blob or manifest input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import Field, JsonValue

from flowmesh_core.models._base import Digest, FrozenModel
from flowmesh_core.models.operator import BlobInput, LiteralInput, NodeRef

__all__ = ["ItemBlob", "ItemInput", "ItemLiteral", "ItemManifest", "referenced_blobs"]


class ItemLiteral(FrozenModel):
    """A JSON value given inline: the executor gets it unchanged, never read as a reference."""

    kind: Literal["literal"] = "literal"
    value: JsonValue


class ItemBlob(FrozenModel):
    """A blob in the CAS: the executor gets its JSON value (or its text).

    A blob that happens to hold a manifest is handed over as that document; it is followed
    only when the control plane typed the input as an ``ItemManifest``.
    """

    kind: Literal["blob"] = "blob"
    digest: Digest


class ItemManifest(FrozenModel):
    """A manifest blob (``flowmesh_core.manifest``): the executor gets the list of values of
    the blobs it names, in order. The control plane has read it and checked those digests.
    """

    kind: Literal["manifest"] = "manifest"
    digest: Digest


ItemInput = Annotated[ItemLiteral | ItemBlob | ItemManifest, Field(discriminator="kind")]
"""One input of an item, tagged by ``kind``: ``literal``, ``blob`` or ``manifest``."""


def referenced_blobs(inputs: Mapping[str, LiteralInput | BlobInput | NodeRef]) -> frozenset[str]:
    """Every digest that an operator's or workflow node's inputs name for a worker to read.

    Only ``{blob: digest}`` inputs count: a literal is never dereferenced, and a ``{ref}``
    is the requester's own node output. A blob that turns out to hold a manifest names
    more digests; expansion lists those (``Expansion.manifest_digests``), since only
    reading the blob tells.
    """
    return frozenset(inp.blob for inp in inputs.values() if isinstance(inp, BlobInput))
