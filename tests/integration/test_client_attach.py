"""The SDK's one re-attach policy (``flowmesh_core.client.attach``): a retry with the same
key re-attaches to its earlier try's workflow, unless that one failed; then it submits
afresh once, and every later retry re-attaches to that fresh one."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from flowmesh_core.client import AsyncClient, attach_async
from tests.integration.api_harness import BASE_URL, Harness

pytestmark = pytest.mark.timeout(30)


async def test_a_retry_reattaches_unless_the_earlier_try_failed(harness: Harness) -> None:
    app = await harness.app(max_attempts=1)
    fail = {"on": True}

    def execute(item: Any) -> Any:
        if fail["on"]:
            raise RuntimeError("first try breaks")
        return [0.5]

    await harness.worker(execute=execute)
    token = await harness.tenant("team-a")
    op = {"kind": "embed", "model": "mini", "inputs": {"texts": ["r"]}, "dedup": False}
    transport = httpx.ASGITransport(app=app)
    async with AsyncClient(BASE_URL, token, transport=transport) as client:
        first = await attach_async(client, op, key="task-1", workflow=False)
        assert not first.result.replayed
        assert (await client.wait(first.result.workflow_id, timeout=20)).state == "failed"

        fail["on"] = False
        second = await attach_async(client, op, key="task-1", workflow=False)
        assert second.failed_before == (first.result.workflow_id,)
        assert not second.result.replayed
        assert (await client.wait(second.result.workflow_id, timeout=20)).state == "done"

        third = await attach_async(client, op, key="task-1", workflow=False)
        assert third.result.replayed
        assert third.result.workflow_id == second.result.workflow_id
        assert third.key == second.key
