"""The local input-blob cache: a worker's copies of the big input blobs it read lately.

Entries are blobs in a private ``FileBlobStore`` under the worker's model directory, so
they are content-addressed, written to a temporary name and published with one link or
rename (a crash leaves at most a temporary file, never a half blob), and verified on
every read: a cached copy whose bytes no longer match its digest is dropped and fetched
again from the source, never handed to an executor. A fill is verified too (the bytes
must hash to the digest asked for).

Only blobs of at least ``min_bytes`` are kept: a small JSON item costs less to fetch
than to track. The cache holds at most ``budget_bytes``; the least recently used
entries go first (use order is kept in memory and in the files' mtimes, so a restarted
worker resumes with the same order). ``held`` is what the worker reports in its
heartbeat so the scheduler can prefer it for batches that read those blobs
(docs/architecture.md, "Data locality").

This module never fetches a digest on its own: it reads only what a caller's source was
asked for, after the control plane checked the requester's right to it, and keeps the
results the worker itself stored (``keep``). One worker
process owns the directory; threads of that process may share the cache.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

from flowmesh_core.blobs.file import FileBlobStore
from flowmesh_core.errors import CorruptBlobError, FlowMeshError
from flowmesh_core.hashing import DIGEST_PREFIX, hex_of
from flowmesh_worker._lru import evict_lru
from flowmesh_worker.inputs import ByteSource

__all__ = ["BLOBS_REPORTED", "MIN_CACHED_BYTES", "BlobCache"]

log = logging.getLogger(__name__)

MIN_CACHED_BYTES = 64 << 10
"""Blobs smaller than this (64 KiB) are read from the source every time."""

BLOBS_REPORTED = 16
"""How many cached blobs a worker reports in its heartbeat (the most recently used)."""

_STALE_TEMP_S = 3600.0  # a temporary file this old is a crashed fill's leftover
_HEX_DIGITS = 64


class BlobCache:
    """A thread-safe, byte-bounded LRU of verified input blobs in ``directory``.

    ``budget_bytes`` 0 disables it: every read goes to the source and nothing is kept.
    """

    def __init__(
        self, directory: Path, budget_bytes: int, *, min_bytes: int = MIN_CACHED_BYTES
    ) -> None:
        if budget_bytes < 0 or min_bytes < 0:
            raise ValueError("budget_bytes and min_bytes must be >= 0")
        self.budget_bytes = budget_bytes
        self.min_bytes = min_bytes
        self._store = FileBlobStore(directory.absolute().as_uri())
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, int] = OrderedDict()  # digest -> size, LRU first
        if budget_bytes:
            self._entries = _scan(self._store.root)
            self._remove(self._evict(None))

    def over(self, source: ByteSource) -> ByteSource:
        """``source`` read through this cache (itself when the cache is disabled)."""
        return source if not self.budget_bytes else _Through(self, source)

    def get_bytes(self, digest: str, source: ByteSource) -> bytes:
        """The bytes of ``digest``: a verified local copy, else ``source``'s (kept when
        big enough). Errors of ``source`` propagate; a local copy that cannot be used
        (corrupt, gone, unreadable) is dropped and the source read instead."""
        data = self._read(digest)
        if data is not None:
            return data
        data = source.get_bytes(digest)
        self.keep(digest, data)
        return data

    def keep(self, digest: str, data: bytes) -> None:
        """Keep ``data`` (which must hash to ``digest``) when big enough: a blob this
        worker just fetched, or a result it just stored in the CAS."""
        if self.min_bytes <= len(data) <= self.budget_bytes:
            self._fill(digest, data)

    def held(self, limit: int = BLOBS_REPORTED) -> list[str]:
        """The digests held, most recently used first, at most ``limit``."""
        with self._lock:
            return list(reversed(self._entries))[:limit]

    @property
    def nbytes(self) -> int:
        """Bytes held by all entries."""
        with self._lock:
            return sum(self._entries.values())

    def _read(self, digest: str) -> bytes | None:
        with self._lock:
            if digest not in self._entries:
                return None
            self._entries.move_to_end(digest)
        try:
            data = self._store.get_bytes(digest)
        except CorruptBlobError:
            log.warning("cached input blob %s is corrupt; fetching it again", digest)
            self._drop(digest)
            return None
        except FlowMeshError as exc:  # gone or unreadable: the source still has it
            log.warning("cached input blob %s unusable (%s); fetching it again", digest, exc)
            self._drop(digest)
            return None
        with contextlib.suppress(OSError):  # the use order a restart reads back
            os.utime(self._store.path_of(digest))
        return data

    def _fill(self, digest: str, data: bytes) -> None:
        try:
            self._store.put_bytes(data, expected_digest=digest)
        except FlowMeshError as exc:  # a full disk must not fail the item that read it
            log.warning("input blob %s not cached: %s", digest, exc)
            return
        with self._lock:
            self._entries[digest] = len(data)
            self._entries.move_to_end(digest)
            evicted = self._evict(digest)
        self._remove(evicted)

    def _evict(self, keep: str | None) -> list[str]:
        """Entries dropped (LRU first) until the rest fit the budget; never ``keep``.
        The caller holds the lock, or is the constructor."""
        return evict_lru(self._entries, self.budget_bytes, () if keep is None else (keep,))

    def _drop(self, digest: str) -> None:
        with self._lock:
            self._entries.pop(digest, None)
        self._remove([digest])

    def _remove(self, digests: list[str]) -> None:
        for digest in digests:
            try:
                self._store.path_of(digest).unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not remove cached input blob %s: %s", digest, exc)
            else:
                log.debug("evicted input blob %s from the local cache", digest)


class _Through:
    """A ``ByteSource`` that reads ``source`` through ``cache``."""

    def __init__(self, cache: BlobCache, source: ByteSource) -> None:
        self.cache = cache
        self.source = source

    def get_bytes(self, digest: str) -> bytes:
        return self.cache.get_bytes(digest, self.source)


def _scan(root: Path) -> OrderedDict[str, int]:
    """The blobs already under ``root`` (a restart), least recently used first; stale
    temporary files of crashed fills are removed."""
    found: list[tuple[float, str, int]] = []
    now = time.time()
    for path in root.glob("*/*"):
        with contextlib.suppress(OSError):
            stat = path.stat()
            name = path.parent.name + path.name
            if path.parent.name == "tmp":
                if now - stat.st_mtime > _STALE_TEMP_S:
                    path.unlink()
            elif len(name) == _HEX_DIGITS and path.is_file():
                found.append((stat.st_mtime, f"{DIGEST_PREFIX}{name}", stat.st_size))
    found.sort()
    entries: OrderedDict[str, int] = OrderedDict()
    for _, digest, size in found:
        with contextlib.suppress(FlowMeshError):
            hex_of(digest)  # a stray file with a non-hex name is not an entry
            entries[digest] = size
    return entries
