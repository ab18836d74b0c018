"""The API's answers say what is true whatever the query: 405s name the methods a path
answers (``Allow`` and the error shape), and a running workflow reads ``running`` with
or without lineage, from status and from ``/wait``."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.api_harness import Harness

pytestmark = pytest.mark.timeout(30)


async def test_every_405_says_which_methods_exist(harness: Harness) -> None:
    app = await harness.app(run_scheduler=False)
    client = await harness.client(app, await harness.tenant("team-a"))
    for method, path in [
        ("PUT", "/v1/operators"),
        ("PATCH", "/v1/workflows/wf-1"),
        ("POST", "/v1/workflows/wf-1/lineage"),
        ("DELETE", "/v1/workflows"),
    ]:
        response = await client.request(method, path)
        assert response.status_code == 405, (method, path, response.text)
        allowed = [m.strip() for m in response.headers["allow"].split(",")]
        assert allowed, path
        assert method not in allowed, (path, allowed)
        error = response.json()["error"]
        assert error["type"] == "MethodNotAllowed"
        assert all(m in error["message"] for m in allowed), error["message"]
        assert method in error["message"]
        assert path in error["message"]
        followed = await client.request(allowed[0], path)
        assert followed.status_code != 405, (allowed[0], path)


async def test_a_running_workflow_reads_running_whatever_the_query(harness: Harness) -> None:
    app = await harness.app()
    await harness.worker(delay_s=4.0)
    client = await harness.client(app, await harness.tenant("team-a"))
    op = {"kind": "embed", "model": "mini", "inputs": {"texts": ["slow"]}}
    response = await client.post("/v1/operators", json=op)
    assert response.status_code == 201, response.text
    wf_id = response.json()["workflow_id"]
    for _ in range(100):
        status = (await client.get(f"/v1/workflows/{wf_id}")).json()
        if status["state"] == "running":
            break
        await asyncio.sleep(0.05)
    assert status["state"] == "running", status

    bare = (await client.get(f"/v1/workflows/{wf_id}", params={"lineage": "false"})).json()
    assert bare["state"] == "running", bare
    assert bare["nodes"][0]["state"] == "running", bare
    assert bare["nodes"][0]["lineage"] == []
    waited = await client.get(f"/v1/workflows/{wf_id}/wait", params={"timeout": 0})
    assert waited.json()["state"] == "running", waited.text
    assert waited.json()["nodes"][0]["state"] == "running", waited.text
