"""The learned throughput model across scheduler replicas, on the real and embedded stores.

Replicas share one model in Redis: a replica that takes the lease schedules on what its
predecessor learned, and no replica's save drops what another saved after it read.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from flowmesh_core.control.scheduler import Scheduler
from flowmesh_core.control.throughput import ThroughputModel
from flowmesh_core.settings import load_settings
from flowmesh_core.store import Store
from tests.integration.procs import until

pytestmark = pytest.mark.timeout(30)


@dataclass
class Replicas:
    """Schedulers on one store URL and prefix, each on its own connection."""

    url: str
    prefix: str
    blob_url: str
    stores: list[Store] = field(default_factory=list)
    loops: dict[int, tuple[asyncio.Event, asyncio.Task[None]]] = field(default_factory=dict)

    def new(self) -> Scheduler:
        settings = load_settings(
            redis_url=self.url, key_prefix=self.prefix, blob_url=self.blob_url, lease_ttl_s=0.6
        )
        store = Store.open(self.url, self.prefix)
        self.stores.append(store)
        return Scheduler(store, settings)

    def start(self, scheduler: Scheduler) -> None:
        stop = asyncio.Event()
        self.loops[id(scheduler)] = (stop, asyncio.create_task(scheduler.run(stop)))

    async def stop(self, scheduler: Scheduler) -> None:
        stop, task = self.loops.pop(id(scheduler))
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    async def stored(self) -> ThroughputModel:
        document = await self.stores[0].load_json(self.stores[0].keys.throughput())
        assert document is not None, "no throughput model in Redis"
        return ThroughputModel.from_dict(json.loads(document))


@pytest.fixture
async def replicas(store_url: str, key_prefix: str, tmp_path: Path) -> AsyncIterator[Replicas]:
    reps = Replicas(store_url, key_prefix, f"file://{tmp_path / 'blobs'}")
    try:
        yield reps
    finally:
        for stop, task in reps.loops.values():
            stop.set()
            await asyncio.wait_for(task, timeout=10)
        if reps.stores:
            await reps.stores[0].purge()
        for store in reps.stores:
            await store.aclose()


def leads(scheduler: Scheduler) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        store = scheduler.store
        holder = await store.redis.get(store.keys.scheduler_lease())
        return holder is not None and holder == scheduler.fence

    return check


def seen(scheduler: Scheduler, model: str) -> int:
    return scheduler.throughput.samples("L4", "embed", model, 8)


async def test_a_standby_that_takes_the_lease_schedules_on_its_predecessors_model(
    replicas: Replicas,
) -> None:
    a, b = replicas.new(), replicas.new()
    replicas.start(a)
    await until(leads(a), 10, "A to take the lease")
    replicas.start(b)
    await until(lambda: b.fence is not None, 10, "B to start as a standby")
    await asyncio.sleep(0.5)  # B has read the model as it stood (empty) by now

    a.observe("L4", "embed", "m1", 8, 2.0, 3.0)
    await replicas.stop(a)
    await until(leads(b), 10, "B to take the lease after A stopped")
    await until(lambda: seen(b, "m1") == 1, 5, "the new leader to learn what A learned")
    assert b.throughput.batch_seconds("L4", "embed", "m1", 8) == pytest.approx(2.0)
    assert b.throughput.load_samples("L4", "m1") == 1


async def test_a_leader_that_comes_back_with_an_old_model_keeps_what_others_learned(
    replicas: Replicas,
) -> None:
    a, b = replicas.new(), replicas.new()
    replicas.start(a)
    await until(leads(a), 10, "A to take the lease")
    replicas.start(b)
    a.observe("L4", "embed", "m1", 8, 2.0, 0.0)
    await replicas.stop(a)  # A keeps its model in memory: it knows m1 only

    await until(leads(b), 10, "B to take the lease")
    b.observe("L4", "embed", "m2", 8, 2.0, 0.0)
    await until(lambda: seen(b, "m2") == 1, 5, "B to learn m2")
    await replicas.stop(b)

    a.observe("L4", "embed", "m3", 8, 2.0, 0.0)
    replicas.start(a)
    await until(leads(a), 10, "A to take the lease again")
    await until(lambda: seen(a, "m2") == 1, 5, "A to adopt what B learned")
    await replicas.stop(a)

    stored = await replicas.stored()
    assert [stored.samples("L4", "embed", m, 8) for m in ("m1", "m2", "m3")] == [1, 1, 1]


async def test_a_stale_replicas_save_merges_into_the_newer_model(replicas: Replicas) -> None:
    a, b = replicas.new(), replicas.new()
    await a.sync_model()
    await b.sync_model()
    b.observe("L4", "embed", "m2", 8, 2.0, 0.0)
    await b.sync_model()  # the stored model is now newer than A's

    a.observe("L4", "embed", "m1", 8, 4.0, 0.0)
    a.observe("L4", "embed", "m2", 8, 1.0, 0.0)
    await a.sync_model()
    stored = await replicas.stored()
    assert stored.samples("L4", "embed", "m1", 8) == 1
    assert stored.samples("L4", "embed", "m2", 8) == 2  # B's sample, then A's on top
    assert seen(a, "m2") == 2
    await b.sync_model()
    assert b.throughput.to_dict() == stored.to_dict()


async def test_replicas_syncing_at_once_lose_no_observation(replicas: Replicas) -> None:
    schedulers = [replicas.new() for _ in range(4)]
    for i, scheduler in enumerate(schedulers):
        for n in range(3):
            scheduler.observe("L4", "embed", f"m{i}", 8, 1.0 + n, 0.0)
    await asyncio.gather(*(s.sync_model() for s in schedulers))
    stored = await replicas.stored()
    assert [stored.samples("L4", "embed", f"m{i}", 8) for i in range(4)] == [3, 3, 3, 3]
