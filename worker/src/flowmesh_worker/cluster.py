"""``flowmesh up`` and ``flowmesh down``: a local cluster of real processes on a real Redis.

``up`` starts one control plane (``flowmesh serve``) and N workers (``flowmesh worker``)
as detached processes (each in its own session, so closing the terminal or Ctrl-C in it
leaves them running), with their output in log files under a state directory. It writes
a state file there (pids, URL, prefix, logs, the local tenant's token; mode 0600), waits
until ``/healthz`` answers and every worker has registered, and makes sure a tenant for
local use exists. ``down`` stops the workers first (SIGTERM: they drain), then the control
plane, kills what does not stop in time, and removes the state file.

This module must never start on the embedded store (other processes cannot reach it),
signal a process it did not start (a recorded pid is checked against the process's start
time before any signal), or leave processes behind when ``up`` fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flowmesh_core.errors import ConfigError, ConflictError, ServiceUnavailableError
from flowmesh_core.settings import Settings
from flowmesh_core.store import Store
from flowmesh_core.store.connection import is_embedded

if TYPE_CHECKING:
    from rich.table import Table

__all__ = [
    "STATE_FILE",
    "ClusterState",
    "DownReport",
    "Process",
    "UpOptions",
    "default_state_dir",
    "down",
    "process_alive",
    "read_state",
    "summary",
    "up",
]

STATE_FILE = "cluster.json"
TOKENS_FILE = "tokens.json"
_LOCK_FILE = "up.lock"
_POLL_S = 0.2
_UNKNOWN_STATUS = -1000  # a process that ended, reaped by someone else

Say = Callable[[str], None]
"""Where ``up`` reports its progress, one line at a time."""


@dataclass(frozen=True)
class Process:
    """One process of the cluster: what it is, its pid, its start time and its log."""

    name: str
    role: str  # "control plane" or "worker"
    pid: int
    log: str
    started: str | None = None  # /proc start time, to tell a reused pid from ours


@dataclass
class ClusterState:
    """What ``up`` started, as kept in the state file."""

    url: str
    redis_url: str  # credentials redacted
    key_prefix: str
    blob_url: str
    tenant: str
    token: str | None
    started_at: float
    processes: list[Process] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        data = json.loads(text)
        data["processes"] = [Process(**p) for p in data.get("processes", [])]
        return cls(**data)


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


@dataclass
class DownReport:
    """What ``down`` did: the processes stopped, killed, and already gone."""

    stopped: list[Process] = field(default_factory=list)
    killed: list[Process] = field(default_factory=list)
    gone: list[Process] = field(default_factory=list)


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/flowmesh``, else ``~/.local/state/flowmesh``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "flowmesh"


def read_state(state_dir: Path) -> ClusterState | None:
    """The state file of the cluster started from ``state_dir``, or None."""
    path = state_dir / STATE_FILE
    try:
        return ClusterState.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read {path} ({exc}); remove it if no cluster runs") from exc


# -- processes -------------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None (no such process, no /proc)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return raw.rpartition(")")[2].split()


def _start_time(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[19] if stat and len(stat) > 19 else None


def process_alive(pid: int, started: str | None = None) -> bool:
    """Whether ``pid`` runs (a zombie does not), and is the process that started at ``started``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process took the pid
    stat = _proc_stat(pid)
    if stat is None:
        return sys.platform != "linux"  # no /proc to ask: trust kill(0)
    return stat[0] != "Z" and (started is None or stat[19] == started)


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> int:
    """Start ``argv`` detached (a new session), stdin from /dev/null, output to ``log``."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        return os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
    except NotImplementedError:  # no POSIX_SPAWN_SETSID: a process group of its own
        return os.posix_spawn(argv[0], argv, env, file_actions=actions, setpgroup=0)


def _reap(pid: int) -> int | None:
    """The exit status of our child ``pid`` if it has ended, else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None if process_alive(pid) else _UNKNOWN_STATUS
    return os.waitstatus_to_exitcode(status) if done else None


def _flowmesh_argv() -> list[str]:
    """How to run the ``flowmesh`` command with this interpreter."""
    script = Path(sys.executable).with_name("flowmesh")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "from flowmesh_core.cli import main; main()"]


def _stop(processes: list[Process], timeout_s: float, report: DownReport) -> None:
    """SIGTERM ``processes``, wait up to ``timeout_s``, SIGKILL the ones left."""
    running = []
    for proc in processes:
        if process_alive(proc.pid, proc.started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            running.append(proc)
        else:
            report.gone.append(proc)
    deadline = time.monotonic() + timeout_s
    while running and time.monotonic() < deadline:
        for proc in [p for p in running if _ended(p)]:
            running.remove(proc)
            report.stopped.append(proc)
        time.sleep(0.1)
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        report.killed.append(proc)
    deadline = time.monotonic() + 5
    while any(not _ended(p) for p in running) and time.monotonic() < deadline:
        time.sleep(0.05)


def _ended(proc: Process) -> bool:
    if _reap(proc.pid) is not None:
        return True
    return not process_alive(proc.pid, proc.started)


# -- up --------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """One ``up`` or ``down`` at a time per state directory."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (state_dir / _LOCK_FILE).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConflictError(
                f"another `flowmesh up` or `flowmesh down` is working in {state_dir}; "
                "wait for it to finish"
            ) from None
        yield


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (mode 0600), atomically."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)


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
    )
    if options.config_file is not None:
        env["FLOWMESH_CONFIG"] = str(options.config_file.resolve())
    return env


def _launch(settings: Settings, options: UpOptions, url: str) -> list[Process]:
    logs = options.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = _child_env(settings, options, url)
    flowmesh = _flowmesh_argv()
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
            pid = _spawn(argv, env, logs / log_name)
            started.append(Process(name, role, pid, str(logs / log_name), _start_time(pid)))
    except OSError as exc:
        _stop(started, 5.0, DownReport())
        raise ConfigError(f"cannot start {argv[0]}: {exc}") from exc
    return started


def _died(processes: list[Process]) -> None:
    """Raise, pointing at the log, if one of the processes has exited."""
    for proc in processes:
        code = _reap(proc.pid)
        if code is None:
            continue
        last = _last_line(Path(proc.log))
        status = f"status {code}" if code >= 0 else f"signal {-code}"
        status = "status unknown" if code == _UNKNOWN_STATUS else status
        raise ServiceUnavailableError(
            f"the {proc.role} {proc.name} (pid {proc.pid}) exited ({status}) while starting; "
            f"see its log {proc.log}" + (f" (last line: {last})" if last else "")
        )


def _last_line(log: Path) -> str:
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else ""


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
        _died(processes)
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


async def _tenant_token(store: Store, options: UpOptions, redis_url: str) -> str | None:
    """The local tenant's token: the one saved for this Redis and prefix, else a new
    tenant's; None if the tenant exists and its token was not saved here."""
    from flowmesh_core.control import create_tenant
    from flowmesh_core.control.tenants import hash_token

    path = options.state_dir / TOKENS_FILE
    try:
        saved: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    slot = f"{redis_url} {store.keys.prefix} {options.tenant}"
    token = saved.get(slot)
    if token is not None:
        record = await store.tenant_by_token(hash_token(token))
        if record is not None and json.loads(record).get("name") == options.tenant:
            return token
    try:
        _, token = await create_tenant(store, options.tenant, admin=True)
    except ConflictError:
        return None
    saved[slot] = token
    _write_private(path, json.dumps(saved, indent=2))
    return token


async def _start(settings: Settings, options: UpOptions, say: Say) -> ClusterState:
    store = Store.open(settings.redis_url, settings.key_prefix)
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
        _write_private(options.state_dir / STATE_FILE, state.to_json())
        state.token = await _tenant_token(store, options, store.shown_url)
        say(f"waiting for /healthz and {options.workers} worker(s) to register ...")
        await _wait_ready(store, url, processes, options.timeout_s)
        _write_private(options.state_dir / STATE_FILE, state.to_json())
        return state
    except BaseException:
        if processes:
            _stop(processes, 5.0, DownReport())
            (options.state_dir / STATE_FILE).unlink(missing_ok=True)
        raise
    finally:
        await store.aclose()


def up(settings: Settings, options: UpOptions, say: Say = print) -> ClusterState:
    """Start the cluster and wait until it is ready; its state (also in the state file).

    Raises ConfigError for the embedded store or a busy port, ServiceUnavailableError
    for an unreachable Redis or a process that dies or is not ready in time (naming its
    log), ConflictError if a cluster runs from ``options.state_dir`` already.
    """
    if is_embedded(settings.redis_url):
        raise ConfigError(
            "`flowmesh up` starts separate processes, which cannot share the embedded store "
            "(memory://): set FLOWMESH_REDIS_URL=redis://host:6379/0, or run `flowmesh demo` "
            "for everything in one process"
        )
    with _locked(options.state_dir):
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


def down(state_dir: Path, timeout_s: float) -> tuple[ClusterState | None, DownReport]:
    """Stop the cluster started from ``state_dir``: workers first (they drain), then the
    control plane, each given ``timeout_s`` before SIGKILL; the state file is removed.

    Returns (None, empty report) when no cluster was started from there.
    """
    report = DownReport()
    with _locked(state_dir):
        state = read_state(state_dir)
        if state is None:
            return None, report
        workers = [p for p in state.processes if p.role == "worker"]
        _stop(workers, timeout_s, report)
        _stop([p for p in state.processes if p.role != "worker"], timeout_s, report)
        (state_dir / STATE_FILE).unlink(missing_ok=True)
    return state, report
