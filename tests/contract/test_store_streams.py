"""Stream reads on every backend: an entry already waiting is delivered, never swallowed.

An emulated store once moved waiting entries to the pending list without returning them
when XREADGROUP blocked without COUNT; these keep every backend honest. They run against
the real Redis and the embedded store alike.
"""

from __future__ import annotations

import time

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


async def test_a_drained_worker_can_be_taken_back_into_service(store: Store) -> None:
    for worker_id in ("w-1", "w-2"):
        profile = WorkerProfile(
            worker_id=worker_id, accelerator="cpu", memory_bytes=0, price_per_hour=0, watts=0
        )
        await store.register_worker(profile)

    async def draining() -> dict[str, bool]:
        return {r.profile.worker_id: r.draining for r in await store.workers()}

    await store.set_draining("w-1")
    assert await draining() == {"w-1": True, "w-2": False}
    await store.heartbeat("w-1", warm=["m"])  # a heartbeat does not undo a drain
    assert await draining() == {"w-1": True, "w-2": False}
    await store.set_draining("w-1", draining=False)
    await store.set_draining("w-2", draining=False)  # not draining: a no-op
    assert await draining() == {"w-1": False, "w-2": False}


async def test_a_late_heartbeat_neither_revives_a_forgotten_worker_nor_goes_back_in_time(
    store: Store,
) -> None:
    """A beat held back by a network partition and delivered after newer ones (or after
    the control plane forgot the worker) changes nothing (tests/multihost shows it)."""
    assert not await store.heartbeat("w-1")  # never registered: nothing is written
    assert await store.redis.exists(store.keys.worker("w-1")) == 0
    assert await store.redis.zscore(store.keys.workers(), "w-1") is None

    profile = WorkerProfile(
        worker_id="w-1", accelerator="cpu", memory_bytes=0, price_per_hour=0, watts=0
    )
    await store.register_worker(profile)
    assert await store.heartbeat("w-1", warm=["m"])
    (record,) = await store.workers()
    assert record.warm == ["m"]
    now = record.heartbeat
    late = [store.keys.worker("w-1"), store.keys.workers()], ["w-1", repr(now - 30), ""]
    assert not await store.run_script("heartbeat", *late)
    (record,) = await store.workers()
    assert record.heartbeat == now
    assert await store.redis.zscore(store.keys.workers(), "w-1") == now
    assert await store.dead_workers(time.time() - 10) == []

    await store.forget_worker("w-1")  # taken for dead
    assert not await store.heartbeat("w-1")
    assert await store.workers() == []
    assert await store.dead_workers(time.time()) == []  # no half record to reclaim again
