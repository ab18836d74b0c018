"""Idempotent submission: a retried orchestrator task gets its earlier submission back.

The ``Idempotency-Key`` header (``idempotency_key=`` in the client SDK) names a
submission. The same tenant sending the same key again creates nothing and gets the
earlier workflow id (200, ``replayed``); concurrent submissions with one key create one
workflow; the same key with different work is a conflict; keys are per tenant.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from flowmesh_core.client import AsyncClient
from flowmesh_core.errors import ConflictError, InvalidInputError
from flowmesh_core.store import Store
from tests.integration.api_harness import BASE_URL, Harness

OPERATOR: dict[str, Any] = {
    "kind": "data.template",
    "params": {"template": "hello {text}"},
    "inputs": {"records": ["ada", "grace"]},
}


@pytest.fixture
async def harness(
    store: Store, store_url: str, key_prefix: str, tmp_path: Path
) -> AsyncIterator[Harness]:
    async with contextlib.AsyncExitStack() as stack:
        yield Harness(store, store_url, key_prefix, f"file://{tmp_path / 'blobs'}", stack)


async def sdk(harness: Harness, tenant: str, app: FastAPI | None = None) -> AsyncClient:
    """The SDK client of a new tenant, over ASGI to ``app`` (a new one by default)."""
    transport = httpx.ASGITransport(app=app or await harness.app())
    client = AsyncClient(BASE_URL, token=await harness.tenant(tenant), transport=transport)
    harness.stack.push_async_callback(client.aclose)
    return client


async def test_a_repeated_key_returns_the_earlier_submission(harness: Harness) -> None:
    client = await sdk(harness, "team-a")
    first = await client.submit_operator(OPERATOR, idempotency_key="dag/run-1/task")
    again = await client.submit_operator(OPERATOR, idempotency_key="dag/run-1/task")
    assert (first.replayed, again.replayed) == (False, True)
    assert again.workflow_id == first.workflow_id
    assert again.nodes[0].op_key == first.nodes[0].op_key
    other = await client.submit_operator(OPERATOR, idempotency_key="dag/run-2/task")
    assert other.workflow_id != first.workflow_id
    plain = await client.submit_operator(OPERATOR)
    assert plain.workflow_id not in {first.workflow_id, other.workflow_id}


async def test_concurrent_submissions_with_one_key_create_one_workflow(harness: Harness) -> None:
    client = await sdk(harness, "team-a")
    results = await asyncio.gather(
        *(client.submit_operator(OPERATOR, idempotency_key="same") for _ in range(8))
    )
    assert len({r.workflow_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    stats = await client.stats()
    assert stats.tenants[0].requested == 2  # the two records, asked once


async def test_the_same_key_with_other_work_is_a_conflict(harness: Harness) -> None:
    client = await sdk(harness, "team-a")
    await client.submit_operator(OPERATOR, idempotency_key="k")
    changed = {**OPERATOR, "params": {"template": "bye {text}"}}
    with pytest.raises(ConflictError, match="different workflow"):
        await client.submit_operator(changed, idempotency_key="k")


async def test_keys_belong_to_their_tenant(harness: Harness) -> None:
    app = await harness.app()
    a = await sdk(harness, "team-a", app)
    b = await sdk(harness, "team-b", app)
    first = await a.submit_operator(OPERATOR, idempotency_key="k")
    second = await b.submit_operator(OPERATOR, idempotency_key="k")
    assert not second.replayed
    assert second.workflow_id != first.workflow_id


async def test_a_malformed_key_is_refused_before_anything_is_sent(harness: Harness) -> None:
    client = await sdk(harness, "team-a")
    with pytest.raises(InvalidInputError, match="printable ASCII"):
        await client.submit_operator(OPERATOR, idempotency_key="tab\there")
