"""Stream reads on every backend: an entry already waiting is delivered, never swallowed.

fakeredis 2.40 (the embedded store) moves waiting entries to the pending list without
returning them when XREADGROUP blocks without COUNT; the store's readers must not read
that way. These run against the real Redis and the embedded store alike.
"""

from __future__ import annotations

from flowmesh_core.models import WorkerProfile
from flowmesh_core.store import Store


async def test_a_batch_assigned_between_reads_is_delivered(store: Store) -> None:
    profile = WorkerProfile(
        worker_id="w-1", accelerator="cpu", memory_bytes=0, price_per_hour=0, watts=0
    )
    await store.register_worker(profile)
    stream = store.keys.assignments("w-1")
    for n in range(3):
        await store.redis.xadd(stream, {"batch_id": f"b{n}", "items": "[]"})
        entries = await store.read_assignments("w-1", 1, 200)
        assert [f["batch_id"] for _, f in entries] == [f"b{n}"]
    assert await store.read_assignments("w-1", 1, 50) == []
    pending = await store.read_assignments("w-1", 10, None, pending=True)
    assert [f["batch_id"] for _, f in pending] == ["b0", "b1", "b2"]
