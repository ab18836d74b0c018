"""Cancelling a workflow (``DELETE /v1/workflows/{id}``, docs/isolation.md "Cancelling"):
its items no one else needs never run, items another tenant also asked for go on for it
unchanged, waiting clients return, and the answer is the same for another tenant's id as
for an unknown one. On the real Redis and the embedded store, through the HTTP API."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from flowmesh_core.client import AsyncClient
from flowmesh_core.errors import NotFoundError
from tests.integration.api_harness import BASE_URL, Harness
from tests.playworker import PlayWorker

pytestmark = pytest.mark.timeout(60)


async def _submit(client: httpx.AsyncClient, texts: list[str]) -> dict[str, Any]:
    op = {"kind": "embed", "model": "mini", "inputs": {"texts": texts}}
    response = await client.post("/v1/operators", json=op)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _lineage(client: httpx.AsyncClient, wf_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/workflows/{wf_id}/lineage")
    assert response.status_code == 200, response.text
    records: list[dict[str, Any]] = response.json()
    return records


async def _wait(client: httpx.AsyncClient, wf_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/workflows/{wf_id}/wait", params={"timeout": 30})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _executed(worker: PlayWorker) -> set[str]:
    return {item.op_key for batch in worker.batches for item in batch.items}


async def test_cancelled_items_leave_the_pool_and_never_run(harness: Harness) -> None:
    app = await harness.app()
    a = await harness.client(app, await harness.tenant("team-a"))
    cancelled = await _submit(a, ["never-1", "never-2", "never-3"])
    wf_id = cancelled["workflow_id"]
    op_keys = {r["op_key"] for r in await _lineage(a, wf_id)}
    assert await harness.store.in_flight("team-a") == 3

    answer = await a.delete(f"/v1/workflows/{wf_id}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "cancelled"
    assert [n["state"] for n in answer.json()["nodes"]] == ["cancelled"]
    status = (await a.get(f"/v1/workflows/{wf_id}")).json()
    assert status["state"] == "cancelled"
    assert status["finished_at"] is not None
    assert {r["status"] for r in status["nodes"][0]["lineage"]} == {"cancelled"}
    assert await harness.store.inflight() == []  # nothing left to plan
    assert await harness.store.ready_summary(10) == []
    assert await harness.store.in_flight("team-a") == 0

    # A worker arrives; other work runs, the cancelled items never do.
    worker = await harness.worker()
    later = await _submit(a, ["after-1"])
    assert (await _wait(a, later["workflow_id"]))["state"] == "done"
    await asyncio.sleep(0.5)  # a round more for the scheduler, had anything been left
    assert worker.batches, "the worker ran nothing at all: the test proves nothing"
    assert _executed(worker).isdisjoint(op_keys)
    for key in op_keys:
        assert await harness.store.cached("global", key) is None


async def test_a_shared_item_goes_on_for_the_other_tenant(harness: Harness) -> None:
    app = await harness.app(dedup_domain="global")
    a = await harness.client(app, await harness.tenant("team-a"))
    b = await harness.client(app, await harness.tenant("team-b"))
    a_wf = (await _submit(a, ["shared", "only-a"]))["workflow_id"]
    b_wf = (await _submit(b, ["shared"]))["workflow_id"]
    a_keys = {r["op_key"]: r for r in await _lineage(a, a_wf)}
    (b_record,) = await _lineage(b, b_wf)
    shared = b_record["op_key"]
    assert shared in a_keys
    (only_a,) = set(a_keys) - {shared}
    b_before = (await b.get(f"/v1/workflows/{b_wf}")).json()

    assert (await a.delete(f"/v1/workflows/{a_wf}")).json()["state"] == "cancelled"
    assert (await b.get(f"/v1/workflows/{b_wf}")).json() == b_before  # no difference for B
    assert [k for _, k in await harness.store.inflight()] == [shared]

    worker = await harness.worker()
    done = await _wait(b, b_wf)
    assert done["state"] == "done", done
    assert shared in _executed(worker)
    assert only_a not in _executed(worker)
    (b_after,) = await _lineage(b, b_wf)
    assert b_after["status"] == "done"
    assert b_after["worker_seconds"] > 0
    a_after = {r["op_key"]: r for r in await _lineage(a, a_wf)}
    assert {r["status"] for r in a_after.values()} == {"cancelled"}
    assert all(r["worker_seconds"] == 0 and r["result_digest"] is None for r in a_after.values())
    assert await harness.store.in_flight("team-a") == 0
    assert await harness.store.in_flight("team-b") == 0


async def test_a_running_item_finishes_for_nobody(harness: Harness) -> None:
    app = await harness.app()
    worker = await harness.worker(delay_s=1.5)
    a = await harness.client(app, await harness.tenant("team-a"))
    wf_id = (await _submit(a, ["slow"]))["workflow_id"]
    for _ in range(200):
        if (await a.get(f"/v1/workflows/{wf_id}")).json()["state"] == "running":
            break
        await asyncio.sleep(0.02)
    cancelled = await a.delete(f"/v1/workflows/{wf_id}")
    assert cancelled.json()["state"] == "cancelled", cancelled.text
    (record,) = await _lineage(a, wf_id)
    for _ in range(200):  # the batch in hand finishes and its report is applied
        if await harness.store.cached("global", record["op_key"]) is not None:
            break
        await asyncio.sleep(0.05)
    assert await harness.store.cached("global", record["op_key"]) is not None
    assert len(worker.batches) == 1
    (after,) = await _lineage(a, wf_id)
    assert after["status"] == "cancelled"
    assert (after["worker_seconds"], after["cost_usd"]) == (0, 0)
    stats = (await a.get("/v1/stats")).json()
    assert (stats["worker_seconds"], stats["cost_usd"]) == (0, 0)
    assert (await a.get(f"/v1/workflows/{wf_id}")).json()["state"] == "cancelled"
    assert await harness.store.in_flight("team-a") == 0


async def test_waiting_clients_return_when_cancelled(harness: Harness) -> None:
    app = await harness.app()
    a = await harness.client(app, await harness.tenant("team-a"))
    wf_id = (await _submit(a, ["waits"]))["workflow_id"]
    waiting = asyncio.create_task(_wait(a, wf_id))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await a.delete(f"/v1/workflows/{wf_id}")
    waited = await asyncio.wait_for(waiting, timeout=10)
    assert waited["state"] == "cancelled"


async def test_cancel_is_idempotent_and_leaves_a_finished_workflow_alone(
    harness: Harness,
) -> None:
    app = await harness.app()
    await harness.worker()
    a = await harness.client(app, await harness.tenant("team-a"))
    wf_id = (await _submit(a, ["quick"]))["workflow_id"]
    assert (await _wait(a, wf_id))["state"] == "done"
    before = (await a.get(f"/v1/workflows/{wf_id}")).json()
    again = await a.delete(f"/v1/workflows/{wf_id}")
    assert again.status_code == 200
    assert again.json()["state"] == "done"
    assert (await a.get(f"/v1/workflows/{wf_id}")).json() == before

    pending = (await _submit(a, ["x" * 10, "y" * 10]))["workflow_id"]
    first = await a.delete(f"/v1/workflows/{pending}")
    lineage = await _lineage(a, pending)
    second = await a.delete(f"/v1/workflows/{pending}")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert await _lineage(a, pending) == lineage


async def test_another_tenants_workflow_answers_like_an_unknown_one(harness: Harness) -> None:
    app = await harness.app(run_scheduler=False)
    a = await harness.client(app, await harness.tenant("team-a"))
    b = await harness.client(app, await harness.tenant("team-b"))
    wf_id = (await _submit(a, ["private"]))["workflow_id"]
    unknown = "f" * len(wf_id)
    keys_before = await harness.keys()
    theirs = await b.delete(f"/v1/workflows/{wf_id}")
    missing = await b.delete(f"/v1/workflows/{unknown}")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.headers.keys() == missing.headers.keys()
    assert theirs.json()["error"]["type"] == missing.json()["error"]["type"] == "NotFoundError"
    assert theirs.text.replace(wf_id, "ID") == missing.text.replace(unknown, "ID")
    assert await harness.keys() == keys_before  # nothing moved for A
    assert (await a.get(f"/v1/workflows/{wf_id}")).json()["state"] == "pending"


async def test_the_client_cancels_sync_and_async(harness: Harness) -> None:
    app = await harness.app(run_scheduler=False)
    token = await harness.tenant("team-a")
    raw = await harness.client(app, token)
    wf_id = (await _submit(raw, ["by-client"]))["workflow_id"]
    transport = httpx.ASGITransport(app=app)
    async with AsyncClient(BASE_URL, token, transport=transport) as client:
        status = await client.cancel_workflow(wf_id)
        assert status.state == "cancelled"
        assert (await client.wait(wf_id, timeout=5)).state == "cancelled"
        with pytest.raises(NotFoundError):
            await client.cancel_workflow("0" * 32)
