"""Who may read a digest: blob owners (uploads) and the rights check every read goes through.

A tenant may read a digest that its own lineage holds (a result of one of its workflows,
``{p}:tenant:{t}:results``, written by the ledger) or that it uploaded itself
(``{p}:tenant:{t}:uploads``), and the files of a checkpoint tree its lineage holds
(``{p}:blob:{d}:trees``, written when a worker stores the tree): a checkpoint's files are
covered by the tree's rights, and only by them. Uploading a tree's bytes grants nothing
over the files it lists: whoever knows a tree's bytes knows its files' digests, and
knowing a digest is never a right. Owners are a set: two tenants that upload
the same bytes both own them, and neither learns of the other. See docs/isolation.md.

This module must never grant a right without the bytes: ``record_upload`` is called only
after the blob store has verified that the uploaded bytes hash to the digest.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from flowmesh_core.hashing import validate_digest
from flowmesh_core.store._base import StoreBase

__all__ = ["RightsMixin"]


class RightsMixin(StoreBase):
    """Blob owners, and the one question every read asks: which digests may a tenant read."""

    async def record_upload(self, tenant: str, digest: str, size: int, media_type: str) -> bool:
        """Make ``tenant`` an owner of the stored blob ``digest`` and index the blob; True
        if it was not an owner before.

        One MULTI/EXEC: the owner sets and the blob index change together or not at all.
        Idempotent: the index keeps what the first upload recorded."""
        validate_digest(digest)
        async with self.guard(), self._redis.pipeline(transaction=True) as pipe:
            key = self.keys.blob(digest)
            pipe.hsetnx(key, "size", size)
            pipe.hsetnx(key, "media_type", media_type)  # the first uploader's stays
            pipe.hsetnx(key, "created_at", repr(time.time()))
            pipe.sadd(self.keys.blob_owners(digest), tenant)
            pipe.sadd(self.keys.tenant_uploads(tenant), digest)
            *_, added = await pipe.execute()
        return bool(added)

    async def blob_owners(self, digest: str) -> set[str]:
        """The tenants that uploaded ``digest`` (for operators of the fabric, never shown
        to a tenant)."""
        validate_digest(digest)
        async with self.guard():
            owners = await self._redis.smembers(self.keys.blob_owners(digest))
        return {str(o) for o in owners}

    async def unreadable_for(self, tenant: str, digests: Sequence[str]) -> list[str]:
        """Those of ``digests`` that ``tenant`` neither holds in its lineage nor uploaded,
        nor reads as a file of a checkpoint tree its lineage holds, in the order given
        (one round trip, and two more only when some digest is neither held nor owned)."""
        if not digests:
            return []
        missing = await self._not_held(tenant, list(digests))
        if not missing:
            return []
        async with self.guard(), self._redis.pipeline(transaction=False) as pipe:
            for digest in missing:
                pipe.smembers(self.keys.blob_trees(digest))
            trees = [sorted(str(t) for t in ts) for ts in await pipe.execute()]
        listing = sorted({t for ts in trees for t in ts})
        held: set[str] = set()
        if listing:
            async with self.guard():
                flags = await self._redis.smismember(self.keys.tenant_results(tenant), listing)
            held = {t for t, h in zip(listing, flags, strict=True) if h}
        return [d for d, ts in zip(missing, trees, strict=True) if held.isdisjoint(ts)]

    async def _not_held(self, tenant: str, wanted: list[str]) -> list[str]:
        """Those of ``wanted`` neither in ``tenant``'s lineage nor among its uploads."""
        async with self.guard(), self._redis.pipeline(transaction=False) as pipe:
            pipe.smismember(self.keys.tenant_results(tenant), wanted)
            pipe.smismember(self.keys.tenant_uploads(tenant), wanted)
            results, uploads = await pipe.execute()
        return [d for d, r, u in zip(wanted, results, uploads, strict=True) if not (r or u)]
