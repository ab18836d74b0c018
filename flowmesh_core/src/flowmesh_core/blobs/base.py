"""The blob store interface and the streaming/hashing helpers every backend shares.

A blob store maps a digest (``sha256:<64 lowercase hex>``) to immutable bytes. The public
methods live here and do the parts that must be identical on every backend: validating
digests before any I/O, hashing what is written, and verifying what is read. Backends
(``file.py``, ``s3.py``) implement only the protected hooks that move bytes.

This module must never hand out bytes it has not verified as a finished result (callers
of ``iter_chunks`` must treat a chunk as unverified until the iterator is exhausted), never
trust a caller's claimed digest, and never touch a backend's storage itself.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from flowmesh_core.errors import CorruptBlobError, InvalidInputError
from flowmesh_core.hashing import DIGEST_PREFIX, validate_digest

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "BlobInfo",
    "BlobStore",
    "PutResult",
    "StreamHasher",
    "check_expected",
    "iter_source",
    "verified_chunks",
]

DEFAULT_CHUNK_SIZE = 1 << 20
_BYTES_LIKE = (bytes, bytearray, memoryview)


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What the store knows about a stored blob: its address and its length in bytes."""

    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class PutResult:
    """The outcome of a put. ``created`` is False when the blob was already stored."""

    digest: str
    size: int
    created: bool


class StreamHasher:
    """Running sha256 and byte count of a stream, fed one chunk at a time."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._sha.update(chunk)
        self.size += len(chunk)

    @property
    def digest(self) -> str:
        return DIGEST_PREFIX + self._sha.hexdigest()

    @property
    def raw(self) -> bytes:
        """The 32-byte hash (S3 wants it base64-encoded in ``ChecksumSHA256``)."""
        return self._sha.digest()


def iter_source(source: Iterable[bytes] | BinaryIO, chunk_size: int) -> Iterator[bytes]:
    """Yield the bytes of ``source``: a binary file object (read in ``chunk_size`` pieces)
    or an iterable of bytes-like chunks. Exceptions raised by the source pass through
    unchanged; they are the caller's, not the store's.
    """
    if isinstance(source, (*_BYTES_LIKE, str)):
        # Iterating bytes would yield ints; point at the right method instead.
        raise InvalidInputError(
            "put_stream takes an iterable of bytes chunks or a binary file; use put_bytes "
            "for a single bytes value"
        )
    read = getattr(source, "read", None)
    chunks: Iterable[object] = _read_all(read, chunk_size) if callable(read) else source
    for chunk in chunks:
        if not isinstance(chunk, _BYTES_LIKE):
            raise InvalidInputError(
                f"blob chunks must be bytes, got {type(chunk).__name__} "
                "(open files in binary mode: 'rb')"
            )
        if chunk:
            yield chunk if isinstance(chunk, bytes) else bytes(chunk)


def _read_all(read: Callable[[int], object], chunk_size: int) -> Iterator[object]:
    while chunk := read(chunk_size):
        yield chunk


def check_expected(actual: str, expected: str | None) -> None:
    """Raise CorruptBlobError if the caller announced a digest the bytes do not have."""
    if expected is not None and actual != expected:
        raise CorruptBlobError(
            f"content hashes to {actual} but the caller expected {expected}; nothing was stored"
        )


def verified_chunks(digest: str, chunks: Iterable[bytes], *, where: str) -> Iterator[bytes]:
    """Yield ``chunks`` while hashing them; at the end raise CorruptBlobError unless the
    bytes hash to ``digest`` (a truncated or altered blob never ends silently).
    """
    hasher = StreamHasher()
    for chunk in chunks:
        hasher.update(chunk)
        yield chunk
    if hasher.digest != digest:
        raise CorruptBlobError(
            f"blob {digest} in {where} is corrupt: its {hasher.size} stored bytes hash to "
            f"{hasher.digest}; restore the object from another copy of the store"
        )


class BlobStore(ABC):
    """A content-addressed, immutable, put-if-absent blob store (sync; thread-safe).

    Every method that takes a digest validates it before any I/O (InvalidDigestError).
    Backend failures surface as BlobStoreUnavailableError, a missing blob as
    BlobNotFoundError, bytes that do not match their address as CorruptBlobError.
    """

    url: str

    def __init__(self, url: str) -> None:
        self.url = url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- writing -------------------------------------------------------------------------

    def put_bytes(self, data: bytes, *, expected_digest: str | None = None) -> PutResult:
        """Store ``data``; see ``put_stream``."""
        if not isinstance(data, _BYTES_LIKE):
            raise InvalidInputError(f"put_bytes takes bytes, got {type(data).__name__}")
        return self.put_stream([bytes(data)], expected_digest=expected_digest)

    def put_many(self, blobs: Sequence[bytes]) -> list[PutResult]:
        """Store several blobs, each as ``put_bytes`` would, made durable together: a
        backend that syncs to disk does it once for the lot instead of once per blob
        (a worker stores a batch's results this way). Results are in ``blobs``' order."""
        for data in blobs:
            if not isinstance(data, _BYTES_LIKE):
                raise InvalidInputError(f"put_many takes bytes, got {type(data).__name__}")
        return self._put_many([bytes(data) for data in blobs])

    def put_stream(
        self, chunks: Iterable[bytes] | BinaryIO, *, expected_digest: str | None = None
    ) -> PutResult:
        """Store the concatenated chunks (or a binary file's contents) under their digest.

        Put-if-absent and atomic: an existing digest is a no-op (``created=False``), a
        failed put leaves nothing behind. If ``expected_digest`` is given and the bytes
        hash to something else, CorruptBlobError is raised and nothing is stored.
        """
        expected = None if expected_digest is None else validate_digest(expected_digest)
        return self._put(iter_source(chunks, DEFAULT_CHUNK_SIZE), expected)

    def put_file(
        self, path: str | os.PathLike[str], *, expected_digest: str | None = None
    ) -> PutResult:
        """Store the contents of the local file at ``path``; see ``put_stream``."""
        expected = None if expected_digest is None else validate_digest(expected_digest)
        source = Path(path)
        try:
            handle = source.open("rb")
        except OSError as exc:
            raise InvalidInputError(f"cannot read {source}: {exc.strerror or exc}") from exc
        with handle:
            return self._put(_file_chunks(handle, source), expected)

    # -- reading -------------------------------------------------------------------------

    def exists(self, digest: str) -> bool:
        """Whether a blob with this digest is stored (its bytes are not read)."""
        return self._exists(validate_digest(digest))

    def stat(self, digest: str) -> BlobInfo:
        """Size of a stored blob; BlobNotFoundError if absent."""
        return self._stat(validate_digest(digest))

    def iter_chunks(self, digest: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """Stream a blob in chunks of at most ``chunk_size`` bytes, verifying as it goes.

        The digest is checked now; BlobNotFoundError, BlobStoreUnavailableError and
        CorruptBlobError (raised after the last chunk) come during iteration, so a consumer
        must not treat what it got as valid until the iterator is exhausted.
        """
        digest = validate_digest(digest)
        if not isinstance(chunk_size, int) or chunk_size <= 0:
            raise InvalidInputError(f"chunk_size must be a positive int, got {chunk_size!r}")
        return verified_chunks(digest, self._read_chunks(digest, chunk_size), where=self.url)

    def get_bytes(self, digest: str) -> bytes:
        """The whole blob, verified; BlobNotFoundError if absent."""
        return b"".join(self.iter_chunks(digest))

    def get_to_file(self, digest: str, path: str | os.PathLike[str]) -> BlobInfo:
        """Write a blob to ``path``, replacing it only once every byte is verified.

        The bytes go to a temporary file beside ``path`` that is renamed into place after
        verification and removed on any failure, so no corrupt or partial file is left.
        """
        digest = validate_digest(digest)
        target = Path(path)
        temp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.part")
        try:
            size = _write_verified(self.iter_chunks(digest), temp)
            os.replace(temp, target)
        except OSError as exc:
            raise InvalidInputError(f"cannot write {target}: {exc.strerror or exc}") from exc
        finally:
            temp.unlink(missing_ok=True)
        return BlobInfo(digest=digest, size=size)

    @abstractmethod
    def ping(self) -> None:
        """Check the backend is reachable and usable; BlobStoreUnavailableError says why not."""

    # -- backend hooks (digests arrive validated) ----------------------------------------

    @abstractmethod
    def _put(self, chunks: Iterator[bytes], expected: str | None) -> PutResult:
        """Hash and store ``chunks`` atomically unless present; honour ``check_expected``."""

    def _put_many(self, blobs: list[bytes]) -> list[PutResult]:
        """``_put`` for each blob; backends that can make many writes durable at once
        override it."""
        return [self._put(iter([data]), None) for data in blobs]

    @abstractmethod
    def _exists(self, digest: str) -> bool: ...

    @abstractmethod
    def _stat(self, digest: str) -> BlobInfo: ...

    @abstractmethod
    def _read_chunks(self, digest: str, chunk_size: int) -> Iterator[bytes]:
        """The stored bytes, unverified (the caller verifies)."""


def _file_chunks(handle: BinaryIO, path: Path) -> Iterator[bytes]:
    # A read error on the caller's file is the caller's problem, not the store's.
    while True:
        try:
            chunk = handle.read(DEFAULT_CHUNK_SIZE)
        except OSError as exc:
            raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if not chunk:
            return
        yield chunk


def _write_verified(chunks: Iterator[bytes], temp: Path) -> int:
    size = 0
    # O_EXCL: never write through a file (or link) someone else put at our temp name.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as out:
        for chunk in chunks:
            out.write(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return size
