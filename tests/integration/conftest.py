"""A whole fabric in one process for control-plane tests: planes, play workers, tenants.

``fabric`` starts control planes (each with its own connection, as separate processes
would have) and play workers (each with its own connection too) on one store URL and a
fresh key prefix, and tears everything down afterwards: loops stopped, keys purged,
connections closed. Tests that care which store runs it parametrize ``fabric_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flowmesh_core.blobs import open_blob_store
from flowmesh_core.control import ControlPlane, Tenant, create_tenant
from flowmesh_core.models import ItemLiteral
from flowmesh_core.protocol import Assignment
from flowmesh_core.settings import Settings, load_settings
from flowmesh_core.store import Store
from flowmesh_core.store.fleet import ASSIGNMENT_GROUP
from tests.playworker import PlayWorker


class PatientPlayWorker(PlayWorker):
    """A PlayWorker that pauses when a read finds nothing.

    If a store answered XREADGROUP ... BLOCK at once when nothing is there (the embedded
    store once did), the plain PlayWorker loop would spin and starve the event loop; on a
    real server the pause never happens: the read blocks first.

    ``dies_on``: a prompt that makes this worker hang for good, as a worker killed by
    its input hangs (out of memory, a wedged accelerator): no report, no ack and no
    more heartbeats. The batch still lands in ``batches``; ``stop`` ends the hang.
    """

    def __init__(self, *args: Any, dies_on: str | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.dies_on = dies_on

    async def _run(self, assignment: Assignment) -> None:
        if self.dies_on is not None and any(
            a.spec.inputs.get("prompts") == ItemLiteral(value=self.dies_on)
            for a in assignment.items
        ):
            self.batches.append(assignment)
            await self._stopping.wait()
            return
        await super()._run(assignment)

    async def _loop(self) -> None:
        stream = self.store.keys.assignments(self.profile.worker_id)
        while not self._stopping.is_set():
            await self.store.heartbeat(self.profile.worker_id, warm=sorted(self.warm))
            started = time.monotonic()
            reply: Any = await self.store.redis.xreadgroup(
                ASSIGNMENT_GROUP, self.profile.worker_id, {stream: ">"}, count=1, block=100
            )
            for entry_id, fields in reply[0][1] if reply else []:
                await self._run(Assignment.from_stream(fields))
                await self.store.redis.xack(stream, ASSIGNMENT_GROUP, entry_id)
            if not reply and time.monotonic() - started < 0.05:
                await asyncio.sleep(0.1)


@dataclass
class Running:
    """A control plane and the task running its loops."""

    plane: ControlPlane
    stop: asyncio.Event
    task: asyncio.Task[None]


@dataclass
class Fabric:
    """Control planes and workers on one store and prefix (see the module docstring)."""

    url: str
    prefix: str
    blob_url: str
    running: list[Running] = field(default_factory=list)
    workers: list[PatientPlayWorker] = field(default_factory=list)
    stores: list[Store] = field(default_factory=list)
    idle: list[ControlPlane] = field(default_factory=list)

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": self.url,
            "key_prefix": self.prefix,
            "blob_url": self.blob_url,
            "utility_weights": {"value_per_item": 0.05},
        }
        values.update(overrides)
        return load_settings(**values)

    async def plane(self, *, consumer: str | None = None, **overrides: Any) -> ControlPlane:
        """A new control plane, running. ``consumer`` names its applier as a new process would."""
        plane = ControlPlane(self.settings(**overrides))
        if consumer is not None:
            plane.applier.consumer = consumer
            plane.outbox.consumer = consumer
        stop = asyncio.Event()
        self.running.append(Running(plane, stop, asyncio.create_task(plane.run(stop))))
        return plane

    def idle_plane(self, **overrides: Any) -> ControlPlane:
        """A control plane whose loops do not run: the test drives its parts by hand."""
        plane = ControlPlane(self.settings(**overrides))
        self.idle.append(plane)
        return plane

    async def stop_plane(self, plane: ControlPlane) -> None:
        """Stop a plane's loops gracefully and close its connections."""
        for run in list(self.running):
            if run.plane is plane:
                run.stop.set()
                await asyncio.wait_for(run.task, timeout=10)
                self.running.remove(run)
        await plane.aclose()

    async def kill_plane(self, plane: ControlPlane) -> None:
        """Stop a plane abruptly, as a killed process stops, wherever its applier is.

        The scheduler is let out of its blocking wait first (redis-py can hang when a
        blocking read is cancelled); the rest is cancelled where it stands.
        """
        for run in list(self.running):
            if run.plane is plane:
                run.stop.set()
                await asyncio.sleep(1.0)
                run.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run.task
                self.running.remove(run)
        await plane.aclose()

    async def worker(self, worker_id: str = "play-1", **kw: Any) -> PatientPlayWorker:
        """A started play worker on its own connection."""
        store = Store.open(self.url, self.prefix)
        self.stores.append(store)
        worker = PatientPlayWorker(store, open_blob_store(self.blob_url), worker_id, **kw)
        await worker.start()
        self.workers.append(worker)
        return worker

    async def tenant(self, name: str, **kw: Any) -> Tenant:
        store = Store.open(self.url, self.prefix)
        try:
            tenant, _ = await create_tenant(store, name, **kw)
        finally:
            await store.aclose()
        return tenant

    async def aclose(self) -> None:
        for worker in self.workers:
            await worker.stop()
        for run in self.running:
            run.stop.set()
        for run in self.running:
            try:
                await asyncio.wait_for(run.task, timeout=10)
            finally:
                await run.plane.aclose()
        for plane in self.idle:
            await plane.aclose()
        store = Store.open(self.url, self.prefix)
        try:
            await store.purge()
        finally:
            await store.aclose()
            for s in self.stores:
                await s.aclose()


@pytest.fixture(params=["redis"])
def fabric_url(request: pytest.FixtureRequest) -> str:
    """The store a fabric runs on: the real Redis unless a test parametrizes both."""
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    return "memory://"


@pytest.fixture
async def fabric(fabric_url: str, key_prefix: str, tmp_path: Path) -> AsyncIterator[Fabric]:
    fab = Fabric(fabric_url, key_prefix, f"file://{tmp_path / 'blobs'}")
    try:
        yield fab
    finally:
        await fab.aclose()
