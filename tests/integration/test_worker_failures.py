"""Workers and control planes failing for real: killed, stopped, restarted, poisoned.

Workers are real ``flowmesh worker`` processes, on the real Redis and again on the
embedded store (a fresh key prefix per test, purged afterwards), and a temporary blob
directory. The control plane runs in this
process, except where it must be restarted: there it is a ``flowmesh serve`` process.
Every item is a ``python`` operator over ``tests.worker.ops.logged_echo``, which writes a
line per execution (with the worker's pid) to a file, so each test counts how many times
each item actually ran, and on which worker.

Heartbeats lapse after ``TTL_S``: short, so a dead worker is noticed within seconds;
where no worker is meant to die, a little longer, so that a loaded machine does not make
a live one look dead (which would rightly re-run its work, at least once).
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flowmesh_core.client import python_operator
from flowmesh_core.control import ControlPlane, NodeState, SubmitResult, Tenant, create_tenant
from flowmesh_core.models import ItemStatus, LineageRecord, Satisfaction
from flowmesh_core.settings import Settings, load_settings
from flowmesh_core.store import Store
from tests.integration.procs import Proc, Procs, process_env, until
from tests.worker import ops

TTL_S = 2.0  # where a worker is killed
CALM_TTL_S = 3.0  # where none is meant to die
MODULES = ["tests.worker.ops"]


@dataclass
class Harness:
    """Real worker processes, control planes and an observer on one Redis prefix."""

    redis_url: str
    key_prefix: str
    tmp: Path
    ttl_s: float = CALM_TTL_S
    max_attempts: int = 3
    procs: Procs = field(init=False)
    store: Store = field(init=False)
    runs: Path = field(init=False)
    planes: list[tuple[ControlPlane, asyncio.Event, asyncio.Task[None]]] = field(
        default_factory=list
    )

    def __post_init__(self) -> None:
        self.blob_url = f"file://{self.tmp / 'blobs'}"
        self.runs = self.tmp / "runs.log"
        self.runs.touch()
        env = process_env(
            self.redis_url,
            self.key_prefix,
            self.blob_url,
            worker_ttl_s=self.ttl_s,
            max_attempts=self.max_attempts,
            lease_ttl_s=3.0,  # a killed leader's lease lapses quickly
            worker_python_modules=MODULES,
        )
        self.procs = Procs(self.tmp / "logs", env)
        self.store = Store.open(self.redis_url, self.key_prefix)
        self.observer = ControlPlane(self.settings())  # its loops never run

    def settings(self) -> Settings:
        return load_settings(
            redis_url=self.redis_url,
            key_prefix=self.key_prefix,
            blob_url=self.blob_url,
            worker_ttl_s=self.ttl_s,
            max_attempts=self.max_attempts,
            lease_ttl_s=3.0,
            worker_python_modules=MODULES,
        )

    async def start_plane(self) -> ControlPlane:
        """A control plane running its loops in this process."""
        plane = ControlPlane(self.settings())
        stop = asyncio.Event()
        self.planes.append((plane, stop, asyncio.create_task(plane.run(stop))))
        return plane

    async def tenant(self, name: str = "team-a") -> Tenant:
        tenant, _token = await create_tenant(self.store, name)
        return tenant

    async def submit(self, tenant: Tenant, xs: list[Any], **kwargs: Any) -> list[SubmitResult]:
        """One ``logged_echo`` operator per x, all of one batch signature."""
        return [
            await self.observer.submit_operator(
                tenant, python_operator(ops.logged_echo, {"x": x}, log=str(self.runs), **kwargs)
            )
            for x in xs
        ]

    def executions(self) -> list[tuple[Any, int]]:
        """(x, worker pid) per execution so far, in order."""
        lines = self.runs.read_text().splitlines()
        return [(x, pid) for x, pid in map(json.loads, lines)]

    async def registered(self, worker: Proc) -> None:
        async def check() -> bool:
            return await self.store.worker_profile(worker.name) is not None

        await until(check, 45, f"{worker.name} to register", self.procs.logs)

    async def left_fleet(self, worker_id: str) -> None:
        async def check() -> bool:
            return await self.store.worker_profile(worker_id) is None

        await until(check, 20, f"{worker_id} to leave the fleet", self.procs.logs)

    async def lineage(self, tenant: Tenant, submitted: list[SubmitResult]) -> list[LineageRecord]:
        """The one lineage record of each submitted one-item workflow, in order."""
        records = []
        for s in submitted:
            (record,) = await self.observer.lineage(tenant, s.workflow_id)
            records.append(record)
        return records

    async def finish(self, tenant: Tenant, submitted: list[SubmitResult]) -> None:
        """Wait until every workflow has ended (done or failed)."""
        for s in submitted:
            status = await self.observer.wait(tenant, s.workflow_id, 45)
            ended = status.state in (NodeState.DONE, NodeState.FAILED)
            assert ended, f"{s.workflow_id} still {status.state}\n{self.procs.logs()}"

    async def result(self, record: LineageRecord) -> Any:
        """A result as its tenant reads it: inline in Redis when small, else the CAS."""
        assert record.result_digest is not None, record
        return json.loads(await self.observer.results.read(record.result_digest))

    async def aclose(self) -> None:
        self.procs.close()
        for _plane, stop, _task in self.planes:
            stop.set()
        for plane, _stop, task in self.planes:
            try:
                await asyncio.wait_for(task, timeout=15)
            finally:
                await plane.aclose()
        await self.observer.aclose()
        try:
            await self.store.purge()
        finally:
            await self.store.aclose()


@pytest.fixture
async def harness(
    request: pytest.FixtureRequest, store_url: str, key_prefix: str, tmp_path: Path
) -> AsyncIterator[Harness]:
    """On the real Redis and on the embedded store (its worker processes share it)."""
    options = getattr(request, "param", {})
    h = Harness(store_url, key_prefix, tmp_path, **options)
    try:
        yield h
    finally:
        await h.aclose()


async def assert_exactly_once_in_the_action_cache(h: Harness, records: list[LineageRecord]) -> None:
    """One result per op key, the one every lineage record names, each completed once."""
    for record in records:
        assert record.status == ItemStatus.DONE, record
        assert record.satisfied_by == Satisfaction.EXECUTED, record
        assert await h.store.cached("global", record.op_key) == record.result_digest
    assert len({r.op_key for r in records}) == len(records)
    stats = await h.store.cluster_stats()
    assert stats.get("executed") == len(records), stats  # a duplicate finish adds nothing


@pytest.mark.timeout(120)
@pytest.mark.parametrize("harness", [{"ttl_s": TTL_S}], indirect=True)
async def test_a_worker_killed_mid_batch_loses_nothing_and_duplicates_nothing(
    harness: Harness,
) -> None:
    h = harness
    await h.start_plane()
    tenant = await h.tenant()
    xs = list(range(6))
    submitted = await h.submit(tenant, xs, delay=0.4)  # before any worker: batched together
    other_tenant = await h.tenant("team-b")
    joined = await h.submit(other_tenant, xs, delay=0.4)  # the same items: joined in flight
    workers = {w.name: w for w in (h.procs.worker(f"w-{i}", "--max-batch", "16") for i in (1, 2))}
    await until(lambda: len(h.executions()) >= 1, 45, "a batch to start", h.procs.logs)
    held = await h.lineage(tenant, submitted)
    first_x, first_pid = h.executions()[0]
    doomed = next(w for w in workers.values() if w.pid == first_pid)
    doomed.signal(signal.SIGKILL)
    assert await doomed.exited(10) == -signal.SIGKILL
    (survivor,) = (w for w in workers.values() if w is not doomed)
    batch = [r for r in held if r.worker == doomed.name]
    assert len(batch) >= 2, held  # several items, batched together
    assert len({r.batch_id for r in batch}) == 1
    assert all(r.status == ItemStatus.RUNNING for r in batch)
    before = [x for x, pid in h.executions() if pid == doomed.pid]
    assert first_x in before
    assert len(before) < len(batch), "killed in the middle of its batch"

    await h.finish(tenant, submitted)
    records = await h.lineage(tenant, submitted)
    assert [await h.result(r) for r in records] == xs
    assert {r.worker for r in records} == {survivor.name}
    await assert_exactly_once_in_the_action_cache(h, records)
    await h.finish(other_tenant, joined)
    joiners = await h.lineage(other_tenant, joined)
    assert all(r.satisfied_by == Satisfaction.JOINED for r in joiners), joiners
    assert [r.result_digest for r in joiners] == [r.result_digest for r in records]
    runs = h.executions()
    assert [x for x, pid in runs if pid == doomed.pid] == before  # nothing after its death
    by_survivor = Counter(x for x, pid in runs if pid == survivor.pid)
    assert by_survivor == Counter(xs), runs  # each item once on the survivor
    assert survivor.alive()
    await h.left_fleet(doomed.name)


@pytest.mark.timeout(120)
async def test_sigterm_drains_the_batch_in_hand_and_reexecutes_nothing(harness: Harness) -> None:
    h = harness
    await h.start_plane()
    tenant = await h.tenant()
    xs = list(range(12))
    submitted = await h.submit(tenant, xs, delay=0.3)  # batches of up to four
    workers = [h.procs.worker(f"w-{i}", "--max-batch", "4") for i in (1, 2)]
    await until(lambda: len(h.executions()) >= 1, 45, "a batch to start", h.procs.logs)
    stopping = next(w for w in workers if w.pid == h.executions()[0][1])
    held = await h.lineage(tenant, submitted)
    stopping.signal(signal.SIGTERM)
    (other,) = (w for w in workers if w is not stopping)
    batch = {r.op_key for r in held if r.worker == stopping.name}
    assert len(batch) >= 2, held
    assert len([x for x, pid in h.executions() if pid == stopping.pid]) < len(batch)
    assert await stopping.exited(30) == 0, stopping.output()  # drained, then exited cleanly
    drained = [x for x, pid in h.executions() if pid == stopping.pid]
    assert len(drained) == len(batch), h.executions()  # its whole batch, and nothing more
    assert f"stopped after 1 batch(es), {len(batch)} item(s)" in stopping.output()
    await h.left_fleet(stopping.name)

    await h.finish(tenant, submitted)
    records = await h.lineage(tenant, submitted)
    assert [await h.result(r) for r in records] == xs
    assert {r.op_key for r in records if r.worker == stopping.name} == batch
    assert {r.worker for r in records} == {stopping.name, other.name}
    await assert_exactly_once_in_the_action_cache(h, records)
    runs = h.executions()
    assert Counter(x for x, _ in runs) == Counter(xs), runs  # nothing finished ran again
    assert other.alive()


@pytest.mark.timeout(120)
async def test_a_restarted_control_plane_completes_everything_in_flight(
    harness: Harness,
) -> None:
    h = harness
    first = h.procs.serve("serve-1")
    workers = [h.procs.worker(f"w-{i}", "--max-batch", "3") for i in (1, 2)]
    tenant = await h.tenant()
    xs = list(range(12))
    submitted = await h.submit(tenant, xs, delay=0.4)
    await until(first.healthy, 45, "serve-1 to answer", h.procs.logs)
    for worker in workers:
        await h.registered(worker)
    await until(lambda: len(h.executions()) >= 2, 45, "work to start", h.procs.logs)
    first.signal(signal.SIGKILL)
    assert await first.exited(10) == -signal.SIGKILL
    assert len(h.executions()) < len(xs), "killed while work was in flight"
    await asyncio.sleep(1.0)  # the workers finish and report to nobody meanwhile

    second = h.procs.serve("serve-2")
    await until(second.healthy, 45, "serve-2 to answer", h.procs.logs)
    await h.finish(tenant, submitted)
    records = await h.lineage(tenant, submitted)
    assert [await h.result(r) for r in records] == xs
    await assert_exactly_once_in_the_action_cache(h, records)
    runs = h.executions()
    assert Counter(x for x, _ in runs) == Counter(xs), runs  # nobody re-ran anything
    assert {pid for _, pid in runs} <= {w.pid for w in workers}
    assert all(w.alive() for w in workers)
    assert "Traceback" not in second.output()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("harness", [{"max_attempts": 2}], indirect=True)
async def test_a_poison_item_fails_alone_after_bounded_retries(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    await h.start_plane()
    tenant = await h.tenant()
    xs = ["a", "b", "poison", "d", "e"]
    submitted = await h.submit(tenant, xs, bad="poison")
    worker = h.procs.worker("w-1", "--max-batch", "16")
    await h.finish(tenant, submitted)

    records = await h.lineage(tenant, submitted)
    poisoned = records[2]
    assert poisoned.status == ItemStatus.FAILED, poisoned
    assert poisoned.error is not None
    assert "ValueError: refusing 'poison'" in poisoned.error
    states = [(await h.observer.status(tenant, s.workflow_id)).state for s in submitted]
    assert states == [NodeState.DONE] * 2 + [NodeState.FAILED] + [NodeState.DONE] * 2
    healthy = records[:2] + records[3:]
    assert [await h.result(r) for r in healthy] == ["a", "b", "d", "e"]
    assert len({r.batch_id for r in healthy}) == 1  # the poison shared their batch
    for record in healthy:
        assert record.status == ItemStatus.DONE
        assert await h.store.cached("global", record.op_key) == record.result_digest
    assert await h.store.cached("global", poisoned.op_key) is None
    assert f"item {poisoned.op_key} failed after 2 attempts" in caplog.text

    first_batch = {x for x, _ in h.executions()[: len(xs)]}
    assert first_batch == set(xs)
    await asyncio.sleep(1.5)  # time for a retry loop, were there one, to show itself
    runs = Counter(x for x, _ in h.executions())
    assert runs == {"a": 1, "b": 1, "poison": 2, "d": 1, "e": 1}, h.procs.logs()
    assert worker.alive()
