"""Real FlowMesh processes for integration tests: ``flowmesh serve`` and ``flowmesh worker``.

Each process runs the installed ``flowmesh`` command in its own session, with its output
in a log file under the test's temporary directory, and an environment built from the
test's Redis, key prefix and blob directory only (no ``FLOWMESH_*`` leaks in from the
shell). ``Procs`` kills whatever is still running when the test ends. ``until`` polls
with a deadline: tests must hold on a loaded machine, so no fixed sleeps stand for
"long enough".
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
FLOWMESH = str(Path(sys.executable).with_name("flowmesh"))


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_env(
    redis_url: str, key_prefix: str, blob_url: str, **settings: object
) -> dict[str, str]:
    """This environment without FLOWMESH_* variables (but the session's state directory,
    so ``memory://`` is the session's embedded store), plus the given settings.

    ``settings`` become ``FLOWMESH_<NAME>`` (lists and dicts as JSON). The repository
    root is on PYTHONPATH so workers can import ``tests.worker.ops``.
    """
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FLOWMESH_")}
    if "FLOWMESH_STATE_DIR" in os.environ:
        env["FLOWMESH_STATE_DIR"] = os.environ["FLOWMESH_STATE_DIR"]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(
        FLOWMESH_REDIS_URL=redis_url, FLOWMESH_KEY_PREFIX=key_prefix, FLOWMESH_BLOB_URL=blob_url
    )
    for name, value in settings.items():
        text = json.dumps(value) if isinstance(value, list | dict) else str(value)
        env[f"FLOWMESH_{name.upper()}"] = text
    return env


class Proc:
    """One ``flowmesh`` process and its log file.

    ``prefix`` goes before the command (``ip netns exec HOST`` runs it on another
    "host", tests/multihost); it must exec the command, so ``pid`` stays the process's.
    """

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        log: Path,
        prefix: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*prefix, FLOWMESH, *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            self.process.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        """The exit status (negative: the signal that ended it), within ``timeout_s``."""
        return self.process.wait(timeout=timeout_s)

    async def exited(self, timeout_s: float) -> int:
        """The exit status, polled without blocking the event loop (which may be running
        a control plane)."""
        await until(lambda: not self.alive(), timeout_s, f"{self.name} to exit", self.output)
        return self.wait(1)

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        self.signal(signal.SIGKILL)
        self.process.wait(timeout=10)


class Served(Proc):
    """A ``flowmesh serve`` process on a free port (or ``port``) of ``host``."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        log: Path,
        *args: str,
        host: str = "127.0.0.1",
        port: int | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        self.port = free_port() if port is None else port
        self.url = f"http://{host}:{self.port}"
        argv = ["serve", "--host", host, "--port", str(self.port), *args]
        super().__init__(name, argv, env, log, prefix)

    async def healthy(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(f"{self.url}/healthz")).status_code == 200
        except httpx.TransportError:
            return False


class Procs:
    """The processes of one test, all logging under ``directory``."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory = directory
        self.env = env
        self.started: list[Proc] = []
        directory.mkdir(parents=True, exist_ok=True)

    def serve(self, name: str = "serve", *args: str, **where: Any) -> Served:
        """``where``: ``host``, ``port`` and ``prefix`` of ``Served``."""
        server = Served(name, self.env, self.directory / f"{name}.log", *args, **where)
        self.started.append(server)
        return server

    def worker(self, worker_id: str, *args: str, prefix: Sequence[str] = ()) -> Proc:
        argv = ["worker", "--worker-id", worker_id, "--log-level", "debug", *args]
        log = self.directory / f"{worker_id}.log"
        worker = Proc(worker_id, argv, self.env, log, prefix)
        self.started.append(worker)
        return worker

    def logs(self) -> str:
        """Every process's log, for a failure message."""
        return "\n".join(f"--- {p.name} (pid {p.pid}):\n{p.output()}" for p in self.started)

    def close(self) -> None:
        for proc in self.started:
            proc.kill()


Check = Callable[[], bool | Awaitable[bool]]


async def until(
    check: Check, timeout_s: float, what: str, context: Callable[[], str] | None = None
) -> None:
    """Poll ``check`` (sync or async) until it is true; fail after ``timeout_s`` saying
    what was awaited, with ``context()`` (process logs) attached."""
    deadline = time.monotonic() + timeout_s
    while True:
        outcome = check()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            detail = f"\n{context()}" if context else ""
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}{detail}")
        await asyncio.sleep(0.05)
