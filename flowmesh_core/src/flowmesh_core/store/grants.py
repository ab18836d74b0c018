"""Explicit blob grants: one tenant lets another read a blob it may read itself.

Per (digest, grantee) the grants are a set of grantors (``{p}:blob:{d}:grant:{t}``), so
each grantor's grant stands on its own and a revoke by one leaves the others'. The
grantee's ``{p}:tenant:{t}:granted`` set holds every digest with at least one grant,
which is what the rights check reads (``rights.py``); each grantor's
``{p}:tenant:{t}:grants`` counts its grants against ``max_grants_per_tenant``. A grant
and a revoke each change all of these in one Lua step (``grant_blob.lua``,
``revoke_blob_grant.lua``). See docs/isolation.md, "Grants".

This module must never decide whether the grantor may grant: the control plane checks
that (``control/blobs.py``) before calling ``grant_blob``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from flowmesh_core.errors import QuotaExceededError
from flowmesh_core.hashing import validate_digest
from flowmesh_core.store._base import StoreBase

__all__ = ["BlobGrantRecord", "GrantsMixin"]


@dataclass(frozen=True, order=True)
class BlobGrantRecord:
    """One grant of a blob: ``grantor`` lets ``grantee`` read it."""

    grantee: str
    grantor: str


class GrantsMixin(StoreBase):
    """Grant, revoke and list explicit grants of blobs."""

    async def grant_blob(self, digest: str, grantor: str, grantee: str, limit: int) -> bool:
        """Let ``grantee`` read ``digest`` by ``grantor``'s grant; True if the grant is
        new, False if ``grantor`` had made it before. QuotaExceededError (nothing
        changed) when ``grantor`` already holds ``limit`` grants (0: no limit)."""
        validate_digest(digest)
        made = int(await self.run_script("grant_blob", [], [digest, grantor, grantee, limit]))
        if made < 0:
            raise QuotaExceededError(
                f"quota: this tenant may hold at most {limit:,} blob grants "
                "(max_grants_per_tenant); list them (GET /v1/grants, `flowmesh cas grants`) "
                "and revoke some (DELETE /v1/blobs/{digest}/grants/{tenant}, "
                "`flowmesh cas revoke DIGEST TENANT`) before granting more"
            )
        return made == 1

    async def revoke_blob_grant(self, digest: str, grantor: str, grantee: str) -> bool:
        """Withdraw ``grantor``'s grant of ``digest`` to ``grantee``; True if there was one.
        Other grantors' grants of the digest to ``grantee`` stand."""
        validate_digest(digest)
        return bool(await self.run_script("revoke_blob_grant", [], [digest, grantor, grantee]))

    async def blob_grants(self, digest: str, grantor: str | None = None) -> list[BlobGrantRecord]:
        """The grants of ``digest``, sorted; only ``grantor``'s unless it is None (every
        grantor's: for an admin, never shown to a tenant)."""
        validate_digest(digest)
        async with self.guard():
            grantees = sorted(
                str(g) for g in await self._redis.smembers(self.keys.blob_grantees(digest))
            )
            if not grantees:
                return []
            async with self._redis.pipeline(transaction=False) as pipe:
                for grantee in grantees:
                    pipe.smembers(self.keys.blob_grantors(digest, grantee))
                grantors = await pipe.execute()
        return sorted(
            BlobGrantRecord(grantee, str(by))
            for grantee, bys in zip(grantees, grantors, strict=True)
            for by in bys
            if grantor is None or str(by) == grantor
        )

    async def grant_count(self, grantor: str) -> int:
        """How many grants ``grantor`` holds (what ``max_grants_per_tenant`` bounds)."""
        async with self.guard():
            return int(await self._redis.scard(self.keys.tenant_grants(grantor)))

    async def grants_made(
        self, grantor: str, after: tuple[str, str] | None, limit: int
    ) -> tuple[list[tuple[str, str]], bool]:
        """Up to ``limit`` of the grants ``grantor`` made, as (digest, grantee) sorted,
        those after ``after`` only; and whether more follow. The set is bounded by
        ``max_grants_per_tenant``, so it is read whole and sorted here: a page is stable
        while grants change, which a set scan's cursor is not."""
        async with self.guard():
            members = await self._redis.smembers(self.keys.tenant_grants(grantor))
        made = sorted(self.keys.parse_grant_member(str(m)) for m in members)
        start = 0 if after is None else bisect.bisect_right(made, after)
        return made[start : start + limit], start + limit < len(made)
