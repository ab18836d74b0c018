"""The cluster under load: ``flowmesh up`` on a fresh key prefix, more API replicas, tenants.

``LocalCluster`` starts, through the cluster package as ``flowmesh up`` does, one
``flowmesh serve`` (API, scheduler and completion applier) and W ``flowmesh worker``
processes on the real Redis, under a fresh key prefix (``fmbench-…``) and a scratch blob
directory, all on 127.0.0.1; then K-1 more ``flowmesh serve --no-scheduler`` replicas on
the same Redis (the way the README scales the API: any replica answers any request, one
schedules), and T tenants with their tokens. ``cpu`` reads every process's CPU clock.

``close`` stops the extra replicas, then the cluster (``flowmesh down``: workers first),
then purges the key prefix and removes the scratch directory; it runs however the run
ends. This module must never signal a process it did not start, and never leave a process
or a key behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from bench.loadrun.options import BenchError, Options, UsageError
from flowmesh_core.control import create_tenant
from flowmesh_core.errors import FlowMeshError
from flowmesh_core.settings import Settings
from flowmesh_core.store import Store
from flowmesh_worker import cluster

__all__ = ["LocalCluster", "cpu_seconds", "machine_busy_seconds", "redis_calls"]

_READY_S = 90.0
_STOP_S = 30.0


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (not its children); None if unreadable."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds every core of this machine has spent busy since boot (/proc/stat: all
    but idle and iowait, steal included)."""
    with open("/proc/stat") as stat:
        ticks = [int(x) for x in stat.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


async def redis_calls(redis_url: str) -> dict[str, float]:
    """Calls of each command the Redis server has answered so far (INFO commandstats:
    every client of the server, not only this run's)."""
    store = Store.open(redis_url, "fmbench-probe")
    try:
        stats = await store.redis.info("commandstats")
    finally:
        await store.aclose()
    return {name.removeprefix("cmdstat_"): float(v["calls"]) for name, v in stats.items()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class _Replica:
    """An API-only ``flowmesh serve`` this module started."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class LocalCluster:
    """The processes of one run, and how to reach them (see the module docstring)."""

    options: Options
    say: Callable[[str], None]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    scratch: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fmbench-load-")))
    urls: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    serve_pids: list[int] = field(default_factory=list)
    worker_pids: list[int] = field(default_factory=list)
    redis_pid: int | None = None
    redis_version: str = ""
    _state: cluster.ClusterState | None = None
    _replicas: list[_Replica] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"fmbench-{self.run_id}"

    @property
    def settings(self) -> Settings:
        return Settings(
            redis_url=self.options.redis_url,
            key_prefix=self.prefix,
            blob_url=f"file://{self.scratch / 'blobs'}",
        )

    def __enter__(self) -> LocalCluster:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _start(self) -> None:
        self.redis_version, self.redis_pid = asyncio.run(self._probe())
        up = cluster.UpOptions(
            state_dir=self.scratch / "state",
            workers=self.options.workers,
            port=_free_port(),
            timeout_s=_READY_S,
            log_level=self.options.log_level,
        )
        self._state = cluster.up(self.settings, up, say=self.say)
        for proc in self._state.processes:
            pids = self.serve_pids if proc.role == "control plane" else self.worker_pids
            pids.append(proc.pid)
        self.urls.append(self._state.url)
        for index in range(2, self.options.api_replicas + 1):
            self._replica(index)
        self.tokens = asyncio.run(self._tenants())

    async def _probe(self) -> tuple[str, int | None]:
        """Redis' version and, if this machine's /proc shows it, its pid."""
        store = Store.open(self.options.redis_url, self.prefix)
        try:
            await store.ping()
            info = await store.redis.info("server")
        except FlowMeshError as exc:
            raise UsageError(
                f"no usable Redis at {store.shown_url} ({exc.__cause__ or exc}); start one, "
                "or pass --redis-url"
            ) from exc
        finally:
            await store.aclose()
        pid = int(info.get("process_id", 0))
        return str(info.get("redis_version", "?")), pid if _is_redis(pid) else None

    def _replica(self, index: int) -> None:
        """Start API-only replica ``index`` and wait until its /healthz answers."""
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = dict(os.environ)
        env.update(
            FLOWMESH_REDIS_URL=self.options.redis_url,
            FLOWMESH_KEY_PREFIX=self.prefix,
            FLOWMESH_BLOB_URL=self.settings.blob_url,
            FLOWMESH_SERVER_URL=url,
        )
        log = self.scratch / "state" / "logs" / f"serve-{index}.log"
        flowmesh = str(Path(sys.executable).with_name("flowmesh"))
        argv = [flowmesh, "serve", "--no-scheduler", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--log-level", self.options.log_level]
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self._replicas.append(_Replica(url, process, log))
        self.say(f"started API replica {index} (--no-scheduler) at {url}, pid {process.pid}")
        deadline = time.monotonic() + _READY_S
        while not _healthy(url):
            if process.poll() is not None:
                raise BenchError(f"API replica {index} exited ({process.returncode}); see {log}")
            if time.monotonic() > deadline:
                raise BenchError(f"API replica {index} not healthy in {_READY_S:g} s; see {log}")
            time.sleep(0.2)
        self.urls.append(url)
        self.serve_pids.append(process.pid)

    async def _tenants(self) -> list[str]:
        """The load's tenants, without quotas: the run measures the fabric, and a closed
        loop of many clients per tenant would otherwise measure the submission rate limit
        (docs/isolation.md, "Quotas")."""
        store = Store.open(self.options.redis_url, self.prefix)
        try:
            made = [
                await create_tenant(store, f"load-{i}", max_in_flight=0, submit_rate=0)
                for i in range(self.options.tenants)
            ]
        finally:
            await store.aclose()
        return [token for _, token in made]

    def tails(self, lines: int = 8) -> str:
        """The last lines of every process's log (they go with the scratch directory)."""
        out = []
        for log in sorted((self.scratch / "state" / "logs").glob("*.log")):
            text = log.read_text(errors="replace").strip().splitlines()[-lines:]
            out.append(f"--- {log.name}:\n" + "\n".join(text))
        return "\n".join(out)

    def close(self) -> None:
        """Stop everything this run started, purge its keys, remove its scratch directory."""
        try:
            for replica in self._replicas:
                _stop(replica.process)
            self._replicas.clear()
            if self._state is not None:
                _, report = cluster.down(self.scratch / "state", _STOP_S)
                if report.killed:
                    names = ", ".join(p.name for p in report.killed)
                    self.say(f"warning: killed {names}: they did not stop in {_STOP_S:g} s")
                self._state = None
        finally:
            with contextlib.suppress(FlowMeshError):
                asyncio.run(_purge(self.options.redis_url, self.prefix))
            shutil.rmtree(self.scratch, ignore_errors=True)


def _is_redis(pid: int) -> bool:
    """Whether this machine's /proc shows ``pid`` as a redis-server (not so in a container
    apart from Redis', whose pid is another namespace's)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().startswith("redis")
    except OSError:
        return False


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, up to _STOP_S, then SIGKILL; reaped either way."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=_STOP_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


async def _purge(redis_url: str, prefix: str) -> None:
    store = Store.open(redis_url, prefix)
    try:
        await store.purge()
    finally:
        await store.aclose()
