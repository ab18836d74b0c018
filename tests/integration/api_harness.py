"""A harness for HTTP API tests: apps over one store and prefix, tenants, play workers.

Each app is ``create_app(ControlPlane(settings))`` with its lifespan entered for real (the
ASGI transport does not run it), so the scheduler and completion loops run as they do
under ``flowmesh serve``. Clients talk to the app through ``httpx.ASGITransport``.
Everything a test starts is stopped at teardown, in reverse order.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI

from flowmesh_core.api import create_app
from flowmesh_core.blobs import BlobStore, open_blob_store
from flowmesh_core.control import ControlPlane, create_tenant
from flowmesh_core.settings import load_settings
from flowmesh_core.store import Store
from tests.playworker import PlayWorker

BASE_URL = "http://flowmesh.test"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Harness:
    """Apps, tenants and workers on ``url`` under ``prefix`` (see the module docstring)."""

    store: Store  # the test's own connection, for looking at what is stored
    url: str
    prefix: str
    blob_url: str
    stack: contextlib.AsyncExitStack
    controls: list[ControlPlane] = field(default_factory=list)

    @property
    def blobs(self) -> BlobStore:
        return open_blob_store(self.blob_url)

    async def app(self, *, run_scheduler: bool = True, **overrides: Any) -> FastAPI:
        """A running app (lifespan entered) over a fresh control plane."""
        values = {"redis_url": self.url, "key_prefix": self.prefix, "blob_url": self.blob_url}
        settings = load_settings(**{**values, **overrides})
        control = ControlPlane(settings)
        self.controls.append(control)
        app = create_app(control, run_scheduler=run_scheduler)
        await self.stack.enter_async_context(app.router.lifespan_context(app))
        return app

    async def client(self, app: FastAPI, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=transport, base_url=BASE_URL, headers=headers)
        return await self.stack.enter_async_context(client)

    async def tenant(self, name: str, **kw: Any) -> str:
        """A new tenant's token."""
        _, token = await create_tenant(self.store, name, **kw)
        return token

    async def worker(self, worker_id: str = "play-1", **kw: Any) -> PlayWorker:
        """A started play worker on its own connection."""
        store = Store.open(self.url, self.prefix)
        self.stack.push_async_callback(store.aclose)
        worker = PlayWorker(store, self.blobs, worker_id, **kw)
        await worker.start()
        self.stack.push_async_callback(worker.stop)
        return worker

    async def keys(self) -> list[str]:
        """Every key under the prefix, sorted."""
        found = await self.store.redis.keys(f"{self.prefix}:*")
        return sorted(str(k) for k in found)
