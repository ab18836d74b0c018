"""The fabric around the worker processes: a fresh control plane per variant, the fleet
switches that give one tenant one worker, and the waits that bracket a measurement.

A variant's control plane runs in this process (``ControlPlane.run``: the scheduler and
the completion applier), on the run's key prefix, with that variant's settings; it stops
(releasing the scheduler lease) before the next one starts. ``only`` marks every worker
but the chosen ones draining through the store's fleet API (``set_draining``): the
scheduler then assigns nothing to them, while they keep running, heartbeating and
holding their models; on the way out every worker takes batches again.

This module must never leave a worker marked draining, nor a control plane running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from bench.tenancy.errors import BenchError
from flowmesh_core.control import ControlPlane
from flowmesh_core.model_names import canonical_model
from flowmesh_core.models import ModelRef
from flowmesh_core.settings import Settings
from flowmesh_core.store import Store

__all__ = ["only", "running_plane", "until_idle", "until_registered", "until_warm"]

POLL_S = 0.05


@contextlib.asynccontextmanager
async def running_plane(settings: Settings) -> AsyncIterator[ControlPlane]:
    """A control plane with its loops running, stopped and closed on the way out."""
    plane = ControlPlane(settings)
    stop = asyncio.Event()
    loops = asyncio.create_task(plane.run(stop), name="control-plane")
    try:
        yield plane
        if loops.done():
            loops.result()  # raises what stopped it
    finally:
        stop.set()
        try:
            await asyncio.wait_for(loops, 30)
        finally:
            await plane.aclose()


@contextlib.asynccontextmanager
async def only(store: Store, every: Iterable[str], chosen: Iterable[str]) -> AsyncIterator[None]:
    """Only the ``chosen`` workers take batches inside; all of them again afterwards."""
    every, chosen = list(every), set(chosen)
    try:
        for worker_id in every:
            await store.set_draining(worker_id, worker_id not in chosen)
        yield
    finally:
        for worker_id in every:
            await store.set_draining(worker_id, draining=False)


async def _until(what: str, check: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        if loop.time() > deadline:
            raise BenchError(f"{what} within {timeout_s:g} s")
        await asyncio.sleep(POLL_S)


async def until_registered(store: Store, ids: list[str], alive: Callable[[], None]) -> None:
    """Every worker in ``ids`` is in the fleet (``alive`` raises if one has died)."""

    async def check() -> bool:
        alive()
        return set(ids) <= {r.profile.worker_id for r in await store.workers()}

    await _until("the workers did not register", check, 120.0)


async def until_warm(store: Store, ids: list[str], models: set[str]) -> None:
    """Every worker in ``ids`` reports ``models`` warm (its next heartbeat does).

    Workers report a model under its canonical name (``all-MiniLM-L6-v2`` is
    ``sentence-transformers/all-MiniLM-L6-v2``, flowmesh_core.model_names)."""
    models = {canonical_model(ModelRef(name=m)).key for m in models}

    async def check() -> bool:
        warm = {r.profile.worker_id: set(r.warm) for r in await store.workers()}
        return all(models <= warm.get(worker_id, set()) for worker_id in ids)

    await _until(f"the workers did not report {sorted(models)} warm", check, 30.0)


async def until_idle(store: Store, settle_s: float = 0.3) -> None:
    """No worker holds a batch; then ``settle_s`` more, so that each has finished
    reporting (its CPU clock is read right after this)."""

    async def check() -> bool:
        return all(r.inflight == 0 for r in await store.workers())

    await _until("the workers did not go idle", check, 120.0)
    await asyncio.sleep(settle_s)
