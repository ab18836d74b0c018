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
import inspect
import json
import re
import textwrap
from collections.abc import Callable
from typing import Any

from flowmesh_core.errors import InvalidDigestError, InvalidInputError, InvalidOperatorError

__all__ = [
    "DIGEST_PREFIX",
    "canonical_json",
    "digest_bytes",
    "digest_value",
    "function_version",
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


def function_version(fn: Callable[..., Any]) -> str:
    """The version of a ``python`` operator: a hash of its function's source text.

    ``"src-"`` and the first 16 hex digits of the sha256 of the UTF-8 bytes of
    ``textwrap.dedent(inspect.getsource(fn))``: the function's own lines as written,
    decorators included (a wrapper made with ``functools.wraps`` is followed to the
    function it wraps), common indentation removed, line endings as Python reads them
    (``\\n``). Comments and blank lines inside the function count. Only this text counts:
    a helper it calls, a constant it reads or a library it imports may change without
    changing the version. The client and the worker both call this, and a worker whose
    source differs refuses the work rather than file its result under the client's key.

    Raises InvalidOperatorError when there is no source to read (a built-in, or code typed
    into an interactive session).
    """
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError) as exc:
        name = getattr(fn, "__qualname__", repr(fn))
        raise InvalidOperatorError(
            f"cannot read the source of {name} ({exc}): a python operator needs a function "
            "defined in a module file that the workers can import"
        ) from exc
    text = textwrap.dedent(source).encode("utf-8")
    return "src-" + hashlib.sha256(text).hexdigest()[:16]
