"""Who may read a digest: blob owners (uploads) and the rights check every read goes through.

A tenant may read a digest that its own lineage holds (a result of one of its workflows,
``{p}:tenant:{t}:results``, written by the ledger), that it uploaded itself
(``{p}:tenant:{t}:uploads``), that another tenant granted it (``{p}:tenant:{t}:granted``,
written by ``grants.py``), and the files of a checkpoint tree it may trust
(``{p}:blob:{d}:trees``, written when a worker stores the tree): a checkpoint's files are
covered by the tree's rights, and only by them. Uploading a tree's bytes grants nothing
over the files it lists: whoever knows a tree's bytes knows its files' digests, and
knowing a digest is never a right. Owners are a set: two tenants that upload the same
bytes both own them, and neither learns of the other. See docs/isolation.md.

This module must never grant a right without the bytes: ``record_upload`` is called only
after the blob store has verified that the uploaded bytes hash to the digest. And it
must never let ownership vouch for what a manifest lists: anyone can upload a manifest
naming any digest, so only lineage (the tenant's own, or a grantor's) does
(``trusted_listings``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from flowmesh_core.errors import QuotaExceededError
from flowmesh_core.hashing import validate_digest
from flowmesh_core.store._base import StoreBase

__all__ = ["ReadRight", "RightsMixin", "TenantUsage", "upload_quota_error"]


def upload_quota_error(limit: int) -> QuotaExceededError:
    """The one answer to an upload that would take its tenant past ``limit`` bytes."""
    return QuotaExceededError(
        f"quota: the blobs this tenant uploaded may hold at most {limit:,} bytes "
        "(tenant_max_upload_bytes), and this upload would pass it; nothing was recorded. "
        "Uploads count for ever (blobs are never deleted), so waiting does not help: ask an "
        "operator to raise tenant_max_upload_bytes (GET /v1/stats, `flowmesh stats`, shows "
        "this tenant's use)"
    )


@dataclass(frozen=True)
class TenantUsage:
    """What a tenant holds against its upload and grant quotas, and whether it is an
    admin (held to neither)."""

    upload_bytes: int
    grants: int
    admin: bool


class ReadRight(StrEnum):
    """Why a tenant may read a digest, the strongest reason first."""

    LINEAGE = "lineage"  # a result of one of its workflows
    UPLOAD = "upload"  # it uploaded the bytes
    GRANT = "grant"  # another tenant granted it (not grantable further)


def _stronger(a: ReadRight | None, b: ReadRight | None) -> ReadRight | None:
    """The stronger of two reasons (LINEAGE, then UPLOAD, then GRANT; None is none)."""
    order = list(ReadRight)
    return min((r for r in (a, b) if r is not None), key=order.index, default=None)


class RightsMixin(StoreBase):
    """Blob owners, and the one question every read asks: which digests may a tenant read."""

    async def record_upload(
        self, tenant: str, digest: str, size: int, media_type: str, limit: int = 0
    ) -> bool:
        """Make ``tenant`` an owner of the stored blob ``digest`` and index the blob; True
        if it was not an owner before. Its size counts against ``tenant``'s upload bytes;
        QuotaExceededError (nothing changed) if that would pass ``limit`` (0: no limit).

        One Lua step (``record_upload.lua``): the owner sets, the blob index and the count
        change together or not at all. Idempotent: the index keeps what the first upload
        recorded, and an owner is counted once."""
        validate_digest(digest)
        args = [tenant, digest, size, media_type, repr(time.time()), limit]
        added = int(await self.run_script("record_upload", [], args))
        if added < 0:
            raise upload_quota_error(limit)
        return added == 1

    async def upload_state(self, tenant: str, digest: str) -> tuple[bool, int]:
        """(whether ``tenant`` owns ``digest``, the bytes of the blobs it owns)."""
        async with self.guard(), self._redis.pipeline(transaction=False) as pipe:
            pipe.sismember(self.keys.tenant_uploads(tenant), digest)
            pipe.hget(self.keys.quota(tenant), "upload_bytes")
            owns, used = await pipe.execute()
        return bool(owns), int(used or 0)

    async def tenant_usage(self, tenants: Sequence[str]) -> list[TenantUsage]:
        """What each of ``tenants`` holds against its quotas, in the order given (one
        round trip): the bytes of the blobs it uploaded (never going down) and the grants
        it made."""
        async with self.guard(), self._redis.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                pipe.hget(self.keys.quota(tenant), "upload_bytes")
                pipe.scard(self.keys.tenant_grants(tenant))
                pipe.hget(self.keys.tenant(tenant), "record")
            raw = await pipe.execute()
        return [
            TenantUsage(
                upload_bytes=int(used or 0),
                grants=int(grants),
                admin=bool(record) and bool(json.loads(str(record)).get("admin")),
            )
            for used, grants, record in zip(raw[::3], raw[1::3], raw[2::3], strict=True)
        ]

    async def blob_owners(self, digest: str) -> set[str]:
        """The tenants that uploaded ``digest`` (for operators of the fabric, never shown
        to a tenant)."""
        validate_digest(digest)
        async with self.guard():
            owners = await self._redis.smembers(self.keys.blob_owners(digest))
        return {str(o) for o in owners}

    async def unreadable_for(self, tenant: str, digests: Sequence[str]) -> list[str]:
        """Those of ``digests`` that ``tenant`` neither holds in its lineage, nor uploaded,
        nor was granted, nor reads as a file of a checkpoint tree it may trust, in the
        order given (one round trip, more only when some digest has no right of its own)."""
        if not digests:
            return []
        wanted = list(digests)
        rights = await self._rights(tenant, wanted)
        return [d for d, right in zip(wanted, rights, strict=True) if right is None]

    async def read_right(self, tenant: str, digest: str) -> ReadRight | None:
        """Why ``tenant`` may read ``digest`` (the strongest reason), or None."""
        (right,) = await self._rights(tenant, [validate_digest(digest)])
        return right

    async def _rights(self, tenant: str, digests: list[str]) -> list[ReadRight | None]:
        """Per digest, why ``tenant`` may read it, the strongest reason: its own right on
        the digest or a right through a checkpoint tree that lists it (``_tree_rights``),
        which is looked for only where the digest's own right is none or a grant."""
        rights = await self._own_rights(tenant, digests)
        weak = [d for d, r in zip(digests, rights, strict=True) if r in (None, ReadRight.GRANT)]
        by_tree = await self._tree_rights(tenant, weak)
        return [_stronger(r, by_tree.get(d)) for d, r in zip(digests, rights, strict=True)]

    async def _own_rights(self, tenant: str, digests: list[str]) -> list[ReadRight | None]:
        async with self.guard(), self._redis.pipeline(transaction=False) as pipe:
            pipe.smismember(self.keys.tenant_results(tenant), digests)
            pipe.smismember(self.keys.tenant_uploads(tenant), digests)
            pipe.smismember(self.keys.tenant_granted(tenant), digests)
            results, uploads, granted = await pipe.execute()
        reasons = (ReadRight.LINEAGE, ReadRight.UPLOAD, ReadRight.GRANT)
        return [
            next((why for why, held in zip(reasons, flags, strict=True) if held), None)
            for flags in zip(results, uploads, granted, strict=True)
        ]

    async def _tree_rights(self, tenant: str, files: list[str]) -> dict[str, ReadRight]:
        """Those of ``files`` that ``tenant`` reads through a checkpoint tree listing them:
        LINEAGE when its own lineage holds such a tree, GRANT when a tree is granted to it
        by a tenant whose lineage holds it (``trusted_listings``). A tree it only uploaded,
        or was granted as an upload, gives no right over its files."""
        if not files:
            return {}
        async with self.guard(), self._redis.pipeline(transaction=False) as pipe:
            for digest in files:
                pipe.smembers(self.keys.blob_trees(digest))
            trees = [{str(t) for t in ts} for ts in await pipe.execute()]
        listing = sorted(set().union(*trees))
        if not listing:
            return {}
        async with self.guard():
            flags = await self._redis.smismember(self.keys.tenant_results(tenant), listing)
        own = {t for t, held in zip(listing, flags, strict=True) if held}
        granted = await self.trusted_listings(tenant, [t for t in listing if t not in own])
        rights: dict[str, ReadRight] = {}
        for digest, ts in zip(files, trees, strict=True):
            if not own.isdisjoint(ts):
                rights[digest] = ReadRight.LINEAGE
            elif not granted.isdisjoint(ts):
                rights[digest] = ReadRight.GRANT
        return rights

    async def trusted_listings(self, tenant: str, digests: Iterable[str]) -> set[str]:
        """Those of ``digests`` (manifests, checkpoint trees) whose listed digests
        ``tenant`` may have read without checking each: a result its own lineage holds,
        or one granted to it by a tenant whose lineage holds it.

        An upload never qualifies, the tenant's own or a grantor's: anyone can upload a
        manifest listing any digest, so only the run that wrote it vouches for it."""
        wanted = list(dict.fromkeys(digests))
        if not wanted:
            return set()
        async with self.guard(), self._redis.pipeline(transaction=False) as pipe:
            pipe.smismember(self.keys.tenant_results(tenant), wanted)
            pipe.smismember(self.keys.tenant_granted(tenant), wanted)
            results, granted = await pipe.execute()
        trusted = {d for d, r in zip(wanted, results, strict=True) if r}
        by_grant = [d for d, r, g in zip(wanted, results, granted, strict=True) if g and not r]
        return trusted | await self._granted_from_lineage(tenant, by_grant)

    async def _granted_from_lineage(self, tenant: str, digests: list[str]) -> set[str]:
        """Those of ``digests`` that some grantor of ``tenant`` holds in its lineage."""
        if not digests:
            return set()
        async with self.guard():
            async with self._redis.pipeline(transaction=False) as pipe:
                for digest in digests:
                    pipe.smembers(self.keys.blob_grantors(digest, tenant))
                grantors = await pipe.execute()
            pairs = [(d, str(g)) for d, gs in zip(digests, grantors, strict=True) for g in gs]
            if not pairs:
                return set()
            async with self._redis.pipeline(transaction=False) as pipe:
                for digest, grantor in pairs:
                    pipe.sismember(self.keys.tenant_results(grantor), digest)
                held = await pipe.execute()
        return {d for (d, _), h in zip(pairs, held, strict=True) if h}
