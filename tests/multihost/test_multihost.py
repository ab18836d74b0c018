"""FlowMesh across hosts that fail the way hosts fail: a partition, a killed leader, a burst.

The cluster is ``mesh`` (conftest.py): Redis, two control-plane replicas and three
workers, each in its own network namespace, talking over veth links through a bridge.
Work is ``python`` operators over ``tests.worker.ops.logged_echo``, which logs every
execution with the worker's pid, so each test counts how often an item really ran and
where. The tests share the cluster and run in file order, each on its own items.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from typing import Any

import pytest

from flowmesh_core.client import AsyncClient, NodeState, SubmitResult, python_operator
from flowmesh_core.models import ItemStatus, LineageRecord
from flowmesh_core.store import Store
from flowmesh_core.store.fleet import EVENTS_GROUP
from tests.integration.procs import until
from tests.multihost.conftest import LEASE_TTL_S, MIN_REPLICAS, POOL, WORKERS, Mesh
from tests.worker import ops

ROUND_S = LEASE_TTL_S / 3
"""One scheduler round of a standby: how often it tries to take the lease (scheduler.py)."""


async def submit(
    mesh: Mesh, client: AsyncClient, xs: list[Any], delay: float
) -> list[SubmitResult]:
    return list(
        await asyncio.gather(
            *(
                client.submit_operator(
                    python_operator(ops.logged_echo, {"x": x}, log=str(mesh.runs), delay=delay)
                )
                for x in xs
            )
        )
    )


async def finished(mesh: Mesh, client: AsyncClient, submitted: list[SubmitResult]) -> None:
    for s in submitted:
        status = await client.wait(s.workflow_id, timeout=45)
        assert status.state == NodeState.DONE, f"{s.workflow_id}: {status}\n{mesh.logs()}"


async def lineage(client: AsyncClient, submitted: list[SubmitResult]) -> list[LineageRecord]:
    """The one record of each one-item workflow, in order."""
    records = []
    for s in submitted:
        (record,) = await client.lineage(s.workflow_id)
        records.append(record)
    return records


async def results(client: AsyncClient, records: list[LineageRecord]) -> list[Any]:
    return [await client.result_json(r.result_digest) for r in records if r.result_digest]


async def events_applied(store: Store) -> bool:
    """Every completion report on the events stream has been read and applied."""
    groups = await store.redis.xinfo_groups(store.keys.events())
    (group,) = (g for g in groups if g["name"] == EVENTS_GROUP)
    return bool(group["pending"] == 0 and group["lag"] == 0)


def leader(mesh: Mesh) -> str | None:
    """The replica whose log says it holds the scheduler lease (the last word counts)."""
    holders = []
    for name, plane in mesh.planes.items():
        out = plane.output()
        if out.rfind("scheduler lease acquired") > out.rfind("scheduler lease lost"):
            holders.append(name)
    return holders[0] if len(holders) == 1 else None


@pytest.mark.timeout(150)  # the first test also starts the cluster
async def test_a_partitioned_worker_is_replanned_and_its_late_report_changes_nothing(
    mesh: Mesh,
) -> None:
    store = mesh.store()
    async with mesh.client() as client:
        xs = [f"part-{i}" for i in range(6)]
        submitted = await submit(mesh, client, xs, delay=1.5)

        def first() -> int | None:
            return next((pid for x, pid in mesh.executions() if x in xs), None)

        await until(lambda: first() is not None, 30, "a batch to start", mesh.logs)
        victim = mesh.worker_by_pid(first() or 0)
        mesh.net.partition(mesh.net[victim.name])
        cut_at = time.monotonic()
        held = [r for r in await lineage(client, submitted) if r.worker == victim.name]
        assert held, "the partitioned worker held a batch"
        assert all(r.status == ItemStatus.RUNNING for r in held), held
        (batch_id,) = {r.batch_id for r in held}

        await finished(mesh, client, submitted)
        replanned_s = time.monotonic() - cut_at
        records = await lineage(client, submitted)
        assert await results(client, records) == xs
        assert victim.name not in {r.worker for r in records}, records
        stats = await store.cluster_stats()
        cached = [await store.cached("global", r.op_key) for r in records]
        assert cached == [r.result_digest for r in records]

        mesh.net.heal(mesh.net[victim.name])
        await until(
            lambda: f"batch {batch_id}:" in victim.output(), 45,
            "the healed worker's late report to land", mesh.logs,
        )  # fmt: skip
        await until(lambda: events_applied(store), 20, "every report to be applied", mesh.logs)
        assert await lineage(client, submitted) == records  # the late report changed nothing
        assert await results(client, records) == xs
        assert [await store.cached("global", r.op_key) for r in records] == cached
        after = await store.cluster_stats()
        assert after.get("executed") == stats.get("executed"), (stats, after)
        assert after.get("batches") == stats.get("batches"), (stats, after)
        ran = mesh.executions()
        elsewhere = Counter(x for x, pid in ran if x in xs and pid != victim.pid)
        assert elsewhere == Counter(xs), ran  # each item once on the reachable workers

        async def back() -> bool:
            return await store.worker_profile(victim.name) is not None

        await until(back, 30, f"{victim.name} to rejoin the fleet", mesh.logs)
        assert victim.alive()
        # taken for dead once: a heartbeat the partition held back, delivered after the
        # heal, does not bring back a record that the next reclaim round "kills" again
        dead = f"worker {victim.name} stopped heartbeating"
        assert sum(p.output().count(dead) for p in mesh.planes.values()) == 1, mesh.logs()
        print(f"\npartition: re-planned and finished {replanned_s:.1f} s after the cut")
    await store.aclose()


@pytest.mark.timeout(90)
async def test_killing_the_scheduler_leader_hands_the_lease_over_within_its_ttl(
    mesh: Mesh,
) -> None:
    store = mesh.store()
    await until(lambda: leader(mesh) is not None, 20, "one replica to hold the lease", mesh.logs)
    name = leader(mesh)
    assert name is not None
    doomed = mesh.planes[name]
    (survivor,) = (p for p in mesh.planes.values() if p is not doomed)
    xs = [f"lead-{i}" for i in range(16)]
    async with mesh.client(doomed.url) as to_doomed, mesh.client(survivor.url) as client:
        early = await submit(mesh, to_doomed, xs[:8], delay=0.3)

        async def started() -> bool:
            return any(x in xs for x, _ in mesh.executions())

        await until(started, 30, "the leader's first assignment to run", mesh.logs)
        holder = await store.redis.get(store.keys.scheduler_lease())
        assert holder is not None
        doomed.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        late = await submit(mesh, client, xs[8:], delay=0.3)  # while nobody schedules

        async def taken_over() -> bool:
            now = await store.redis.get(store.keys.scheduler_lease())
            return now is not None and now != holder

        await until(taken_over, LEASE_TTL_S + 10, "the lease to change hands", mesh.logs)
        failover_s = time.monotonic() - killed_at
        assert await doomed.exited(5) == -signal.SIGKILL
        print(f"\nfailover: the standby took the lease {failover_s:.2f} s after the kill")
        assert failover_s <= LEASE_TTL_S + ROUND_S, (failover_s, survivor.output())
        assert "scheduler lease acquired" in survivor.output()

        await finished(mesh, client, early + late)
        records = await lineage(client, early + late)
        assert await results(client, records) == xs
        ran = Counter(x for x, _ in mesh.executions() if x in xs)
        assert ran == Counter(xs), ran  # nothing lost, nothing run twice
        assert all(w.alive() for w in mesh.workers.values())
    await store.aclose()


@pytest.mark.timeout(90)
async def test_a_burst_raises_the_recommendation_then_it_falls_back_to_the_minimum(
    mesh: Mesh,
) -> None:
    async def desired() -> int:
        return int((await mesh.autoscale())["pools"][POOL]["desired"])

    async def at_minimum() -> bool:
        return await desired() == MIN_REPLICAS

    await until(at_minimum, 30, "the earlier work to drain", mesh.logs)
    seen: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set():
            seen.append((await mesh.autoscale())["pools"][POOL])
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    # 40 items of 0.5 s: 20 s of work, far more than the three ready workers drain
    # during one lead (the pool's 1 s boot), so the autoscaler buys more whatever
    # this machine's speed (docs/autoscaling.md: only what they cannot drain is bought)
    xs = [f"burst-{i}" for i in range(40)]
    async with mesh.client() as client:
        submitted = await submit(mesh, client, xs, delay=0.5)
        await finished(mesh, client, submitted)
    done.set()
    await watcher
    peak = max(seen, key=lambda p: p["desired"])
    assert peak["desired"] > len(WORKERS) > MIN_REPLICAS, seen  # it asked for more
    assert peak["backlog_s"] > 0, peak
    assert peak["add"] > 0, peak
    await until(at_minimum, 20, "the recommendation to fall back to the minimum", mesh.logs)
    after = (await mesh.autoscale())["pools"][POOL]
    assert after["replicas"] == len(WORKERS), after
    assert after["remove"] == len(WORKERS) - MIN_REPLICAS, after
    print(f"\nburst: desired rose to {peak['desired']} ({peak['reason']}), back to {after}")
