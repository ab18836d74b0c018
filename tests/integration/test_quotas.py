"""Per-tenant quotas (docs/isolation.md, "Quotas"): items in flight and submissions per
second, answered 429 with ``Retry-After`` in the error shape. The check and the count are
one Lua step, so concurrent submissions, through two API replicas at once, never pass a
limit together; a refused submission changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from flowmesh_core.client import AsyncClient
from flowmesh_core.errors import QuotaExceededError
from tests.integration.api_harness import BASE_URL, Harness

pytestmark = pytest.mark.timeout(60)


def _op(*texts: str) -> dict[str, Any]:
    return {"kind": "embed", "model": "mini", "inputs": {"texts": list(texts)}}


def _refused(response: httpx.Response, which: str) -> float:
    """Checks a quota's 429; its Retry-After in seconds."""
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["type"] == "QuotaExceededError"
    assert which in error["message"]
    retry_after = int(response.headers["retry-after"])
    assert retry_after >= 1
    return retry_after


async def _clients(harness: Harness, token: str, **settings: Any) -> list[httpx.AsyncClient]:
    """Two API replicas (each its own control plane and Redis connections) on one store."""
    apps = [await harness.app(run_scheduler=False, **settings) for _ in range(2)]
    return [await harness.client(app, token) for app in apps]


async def test_concurrent_submissions_never_pass_the_in_flight_limit(harness: Harness) -> None:
    token = await harness.tenant("team-a", max_in_flight=5)
    clients = await _clients(harness, token)
    answers = await asyncio.gather(
        *(clients[i % 2].post("/v1/operators", json=_op(f"text-{i}")) for i in range(24))
    )
    accepted = [r for r in answers if r.status_code == 201]
    assert len(accepted) == 5, [r.status_code for r in answers]
    for response in answers:
        if response.status_code != 201:
            _refused(response, "items in flight")
    assert await harness.store.in_flight("team-a") == 5
    assert len(await harness.store.tenant_workflows("team-a")) == 5

    # Two items do not fit in one free place; cancelling frees places at once.
    one, two = (r.json()["workflow_id"] for r in accepted[:2])
    await clients[0].delete(f"/v1/workflows/{one}")
    _refused(await clients[1].post("/v1/operators", json=_op("p", "q")), "items in flight")
    await clients[1].delete(f"/v1/workflows/{two}")
    again = await clients[0].post("/v1/operators", json=_op("p", "q"))
    assert again.status_code == 201, again.text
    assert await harness.store.in_flight("team-a") == 5


async def test_concurrent_submissions_never_pass_the_rate(harness: Harness) -> None:
    # 0.2 per second: a burst of one, the next token five seconds later.
    token = await harness.tenant("team-a", submit_rate=0.2)
    clients = await _clients(harness, token)
    answers = await asyncio.gather(
        *(clients[i % 2].post("/v1/operators", json=_op(f"rate-{i}")) for i in range(12))
    )
    assert [r.status_code for r in answers].count(201) == 1, [r.status_code for r in answers]
    waits = [_refused(r, "per second") for r in answers if r.status_code != 201]
    assert all(1 <= w <= 5 for w in waits), waits


async def test_a_refused_submission_changes_nothing(harness: Harness) -> None:
    token = await harness.tenant("team-a", max_in_flight=2, submit_rate=1000)
    (client, _) = await _clients(harness, token)
    assert (await client.post("/v1/operators", json=_op("a", "b"))).status_code == 201
    before = await harness.keys()
    quota = await harness.store.redis.hgetall(harness.store.keys.quota("team-a"))
    _refused(await client.post("/v1/operators", json=_op("c")), "items in flight")
    assert await harness.keys() == before
    assert await harness.store.redis.hgetall(harness.store.keys.quota("team-a")) == quota
    too_big = await client.post("/v1/operators", json=_op("c", "d", "e"))
    assert too_big.status_code == 400, too_big.text
    assert "split the work" in too_big.json()["error"]["message"]


async def test_settings_give_the_default_and_an_admin_has_no_quota(harness: Harness) -> None:
    limits = {"tenant_max_in_flight": 1, "tenant_submit_rate": 0}
    plain = await harness.tenant("team-a")
    admin = await harness.tenant("ops", admin=True)
    (a, _) = await _clients(harness, plain, **limits)
    (ops, _) = await _clients(harness, admin, **limits)
    assert (await a.post("/v1/operators", json=_op("one"))).status_code == 201
    _refused(await a.post("/v1/operators", json=_op("two")), "at most 1 items")
    for i in range(3):
        assert (await ops.post("/v1/operators", json=_op(f"ops-{i}", "x"))).status_code == 201


async def test_finished_items_free_their_places(harness: Harness) -> None:
    token = await harness.tenant("team-a", max_in_flight=2)
    app = await harness.app()
    client = await harness.client(app, token)
    first = (await client.post("/v1/operators", json=_op("a", "b"))).json()["workflow_id"]
    _refused(await client.post("/v1/operators", json=_op("c")), "items in flight")
    await harness.worker()
    done = await client.get(f"/v1/workflows/{first}/wait", params={"timeout": 20})
    assert done.json()["state"] == "done", done.text
    assert await harness.store.in_flight("team-a") == 0
    # A joined or cached item counts while it waits; a cache hit never does.
    cached = await client.post("/v1/operators", json=_op("a", "b"))
    assert cached.status_code == 201, cached.text
    assert await harness.store.in_flight("team-a") == 0


async def test_the_client_raises_a_typed_error_with_retry_after(harness: Harness) -> None:
    token = await harness.tenant("team-a", submit_rate=0.2)
    app = await harness.app(run_scheduler=False)
    transport = httpx.ASGITransport(app=app)
    async with AsyncClient(BASE_URL, token, transport=transport) as client:
        await client.submit_operator(_op("first"))
        with pytest.raises(QuotaExceededError, match="per second") as caught:
            await client.submit_operator(_op("second"))
    assert caught.value.retry_after is not None
    assert 1 <= caught.value.retry_after <= 5
