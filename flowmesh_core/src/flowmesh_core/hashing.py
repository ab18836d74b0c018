"""Content addresses: digest strings, canonical JSON, and hashing of values.

A digest is ``sha256:`` followed by 64 lowercase hex digits: the sha256 of a blob's
bytes. A JSON value is addressed by the digest of its canonical form (sorted keys, no
insignificant whitespace, UTF-8, no NaN), so a literal inlined in a workflow and the
same value stored as a blob by a worker have one address.

This module must never accept a digest it has not validated: digests become file paths
and S3 keys, so a loose check here is a path-traversal hole elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from flowmesh_core.errors import InvalidDigestError, InvalidInputError

__all__ = [
    "DIGEST_PREFIX",
    "canonical_json",
    "digest_bytes",
    "digest_value",
    "hex_of",
    "validate_digest",
]

DIGEST_PREFIX = "sha256:"
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


def validate_digest(value: object) -> str:
    """Return ``value`` if it is a well-formed digest; raise InvalidDigestError otherwise."""
    if isinstance(value, str) and _DIGEST_RE.fullmatch(value):
        return value
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    raise InvalidDigestError(
        f"malformed digest {shown}: expected 'sha256:' followed by 64 lowercase hex digits "
        "(as printed by `flowmesh cas put`)"
    )


def hex_of(digest: str) -> str:
    """The 64 hex digits of a validated digest (for paths and object keys)."""
    return validate_digest(digest)[len(DIGEST_PREFIX) :]


def digest_bytes(data: bytes) -> str:
    """The digest of ``data``."""
    return DIGEST_PREFIX + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of a JSON value: sorted keys, compact, UTF-8, finite numbers.

    Raises InvalidInputError for values JSON cannot carry exactly (NaN, infinities,
    non-string keys, objects that are not JSON types), naming what was wrong.
    """
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"value is not valid Unicode text: a lone surrogate at position {exc.start}"
        ) from exc
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"value is not plain JSON: {exc}") from exc


def digest_value(value: Any) -> str:
    """The digest of a JSON value's canonical form."""
    return digest_bytes(canonical_json(value))
