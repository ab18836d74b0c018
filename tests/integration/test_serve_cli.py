"""``flowmesh serve`` and ``flowmesh tenant create`` as an operator runs them: real processes.

The server is a real ``flowmesh serve`` subprocess on a free port over the real Redis
(a fresh key prefix, purged afterwards); clients speak real HTTP to it, and a play
worker in this process executes what its scheduler assigns.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from flowmesh_core.blobs import open_blob_store
from flowmesh_core.store import Store
from tests.integration.api_harness import sha256_digest
from tests.playworker import PlayWorker

pytestmark = pytest.mark.timeout(60)

FLOWMESH = str(Path(sys.executable).with_name("flowmesh"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def flowmesh(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLOWMESH, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMESH_")}
    return {
        **clean,
        "FLOWMESH_BLOB_URL": f"file://{tmp_path / 'blobs'}",
        "FLOWMESH_STATE_DIR": str(tmp_path / "state"),
    }


@pytest.fixture
def redis_env(base_env: dict[str, str], redis_url: str, key_prefix: str) -> dict[str, str]:
    return {**base_env, "FLOWMESH_REDIS_URL": redis_url, "FLOWMESH_KEY_PREFIX": key_prefix}


@pytest.fixture
async def purged(redis_url: str, key_prefix: str) -> AsyncIterator[Store]:
    """The store the server uses; every key under the prefix is deleted afterwards."""
    store = Store.open(redis_url, key_prefix)
    yield store
    await store.purge()
    await store.aclose()


class Server:
    """A ``flowmesh serve`` process and its log."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [FLOWMESH, "serve", "--port", str(self.port), *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_healthy(self, timeout_s: float = 20.0) -> httpx.Response:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"serve exited:\n{self.output()}"
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2)
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"serve did not answer within {timeout_s} s:\n{self.output()}")

    def terminate(self) -> int:
        """SIGTERM, then the exit status (it must come within a few seconds)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)


@pytest.fixture
def serve() -> Iterator[list[Server]]:
    servers: list[Server] = []
    yield servers
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=10)


async def test_serve_runs_workflows_over_real_http_and_stops_cleanly_on_sigterm(
    redis_env: dict[str, str], purged: Store, serve: list[Server], tmp_path: Path
) -> None:
    server = Server(redis_env, tmp_path / "serve.log")
    serve.append(server)
    health = server.wait_healthy()
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok"

    created = flowmesh("tenant", "create", "team-a", env=redis_env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("fm_")
    assert created.stdout == token + "\n"
    assert "will not be shown again" in created.stderr
    assert "export FLOWMESH_TOKEN=" in created.stderr
    again = flowmesh("tenant", "create", "team-a", env=redis_env)
    assert again.returncode == 2
    assert again.stderr.strip() == "error: tenant 'team-a' already exists; pick another name"

    worker = PlayWorker(purged, open_blob_store(redis_env["FLOWMESH_BLOB_URL"]))
    await worker.start()
    try:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
            body = "kind: embed\nmodel: mini\ninputs:\n  texts: [over, real, http]\n"
            response = await client.post(
                "/v1/operators", content=body, headers={"Content-Type": "application/yaml"}
            )
            assert response.status_code == 201, response.text
            wf_id = response.json()["workflow_id"]
            waited = await client.get(f"/v1/workflows/{wf_id}/wait", params={"timeout": 20})
            assert waited.json()["state"] == "done", waited.text
            digest = waited.json()["nodes"][0]["result_digest"]
            result = await client.get(f"/v1/results/{digest}")
            assert sha256_digest(result.content) == digest
    finally:
        await worker.stop()

    started = time.monotonic()
    assert server.terminate() == 0, server.output()
    assert time.monotonic() - started < 5
    log = server.output()
    assert f"listening on http://127.0.0.1:{server.port}" in log
    assert f"Redis: {redis_env['FLOWMESH_REDIS_URL']}" in log
    assert "EMBEDDED" not in log
    assert "Traceback" not in log


async def test_sigterm_answers_open_long_polls_at_once_with_the_status_as_it_stands(
    redis_env: dict[str, str], purged: Store, serve: list[Server], tmp_path: Path
) -> None:
    """A wait on a workflow that cannot finish (no worker) ends when shutdown starts,
    well before the grace period, with a 200 and the status: no bare 500, no traceback."""
    server = Server(redis_env, tmp_path / "serve.log", "--graceful-timeout", "5")
    serve.append(server)
    assert server.wait_healthy().status_code == 200, server.output()
    created = flowmesh("tenant", "create", "team-a", env=redis_env)
    assert created.returncode == 0, created.stderr
    headers = {"Authorization": f"Bearer {created.stdout.strip()}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
        body = {"kind": "embed", "model": "mini", "inputs": {"texts": ["never", "run"]}}
        submitted = await client.post("/v1/operators", json=body)
        assert submitted.status_code == 201, submitted.text
        wf_id = submitted.json()["workflow_id"]
        waits = [
            asyncio.create_task(client.get(f"/v1/workflows/{wf_id}/wait", params=params))
            for params in ({"timeout": "60"}, {"timeout": "60", "lineage": "true"})
        ]
        done, _ = await asyncio.wait(waits, timeout=1.0)
        assert not done, "the long polls should still be open: nothing can run the work"

        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        answers = await asyncio.wait_for(asyncio.gather(*waits), timeout=10)
        took = time.monotonic() - started
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert took < 3, f"the long polls took {took:.1f} s to answer"
    for answer in answers:
        assert answer.json()["workflow_id"] == wf_id
        assert answer.json()["state"] in ("pending", "running")
    assert server.process.wait(timeout=15) == 0, server.output()
    log = server.output()
    assert "Traceback" not in log
    assert "graceful shutdown exceeded" not in log


def test_serve_on_the_embedded_store_says_so_and_can_skip_the_scheduler(
    base_env: dict[str, str], serve: list[Server], tmp_path: Path
) -> None:
    server = Server(base_env, tmp_path / "serve.log", "--no-scheduler")
    serve.append(server)
    health = server.wait_healthy()
    assert health.status_code == 200, health.text
    assert health.json()["checks"]["scheduler"].startswith("disabled")
    assert server.terminate() == 0, server.output()
    log = server.output()
    assert "API only (--no-scheduler)" in log
    assert "the store is the embedded one (memory://)" in log


def test_a_tenant_created_on_the_embedded_store_is_the_servers(
    base_env: dict[str, str], serve: list[Server], tmp_path: Path
) -> None:
    """`flowmesh tenant create` and `flowmesh serve` are separate processes on the same
    embedded store (one state directory): the token one prints, the other accepts."""
    created = flowmesh("tenant", "create", "team-a", env=base_env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    server = Server(base_env, tmp_path / "serve.log")
    serve.append(server)
    assert server.wait_healthy().status_code == 200, server.output()
    mine = httpx.get(
        f"{server.url}/v1/stats", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert mine.status_code == 200, mine.text
    stranger = httpx.get(
        f"{server.url}/v1/stats", headers={"Authorization": "Bearer fm_nope"}, timeout=10
    )
    assert stranger.status_code == 401
    assert server.terminate() == 0, server.output()


def test_tenant_create_refuses_a_bad_name(redis_env: dict[str, str]) -> None:
    bad = flowmesh("tenant", "create", "no spaces", env=redis_env)
    assert bad.returncode == 2
    assert "not a valid name" in bad.stderr
    assert "Traceback" not in bad.stderr
