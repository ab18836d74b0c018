"""Asset values as CAS bytes and back: one encoding shared by the resource and the IO manager.

A JSON value is stored as FlowMesh's canonical JSON (sorted keys, compact, UTF-8), the
very bytes a worker writes for a result, so a value loaded from FlowMesh and stored again
by the IO manager keeps its digest. ``bytes`` are stored as they are. The digest of these
bytes is the value's content digest, which the adapter reports as its data version.

This module must never pickle: what it stores can be read by any FlowMesh client.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from flowmesh_core.errors import InvalidInputError
from flowmesh_core.hashing import canonical_json, digest_bytes, validate_digest

__all__ = ["CASRef", "Encoding", "content_digest", "decode", "encode"]


class Encoding(StrEnum):
    """How a stored value's bytes are read back."""

    JSON = "json"  # canonical JSON; loaded with json.loads
    BYTES = "bytes"  # raw bytes; loaded as they are


@dataclass(frozen=True)
class CASRef:
    """A value in FlowMesh's CAS, by digest, without its bytes.

    Annotate an asset's input with ``CASRef`` and ``FlowMeshIOManager`` hands over the
    reference instead of loading the value; ``as_input()`` is then the operator input
    that lets FlowMesh read it where it lies (``{"blob": digest}``).
    """

    digest: str
    size: int | None = None

    def __post_init__(self) -> None:
        validate_digest(self.digest)

    def as_input(self) -> dict[str, str]:
        """The operator input naming this blob: ``{"blob": digest}``."""
        return {"blob": self.digest}


def encode(value: Any) -> tuple[bytes, Encoding]:
    """The stored bytes of ``value`` and their encoding; InvalidInputError if not JSON."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), Encoding.BYTES
    try:
        return canonical_json(value), Encoding.JSON
    except InvalidInputError as exc:
        raise InvalidInputError(
            f"FlowMesh stores JSON values (dict, list, str, number, bool, None) or bytes; "
            f"this {type(value).__name__} is neither ({exc}). Convert it before returning it, "
            "e.g. a DataFrame with .to_dict('records')"
        ) from exc


def decode(data: bytes, encoding: Encoding) -> Any:
    """The value that ``encode`` turned into ``data``."""
    if encoding is Encoding.BYTES:
        return data
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"a blob stored as JSON does not parse as JSON: {exc}") from exc


def content_digest(value: Any) -> str:
    """The digest of ``value``'s stored bytes: what the IO manager stores it under."""
    return digest_bytes(encode(value)[0])
