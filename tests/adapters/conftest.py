"""A live FlowMesh for the orchestrator adapters' tests: real processes, real Redis.

``live`` starts one ``flowmesh serve`` and one ``flowmesh worker`` (the python kind may
call ``tests.worker.ops``) per test module, on the real Redis under a fresh key prefix
and a temporary blob directory, and purges the prefix when the module is done. Tests get
tenants from ``live.tenant(name)`` (a fresh name per call, so tests do not see each other's
workflows) and talk to the control plane only as the adapters do: over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from flowmesh_core.control import create_tenant
from flowmesh_core.store import Store
from tests.integration.procs import Procs, Served, process_env, until


@dataclass
class Live:
    """A running control plane and worker; see the module docstring."""

    url: str
    redis_url: str
    prefix: str
    blob_dir: Path
    procs: Procs

    def tenant(self, name: str = "team", *, admin: bool = False) -> tuple[str, str]:
        """A new tenant (its name gets a random suffix): (name, token)."""
        unique = f"{name}-{uuid.uuid4().hex[:6]}"

        async def create() -> str:
            store = Store.open(self.redis_url, self.prefix)
            try:
                _tenant, token = await create_tenant(store, unique, admin=admin)
            finally:
                await store.aclose()
            return token

        return unique, asyncio.run(create())

    def logs(self) -> str:
        return self.procs.logs()


@contextlib.contextmanager
def running(
    redis_url: str, directory: Path, worker_prefix: Sequence[str] = (), **worker_env: str
) -> Iterator[Live]:
    """A control plane and one worker (``adapter-worker``, started behind
    ``worker_prefix`` with ``worker_env`` added) on a fresh prefix; purged afterwards."""
    prefix = f"fmtest-{uuid.uuid4().hex[:12]}"
    blob_dir = directory / "blobs"
    env = process_env(
        redis_url,
        prefix,
        f"file://{blob_dir}",
        worker_python_modules=["tests.worker.ops"],
        worker_ttl_s=5,
        max_attempts=2,
    )
    procs = Procs(directory / "logs", env)
    try:
        server: Served = procs.serve()
        procs.env = {**env, **worker_env}
        procs.worker("adapter-worker", "--max-batch", "32", prefix=worker_prefix)
        asyncio.run(until(server.healthy, 60, "the control plane to answer", procs.logs))
        yield Live(server.url, redis_url, prefix, blob_dir, procs)
    finally:
        procs.close()

        async def purge() -> None:
            store = Store.open(redis_url, prefix)
            try:
                await store.purge()
            finally:
                await store.aclose()

        asyncio.run(purge())


@pytest.fixture(scope="module")
def live(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with running(redis_url, tmp_path_factory.mktemp("live")) as fabric:
        yield fabric


@contextlib.contextmanager
def temporary_prefect_server() -> Iterator[None]:
    """A temporary Prefect server (SQLite) with analytics off; it takes seconds to start."""
    from prefect.testing.utilities import prefect_test_harness  # heavy: only where used

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        with prefect_test_harness(server_startup_timeout=60):
            yield


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    """One temporary Prefect server for the module that asks for it."""
    with temporary_prefect_server():
        yield
