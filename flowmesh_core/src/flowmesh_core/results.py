"""Reading results by digest, wherever they are kept: small ones inline in Redis (with
their action-cache entry, see ``Settings.inline_result_bytes``), the rest in the CAS.

Every read is verified against its digest, inline or not: bytes that do not hash to
their address are corruption (CorruptBlobError), never a result. Access rights are the
caller's business (the control plane checks the tenant's lineage first).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from flowmesh_core.blobs import BlobStore
from flowmesh_core.errors import CorruptBlobError
from flowmesh_core.hashing import digest_bytes
from flowmesh_core.manifest import read_manifest
from flowmesh_core.store import Store

__all__ = ["Prefetched", "ResultReader"]


class ResultReader:
    """Reads results: those kept inline in one Redis round trip, the others from the CAS."""

    def __init__(self, store: Store, blobs: BlobStore) -> None:
        self.store = store
        self.blobs = blobs

    async def inline(self, digests: Iterable[str]) -> dict[str, bytes]:
        """The verified bytes of those ``digests`` that are kept inline (one round trip)."""
        found = await self.store.inline_results(list(dict.fromkeys(digests)))
        for digest, data in found.items():
            _verify(digest, data)
        return found

    async def read_many(self, digests: Iterable[str]) -> dict[str, bytes]:
        """Every digest's bytes (BlobNotFoundError for one that is nowhere)."""
        wanted = list(dict.fromkeys(digests))
        found = await self.inline(wanted)
        rest = [d for d in wanted if d not in found]
        if rest:
            found.update(await asyncio.to_thread(_read_all, self.blobs, rest))
        return found

    async def read(self, digest: str) -> bytes:
        """One result's bytes."""
        return (await self.read_many([digest]))[digest]

    async def prefetch(self, digests: Iterable[str], manifests: Iterable[str]) -> Prefetched:
        """What a worker (or an expansion) will read, fetched ahead in at most two round
        trips: ``digests`` and ``manifests`` kept inline, then the inline ones among the
        digests those manifests list. Blobs in the CAS are left to be read there."""
        wanted = list(manifests)
        found = await self.inline([*digests, *wanted])
        listed: list[str] = []
        for digest in wanted:
            data = found.get(digest)
            if data is None:
                data = await asyncio.to_thread(self.blobs.get_bytes, digest)
            listed += read_manifest(data)
        if listed:
            found.update(await self.inline(listed))
        return Prefetched(self.blobs, found)


class Prefetched:
    """A synchronous reader (``get_bytes``) for code that runs in a thread: bytes fetched
    ahead first, then the CAS."""

    def __init__(self, blobs: BlobStore, found: Mapping[str, bytes] | None = None) -> None:
        self.blobs = blobs
        self.found = dict(found or {})

    def get_bytes(self, digest: str) -> bytes:
        data = self.found.get(digest)
        return data if data is not None else self.blobs.get_bytes(digest)


def _read_all(blobs: BlobStore, digests: list[str]) -> dict[str, bytes]:
    return {digest: blobs.get_bytes(digest) for digest in digests}


def _verify(digest: str, data: bytes) -> None:
    if digest_bytes(data) != digest:
        raise CorruptBlobError(f"inline result {digest} does not match its digest")
