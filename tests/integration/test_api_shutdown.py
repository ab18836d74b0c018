"""Long polls when the app shuts down, in process (ASGI) on the real and embedded stores.

``begin_shutdown`` is what ``flowmesh serve`` calls when SIGTERM arrives (the real
process is tested in test_serve_cli.py); the lifespan's own shutdown calls it too.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from flowmesh_core.api.app import begin_shutdown
from tests.integration.api_harness import Harness

pytestmark = pytest.mark.timeout(30)


async def test_shutdown_answers_open_waits_with_the_status_as_it_stands(
    harness: Harness,
) -> None:
    app = await harness.app()  # no worker: the workflow stays pending
    client = await harness.client(app, await harness.tenant("team-a"))
    body = {"kind": "embed", "model": "mini", "inputs": {"texts": ["never", "run"]}}
    wf_id = (await client.post("/v1/operators", json=body)).json()["workflow_id"]

    def wait(**params: str) -> asyncio.Task[httpx.Response]:
        url = f"/v1/workflows/{wf_id}/wait"
        return asyncio.create_task(client.get(url, params={"timeout": 60, **params}))

    waits = [wait(), wait(lineage="true")]
    done, _ = await asyncio.wait(waits, timeout=0.5)
    assert not done, "the waits should still be open: nothing can run the work"
    started = time.monotonic()
    begin_shutdown(app)
    answers = await asyncio.wait_for(asyncio.gather(*waits), timeout=5)
    assert time.monotonic() - started < 1.5
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert (answer.json()["workflow_id"], answer.json()["state"]) == (wf_id, "pending")
    assert answers[1].json()["nodes"][0]["lineage"], "lineage=true must still bring lineage"

    late = await asyncio.wait_for(wait(), timeout=2)  # a wait that comes in after it
    assert (late.status_code, late.json()["state"]) == (200, "pending")
