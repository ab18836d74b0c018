"""The ready pool and batch views (``GET /v1/pool``, ``GET /v1/batches/{id}``; docs/ui.md).

Scoped like ``/v1/stats`` (docs/isolation.md): an admin sees every tenant's share and
every requester of a batch; a tenant sees its own share, its own items in a batch and
aggregate figures, never another tenant's name, items or op keys. The batch's decision
terms are the ones the scheduler recorded when it claimed the batch.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.integration.api_harness import Harness

pytestmark = pytest.mark.timeout(45)


@pytest.fixture
def store_url(redis_url: str) -> str:
    """The real Redis only (the store suites cover both stores)."""
    return redis_url


async def _submit(client: httpx.AsyncClient, texts: list[str]) -> str:
    op = {"kind": "embed", "model": "mini", "inputs": {"texts": texts}}
    response = await client.post("/v1/operators", json=op)
    assert response.status_code == 201, response.text
    wf_id: str = response.json()["workflow_id"]
    return wf_id


async def _done(client: httpx.AsyncClient, wf_id: str) -> list[dict[str, Any]]:
    """The workflow's lineage once it is done."""
    waited = await client.get(f"/v1/workflows/{wf_id}/wait", params={"timeout": 20})
    assert waited.json()["state"] == "done", waited.text
    records: list[dict[str, Any]] = (await client.get(f"/v1/workflows/{wf_id}/lineage")).json()
    return records


async def test_pool_shares_and_batch_items_are_scoped_by_tenant(harness: Harness) -> None:
    app = await harness.app()
    alice = await harness.client(app, await harness.tenant("alice"))
    bob = await harness.client(app, await harness.tenant("bob"))
    carol = await harness.client(app, await harness.tenant("carol"))
    admin = await harness.client(app, await harness.tenant("ops", admin=True))

    a_wf = await _submit(alice, ["a1", "a2", "a3"])
    b_wf = await _submit(bob, ["b1", "b2"])
    await asyncio.sleep(0.3)  # no worker yet: both wait in one group

    everyone = (await admin.get("/v1/pool")).json()
    [group] = everyone["groups"]
    assert group["kind"] == "embed"
    assert group["size"] == 5
    assert {s["tenant"]: s["items"] for s in group["shares"]} == {"alice": 3, "bob": 2}
    assert all(s["oldest_wait_s"] >= 0.2 for s in group["shares"])
    own = await alice.get("/v1/pool")
    assert own.status_code == 200
    [mine] = own.json()["groups"]
    assert mine["size"] == 5  # the global dedup domain: the group's size is shown
    assert mine["shares"] == [
        {"tenant": "alice", "items": 3, "oldest_wait_s": mine["oldest_wait_s"]}
    ]
    assert "bob" not in own.text
    assert (await carol.get("/v1/pool")).json()["groups"] == []

    await harness.worker()
    a_lineage = await _done(alice, a_wf)
    await _done(bob, b_wf)
    batch_ids = {r["batch_id"] for r in a_lineage}
    assert len(batch_ids) == 1
    [batch_id] = batch_ids

    seen = await alice.get(f"/v1/batches/{batch_id}")
    assert seen.status_code == 200, seen.text
    batch = seen.json()
    assert batch["size"] == 5
    assert batch["worker"] == "play-1"
    assert batch["finished_at"] >= batch["assigned_at"]
    assert sorted(r["index"] for r in batch["items"]) == [0, 1, 2]
    assert {r["tenant"] for r in batch["items"]} == {"alice"}
    terms = batch["terms"]
    assert terms["policy"] == "utility"
    assert terms["size"] == 5
    assert terms["utility"] > 0
    assert terms["rate"] == pytest.approx(terms["utility"] / terms["seconds"])
    hidden = {"ready", "fairness", "free_workers", "input_bytes", "input_local"}
    assert hidden.isdisjoint(terms)
    assert "bob" not in seen.text

    full = (await admin.get(f"/v1/batches/{batch_id}")).json()
    assert {r["tenant"] for r in full["items"]} == {"alice", "bob"}
    assert full["terms"]["ready"] == 5
    assert "fairness" in full["terms"]
    assert full["terms"]["input_local"] == 0
    assert full["terms"]["input_bytes"] == 0  # a named model, literal inputs: nothing to fetch

    hidden = await carol.get(f"/v1/batches/{batch_id}")
    unknown = await carol.get("/v1/batches/no-such-batch")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["error"]["message"].replace(batch_id, "X") == unknown.json()["error"][
        "message"
    ].replace("no-such-batch", "X")
    assert (await alice.get("/v1/batches/bad id!")).status_code in (400, 404, 422)


async def test_under_the_tenant_domain_a_tenant_sees_no_group_size(harness: Harness) -> None:
    app = await harness.app(dedup_domain="tenant")
    alice = await harness.client(app, await harness.tenant("alice"))
    bob = await harness.client(app, await harness.tenant("bob"))
    await _submit(alice, ["x1", "x2"])
    before = (await alice.get("/v1/pool")).json()["groups"]
    await _submit(bob, ["y1", "y2", "y3"])
    after = (await alice.get("/v1/pool")).json()["groups"]
    assert [g["size"] for g in after] == [None]
    assert [g["shares"][0]["items"] for g in after] == [2]
    assert [g["signature"] for g in after] == [g["signature"] for g in before]


async def test_a_requester_that_joined_while_the_batch_ran_sees_that_batch(
    harness: Harness,
) -> None:
    app = await harness.app()
    alice = await harness.client(app, await harness.tenant("alice"))
    bob = await harness.client(app, await harness.tenant("bob"))
    admin = await harness.client(app, await harness.tenant("ops", admin=True))
    await harness.worker(delay_s=1.5)
    a_wf = await _submit(alice, ["j1", "j2"])
    for _ in range(100):  # until the batch runs
        status = (await alice.get(f"/v1/workflows/{a_wf}")).json()
        if status["state"] == "running":
            break
        await asyncio.sleep(0.05)
    assert status["state"] == "running", status
    b_wf = await _submit(bob, ["j1"])
    [joined] = await _done(bob, b_wf)
    assert joined["satisfied_by"] == "joined"
    a_lineage = await _done(alice, a_wf)
    assert {r["batch_id"] for r in a_lineage} == {joined["batch_id"]}

    seen = (await bob.get(f"/v1/batches/{joined['batch_id']}")).json()
    assert [(r["tenant"], r["index"]) for r in seen["items"]] == [("bob", 0)]
    assert seen["size"] == 2
    everyone = (await admin.get(f"/v1/batches/{joined['batch_id']}")).json()
    assert sorted(r["tenant"] for r in everyone["items"]) == ["alice", "alice", "bob"]


async def test_under_the_tenant_domain_batches_never_mix_tenants(harness: Harness) -> None:
    """Each tenant's items wait in a group of their own and run in batches of their own,
    so a batch's size, time and charge never depend on another tenant's items."""
    app = await harness.app(dedup_domain="tenant")
    alice = await harness.client(app, await harness.tenant("alice"))
    bob = await harness.client(app, await harness.tenant("bob"))
    admin = await harness.client(app, await harness.tenant("ops", admin=True))
    a_wf = await _submit(alice, ["same", "a2"])
    b_wf = await _submit(bob, ["same", "b2", "b3"])
    groups = (await admin.get("/v1/pool")).json()["groups"]
    assert sorted(tuple(s["tenant"] for s in g["shares"]) for g in groups) == [
        ("alice",),
        ("bob",),
    ]
    await harness.worker()
    a_batches = {r["batch_id"] for r in await _done(alice, a_wf)}
    b_batches = {r["batch_id"] for r in await _done(bob, b_wf)}
    assert a_batches.isdisjoint(b_batches)
    for batch_id, size in [(*a_batches, 2), (*b_batches, 3)]:
        batch = (await admin.get(f"/v1/batches/{batch_id}")).json()
        assert batch["size"] == size
