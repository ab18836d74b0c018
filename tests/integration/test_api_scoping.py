"""Figures a tenant may see (docs/architecture.md, tenant isolation): a non-admin's
``/v1/stats`` holds only its own figures, totals included, and ``/metrics`` without a
token holds request metrics only (no tenant count, no totals); an admin token scrapes
the fabric's totals, any other token is refused."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.api_harness import Harness

pytestmark = pytest.mark.timeout(30)


async def _run(client: httpx.AsyncClient, texts: list[str]) -> None:
    op = {"kind": "embed", "model": "mini", "inputs": {"texts": texts}}
    response = await client.post("/v1/operators", json=op)
    assert response.status_code == 201, response.text
    wf_id = response.json()["workflow_id"]
    waited = await client.get(f"/v1/workflows/{wf_id}/wait", params={"timeout": 20})
    assert waited.json()["state"] == "done", waited.text


async def test_stats_and_metrics_show_nothing_of_other_tenants(harness: Harness) -> None:
    app = await harness.app()
    await harness.worker()
    a = await harness.client(app, await harness.tenant("team-a"))
    b = await harness.client(app, await harness.tenant("team-b"))
    admin = await harness.client(app, await harness.tenant("ops", admin=True))
    anonymous = await harness.client(app)

    before_b = (await b.get("/v1/stats")).json()
    before_metrics = (await anonymous.get("/metrics")).text
    await _run(a, ["a1", "a2", "a3", "a4"])  # A's activity only
    after_b = (await b.get("/v1/stats")).json()
    assert after_b == before_b  # nothing B sees moved
    assert after_b["requested"] == 0
    assert [t["tenant"] for t in after_b["tenants"]] == ["team-b"]

    own = (await a.get("/v1/stats")).json()
    assert (own["requested"], own["executed"], own["batches"]) == (4, 4, 0)
    total = (await admin.get("/v1/stats")).json()
    assert total["requested"] == 4
    assert total["batches"] >= 1
    assert {t["tenant"] for t in total["tenants"]} >= {"team-a", "team-b", "ops"}

    plain = await anonymous.get("/metrics")
    assert plain.status_code == 200
    for text in (before_metrics, plain.text):
        assert "flowmesh_tenants" not in text
        assert "flowmesh_items_requested" not in text
        assert "flowmesh_worker_seconds" not in text
    assert "flowmesh_http_requests_total" in plain.text
    scraped = (await admin.get("/metrics")).text
    assert "flowmesh_items_requested_total 4.0" in scraped
    assert "flowmesh_tenants 3.0" in scraped
    refused = await b.get("/metrics")
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "PermissionDeniedError"
