"""Blob uploads, downloads and grants for both clients: what to send, and how to read
the answers.

An upload needs its digest before the first byte is sent (it is in the URL), so a
source is read twice: once to hash it, once to send it. Bytes are hashed in memory; a
path or a seekable file is hashed and then re-read; any other file is spooled to a
temporary file while hashed (in memory up to 8 MiB). The body then streams, so a large
file is never held in memory whole.

This module must never do I/O on the network (the clients do) and never hand out bytes
it has not verified against their digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO

import httpx
from pydantic import TypeAdapter, ValidationError

from flowmesh_core.client._shared import Call, _json_parser, _not_flowmesh, _segment, _verified
from flowmesh_core.errors import InvalidInputError
from flowmesh_core.hashing import DIGEST_PREFIX, validate_digest
from flowmesh_core.models.api import BlobGrant, BlobGrants, BlobReceipt, TenantGrants

__all__ = [
    "BlobSource",
    "BlobSourceLike",
    "blob_call",
    "blob_grants_call",
    "grant_blob_call",
    "grants_made_call",
    "put_blob_call",
    "revoke_blob_grant_call",
]

BlobSourceLike = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO
"""What ``put_blob`` takes: bytes are the data; a str or path names a local file;
anything with ``read`` is a binary file object, read from where it stands."""

_CHUNK = 1 << 20
_SPOOL_MEMORY = 8 << 20
_RECEIPT = TypeAdapter(BlobReceipt)
_GRANT = _json_parser(TypeAdapter(BlobGrant), "BlobGrant")
_GRANTS = _json_parser(TypeAdapter(BlobGrants), "BlobGrants")
_MADE = _json_parser(TypeAdapter(TenantGrants), "TenantGrants")


class BlobSource:
    """A blob ready to upload: its digest and size, and its bytes to stream.

    Use as a context manager: a file opened or spooled here is closed on leaving.
    """

    def __init__(self, source: BlobSourceLike) -> None:
        self._data: bytes | None = None
        self._file: IO[bytes] | None = None
        self._owned = False
        self._start = 0
        if isinstance(source, bytes | bytearray | memoryview):
            self._data = bytes(source)
            self.digest, self.size = _hash(iter([self._data]))
        elif isinstance(source, str | os.PathLike):
            self._file, self._owned = _open(Path(source)), True
            self.digest, self.size = _hash(self._read_chunks())
        elif callable(getattr(source, "read", None)):
            self._prepare_file(source)
        else:
            raise InvalidInputError(
                f"put_blob takes bytes, a path or a binary file, not {type(source).__name__}"
            )

    def _prepare_file(self, source: BinaryIO) -> None:
        seekable = getattr(source, "seekable", None)
        if callable(seekable) and seekable():
            self._file, self._start = source, source.tell()
            self.digest, self.size = _hash(self._read_chunks())
            return
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115
        self._file, self._owned = spool, True
        sha, size = hashlib.sha256(), 0
        for chunk in _read_file(source):
            sha.update(chunk)
            size += len(chunk)
            spool.write(chunk)
        self.digest, self.size = DIGEST_PREFIX + sha.hexdigest(), size

    def __enter__(self) -> BlobSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._owned and self._file is not None:
            self._file.close()

    def _read_chunks(self) -> Iterator[bytes]:
        assert self._file is not None
        self._file.seek(self._start)
        yield from _read_file(self._file)

    def chunks(self) -> Iterator[bytes]:
        """The bytes to send, from the start."""
        if self._data is not None:
            yield self._data
            return
        yield from self._read_chunks()

    async def achunks(self) -> AsyncIterator[bytes]:
        """``chunks`` for an async client (the reads are local and one chunk each)."""
        for chunk in self.chunks():
            yield chunk


def _open(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _read_file(handle: IO[bytes] | BinaryIO) -> Iterator[bytes]:
    while True:
        try:
            chunk = handle.read(_CHUNK)
        except OSError as exc:
            raise InvalidInputError(f"cannot read the blob's file: {exc.strerror or exc}") from exc
        if not chunk:
            return
        if not isinstance(chunk, bytes | bytearray):
            raise InvalidInputError(
                f"put_blob read {type(chunk).__name__} from the file: open it in binary mode"
            )
        yield bytes(chunk)


def _hash(chunks: Iterator[bytes]) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    for chunk in chunks:
        sha.update(chunk)
        size += len(chunk)
    return DIGEST_PREFIX + sha.hexdigest(), size


def put_blob_call(source: BlobSource, content: Any, media_type: str | None = None) -> Call[str]:
    """PUT ``content`` (the source's chunks, sync or async) under the source's digest, as
    ``media_type`` (recorded in the blob index); the parsed answer is the digest, checked
    against the server's receipt."""

    def parse(response: httpx.Response) -> str:
        try:
            receipt = _RECEIPT.validate_json(response.content)
        except ValidationError as exc:
            raise _not_flowmesh(response, "not a BlobReceipt") from exc
        if receipt.digest != source.digest or receipt.size != source.size:
            raise _not_flowmesh(response, f"a receipt for other bytes than {source.digest}")
        return source.digest

    return Call(
        "PUT",
        f"/v1/blobs/{source.digest}",
        parse,
        content=content,
        content_type=media_type or "application/octet-stream",
        headers={"Content-Length": str(source.size)},
    )


def blob_call(digest: str) -> Call[bytes]:
    """GET a blob; the parsed answer is its bytes, verified against ``digest``."""
    digest = validate_digest(digest)

    def parse(response: httpx.Response) -> bytes:
        return _verified(digest, response.content)

    return Call("GET", f"/v1/blobs/{digest}", parse)


def _grants_path(digest: str) -> str:
    return f"/v1/blobs/{validate_digest(digest)}/grants"


def grant_blob_call(digest: str, tenant: str) -> Call[BlobGrant]:
    """POST a grant: let ``tenant`` read the blob ``digest``; the answer is the grant."""
    body = json.dumps({"tenant": tenant}).encode("utf-8")
    return Call("POST", _grants_path(digest), _GRANT, content=body, content_type="application/json")


def revoke_blob_grant_call(digest: str, tenant: str) -> Call[None]:
    """DELETE this tenant's grant of ``digest`` to ``tenant`` (idempotent: no answer)."""
    path = f"{_grants_path(digest)}/{_segment(tenant, 'tenant')}"
    return Call("DELETE", path, lambda _response: None)


def blob_grants_call(digest: str) -> Call[list[BlobGrant]]:
    """GET the grants of ``digest`` this tenant made; the answer is the list."""

    def parse(response: httpx.Response) -> list[BlobGrant]:
        return _GRANTS(response).grants

    return Call("GET", _grants_path(digest), parse)


def grants_made_call(after: str | None, limit: int) -> Call[TenantGrants]:
    """GET a page of the grants this tenant made over every blob (``next`` of the page
    before as ``after``; None: the first page)."""
    params = {"limit": str(limit)}
    if after is not None:
        params["after"] = after
    return Call("GET", "/v1/grants", _MADE, params=params)
