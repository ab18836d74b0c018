"""FlowMeshes of real processes for the demo: a ``flowmesh serve`` and worker processes
each, on the embedded store, talked to over HTTP as any user would.

A worker process is forked from the demo after its warm-up imported the ML libraries
(``warmup``), as a pre-loading server forks its workers, and then runs exactly what
``flowmesh worker`` runs (``build_worker``, drained on SIGTERM) with the fabric's
settings in its environment. It loads its models itself, cold.

Every fabric of the demo shares one embedded store (one state directory, made for the
demo) and keeps apart by key prefix, as separate deployments on one Redis would. All the
fabrics' processes start at once, before anything is measured, and wait idle until their
run: Python's imports are paid once, up front, and nothing a later run measures competes
with another fabric's start-up. Each worker process is measured on its own: its CPU time
(from the operating system) and what it did (batches, items, from lineage).

``open_fabrics`` stops everything on the way out, however it is left: workers first
(they drain), then the control planes, then the embedded store; what does not stop in
time is killed. Control planes also get SIGTERM if the demo process itself dies (Linux);
worker processes are daemonic children of the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from flowmesh_core.client import AsyncClient
from flowmesh_core.control import create_tenant
from flowmesh_core.errors import FlowMeshError
from flowmesh_core.settings import Settings
from flowmesh_core.store import Store
from flowmesh_core.store.embedded import EmbeddedServer

__all__ = ["Child", "Fabric", "FabricPlan", "WorkerSpec", "open_fabrics"]

log = logging.getLogger("flowmesh.demo")

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
_POLL_S = 0.1


@dataclass(frozen=True)
class WorkerSpec:
    """A worker to start: its id and what it declares it costs ($/hour, W)."""

    worker_id: str
    price_per_hour: float
    watts: float


@dataclass(frozen=True)
class FabricPlan:
    """A fabric to start: its name (also its key prefix), workers and tenants."""

    name: str
    workers: Sequence[WorkerSpec]
    teams: Sequence[str]


class _Forked:
    """A forked worker process with the part of ``Popen``'s interface the demo uses."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    def poll(self) -> int | None:
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            assert timeout is not None
            raise subprocess.TimeoutExpired("worker", timeout)
        return self._process.exitcode


@dataclass
class Child:
    """One process of a fabric and its log."""

    name: str
    role: str  # "control plane" or "worker"
    process: subprocess.Popen[bytes] | _Forked
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        return process_cpu_seconds(self.pid)

    def check(self) -> None:
        """Raise, with its log's tail, if the process has ended."""
        code = self.process.poll()
        if code is not None:
            raise FlowMeshError(
                f"the demo's {self.role} {self.name} exited ({code}); its log {self.log}:\n"
                + _tail(self.log)
            )


@dataclass
class Fabric:
    """A running fabric: its control plane's URL, processes, tenants' clients."""

    plan: FabricPlan
    url: str
    children: list[Child] = field(default_factory=list)
    clients: dict[str, AsyncClient] = field(default_factory=dict)
    admin: AsyncClient | None = None

    @property
    def workers(self) -> list[Child]:
        return [c for c in self.children if c.role == "worker"]

    def check_running(self) -> None:
        for child in self.children:
            child.check()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc, else ``ps``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, ValueError, IndexError):
        pass
    out = subprocess.run(  # noqa: S603 - a fixed command on our own child's pid
        ["ps", "-o", "time=", "-p", str(pid)],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    seconds = 0.0
    for part in out.replace("-", ":").split(":"):
        seconds = seconds * 60 + float(part or 0)
    return seconds


@contextlib.asynccontextmanager
async def open_fabrics(
    base: Settings,
    state_dir: Path,
    blob_dirs: Sequence[Path],
    plans: Sequence[FabricPlan],
    *,
    threads: int | None,
    logs: Path,
) -> AsyncIterator[list[Fabric]]:
    """Start every fabric in ``plans`` at once (each with its blob dir), wait until all are
    ready, yield them; stop them all on the way out."""
    store = Store.open("memory://", "demo-probe", state_dir)  # starts the embedded store
    fabrics: list[Fabric] = []
    try:
        await store.ping()
        for plan, blobs in zip(plans, blob_dirs, strict=True):
            env = _env(base, state_dir, blobs, plan.name, threads)
            port = _free_port()
            fabric = Fabric(plan, f"http://127.0.0.1:{port}")
            fabrics.append(fabric)
            fabric.children.append(
                _start(plan.name, "control plane", ["serve", "--port", str(port)], env, logs)
            )
            for spec in plan.workers:
                forked = await asyncio.to_thread(_fork_worker, spec, env, logs, threads)
                fabric.children.append(forked)
        for fabric in fabrics:
            plane = Store.open("memory://", fabric.plan.name, state_dir)
            try:
                for team in fabric.plan.teams:
                    _, token = await create_tenant(plane, team)
                    fabric.clients[team] = AsyncClient(fabric.url, token=token, timeout=60)
                _, admin = await create_tenant(plane, "demo-admin", admin=True)
                fabric.admin = AsyncClient(fabric.url, token=admin, timeout=60)
            finally:
                await plane.aclose()
        await _until_ready(fabrics)
        yield fabrics
    finally:
        await asyncio.to_thread(_stop_all, fabrics)
        for fabric in fabrics:
            for client in [*fabric.clients.values(), fabric.admin]:
                if client is not None:
                    await client.aclose()
        await store.aclose()
        # The demo's embedded store lives in a temporary directory: stop it before that goes.
        EmbeddedServer(state_dir).stop(force=True)


def _env(
    base: Settings, state_dir: Path, blobs: Path, prefix: str, threads: int | None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FLOWMESH_")}
    env.update(
        FLOWMESH_REDIS_URL="memory://",
        FLOWMESH_STATE_DIR=str(state_dir),
        FLOWMESH_KEY_PREFIX=prefix,
        FLOWMESH_BLOB_URL=f"file://{blobs.resolve()}",
        FLOWMESH_WORKER_MODEL_DIR=str(_model_dir(base)),
        TOKENIZERS_PARALLELISM="false",
        TRANSFORMERS_VERBOSITY="error",
        HF_HUB_OFFLINE="1",
    )
    if threads is not None:  # torch reads these at import: every worker gets its share
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def _model_dir(settings: Settings) -> Path:
    from flowmesh_worker.assemble import model_dir

    return model_dir(settings)


def _start(name: str, role: str, args: list[str], env: dict[str, str], logs: Path) -> Child:
    from flowmesh_worker.cluster._processes import flowmesh_argv

    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own command
            [*flowmesh_argv(), *args, "--log-level", "warning"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal reaches the demo, which stops us
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    return Child(name, role, process, log_path)


def _fork_worker(spec: WorkerSpec, env: dict[str, str], logs: Path, threads: int | None) -> Child:
    """Fork a worker process (from a thread of its own: the child must not inherit the
    running event loop) and return it once started."""
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{spec.worker_id}.log"
    context = multiprocessing.get_context("fork")
    process = context.Process(
        target=_worker_main,
        args=(spec, env, log_path, threads),
        name=f"worker-{spec.worker_id}",
        daemon=True,
    )
    process.start()
    return Child(spec.worker_id, "worker", _Forked(process), log_path)


def _worker_main(spec: WorkerSpec, env: dict[str, str], log: Path, threads: int | None) -> None:
    """In the forked child: what ``flowmesh worker`` runs, on the fabric's settings."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.setsid()  # Ctrl-C in the terminal reaches the demo, which stops us
    os.environ.clear()
    os.environ.update(env)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    from flowmesh_core.settings import load_settings
    from flowmesh_worker.assemble import build_worker
    from flowmesh_worker.cli import run_until_signal

    worker = build_worker(
        load_settings(),
        drain_s=5.0,
        worker_id=spec.worker_id,
        price_per_hour=spec.price_per_hour,
        watts=spec.watts,
    )
    asyncio.run(run_until_signal(worker))


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the demo process dies (prctl, Linux)."""
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


async def _until_ready(fabrics: Sequence[Fabric]) -> None:
    """Until every control plane answers /healthz and every worker is in its fleet."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    pending = list(fabrics)
    async with httpx.AsyncClient(timeout=2.0) as http:
        while pending and time.monotonic() < deadline:
            for fabric in list(pending):
                fabric.check_running()
                if await _ready(http, fabric):
                    pending.remove(fabric)
            if pending:
                await asyncio.sleep(_POLL_S)
    if pending:
        names = ", ".join(f.plan.name for f in pending)
        raise FlowMeshError(
            f"the demo's fabrics {names} were not ready within {READY_TIMEOUT_S:.0f}s; "
            f"their logs are in {pending[0].children[0].log.parent}"
        )


async def _ready(http: httpx.AsyncClient, fabric: Fabric) -> bool:
    try:
        if (await http.get(f"{fabric.url}/healthz")).status_code != 200:
            return False
    except httpx.HTTPError:
        return False
    assert fabric.admin is not None
    registered = {w.profile.worker_id for w in await fabric.admin.workers()}
    return {s.worker_id for s in fabric.plan.workers} <= registered


def _stop_all(fabrics: Sequence[Fabric]) -> None:
    """SIGTERM the workers (they drain), then the control planes; SIGKILL what is left."""
    for role in ("worker", "control plane"):
        children = [c for f in fabrics for c in f.children if c.role == role]
        for child in children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in children:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s %s did not stop in time: killed it", child.role, child.name)
                child.process.kill()
                child.process.wait(timeout=STOP_TIMEOUT_S)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
