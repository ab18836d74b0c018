"""What one scheduling round costs in Redis round trips, and what it weighs, on every backend.

A round reads the fleet, the ready pool and tenant usage in one round trip
(``Store.round_view``), then spends one per batch it claims; the usage it hands the policy
is decayed with ``fairness_half_life_s``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from flowmesh_core.control.scheduler import Scheduler
from flowmesh_core.control.throughput import ThroughputModel
from flowmesh_core.control.utility import (
    BatchCandidate,
    Decision,
    TenantUsage,
    UtilityWeights,
    WorkerView,
)
from flowmesh_core.models import WorkerProfile
from flowmesh_core.settings import Settings, load_settings
from flowmesh_core.store import Store
from tests.contract.test_store_round_view import complete_at
from tests.contract.test_store_scheduling import OTHER_SIGNATURE, enqueue

pytestmark = pytest.mark.timeout(30)


class Trips:
    """Counts what a client sends: one per command, one per pipeline."""

    def __init__(self, store: Store) -> None:
        self.count = 0
        client: Any = store.redis
        execute, pipeline = client.execute_command, client.pipeline

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await execute(*args, **kwargs)

        def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = pipeline(*args, **kwargs)
            run = pipe.execute

            async def execute_pipe(*a: Any, **kw: Any) -> Any:
                self.count += 1
                return await run(*a, **kw)

            pipe.execute = execute_pipe
            return pipe

        client.execute_command = counted
        client.pipeline = counted_pipeline


class Recorder:
    """A policy that records the usage it is shown and assigns nothing."""

    name = "recorder"

    def __init__(self) -> None:
        self.usage: list[dict[str, float]] = []

    def choose(
        self,
        candidates: Sequence[BatchCandidate],
        workers: Sequence[WorkerView],
        *,
        throughput: ThroughputModel,
        weights: UtilityWeights,
        usage: TenantUsage,
    ) -> Decision | None:
        self.usage.append(dict(usage))
        return None


def settings(store: Store, tmp_path: Path, **kw: Any) -> Settings:
    return load_settings(
        redis_url=store.url, key_prefix=store.keys.prefix, blob_url=tmp_path.as_uri(), **kw
    )


async def scheduler(store: Store, tmp_path: Path, **kw: Any) -> Scheduler:
    s = Scheduler(store, settings(store, tmp_path, **kw))
    s.fence = await store.new_fence()
    assert await store.hold_lease(s.fence, ttl_s=30)
    return s


async def register(store: Store, n: int, **kw: Any) -> None:
    for i in range(n):
        await store.register_worker(
            WorkerProfile(
                worker_id=f"w{i}",
                accelerator="cpu",
                memory_bytes=0,
                price_per_hour=1.0,
                watts=50.0,
                **kw,
            )
        )


async def claims_and_trips(s: Scheduler) -> tuple[int, int, int]:
    """(items assigned, batches claimed, round trips) of one round."""
    trips, claims = Trips(s.store), Counter[str]()
    claim = s.store.claim_batch

    async def counted(*args: Any, **kwargs: Any) -> int:
        claims["batch"] += 1
        return await claim(*args, **kwargs)

    s.store.claim_batch = counted  # type: ignore[method-assign]
    try:
        assigned = await s.round()
    finally:
        del s.store.claim_batch
    return assigned, claims["batch"], trips.count


async def test_a_round_reads_in_one_round_trip_and_claims_in_one_each(
    store: Store, tmp_path: Path
) -> None:
    await register(store, 12, max_batch=8)
    for tenant in ("acme", "globex", "initech"):
        await enqueue(store, 20, tenant=tenant)
        await enqueue(store, 4, tenant=tenant, signature=OTHER_SIGNATURE)
    s = await scheduler(store, tmp_path)

    assigned, batches, trips = await claims_and_trips(s)
    assert assigned == 72
    assert trips == 1 + batches

    # Nothing left to assign: the round is its one read.
    assert await claims_and_trips(s) == (0, 0, 1)


async def test_a_worker_that_takes_more_than_any_before_costs_one_more_read_once(
    store: Store, tmp_path: Path
) -> None:
    await register(store, 1, max_batch=300, slots=2)
    await enqueue(store, 600)
    s = await scheduler(store, tmp_path)

    assigned, batches, trips = await claims_and_trips(s)
    assert (assigned, batches, trips) == (600, 2, 2 + 2)
    await store.redis.hset(store.keys.worker("w0"), "inflight", 0)
    await enqueue(store, 10)
    assert await claims_and_trips(s) == (10, 1, 1 + 1)


async def test_the_policy_weighs_usage_decayed_to_now(store: Store, tmp_path: Path) -> None:
    await register(store, 1)
    await enqueue(store, 1, tenant="globex")
    (done,) = await enqueue(store, 1, tenant="acme", signature=OTHER_SIGNATURE)
    await complete_at(store, done, 8.0, time.time() - 10.0)  # one half-life ago
    s = await scheduler(store, tmp_path, fairness_half_life_s=10.0)
    s.policy = recorder = Recorder()

    assert await s.round() == 0

    (usage,) = recorder.usage
    assert usage == pytest.approx({"acme": 4.0}, rel=0.01)
