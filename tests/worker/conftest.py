"""Real workers (the ``flowmesh_worker.Worker`` loop) inside a test's fabric.

``workers`` starts real workers on the fabric's store and blob store, each on its own
connection as a separate process would be, and stops them (draining) afterwards. Models
the ML executors build (tiny random-weight models) go into one directory per session.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flowmesh_core.blobs import open_blob_store
from flowmesh_core.store import Store
from flowmesh_worker.assemble import build_worker
from flowmesh_worker.profile import Hardware
from flowmesh_worker.worker import Worker
from tests.integration import conftest as integration
from tests.integration.conftest import Fabric

# The integration suite's fabric fixtures, shared with the worker tests.
fabric = integration.fabric
fabric_url = integration.fabric_url

CPU = Hardware("cpu", 8 << 30, "cpu")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where tiny models are built, once per test session."""
    return tmp_path_factory.mktemp("models")


@dataclass
class Workers:
    """Starts real workers on a fabric; stops them all (gracefully) at the end."""

    fabric: Fabric
    model_dir: Path
    running: list[tuple[Worker, asyncio.Event, asyncio.Task[None]]] = field(default_factory=list)

    async def start(self, worker_id: str, **options: Any) -> Worker:
        settings = self.fabric.settings(
            worker_model_dir=str(self.model_dir),
            worker_python_modules=["tests.worker.ops"],
            worker_ttl_s=options.pop("ttl_s", 3.0),
        )
        store = Store.open(self.fabric.url, self.fabric.prefix)
        self.fabric.stores.append(store)
        worker = build_worker(
            settings,
            hardware=CPU,
            store=store,
            blobs=open_blob_store(self.fabric.blob_url),
            drain_s=options.pop("drain_s", 30.0),
            worker_id=worker_id,
            **options,
        )
        stop = asyncio.Event()
        self.running.append((worker, stop, asyncio.create_task(worker.run(stop))))
        return worker

    async def stop(self, worker: Worker) -> None:
        for entry in list(self.running):
            if entry[0] is worker:
                entry[1].set()
                await asyncio.wait_for(entry[2], timeout=30)
                self.running.remove(entry)

    async def aclose(self) -> None:
        for worker, _stop, _task in list(self.running):
            await self.stop(worker)


@pytest.fixture
async def workers(fabric: Fabric, model_dir: Path) -> AsyncIterator[Workers]:
    pool = Workers(fabric, model_dir)
    try:
        yield pool
    finally:
        await pool.aclose()
