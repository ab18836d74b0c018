"""One FlowMesh "cluster" of seven hosts for the module: ``mesh``.

Hosts are network namespaces on one bridge (``tests/multihost/netns.py``), 10.77.0.0/24:
``client`` (this test process), ``redis`` (a real ``redis-server`` bound to its veth
address), ``cp-1`` and ``cp-2`` (``flowmesh serve`` replicas, both running the scheduler
loop; the lease picks one) and ``w-1``..``w-3`` (``flowmesh worker --pool cpu``). Every
byte between them crosses the veth network; only the blob directory (``file://``) and the
execution log of ``tests.worker.ops.logged_echo`` are shared files, as a shared volume
would be. The clocks are short (worker and lease TTL 3 s, autoscaler drain 2 s) so each
failure shows within seconds.

Everything is torn down at the end, failed or not: processes killed, namespaces deleted;
namespaces left by a killed run are deleted first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis

from flowmesh_core.client import AsyncClient
from flowmesh_core.control import create_tenant
from flowmesh_core.store import Store
from tests.integration.procs import Proc, Procs, Served, process_env
from tests.multihost.netns import Network, clean_stale, require_root_and_tools

WORKER_TTL_S = 3.0
LEASE_TTL_S = 3.0
POOL = "cpu"
MIN_REPLICAS = 1
WORKERS = ("w-1", "w-2", "w-3")
PLANES = ("cp-1", "cp-2")
API_PORT = 8470
START_TIMEOUT_S = 60.0

T = TypeVar("T")


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a fresh loop in a new thread (which inherits the
    calling thread's network namespace), outside whatever loop pytest-asyncio keeps."""
    out: list[T] = []
    errors: list[BaseException] = []

    def body() -> None:
        async def main() -> T:
            return await make()

        try:
            out.append(asyncio.run(main()))
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return out[0]


@dataclass
class Mesh:
    """The running cluster and what the tests need to talk to it."""

    net: Network
    redis_url: str
    key_prefix: str
    runs: Path
    procs: Procs
    token: str = ""
    planes: dict[str, Served] = field(default_factory=dict)
    workers: dict[str, Proc] = field(default_factory=dict)

    def api(self) -> str:
        """The URL of a control-plane replica that is still running."""
        return next(p.url for p in self.planes.values() if p.alive())

    def client(self, url: str | None = None) -> AsyncClient:
        return AsyncClient(url or self.api(), self.token, timeout=10)

    def store(self) -> Store:
        return Store.open(self.redis_url, self.key_prefix)

    def executions(self) -> list[tuple[Any, int]]:
        """(x, worker pid) per execution of ``logged_echo`` so far, in order."""
        return [(x, pid) for x, pid in map(json.loads, self.runs.read_text().splitlines())]

    def worker_by_pid(self, pid: int) -> Proc:
        return next(w for w in self.workers.values() if w.pid == pid)

    def logs(self) -> str:
        return self.procs.logs()

    async def autoscale(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=5) as http:
            reply = await http.get(
                f"{self.api()}/v1/autoscale", headers={"Authorization": f"Bearer {self.token}"}
            )
        reply.raise_for_status()
        answer: dict[str, Any] = reply.json()
        return answer


def _wait(check: Callable[[], bool], what: str, mesh: Mesh) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{mesh.logs()}")
        time.sleep(0.1)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _pings(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


def _start(mesh: Mesh, tmp: Path) -> None:
    """Redis, then both replicas and the three workers at once; returns when all serve."""
    host = mesh.net["redis"]
    with (tmp / "redis.log").open("wb") as out:
        redis_server = subprocess.Popen(
            [*host.exec_prefix(), "redis-server", "--bind", host.address, "--port", "6379",
             "--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", str(tmp)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    mesh.procs.started.append(_Foreign("redis", redis_server, tmp / "redis.log"))
    _wait(lambda: _pings(mesh.redis_url), "redis-server to answer over the veth network", mesh)
    for name in PLANES:
        h = mesh.net[name]
        mesh.planes[name] = mesh.procs.serve(
            name, host=h.address, port=API_PORT, prefix=h.exec_prefix()
        )
    for name in WORKERS:
        mesh.workers[name] = mesh.procs.worker(
            name, "--pool", POOL, "--max-batch", "4", prefix=mesh.net[name].exec_prefix()
        )

    async def admin() -> str:
        store = mesh.store()
        try:
            _tenant, token = await create_tenant(store, "ops", admin=True)
        finally:
            await store.aclose()
        return token

    mesh.token = run_async(admin)
    for plane in mesh.planes.values():
        _wait(lambda p=plane: _answers(p.url), f"{plane.name} /healthz", mesh)  # type: ignore[misc]

    def registered() -> bool:
        with httpx.Client(timeout=5) as http:
            reply = http.get(
                f"{mesh.api()}/v1/workers", headers={"Authorization": f"Bearer {mesh.token}"}
            )
        ok = reply.status_code == 200
        ids = {w["profile"]["worker_id"] for w in reply.json() if w["alive"]} if ok else set()
        return ids >= set(WORKERS)

    _wait(registered, "every worker to register", mesh)


class _Foreign(Proc):
    """A process that is not ``flowmesh`` (redis-server), under ``Procs``' cleanup."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.log = log
        self.process = process


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    require_root_and_tools("redis-server")
    stale = clean_stale()
    assert not stale, stale
    tmp = tmp_path_factory.mktemp("multihost")
    net = Network(["client", "redis", *PLANES, *WORKERS])
    redis_url = f"redis://{net['redis'].address}:6379/0"
    key_prefix = f"fmtest-{uuid.uuid4().hex[:12]}"
    runs = tmp / "runs.log"
    runs.touch()
    env = process_env(
        redis_url,
        key_prefix,
        f"file://{tmp / 'blobs'}",
        worker_ttl_s=WORKER_TTL_S,
        lease_ttl_s=LEASE_TTL_S,
        worker_python_modules=["tests.worker.ops"],
        pools={POOL: {"accelerator": "cpu", "usd_per_hour": 0.08, "watts": 35,
                      "boot_s": 1, "min_replicas": MIN_REPLICAS, "max_replicas": 8}},
        autoscale_drain_s=2.0,
        autoscale_idle_s=1.0,
    )  # fmt: skip
    mesh = Mesh(net, redis_url, key_prefix, runs, Procs(tmp / "logs", env))
    try:
        net.up()
        with net.entered(net["client"]):
            _start(mesh, tmp)
            yield mesh
    finally:
        for proc in reversed(mesh.procs.started):  # workers first, Redis last
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                proc.kill()  # and if not, net.down() kills what runs in the namespaces
        problems = net.down()
        assert not problems, problems
