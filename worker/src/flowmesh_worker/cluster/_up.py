"""``flowmesh up``: start a control plane and N workers on a real Redis, wait until ready.

``up`` refuses to start while a cluster from the same state directory runs, checks Redis
and the port, starts ``flowmesh serve`` and N ``flowmesh worker`` processes detached, writes
the state file at once (so that ``down`` can stop them even if ``up`` dies), makes sure
the local tenant exists, and waits until ``/healthz`` answers and every worker has
registered. ``summary`` draws what it started.

On the embedded store (``memory://``) the processes share the embedded server of the
state directory (``FLOWMESH_STATE_DIR``, passed to each), which ``up`` starts first.

This module must never return or raise, Ctrl-C included, leaving a process it started
running or a state file naming processes that are gone.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from flowmesh_core.errors import ConfigError, ConflictError, ServiceUnavailableError
from flowmesh_core.settings import Settings
from flowmesh_core.store import Store
from flowmesh_worker.cluster._processes import (
    DownReport,
    died,
    flowmesh_argv,
    process_alive,
    spawn,
    start_time,
    stop,
)
from flowmesh_worker.cluster._state import (
    STATE_FILE,
    ClusterState,
    Process,
    locked,
    read_state,
    save_tokens,
    saved_tokens,
    write_private,
)

if TYPE_CHECKING:
    from rich.table import Table

_POLL_S = 0.2

Say = Callable[[str], None]
"""Where ``up`` reports its progress, one line at a time."""


@dataclass(frozen=True)
class UpOptions:
    """What ``flowmesh up`` was asked for."""

    state_dir: Path
    workers: int = 2
    host: str = "127.0.0.1"
    port: int = 8470
    slots: int = 1
    max_batch: int = 64
    tenant: str = "local"
    timeout_s: float = 90.0
    log_level: str = "info"
    config_file: Path | None = None


def _refuse_if_running(state_dir: Path) -> None:
    state = read_state(state_dir)
    if state is None:
        return
    alive = [p for p in state.processes if process_alive(p.pid, p.started)]
    if not alive:
        (state_dir / STATE_FILE).unlink(missing_ok=True)  # left by a cluster that died
        return
    workers = sum(1 for p in alive if p.role == "worker")
    plane = next((p for p in alive if p.role == "control plane"), None)
    what = f"control plane pid {plane.pid} at {state.url}" if plane else "no control plane"
    raise ConflictError(
        f"a local cluster is already running from {state_dir} ({what}, {workers} "
        f"worker(s), prefix {state.key_prefix!r}); stop it with `flowmesh down` first "
        f"(its token is in {state_dir / STATE_FILE})"
    )


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}): is another control plane "
                "running there? Pick another port with --port"
            ) from exc


def _child_env(settings: Settings, options: UpOptions, url: str) -> dict[str, str]:
    """The environment of every process: this one's, plus the settings that name the cluster."""
    env = dict(os.environ)
    env.update(
        FLOWMESH_REDIS_URL=settings.redis_url,
        FLOWMESH_KEY_PREFIX=settings.key_prefix,
        FLOWMESH_BLOB_URL=settings.blob_url,
        FLOWMESH_SERVER_URL=url,
        FLOWMESH_STATE_DIR=str(options.state_dir.resolve()),
    )
    if options.config_file is not None:
        env["FLOWMESH_CONFIG"] = str(options.config_file.resolve())
    return env


def _launch(settings: Settings, options: UpOptions, url: str) -> list[Process]:
    logs = options.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = _child_env(settings, options, url)
    flowmesh = flowmesh_argv()
    level = ["--log-level", options.log_level]
    port = ["--host", options.host, "--port", str(options.port)]
    commands = [("serve", "control plane", [*flowmesh, "serve", *port, *level], "serve.log")]
    run = uuid.uuid4().hex[:4]
    for i in range(1, options.workers + 1):
        worker_id = f"local-{i}-{run}"
        argv = [*flowmesh, "worker", "--worker-id", worker_id, *level]
        argv += ["--slots", str(options.slots), "--max-batch", str(options.max_batch)]
        commands.append((worker_id, "worker", argv, f"worker-{i}.log"))
    started = []
    try:
        for name, role, argv, log_name in commands:
            pid = spawn(argv, env, logs / log_name)
            started.append(Process(name, role, pid, str(logs / log_name), start_time(pid)))
    except OSError as exc:
        stop(started, 5.0, DownReport())
        raise ConfigError(f"cannot start {argv[0]}: {exc}") from exc
    return started


async def _healthy(url: str) -> bool:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            return (await client.get(f"{url}/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


async def _wait_ready(store: Store, url: str, processes: list[Process], timeout_s: float) -> None:
    """Until /healthz answers 200 and every worker is registered; raise on death or timeout."""
    deadline = time.monotonic() + timeout_s
    wanted = {p.name for p in processes if p.role == "worker"}
    healthy = False
    registered: set[str] = set()
    while time.monotonic() < deadline:
        died(processes)
        healthy = healthy or await _healthy(url)
        registered = {r.profile.worker_id for r in await store.workers()} & wanted
        if healthy and registered == wanted:
            return
        await asyncio.sleep(_POLL_S)
    late = [p for p in processes if p.role == "worker" and p.name not in registered]
    if not healthy:
        late.insert(0, processes[0])
    names = ", ".join(f"{p.name} (log {p.log})" for p in late)
    raise ServiceUnavailableError(
        f"not ready within {timeout_s:g} s: {names}; --timeout gives more time"
    )


async def tenant_token(
    store: Store,
    options: UpOptions,
    redis_url: str,
    *,
    name: str | None = None,
    admin: bool = True,
) -> str | None:
    """The token of tenant ``name`` (default: the local admin tenant): the one saved for
    this Redis and prefix, else a new tenant's; None if the tenant exists and its token
    was not saved here."""
    from flowmesh_core.control import create_tenant
    from flowmesh_core.control.tenants import hash_token

    name = options.tenant if name is None else name
    saved = saved_tokens(options.state_dir)
    slot = f"{redis_url} {store.keys.prefix} {name}"
    token = saved.get(slot)
    if token is not None:
        record = await store.tenant_by_token(hash_token(token))
        if record is not None and json.loads(record).get("name") == name:
            return token
    try:
        _, token = await create_tenant(store, name, admin=admin)
    except ConflictError:
        return None
    saved[slot] = token
    save_tokens(options.state_dir, saved)
    return token


async def _start(settings: Settings, options: UpOptions, say: Say) -> ClusterState:
    store = Store.from_settings(settings)
    processes: list[Process] = []
    try:
        await store.ping()
        _check_port(options.host, options.port)
        url = f"http://{options.host}:{options.port}"
        state = ClusterState(
            url=url,
            redis_url=store.shown_url,
            key_prefix=settings.key_prefix,
            blob_url=settings.blob_url,
            tenant=options.tenant,
            token=None,
            started_at=time.time(),
        )
        say(
            f"starting the control plane at {url} and {options.workers} worker(s) on Redis "
            f"{store.shown_url}, key prefix {settings.key_prefix!r}; logs in "
            f"{options.state_dir / 'logs'}"
        )
        processes = _launch(settings, options, url)
        state.processes = processes
        # Written at once, so that `flowmesh down` can stop them even if this command dies.
        write_private(options.state_dir / STATE_FILE, state.to_json())
        state.token = await tenant_token(store, options, store.shown_url)
        say(f"waiting for /healthz and {options.workers} worker(s) to register ...")
        await _wait_ready(store, url, processes, options.timeout_s)
        write_private(options.state_dir / STATE_FILE, state.to_json())
        return state
    except BaseException:
        if processes:
            stop(processes, 5.0, DownReport())
            (options.state_dir / STATE_FILE).unlink(missing_ok=True)
        raise
    finally:
        await store.aclose()


def up(settings: Settings, options: UpOptions, say: Say = print) -> ClusterState:
    """Start the cluster and wait until it is ready; its state (also in the state file).

    Raises ConfigError for a busy port, ServiceUnavailableError
    for an unreachable Redis or a process that dies or is not ready in time (naming its
    log), ConflictError if a cluster runs from ``options.state_dir`` already.
    """
    # The embedded store of the state directory is the cluster's: its processes share it.
    settings = settings.model_copy(update={"state_dir": options.state_dir.resolve()})
    with locked(options.state_dir):
        _refuse_if_running(options.state_dir)
        return asyncio.run(_start(settings, options, say))


def summary(state: ClusterState) -> Table:
    """The processes of a cluster, their pids and log files, as a table to print."""
    from rich.table import Table

    table = Table("process", "pid", "log", title=f"FlowMesh is up at {state.url}")
    for proc in state.processes:
        label = proc.role if proc.role != "worker" else f"worker {proc.name}"
        table.add_row(label, str(proc.pid), Path(proc.log).name)
    return table
