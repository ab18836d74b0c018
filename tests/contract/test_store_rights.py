"""Blob owners, grants and the read-rights question, on every backend (docs/isolation.md).

Recording an upload changes the owner sets and the blob index in one Lua step; raced
by 50 calls from two tenants through five connections, each tenant becomes an owner once.
A grant and a revoke are each one Lua step; raced the same way, grants stop exactly at
the grantor's limit and the last revoke leaves no right behind, and uploads stop exactly
at the tenant's byte quota.
"""

from __future__ import annotations

import asyncio

from flowmesh_core.errors import QuotaExceededError
from flowmesh_core.hashing import digest_bytes
from flowmesh_core.store import Store
from flowmesh_core.store.grants import BlobGrantRecord
from flowmesh_core.store.rights import ReadRight

RACERS = 50
ROWS = digest_bytes(b'["a", "b"]')
OTHER = digest_bytes(b"other")


async def test_an_uploader_may_read_what_it_uploaded_and_nothing_else(store: Store) -> None:
    assert await store.unreadable_for("acme", [ROWS, OTHER]) == [ROWS, OTHER]
    assert await store.record_upload("acme", ROWS, 10, "application/json") is True
    assert await store.unreadable_for("acme", [ROWS, OTHER]) == [OTHER]
    assert await store.unreadable_for("globex", [ROWS]) == [ROWS]
    assert await store.blob_owners(ROWS) == {"acme"}
    record = await store.blob(ROWS)
    assert record is not None
    assert (record.size, record.media_type) == (10, "application/json")
    assert await store.unreadable_for("acme", []) == []


async def test_racing_uploads_of_one_blob_make_each_tenant_an_owner_once(
    clients: list[Store],
) -> None:
    tenants = ["acme", "globex"]
    added = await asyncio.gather(
        *(
            clients[i % 5].record_upload(tenants[i % 2], ROWS, 10, "application/json")
            for i in range(RACERS)
        )
    )
    assert sum(added) == 2
    assert await clients[0].blob_owners(ROWS) == set(tenants)
    for tenant in tenants:
        assert await clients[0].unreadable_for(tenant, [ROWS]) == []


async def test_a_grant_makes_a_digest_readable_and_its_last_revoke_unreadable(
    store: Store,
) -> None:
    assert await store.grant_blob(ROWS, "acme", "globex", 0) is True
    assert await store.grant_blob(ROWS, "acme", "globex", 0) is False
    assert await store.read_right("globex", ROWS) is ReadRight.GRANT
    assert await store.unreadable_for("globex", [ROWS, OTHER]) == [OTHER]
    assert await store.grant_blob(ROWS, "initech", "globex", 0) is True
    assert await store.revoke_blob_grant(ROWS, "acme", "globex") is True
    assert await store.revoke_blob_grant(ROWS, "acme", "globex") is False
    assert await store.unreadable_for("globex", [ROWS]) == []  # initech's grant stands
    assert await store.blob_grants(ROWS) == [BlobGrantRecord("globex", "initech")]
    assert await store.revoke_blob_grant(ROWS, "initech", "globex") is True
    assert await store.unreadable_for("globex", [ROWS]) == [ROWS]
    assert await store.read_right("globex", ROWS) is None
    assert await store.blob_grants(ROWS) == []


async def test_a_grant_vouches_for_a_manifests_listing_only_from_a_grantors_lineage(
    store: Store,
) -> None:
    """``trusted_listings``: the tenant's own lineage, or a grantor's; never an upload."""
    await store.record_upload("acme", OTHER, 5, "application/json")
    await store.grant_blob(OTHER, "acme", "globex", 0)
    assert await store.trusted_listings("acme", [OTHER]) == set()
    assert await store.trusted_listings("globex", [OTHER]) == set()
    await store.redis.sadd(store.keys.tenant_results("acme"), ROWS)  # as the ledger does
    assert await store.trusted_listings("acme", [ROWS, OTHER]) == {ROWS}
    assert await store.trusted_listings("globex", [ROWS]) == set()  # not granted yet
    await store.grant_blob(ROWS, "acme", "globex", 0)
    assert await store.trusted_listings("globex", [ROWS, OTHER, ROWS]) == {ROWS}
    await store.revoke_blob_grant(ROWS, "acme", "globex")
    assert await store.trusted_listings("globex", [ROWS]) == set()


async def test_racing_grants_count_each_once_and_stop_at_the_limit(clients: list[Store]) -> None:
    """50 grants of 25 distinct (digest, grantee) pairs by one grantor, each sent twice
    through five connections, against a limit of 20: exactly 20 are made, and the grants
    made, the grantees' rights and the grantor's count agree."""
    grantees = [f"t{i}" for i in range(25)]
    made = await asyncio.gather(
        *(_grant_or_refuse(clients[i % 5], grantees[i % 25], limit=20) for i in range(RACERS))
    )
    assert sum(1 for m in made if m is True) == 20
    assert await clients[0].grant_count("acme") == 20
    records = await clients[0].blob_grants(ROWS)
    assert len(records) == 20
    holders = {r.grantee for r in records}
    for grantee in grantees:
        readable = not await clients[0].unreadable_for(grantee, [ROWS])
        assert readable == (grantee in holders)


async def test_racing_revokes_of_two_grantors_leave_no_right_behind(clients: list[Store]) -> None:
    for grantor in ("acme", "initech"):
        assert await clients[0].grant_blob(ROWS, grantor, "globex", 0)
    revoked = await asyncio.gather(
        *(
            clients[i % 5].revoke_blob_grant(ROWS, ("acme", "initech")[i % 2], "globex")
            for i in range(RACERS)
        )
    )
    assert sum(revoked) == 2
    assert await clients[0].unreadable_for("globex", [ROWS]) == [ROWS]
    assert await clients[0].blob_grants(ROWS) == []
    assert not await clients[0].redis.exists(clients[0].keys.blob_grantors(ROWS, "globex"))


async def _grant_or_refuse(store: Store, grantee: str, limit: int) -> bool | None:
    try:
        return await store.grant_blob(ROWS, "acme", grantee, limit)
    except QuotaExceededError:
        return None


async def test_racing_uploads_past_a_byte_quota_record_exactly_what_fits(
    clients: list[Store],
) -> None:
    """50 distinct 10-byte blobs, a 200-byte quota: 20 owners recorded, 200 bytes counted,
    and a repeat of a recorded upload counts nothing."""
    digests = [digest_bytes(f"blob {i}".encode()) for i in range(RACERS)]
    recorded = await asyncio.gather(
        *(_upload_or_refuse(clients[i % 5], digests[i], limit=200) for i in range(RACERS))
    )
    assert sum(1 for r in recorded if r is True) == 20
    owned = [d for d, r in zip(digests, recorded, strict=True) if r]
    assert await clients[0].upload_state("acme", owned[0]) == (True, 200)
    assert await clients[0].record_upload("acme", owned[0], 10, "text/plain", 200) is False
    refused = next(d for d, r in zip(digests, recorded, strict=True) if r is None)
    assert await clients[0].upload_state("acme", refused) == (False, 200)
    assert await clients[0].blob(refused) is None
    assert await clients[0].blob_owners(refused) == set()


async def _upload_or_refuse(store: Store, digest: str, limit: int) -> bool | None:
    try:
        return await store.record_upload("acme", digest, 10, "text/plain", limit)
    except QuotaExceededError:
        return None
