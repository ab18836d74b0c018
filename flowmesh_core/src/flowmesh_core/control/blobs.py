"""Blobs through the API: a tenant uploads bytes under their digest and becomes an owner;
it reads a blob only if it owns it, its lineage holds it, or another tenant granted it
(docs/isolation.md). A tenant grants only what it owns or its lineage holds: a grant is
not passed on.

An upload streams: the body goes chunk by chunk from the event loop to the blob store,
which hashes it while writing to a temporary name and publishes it only if the bytes
hash to the digest the caller named. Ownership is recorded after that, so a mismatch, a
body over ``max_upload_bytes`` or a dropped connection leaves nothing stored and no
owner recorded.

This module must never hold a whole upload in memory, never record an owner for bytes
the blob store has not verified, and never answer a digest the tenant may not read
differently from one that does not exist (nor a grant to a tenant that does not exist
differently from one to a tenant that does).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from flowmesh_core.blobs import BlobInfo, BlobStore
from flowmesh_core.errors import (
    BlobNotFoundError,
    CorruptBlobError,
    DigestMismatchError,
    InputTooLargeError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from flowmesh_core.hashing import validate_digest
from flowmesh_core.models.api import BlobGrant, Tenant, TenantGrant, TenantGrants
from flowmesh_core.results import ResultReader
from flowmesh_core.store import Store
from flowmesh_core.store.rights import ReadRight, upload_quota_error

__all__ = ["BlobAccess", "Upload"]

_DEFAULT_MEDIA_TYPE = "application/octet-stream"

log = logging.getLogger("flowmesh.blobs")


@dataclass(frozen=True)
class Upload:
    """What an upload stored: the digest, its size, and whether the tenant became an owner
    now (``new_owner``; False when it had uploaded these bytes before). Whether anyone else
    had stored the bytes is never told: that would reveal another tenant's data."""

    digest: str
    size: int
    new_owner: bool


class BlobAccess:
    """Uploads with an owner, reads through the tenant's rights, and grants."""

    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        results: ResultReader,
        max_upload_bytes: int,
        max_grants: int = 0,
        tenant_max_upload_bytes: int = 0,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.results = results
        self.max_upload_bytes = max_upload_bytes
        self.max_grants = max_grants
        self.tenant_max_upload_bytes = tenant_max_upload_bytes

    async def upload(
        self,
        tenant: Tenant,
        digest: str,
        body: AsyncIterator[bytes],
        *,
        length: int | None = None,
        media_type: str | None = None,
    ) -> Upload:
        """Store ``body`` under ``digest`` and make ``tenant`` one of its owners.

        InvalidDigestError for a malformed digest, InputTooLargeError (413) for a body
        over ``max_upload_bytes``, QuotaExceededError (429) for one that would take the
        tenant's uploads past ``tenant_max_upload_bytes`` (the declared ``length`` is
        checked before reading), DigestMismatchError (400) when the bytes hash to
        another digest.
        """
        digest = validate_digest(digest)
        media = _media_type(media_type)
        limit = self.max_upload_bytes
        if length is not None and length > limit:
            raise _too_large(limit, f" of {length:,} bytes")
        quota = 0 if tenant.admin else self.tenant_max_upload_bytes
        left = await self._quota_left(tenant, digest, quota)
        if left is not None and length is not None and length > left:
            raise upload_quota_error(quota)
        chunks = _bridge(body, asyncio.get_running_loop(), limit, _QuotaLeft(quota, left))
        try:
            put = await asyncio.to_thread(self.blobs.put_stream, chunks, expected_digest=digest)
        except CorruptBlobError as exc:
            raise DigestMismatchError(
                f"the uploaded bytes do not hash to {digest}; nothing was stored (send the "
                "exact bytes whose sha256 is the digest, as `flowmesh cas put` does)"
            ) from exc
        new_owner = await self.store.record_upload(tenant.name, digest, put.size, media, quota)
        return Upload(put.digest, put.size, new_owner)

    async def _quota_left(self, tenant: Tenant, digest: str, quota: int) -> int | None:
        """How many more bytes ``tenant`` may upload (None: no limit for this upload,
        also when it owns ``digest`` already: uploading it again counts nothing)."""
        if not quota:
            return None
        owns, used = await self.store.upload_state(tenant.name, digest)
        return None if owns else max(quota - used, 0)

    async def stat(self, tenant: Tenant, digest: str) -> BlobInfo:
        """The size of a blob ``tenant`` may read (NotFoundError otherwise)."""
        await self._check(tenant, digest)
        kept = await self.results.inline([digest])
        if digest in kept:
            return BlobInfo(digest, len(kept[digest]))
        try:
            return await asyncio.to_thread(self.blobs.stat, digest)
        except BlobNotFoundError:
            raise _unknown(digest) from None

    async def open(self, tenant: Tenant, digest: str) -> tuple[BlobInfo, Iterator[bytes]]:
        """The size and verified chunks of a blob ``tenant`` may read (NotFoundError
        otherwise; the last chunk raises CorruptBlobError if the bytes are corrupt)."""
        info = await self.stat(tenant, digest)
        kept = await self.results.inline([digest])
        if digest in kept:
            return info, iter([kept[digest]])
        return info, self.blobs.iter_chunks(digest)

    async def _check(self, tenant: Tenant, digest: str) -> None:
        digest = validate_digest(digest)
        if not tenant.admin and await self.store.unreadable_for(tenant.name, [digest]):
            raise _unknown(digest)

    async def grant(self, tenant: Tenant, digest: str, grantee: str) -> bool:
        """Let ``grantee`` read ``digest``, a blob ``tenant`` uploaded or its lineage
        holds; True if the grant is new (idempotent).

        NotFoundError, exactly as for an unknown digest, when ``tenant`` may not read it;
        PermissionDeniedError when it may only by a grant (grants are not passed on);
        QuotaExceededError past ``max_grants_per_tenant``. Whether ``grantee`` exists is
        never checked: the answer must not tell (a grant to nobody reaches nobody)."""
        digest = validate_digest(digest)
        if grantee == tenant.name:
            raise InvalidInputError(
                "a tenant cannot grant a blob to itself: name another tenant in 'tenant'"
            )
        right = await self.store.read_right(tenant.name, digest)
        if right is None:
            raise _unknown(digest)
        if right is ReadRight.GRANT:
            raise PermissionDeniedError(
                f"blob {digest} was granted to this tenant, and a grant is not passed on: "
                "only a tenant that uploaded it or whose workflows made it may grant it"
            )
        limit = 0 if tenant.admin else self.max_grants
        new = await self.store.grant_blob(digest, tenant.name, grantee, limit)
        log.info("blob grant: %s lets %s read %s (%s)", tenant.name, grantee, digest, right)
        return new

    async def revoke(self, tenant: Tenant, digest: str, grantee: str) -> bool:
        """Withdraw ``tenant``'s grant of ``digest`` to ``grantee``; True if it had one
        (idempotent). Other tenants' grants to ``grantee`` stand. NotFoundError, exactly
        as for an unknown digest, when ``tenant`` may not read it."""
        await self._check(tenant, digest)
        revoked = await self.store.revoke_blob_grant(digest, tenant.name, grantee)
        if revoked:
            log.info(
                "blob grant revoked: %s no longer lets %s read %s", tenant.name, grantee, digest
            )
        return revoked

    async def grants(self, tenant: Tenant, digest: str) -> list[BlobGrant]:
        """The grants of ``digest`` that ``tenant`` made (an admin: everyone's), sorted.
        NotFoundError, exactly as for an unknown digest, when ``tenant`` may not read it."""
        await self._check(tenant, digest)
        grantor = None if tenant.admin else tenant.name
        records = await self.store.blob_grants(digest, grantor)
        return [BlobGrant(tenant=r.grantee, grantor=r.grantor) for r in records]

    async def grants_made(self, tenant: Tenant, after: str | None, limit: int) -> TenantGrants:
        """A page of the grants ``tenant`` made over every blob (an admin: its own too,
        never another's): up to ``limit``, those after the cursor ``after`` (the ``next``
        of the page before). InvalidInputError for a cursor no page gave."""
        cursor = None if after is None else _grant_cursor(after)
        made, more = await self.store.grants_made(tenant.name, cursor, limit)
        grants = [TenantGrant(digest=d, tenant=grantee) for d, grantee in made]
        last = made[-1] if more else None
        return TenantGrants(grants=grants, next=None if last is None else "/".join(last))

    async def usage(self, names: list[str]) -> dict[str, dict[str, int]]:
        """Each of ``names``' use of its upload and grant quotas and the limits it is held
        to (0: none; admins have none), as ``TenantStats`` fields."""
        found = await self.store.tenant_usage(names)
        return {
            name: {
                "upload_bytes": used.upload_bytes,
                "max_upload_bytes": 0 if used.admin else self.tenant_max_upload_bytes,
                "grants": used.grants,
                "max_grants": 0 if used.admin else self.max_grants,
            }
            for name, used in zip(names, found, strict=True)
        }


def _grant_cursor(after: str) -> tuple[str, str]:
    digest, _, grantee = after.partition("/")
    try:
        valid = bool(validate_digest(digest)) and bool(grantee)
    except InvalidInputError:
        valid = False
    if not valid:
        raise InvalidInputError(
            f"after={after[:80]!r} is not a cursor: pass the 'next' of the page before "
            "(DIGEST/TENANT), or leave it out for the first page"
        )
    return digest, grantee


def _unknown(digest: str) -> NotFoundError:
    """The one answer for a digest that does not exist and one the tenant may not read."""
    return NotFoundError(f"no blob {digest} for this tenant")


def _too_large(limit: int, size: str) -> InputTooLargeError:
    return InputTooLargeError(
        f"upload{size} is over the limit of {limit:,} bytes (max_upload_bytes); nothing was stored"
    )


def _media_type(value: str | None) -> str:
    if value is None:
        return _DEFAULT_MEDIA_TYPE
    media = value.split(";", 1)[0].strip().lower()
    if not media:
        return _DEFAULT_MEDIA_TYPE
    if len(media) > 127 or "/" not in media or not media.isascii() or not media.isprintable():
        raise InvalidInputError(
            f"Content-Type {value[:60]!r} is not a media type: send e.g. "
            "application/octet-stream or application/json"
        )
    return media


@dataclass(frozen=True)
class _QuotaLeft:
    """The tenant's upload quota (bytes) and how much of it is left (None: no limit)."""

    quota: int
    left: int | None


def _bridge(
    body: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop, limit: int, quota: _QuotaLeft
) -> Iterator[bytes]:
    """The body's chunks for a blob store running in a worker thread, each fetched from
    the event loop as the store asks for it; InputTooLargeError once past ``limit``,
    QuotaExceededError once past what is left of the tenant's quota."""

    async def next_chunk() -> bytes | None:
        return await anext(body, None)

    size = 0
    while True:
        chunk = asyncio.run_coroutine_threadsafe(next_chunk(), loop).result()
        if chunk is None:
            return
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, "")
        if quota.left is not None and size > quota.left:
            raise upload_quota_error(quota.quota)
        yield chunk
