"""A whole FlowMesh in this process: one control plane and real workers on a fresh
embedded store and blob directory, the same objects ``flowmesh serve`` and
``flowmesh worker`` run.

Each worker gets its own store connection, as a separate process would. ``open_fabric``
tears everything down on the way out, however it is left: workers drain and leave the
fleet, the control plane's loops stop, the store's keys are purged and every connection
is closed. It never touches a blob directory it was not given, nor removes one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from flowmesh_core.control import ControlPlane, Tenant, create_tenant
from flowmesh_core.errors import FlowMeshError
from flowmesh_core.settings import Settings
from flowmesh_core.store import Store
from flowmesh_worker.assemble import build_worker
from flowmesh_worker.profile import Hardware
from flowmesh_worker.worker import Worker

__all__ = ["Fabric", "WorkerSpec", "open_fabric"]

log = logging.getLogger("flowmesh.demo")

DRAIN_S = 10.0
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class WorkerSpec:
    """A worker to start: its id and what it declares it costs ($/hour, W)."""

    worker_id: str
    price_per_hour: float
    watts: float


@dataclass
class Fabric:
    """A running control plane, its workers and tenants (one admin among them)."""

    settings: Settings
    plane: ControlPlane
    loops: asyncio.Task[None]
    tenants: dict[str, Tenant] = field(default_factory=dict)
    admin: Tenant | None = None
    workers: list[tuple[Worker, asyncio.Event, asyncio.Task[None]]] = field(default_factory=list)

    @property
    def worker_objects(self) -> list[Worker]:
        return [worker for worker, _, _ in self.workers]

    def check_running(self) -> None:
        """Raise what stopped the control plane or a worker, if one of them has stopped."""
        for task in (self.loops, *(task for _, _, task in self.workers)):
            if task.done():
                task.result()  # raises the error that ended it, if any
                raise FlowMeshError(f"{task.get_name()} stopped while the demo was running")


def fabric_settings(base: Settings, blob_dir: Path) -> Settings:
    """``base`` on a fresh embedded store of its own and ``blob_dir``."""
    return base.model_copy(
        update={
            "redis_url": f"memory://demo-{uuid.uuid4().hex}",
            "blob_url": f"file://{blob_dir.resolve()}",
            "key_prefix": "fm",
        }
    )


@contextlib.asynccontextmanager
async def open_fabric(
    base: Settings,
    blob_dir: Path,
    hardware: Hardware,
    workers: Sequence[WorkerSpec],
    teams: Sequence[str],
) -> AsyncIterator[Fabric]:
    """A fabric with ``workers`` running and a tenant per team, torn down on exit."""
    settings = fabric_settings(base, blob_dir)
    plane = ControlPlane(settings)
    stop = asyncio.Event()
    loops = asyncio.create_task(plane.run(stop), name="control-plane")
    fabric = Fabric(settings, plane, loops)
    try:
        for team in teams:
            fabric.tenants[team], _ = await create_tenant(plane.store, team)
        fabric.admin, _ = await create_tenant(plane.store, "demo-admin", admin=True)
        for spec in workers:
            _start_worker(fabric, hardware, spec)
        await _until_registered(fabric)
        yield fabric
    finally:
        await _stop_workers(fabric)
        stop.set()
        try:
            await asyncio.wait_for(loops, STOP_TIMEOUT_S)
        finally:
            with contextlib.suppress(FlowMeshError):  # a fresh in-process store: best effort
                await plane.store.purge()
            await plane.aclose()


def _start_worker(fabric: Fabric, hardware: Hardware, spec: WorkerSpec) -> None:
    settings = fabric.settings
    worker = build_worker(
        settings,
        hardware=hardware,
        store=Store.open(settings.redis_url, settings.key_prefix),
        drain_s=DRAIN_S,
        worker_id=spec.worker_id,
        price_per_hour=spec.price_per_hour,
        watts=spec.watts,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop), name=f"worker-{spec.worker_id}")
    fabric.workers.append((worker, stop, task))


async def _until_registered(fabric: Fabric, timeout_s: float = 10.0) -> None:
    """Wait until every worker is in the fleet, so the first submission finds them."""
    wanted = {worker.worker_id for worker in fabric.worker_objects}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        registered = {r.profile.worker_id for r in await fabric.plane.store.workers()}
        if wanted <= registered:
            return
        for _, _, task in fabric.workers:
            if task.done():
                task.result()  # a worker that died at start: raise its error
        await asyncio.sleep(0.05)
    log.warning("workers %s did not register within %.0fs", sorted(wanted), timeout_s)


async def _stop_workers(fabric: Fabric) -> None:
    for _, stop, _ in fabric.workers:
        stop.set()
    for worker, _, task in fabric.workers:
        try:
            await asyncio.wait_for(task, STOP_TIMEOUT_S)
        except Exception:
            log.exception("worker %s did not stop cleanly", worker.worker_id)
        finally:
            await worker.store.aclose()
