"""Reading a submitted document (an operator or a workflow) from a request body.

The body is JSON (``application/json``) or YAML (``application/yaml``, ``text/yaml``,
``application/x-yaml``). JSON is parsed as JSON, not as YAML: PyYAML reads YAML 1.1, in
which ``1e5`` is a string and a tab cannot indent, so a valid JSON body could otherwise
be refused or, worse, change meaning.

This module must never hold more than ``max_body_bytes`` of a body in memory (the
declared ``Content-Length`` is checked first, and a chunked body is counted as it
arrives), never parse on the event loop (a large YAML document takes seconds), and never
let YAML aliases expand a small body into a document larger than the limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request

from flowmesh_core.api.errors import UnsupportedMediaTypeError
from flowmesh_core.errors import InputTooLargeError, InvalidInputError
from flowmesh_core.models.bounds import check_yaml, loads_json
from flowmesh_core.models.parse import parse_document

__all__ = ["ACCEPTED_TYPES", "read_model"]

ACCEPTED_TYPES: dict[str, str] = {
    "application/json": "json",
    "application/yaml": "yaml",
    "text/yaml": "yaml",
    "application/x-yaml": "yaml",
}

M = TypeVar("M")


async def read_model(request: Request, limit: int, build: Callable[[Any], M]) -> M:
    """The body parsed and handed to ``build`` (``parse_workflow``...), off the event loop.

    Raises UnsupportedMediaTypeError (415), InputTooLargeError (413) before the body is
    read whole, and InvalidInputError (400) for a body that does not parse.
    """
    fmt = _format_of(request.headers.get("content-type"))
    raw = await _read_limited(request, limit)
    return await asyncio.to_thread(_parse_and_build, raw, fmt, limit, build)


def _format_of(content_type: str | None) -> str:
    accepted = ", ".join(ACCEPTED_TYPES)
    if not content_type:
        raise UnsupportedMediaTypeError(f"missing Content-Type: send one of {accepted}")
    media = content_type.split(";", 1)[0].strip().lower()
    fmt = ACCEPTED_TYPES.get(media)
    if fmt is None:
        raise UnsupportedMediaTypeError(
            f"Content-Type {media!r} is not accepted: send one of {accepted}"
        )
    return fmt


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise InvalidInputError(f"Content-Length {declared!r} is not a number of bytes")
        if int(declared) > limit:
            raise _too_large(limit, f" of {int(declared)} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit, "")
    return bytes(body)


def _too_large(limit: int, size: str) -> InputTooLargeError:
    return InputTooLargeError(
        f"request body{size} is over the limit of {limit} bytes (max_body_bytes): put large "
        "inputs into the CAS (`flowmesh cas put`) and refer to them as {blob: sha256:...}"
    )


def _parse_and_build(raw: bytes, fmt: str, limit: int, build: Callable[[Any], M]) -> M:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"body: not UTF-8 text (byte {exc.start}): {exc.reason}") from exc
    if not text.strip():
        raise InvalidInputError("empty body: send the document as JSON or YAML")
    try:
        if fmt == "json":
            data = loads_json(text, source="body")
        else:
            check_yaml(text, "body", limit)
            data = parse_document(text, source="body")
        _check_expanded_size(data, limit)
        return build(data)
    except RecursionError as exc:
        raise InvalidInputError("body: the document is nested too deeply") from exc


def _check_expanded_size(data: Any, limit: int) -> None:
    """Refuse a document with more values than its body had bytes (YAML aliases)."""
    count = 0
    stack = [data]
    while stack:
        value = stack.pop()
        count += 1
        if count > limit:
            raise InputTooLargeError(
                f"body: the document expands to more than {limit} values (YAML anchors and "
                "aliases repeat whole subtrees); write the repeated parts out or use the CAS"
            )
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


IDEMPOTENCY_HEADER = "Idempotency-Key"


def idempotency_key(request: Request) -> str | None:
    """The submission's ``Idempotency-Key`` header (1-256 printable ASCII), if any.

    Raises InvalidInputError (400) for a malformed key.
    """
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 256 or not key.isprintable() or not key.isascii():
        raise InvalidInputError(
            f"the {IDEMPOTENCY_HEADER} header must be 1-256 printable ASCII characters "
            "(a retried task sends the same key to get the same submission back)"
        )
    return key
