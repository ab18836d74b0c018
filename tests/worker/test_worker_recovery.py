"""A worker that comes back: restarted under its id, through a flaky CAS, after Redis lost
its data.

The store's part (registration, the NOGROUP reply turned into StreamGroupMissingError)
is checked on both backends; the rest runs real ``Worker`` loops and a control plane on
the real Redis (where marked, on the embedded store too), breaks one thing the worker
depends on, and checks that the work still gets done, and done once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowmesh_core.blobs import BlobStore, PutResult
from flowmesh_core.blobs.file import FileBlobStore
from flowmesh_core.control import NodeState
from flowmesh_core.errors import BlobStoreUnavailableError, StreamGroupMissingError
from flowmesh_core.models import Operator, WorkerProfile
from flowmesh_core.store import Store
from flowmesh_worker.executors import Batch, Executor, Loaded, create_executor
from flowmesh_worker.runner import BatchRunner
from flowmesh_worker.weights import WarmCache
from flowmesh_worker.worker import Worker
from tests.integration.conftest import Fabric
from tests.worker.conftest import Workers
from tests.worker.test_worker_loop import result, until

both_stores = pytest.mark.parametrize("fabric_url", ["redis", "embedded"], indirect=True)


def template(topic: str) -> Operator:
    return Operator.model_validate(
        {
            "kind": "data.template",
            "params": {"template": "Write about {topic}."},
            "inputs": {"records": [{"topic": topic}]},
        }
    )


def profile(worker_id: str) -> WorkerProfile:
    return WorkerProfile(
        worker_id=worker_id, accelerator="cpu", memory_bytes=0, price_per_hour=0, watts=0
    )


# -- a restart under the same id ---------------------------------------------------------


async def test_registering_again_clears_a_drain_and_a_retirement(store: Store) -> None:
    await store.register_worker(profile("w-1"))
    await store.retire_worker("w-1")
    assert await store.is_retired("w-1")

    await store.register_worker(profile("w-1"))  # the same id, restarted

    assert not await store.is_retired("w-1")
    assert [(r.profile.worker_id, r.draining) for r in await store.workers()] == [("w-1", False)]


async def test_a_registration_and_its_uncordon_are_seen_together(store: Store) -> None:
    """Raced against readers, a registration is never half there: no snapshot of the
    worker's record shows the new heartbeat and the old retirement together."""
    worker = store.keys.worker("w-1")

    async def snapshots() -> list[dict[str, Any]]:
        seen = []
        for _ in range(10):
            seen.append(await store.redis.hgetall(worker))
            await asyncio.sleep(0)
        return seen

    for _ in range(20):
        await store.register_worker(profile("w-1"))
        await store.retire_worker("w-1")
        retired_beat = await store.redis.hget(worker, "heartbeat")
        _, *seen = await asyncio.gather(
            store.register_worker(profile("w-1")), snapshots(), snapshots()
        )
        for fields in itertools.chain(*seen):
            fresh = fields.get("heartbeat") != retired_beat
            assert fresh == ("retired" not in fields and "draining" not in fields), fields


@both_stores
async def test_a_worker_restarted_under_its_id_after_stopping_takes_work_again(
    fabric: Fabric, workers: Workers
) -> None:
    first = await workers.start("w-1")
    await workers.stop(first)  # SIGTERM: drains, then retires
    observer = Store.open(fabric.url, fabric.prefix)
    fabric.stores.append(observer)
    assert await observer.is_retired("w-1")
    again = await workers.start("w-1")  # restarted before any reclaim round forgot it

    async def registered() -> bool:  # retiring scored it 0; registering scores it now
        return bool(await observer.redis.zscore(observer.keys.workers(), "w-1"))

    await until(registered, "w-1 registering again")
    plane = await fabric.plane(worker_ttl_s=3.0)
    tenant = await fabric.tenant("team-a")

    submitted = await plane.submit_operator(tenant, template("tides"))
    status = await plane.wait(tenant, submitted.workflow_id, 10, with_lineage=True)

    assert status.state == NodeState.DONE, status
    assert again.items_done == 1
    (record,) = status.nodes[0].lineage
    assert await result(plane, record.result_digest) == "Write about tides."


# -- a CAS that fails under the worker: the store is retried, the batch is not ------------


class FlakyBlobs(FileBlobStore):
    """A file CAS whose first ``failures`` puts fail as an unreachable backend would."""

    def __init__(self, url: str, failures: int) -> None:
        super().__init__(url)
        self.failures = failures
        self.puts = 0

    def _put(self, chunks: Iterator[bytes], expected: str | None) -> PutResult:
        self._refuse()
        return super()._put(chunks, expected)

    def _put_many(self, blobs: list[bytes]) -> list[PutResult]:
        self._refuse()  # a batch's results are one write
        return super()._put_many(blobs)

    def _refuse(self) -> None:
        self.puts += 1
        if self.puts <= self.failures:
            raise BlobStoreUnavailableError(f"put {self.puts} refused (on purpose)")


class Counting(Executor):
    """``data.template`` (or ``result`` for every item, if given), counting how many times
    it was asked to run a batch."""

    def __init__(self, *result: Any) -> None:
        super().__init__()
        self.inner = create_executor("data.template")
        self.result = result
        self.calls = 0

    def run(self, batch: Batch, loaded: Loaded | None) -> list[Any]:
        self.calls += 1
        if self.result:
            return [self.result[0]] * len(batch.items)
        return self.inner.run(batch, loaded)


async def start_counting_worker(
    fabric: Fabric, workers: Workers, blobs: BlobStore, tmp_path: Path, *result: Any
) -> Counting:
    """A worker whose executor counts its runs and whose CAS is ``blobs``."""
    executor = Counting(*result)
    store = Store.open(fabric.url, fabric.prefix)
    fabric.stores.append(store)
    runner = BatchRunner(blobs, lambda kind: executor, WarmCache(1 << 20), tmp_path, "w-1")
    worker = Worker(store, runner, profile("w-1"), heartbeat_s=1.0, store_backoff_s=0.01)
    stop = asyncio.Event()
    workers.running.append((worker, stop, asyncio.create_task(worker.run(stop))))
    return executor


async def test_results_that_fail_to_store_are_stored_again_without_running_again(
    fabric: Fabric, workers: Workers, tmp_path: Path
) -> None:
    blobs = FlakyBlobs(fabric.blob_url, failures=3)
    executor = await start_counting_worker(fabric, workers, blobs, tmp_path)
    plane = await fabric.plane(worker_ttl_s=3.0)
    tenant = await fabric.tenant("team-a")

    submitted = await plane.submit_operator(tenant, template("tides"))
    status = await plane.wait(tenant, submitted.workflow_id, 10, with_lineage=True)

    assert status.state == NodeState.DONE, status
    assert executor.calls == 1
    assert blobs.puts == 4  # three refused, the fourth stored
    (record,) = status.nodes[0].lineage
    assert await result(plane, record.result_digest) == "Write about tides."


async def test_results_that_never_store_fail_their_items_after_one_run(
    fabric: Fabric, workers: Workers, tmp_path: Path
) -> None:
    blobs = FlakyBlobs(fabric.blob_url, failures=1000)
    executor = await start_counting_worker(fabric, workers, blobs, tmp_path)
    plane = await fabric.plane(worker_ttl_s=3.0, max_attempts=1)
    tenant = await fabric.tenant("team-a")

    submitted = await plane.submit_operator(tenant, template("tides"))
    status = await plane.wait(tenant, submitted.workflow_id, 10, with_lineage=True)

    assert status.state == NodeState.FAILED, status
    (record,) = status.nodes[0].lineage
    assert record.error is not None
    assert "results could not be stored" in record.error
    assert executor.calls == 1
    assert blobs.puts == 5  # the bounded retries, and no more


async def test_a_result_that_is_not_json_fails_its_item_after_one_run(
    fabric: Fabric, workers: Workers, tmp_path: Path
) -> None:
    blobs = FlakyBlobs(fabric.blob_url, failures=0)
    executor = await start_counting_worker(fabric, workers, blobs, tmp_path, float("nan"))
    plane = await fabric.plane(worker_ttl_s=3.0, max_attempts=1)
    tenant = await fabric.tenant("team-a")

    submitted = await plane.submit_operator(tenant, template("tides"))
    status = await plane.wait(tenant, submitted.workflow_id, 10, with_lineage=True)

    assert status.state == NodeState.FAILED, status
    (record,) = status.nodes[0].lineage
    assert record.error is not None
    assert "the executor's result is not JSON" in record.error
    assert executor.calls == 1
    assert blobs.puts == 0


# -- Redis that lost its data -------------------------------------------------------------


async def test_a_read_from_a_lost_group_says_so_and_rejoining_mends_it(store: Store) -> None:
    await store.register_worker(profile("w-1"))
    await store.redis.delete(store.keys.assignments("w-1"))

    with pytest.raises(StreamGroupMissingError):
        await store.read_assignments("w-1", 1, 10)
    await store.rejoin_worker(profile("w-1"))

    assert await store.read_assignments("w-1", 1, 10) == []


async def test_rejoining_keeps_an_operators_cordon(store: Store) -> None:
    await store.register_worker(profile("w-1"))
    await store.set_draining("w-1")

    await store.rejoin_worker(profile("w-1"))

    assert [r.draining for r in await store.workers()] == [True]


async def test_a_lost_stream_leaves_nothing_to_take_back(store: Store) -> None:
    """The reclaimer of a dead worker whose stream Redis lost finds nothing to re-plan,
    instead of failing the scheduler's round on every try."""
    await store.register_worker(profile("w-1"))
    await store.redis.delete(store.keys.assignments("w-1"))

    assert await store.take_assignments("w-1") == []


async def test_a_worker_carries_on_after_redis_lost_its_data(
    fabric: Fabric, workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis restarted empty (or failed over to an empty replica) under a running worker:
    its consumer group is gone. The worker notices on its next read, registers again
    and reads on; the loss is logged as an error."""
    plane = await fabric.plane(worker_ttl_s=3.0)
    worker = await workers.start("w-1")
    keys = plane.store.keys

    async def registered() -> bool:  # the group is created last
        return bool(await plane.store.redis.exists(keys.assignments("w-1")))

    await until(registered, "w-1 registering")
    lost = [k async for k in plane.store.redis.scan_iter(match=keys.pattern(), count=1000)]
    await plane.store.redis.delete(*lost)  # in one DEL: all of it goes at once, as in a restart
    tenant = await fabric.tenant("team-a")

    submitted = await plane.submit_operator(tenant, template("tides"))
    status = await plane.wait(tenant, submitted.workflow_id, 15, with_lineage=True)

    assert status.state == NodeState.DONE, status
    assert worker.items_done == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("Redis state was lost" in e for e in errors), errors
    # ...and the control plane said so for its own groups (events, outbox), then went on.
    assert any("Redis lost its data" in e for e in errors), errors
