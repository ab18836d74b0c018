"""Blob owners and the read-rights question, on every backend (docs/isolation.md).

Recording an upload changes the owner sets and the blob index in one MULTI/EXEC; raced
by 50 calls from two tenants through five connections, each tenant becomes an owner once.
"""

from __future__ import annotations

import asyncio

from flowmesh_core.hashing import digest_bytes
from flowmesh_core.store import Store

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
