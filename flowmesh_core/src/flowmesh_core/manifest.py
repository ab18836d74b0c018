"""Manifests: the result of a split node, the list of its items' result digests.

A manifest is the canonical JSON of ``{"manifest": [digest, ...]}``, in item order. The
control plane writes one when a split node finishes; a later split node splits it back
into the same items, and readers (the worker, the adapters, the CLI) gather the items'
values into one list.

This module only writes and recognises the format. It must never read a digest a
manifest lists: following a manifest is a read of every blob it names, which the caller
must have checked against the requester's rights first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from flowmesh_core.errors import InvalidInputError
from flowmesh_core.hashing import canonical_json, validate_digest

__all__ = ["build_manifest", "is_manifest", "parse_manifest", "read_manifest"]

_FIELD = "manifest"


def build_manifest(digests: Iterable[str]) -> bytes:
    """The bytes of the manifest listing ``digests`` (InvalidDigestError for a bad one).

    Canonical JSON, so the same items in the same order always give the same digest.
    """
    return canonical_json({_FIELD: [validate_digest(d) for d in digests]})


def parse_manifest(value: Any) -> list[str] | None:
    """The digests ``value`` (a decoded JSON value) lists if it is a manifest, else None.

    A manifest is a mapping whose only key is ``manifest``, holding a list of strings;
    anything else is an ordinary value. A manifest that lists a malformed digest raises
    InvalidDigestError rather than passing for a value.
    """
    if not (isinstance(value, dict) and set(value) == {_FIELD}):
        return None
    digests = value[_FIELD]
    if not isinstance(digests, list) or not all(isinstance(d, str) for d in digests):
        return None
    return [validate_digest(d) for d in digests]


def is_manifest(value: Any) -> bool:
    """Whether ``value`` (a decoded JSON value) is a manifest."""
    return parse_manifest(value) is not None


def read_manifest(data: bytes) -> list[str]:
    """The digests listed by manifest bytes; InvalidInputError if they are not a manifest."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"not a manifest: the blob is not JSON ({exc})") from exc
    digests = parse_manifest(value)
    if digests is None:
        raise InvalidInputError(
            'not a manifest: expected {"manifest": [digest, ...]}, the result of a split node'
        )
    return digests
